/**
 * The PXE boot decision: which first-stage file a DHCP client gets, and how.
 * Pure: the client summary, the profile, and what the server has on disk in,
 * one decision (with the reason, for the log) out.
 *
 * The chain is loop-free because only iPXE gets the script URL; firmware
 * gets an iPXE binary over TFTP (or HTTP for UEFI HTTP boot), which then asks
 * again as iPXE.
 */
import type { ClientInfo } from '../dhcp/classify.js';
import type { Profile } from '../profiles/types.js';
import { endpoints } from './layout.js';

export interface BootEnv {
  /** Base URL blades reach swarmboot at, e.g. "http://10.0.0.1:8080". */
  readonly serverUrl: string;
  readonly serverIp: string;
  /** Whether an asset (path relative to the assets/TFTP root) exists. */
  hasAsset(name: string): boolean;
}

export type BootDecision =
  | {
      readonly kind: 'tftp' | 'http';
      /** TFTP path (relative to the TFTP root) or full URL. */
      readonly file: string;
      /** Option 60 the reply must carry. */
      readonly vendorClass?: 'HTTPClient' | 'PXEClient';
      readonly reason: string;
    }
  | { readonly kind: 'none'; readonly reason: string };

/** First-stage files, relative to the assets (TFTP) root. */
export const BOOT_FILES = {
  biosIpxe: 'undionly.kpxe',
  pxelinux: 'pxelinux.0',
  /** Debian syslinux-efi's efi64/syslinux.efi, copied to the root (ldlinux.e64 beside it). */
  syslinuxEfi: 'syslinux.efi',
  efiIpxe: 'ipxe.efi',
  arm64Dir: 'arm64',
  ia32Dir: 'i386',
  arm32Dir: 'arm32',
} as const;

function base(url: string): string {
  return url.replace(/\/+$/, '');
}

function pxeClass(client: ClientInfo): { vendorClass?: 'PXEClient' } {
  return client.isPxe ? { vendorClass: 'PXEClient' } : {};
}

/** `<dir>/<profile's binary>`, else `<dir>/<the other one>`, else null. */
function pickEfi(dir: string, profile: Profile, env: BootEnv): string | null {
  const other = profile.efiBinary === 'ipxe.efi' ? 'snponly.efi' : 'ipxe.efi';
  for (const name of [`${dir}/${profile.efiBinary}`, `${dir}/${other}`]) if (env.hasAsset(name)) return name;
  return null;
}

function archLabel(client: ClientInfo): string {
  return client.archCode === undefined ? `${client.arch} (no option 93)` : `${client.arch} (option 93 = ${client.archCode})`;
}

export function decideBoot(client: ClientInfo, profile: Profile, env: BootEnv): BootDecision {
  const url = base(env.serverUrl);
  const arch = archLabel(client);

  if (client.isIpxe || profile.forceIpxe) {
    const why = client.isIpxe
      ? 'client is iPXE (user class iPXE or option 175)'
      : `profile ${profile.name} sets force_ipxe (NIC ROM is iPXE but does not say so)`;
    return { kind: 'http', file: url + endpoints.ipxe(client.mac), ...pxeClass(client), reason: `${why}: iPXE script URL` };
  }

  // Legacy PXE ROMs omit option 93: they are BIOS machines.
  const bios = client.arch === 'bios' || (client.arch === 'unknown' && client.archCode === undefined);
  const biosNote = client.arch === 'bios' ? 'BIOS' : 'no option 93, treated as BIOS (legacy PXE ROM)';

  if (profile.boot === 'pxelinux') {
    if (bios) {
      return { kind: 'tftp', file: BOOT_FILES.pxelinux, ...pxeClass(client), reason: `${biosNote}, profile ${profile.name} boots pxelinux` };
    }
    if (client.arch === 'efi-x64' && !client.isHttpClient) {
      if (env.hasAsset(BOOT_FILES.syslinuxEfi)) {
        return { kind: 'tftp', file: BOOT_FILES.syslinuxEfi, ...pxeClass(client), reason: `${arch}, profile ${profile.name} boots pxelinux: syslinux.efi` };
      }
      return {
        kind: 'tftp',
        file: profile.efiBinary,
        ...pxeClass(client),
        reason: `${arch}, profile ${profile.name} boots pxelinux but ${BOOT_FILES.syslinuxEfi} is not in the assets: falling back to iPXE ${profile.efiBinary}`,
      };
    }
    // Other UEFI flavours: no syslinux build for them, iPXE below.
  }
  const viaPxelinux = profile.boot === 'pxelinux' ? ' (pxelinux has no build for it)' : '';

  if (client.isHttpClient || client.arch === 'efi-x64-http') {
    // HTTP boot codes other than 16: 15 = x86 (32-bit) UEFI HTTP, 19 = ARM64 UEFI HTTP.
    const dir = client.archCode === 19 ? BOOT_FILES.arm64Dir : client.archCode === 15 ? BOOT_FILES.ia32Dir : null;
    const asset = dir === null ? BOOT_FILES.efiIpxe : `${dir}/${BOOT_FILES.efiIpxe}`;
    if (dir !== null && !env.hasAsset(asset)) {
      return { kind: 'none', reason: `UEFI HTTP boot, ${arch}: no ${asset} in the assets` };
    }
    return {
      kind: 'http',
      file: url + endpoints.asset(asset),
      vendorClass: 'HTTPClient',
      reason: `UEFI HTTP boot, ${arch}${viaPxelinux}: iPXE ${asset} by URL`,
    };
  }

  if (bios) {
    return { kind: 'tftp', file: BOOT_FILES.biosIpxe, ...pxeClass(client), reason: `${biosNote}: chainload iPXE` };
  }

  const efiIn = (dir: string | null, what: string): BootDecision => {
    const file = dir === null ? profile.efiBinary : pickEfi(dir, profile, env);
    if (file === null) {
      return { kind: 'none', reason: `${arch}: no ${what} iPXE build (${dir}/${profile.efiBinary}) in the assets` };
    }
    return { kind: 'tftp', file, ...pxeClass(client), reason: `${arch}${viaPxelinux}: chainload iPXE ${file}` };
  };
  switch (client.arch) {
    case 'efi-x64':
      return efiIn(null, 'x86-64');
    case 'efi-arm64':
      return efiIn(BOOT_FILES.arm64Dir, 'ARM64');
    case 'efi-ia32':
      return efiIn(BOOT_FILES.ia32Dir, '32-bit x86');
    case 'efi-arm32':
      return efiIn(BOOT_FILES.arm32Dir, 'ARM32');
    default:
      return { kind: 'none', reason: `unsupported client architecture: option 93 = ${client.archCode ?? 'none'}` };
  }
}
