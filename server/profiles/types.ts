/**
 * The validated model of profiles/*.yaml. Produced once by the loader
 * (server/profiles/load.ts) after schema and cross-file checks; everything
 * downstream receives these frozen objects and never re-validates them.
 * The YAML spelling (snake_case) lives in profiles/profiles.schema.json; this
 * file is the in-memory shape (camelCase).
 */
import type { Mac } from '../mac.js';

export type Role = 'manager' | 'worker' | 'none';
export type BootMethod = 'ipxe' | 'pxelinux';
/** How a machine gets its Ignition: by URL on the kernel line, or packed into an extra initrd. */
export type IgnitionDelivery = 'url' | 'oem';
export type FlatcarChannel = 'stable' | 'beta' | 'alpha' | 'lts';
export type FlatcarArch = 'amd64' | 'arm64';
/** UEFI iPXE build handed to x86-64 UEFI firmware (snponly.efi uses the firmware's NIC driver). */
export type EfiBinary = 'ipxe.efi' | 'snponly.efi';

export interface FlatcarImage {
  readonly channel: FlatcarChannel;
  /** 'current' (follows the channel's current link) or a pinned "X.Y.Z". */
  readonly version: string;
  readonly arch: FlatcarArch;
}

export interface UnitDropin {
  readonly name: string;
  readonly contents: string;
}

export interface UnitSpec {
  readonly name: string;
  readonly enabled?: boolean;
  readonly mask?: boolean;
  readonly contents?: string;
  readonly dropins: readonly UnitDropin[];
}

export interface FileSpec {
  readonly path: string;
  /** Numeric mode, e.g. 0o644. */
  readonly mode: number;
  /** File contents as UTF-8 text. */
  readonly contents: string;
  readonly overwrite: boolean;
}

export interface SwarmStatic {
  readonly mode: 'static';
  /** "host:port" of managers to join (port defaults to 2377 at load time). */
  readonly managers: readonly string[];
  readonly tokens: { readonly worker?: string; readonly manager?: string };
}

export interface SwarmAutomatic {
  readonly mode: 'automatic';
  /** The last manager leaves (and so discards the swarm) on shutdown only when true. */
  readonly leaveLastManager: boolean;
  /** Seconds after which a Down node with no Ready twin is removed; null = never. */
  readonly removeDownAfter: number | null;
  /** Seconds the elected first manager has to report a successful init before another may take over. */
  readonly initTimeout: number;
}

export interface SwarmOff {
  readonly mode: 'off';
}

export type SwarmSettings = SwarmStatic | SwarmAutomatic | SwarmOff;

export type UnknownMachinePolicy =
  | { readonly policy: 'ignore' }
  | { readonly policy: 'profile'; readonly profile: string };

export interface Cluster {
  readonly name: string;
  /** Public base URL of this server as blades reach it, no trailing slash; undefined = derive from listen address. */
  readonly serverUrl?: string;
  readonly flatcar: FlatcarImage;
  readonly sshAuthorizedKeys: readonly string[];
  /** Appended to every machine's kernel line (console, autologin...). */
  readonly kernelArgs: readonly string[];
  readonly ignition: IgnitionDelivery;
  readonly swarm: SwarmSettings;
  readonly unknownMachines: UnknownMachinePolicy;
}

/** Where a definition came from, for messages. */
export interface SourceRef {
  readonly file: string;
  readonly line: number;
}

export interface Profile {
  readonly name: string;
  readonly role: Role;
  readonly boot: BootMethod;
  readonly efiBinary: EfiBinary;
  /**
   * Treat every DHCP request from this profile's machines as coming from iPXE,
   * for NIC ROMs (e.g. Mellanox FlexBoot) that embed iPXE but never say so.
   */
  readonly forceIpxe: boolean;
  readonly flatcar: FlatcarImage;
  readonly ignition: IgnitionDelivery;
  readonly labels: Readonly<Record<string, string>>;
  /** Profile kernel args, appended after the cluster's. */
  readonly kernelArgs: readonly string[];
  readonly sshAuthorizedKeys: readonly string[];
  readonly units: readonly UnitSpec[];
  readonly files: readonly FileSpec[];
  readonly source: SourceRef;
}

export interface Machine {
  readonly mac: Mac;
  readonly hostname: string;
  /** Fixed address (full DHCP mode reserves it for this MAC). */
  readonly ip?: string;
  readonly profile: string;
  /** Profile labels overlaid with the machine's own. */
  readonly labels: Readonly<Record<string, string>>;
  /** False for a machine synthesised by the unknown-machine policy. */
  readonly known: boolean;
  readonly source?: SourceRef;
}

export interface ProfileSet {
  readonly cluster: Cluster;
  readonly profiles: ReadonlyMap<string, Profile>;
  readonly machines: ReadonlyMap<Mac, Machine>;
  /** Non-fatal findings (even manager count...), each already formatted "file:line:col: message". */
  readonly warnings: readonly string[];
  /** Files this set was built from, in load order. */
  readonly files: readonly string[];
}

/**
 * Everything a renderer needs to produce one machine's boot artefacts.
 * Built by the boot service; renderers are pure functions of it.
 */
export interface RenderContext {
  readonly cluster: Cluster;
  readonly profile: Profile;
  readonly machine: Machine;
  /** Base URL blades use to reach swarmboot, no trailing slash, e.g. "http://10.0.0.1:8080". */
  readonly serverUrl: string;
  /** Per-machine secret for swarm rendezvous calls (hex); derived from the server key and the MAC. */
  readonly swarmSecret: string;
}
