/**
 * The one answer to "what does this machine get?". DHCP, TFTP, HTTP and the
 * CLI's `render` all ask here, so the bytes a blade receives and the bytes
 * an operator inspects are the same by construction.
 *
 * Rendered artefacts are cached per ProfileSet object: a profile reload
 * creates a new set, which drops the cache without any invalidation logic.
 */
import { createHash } from 'node:crypto';
import { NoMatchError, SwarmbootError } from '../errors.js';
import type { Mac } from '../mac.js';
import type { Machine, ProfileSet, RenderContext } from '../profiles/types.js';
import { defaultHostname } from '../profiles/load.js';
import { machineSecret } from '../swarm/secret.js';
import { renderIgnition, serializeIgnition, loadSwarmScript } from '../../ignition/render.js';
import { renderOem } from '../../ignition/oem.js';
import { renderIpxeScript, renderBootScript } from './ipxe.js';
import { renderPxelinuxConfig, renderPxelinuxDefault } from './pxelinux.js';

export interface Rendered<T extends string | Buffer> {
  readonly body: T;
  /** Strong ETag: a quoted hash of the body. */
  readonly etag: string;
}

export type ArtefactKind = 'ignition' | 'ipxe' | 'pxelinux' | 'oem';

export interface BootServiceOptions {
  /** Current profiles; called per request so reloads take effect at once. */
  profiles: () => ProfileSet;
  serverKey: Buffer;
  /** Wins over cluster.server_url (the CLI's --server-url). */
  serverUrlOverride?: string;
  /** Used when neither the override nor cluster.server_url is set (serve derives it from the listen address once it listens). */
  serverUrlFallback?: string | (() => string | undefined);
  swarmScript?: string;
}

function etagOf(body: string | Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
}

export class BootService {
  private readonly opts: BootServiceOptions;
  private readonly swarmScript: string;
  private cache = new WeakMap<ProfileSet, Map<string, Rendered<string | Buffer>>>();

  constructor(opts: BootServiceOptions) {
    this.opts = opts;
    this.swarmScript = opts.swarmScript ?? loadSwarmScript();
  }

  profiles(): ProfileSet {
    return this.opts.profiles();
  }

  serverUrl(set: ProfileSet = this.profiles()): string {
    const fallback = this.opts.serverUrlFallback;
    const url = this.opts.serverUrlOverride ?? set.cluster.serverUrl ?? (typeof fallback === 'function' ? fallback() : fallback);
    if (url === undefined) {
      throw new SwarmbootError('E_NO_SERVER_URL', 500, 'no server URL: set cluster.server_url in the profiles or pass --server-url');
    }
    return url.replace(/\/+$/, '');
  }

  /** The machine for a MAC: a listed one, one synthesised by the unknown-machine policy, or null (ignore). */
  machine(mac: Mac, set: ProfileSet = this.profiles()): Machine | null {
    const known = set.machines.get(mac);
    if (known) return known;
    const policy = set.cluster.unknownMachines;
    if (policy.policy === 'ignore') return null;
    const profile = set.profiles.get(policy.profile);
    if (!profile) return null;
    return { mac, hostname: defaultHostname(profile.name, mac), profile: profile.name, labels: { ...profile.labels }, known: false };
  }

  /** Everything the renderers need for `mac`, or null when the machine is to be ignored. */
  context(mac: Mac, set: ProfileSet = this.profiles()): RenderContext | null {
    const machine = this.machine(mac, set);
    if (machine === null) return null;
    const profile = set.profiles.get(machine.profile);
    if (!profile) return null;
    return {
      cluster: set.cluster,
      profile,
      machine,
      serverUrl: this.serverUrl(set),
      swarmSecret: machineSecret(this.opts.serverKey, mac),
    };
  }

  requireContext(mac: Mac, set: ProfileSet = this.profiles()): RenderContext {
    const ctx = this.context(mac, set);
    if (ctx === null) throw new NoMatchError(`no profile for MAC ${mac} (unknown machines are ignored; list it under a profile's machines)`);
    return ctx;
  }

  private cached<T extends string | Buffer>(set: ProfileSet, key: string, make: () => T): Rendered<T> {
    let perSet = this.cache.get(set);
    if (!perSet) {
      perSet = new Map();
      this.cache.set(set, perSet);
    }
    const hit = perSet.get(key);
    if (hit) return hit as Rendered<T>;
    const body = make();
    const out: Rendered<T> = { body, etag: etagOf(body) };
    perSet.set(key, out);
    return out;
  }

  // The context (with its HMAC secret) is built only on a cache miss: a hit costs a map lookup.
  ignition(mac: Mac): Rendered<string> {
    const set = this.profiles();
    return this.cached(set, `ignition ${mac} ${this.serverUrl(set)}`, () => serializeIgnition(renderIgnition(this.requireContext(mac, set), this.swarmScript)));
  }

  oem(mac: Mac): Rendered<Buffer> {
    const set = this.profiles();
    const ign = this.ignition(mac);
    return this.cached(set, `oem ${mac} ${ign.etag}`, () => renderOem(ign.body));
  }

  ipxe(mac: Mac): Rendered<string> {
    const set = this.profiles();
    return this.cached(set, `ipxe ${mac} ${this.serverUrl(set)}`, () => renderIpxeScript(this.requireContext(mac, set)));
  }

  pxelinux(mac: Mac): Rendered<string> {
    const set = this.profiles();
    return this.cached(set, `pxelinux ${mac} ${this.serverUrl(set)}`, () => renderPxelinuxConfig(this.requireContext(mac, set)));
  }

  pxelinuxDefault(): string {
    return renderPxelinuxDefault();
  }

  bootScript(): string {
    return renderBootScript(this.serverUrl());
  }

  render(kind: ArtefactKind, mac: Mac): Rendered<string | Buffer> {
    switch (kind) {
      case 'ignition':
        return this.ignition(mac);
      case 'ipxe':
        return this.ipxe(mac);
      case 'pxelinux':
        return this.pxelinux(mac);
      case 'oem':
        return this.oem(mac);
    }
  }
}
