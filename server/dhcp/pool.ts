/**
 * Address pools: which subnet a request belongs to, which address a MAC
 * gets, and whether a REQUESTed address may be ACKed. Pure functions over a
 * compiled Pool and a LeaseView (the lease store, or a fake in tests); the
 * caller then offers/binds through the LeaseStore and logs the returned
 * reason.
 *
 * Allocation order for a MAC (allocate):
 *   1. its reservation (from profiles), even outside the range as long as it
 *      is in the subnet; if another client still holds that address or it
 *      is quarantined, the MAC gets a dynamic address meanwhile (as Kea
 *      does) and the result says why;
 *   2. its current or previous address (offer, lease, or released lease),
 *      if in the range and free;
 *   3. the address it asked for (option 50), if in the range and free;
 *   4. the lowest address in the range that nobody ever had (with a
 *      NextFree cursor: the first such address at or after the cursor,
 *      wrapping around, which keeps a boot storm's allocations O(1) instead
 *      of rescanning the taken part of the range each time); failing that,
 *      the free address whose last holder left longest ago, so a blade
 *      that went away keeps finding its old address as long as possible.
 * Never handed out dynamically: the network and broadcast addresses, the
 * server's own addresses, the router, the DNS servers, addresses reserved
 * for other MACs, and declined (quarantined) addresses.
 */
import { ConfigError, type Problem } from '../errors.js';
import type { Mac } from '../mac.js';
import { holdsAddress, type Lease, type LeaseView } from './leases.js';
import { parseIpv4 } from './options.js';

/** A pool as the server config spells it (after schema validation). */
export interface PoolConfig {
  /** CIDR, e.g. "10.0.0.0/24". */
  subnet: string;
  range: { start: string; end: string };
  router?: string;
  dns?: string[];
  domain?: string;
  /** Seconds. */
  leaseTime: number;
}

export interface Pool {
  /** Canonical CIDR. */
  readonly subnet: string;
  readonly network: number;
  readonly prefix: number;
  /** Dotted form of the mask, for option 1. */
  readonly netmask: string;
  readonly broadcast: number;
  readonly start: number;
  readonly end: number;
  readonly router?: string;
  readonly dns: readonly string[];
  readonly domain?: string;
  /** Seconds, for options 51/58/59. */
  readonly leaseTime: number;
  /** Addresses never handed out: network, broadcast, the server's own, router, DNS servers (those in the subnet). */
  readonly excluded: ReadonlyMap<number, string>;
  /** Reservations whose address is in this subnet. */
  readonly reservations: ReadonlyMap<Mac, number>;
  readonly reservedBy: ReadonlyMap<number, Mac>;
}

export interface CompileOptions {
  /** Static MAC -> IP reservations (from profiles). Those outside every pool's subnet are simply unused. */
  reservations?: ReadonlyMap<Mac, string>;
  /** The server's own addresses (its interfaces), never handed out. */
  serverAddresses?: readonly string[];
  /** JSON pointer of the pools array in the config, for problem reports. Default "/dhcp/pools". */
  pointer?: string;
  /** Locates a problem in the config file (YamlDocument.problem fits); default: file "<config>", line 1. */
  problem?: (pointer: string, message: string) => Problem;
}

export type Allocation =
  | { readonly ip: string; readonly source: 'reservation' | 'current' | 'requested' | 'free'; readonly note?: string }
  | { readonly ip: null; readonly reason: string };

export type RequestCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const OK: RequestCheck = Object.freeze({ ok: true });

/** Canonical dotted quad (no leading zeros) -> unsigned 32-bit number, or null. */
export function ipToInt(ip: string): number | null {
  const n = parseIpv4(ip);
  return n < 0 ? null : n;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.0.0.0/24" -> network and prefix; null when malformed or host bits are set. */
export function parseCidr(cidr: string): { network: number; prefix: number } | null {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  if (m === null) return null;
  const addr = ipToInt(m[1]!);
  const prefix = Number(m[2]);
  if (addr === null || prefix > 32) return null;
  if ((addr & ~maskOf(prefix)) >>> 0 !== 0) return null;
  return { network: addr, prefix };
}

export function poolContains(pool: Pool, ip: string | number): boolean {
  const n = typeof ip === 'number' ? ip : ipToInt(ip);
  return n !== null && (n & maskOf(pool.prefix)) >>> 0 === pool.network;
}

/**
 * Checks the pools against each other and the reservations and returns
 * them compiled, or throws one ConfigError listing every problem.
 * Subnets must not overlap: a request must map to exactly one pool.
 */
export function compilePools(configs: readonly PoolConfig[], opts: CompileOptions = {}): readonly Pool[] {
  const base = opts.pointer ?? '/dhcp/pools';
  const problems: Problem[] = [];
  const report = (pointer: string, message: string): void => {
    problems.push(opts.problem ? opts.problem(pointer, message) : { file: '<config>', line: 1, col: 1, pointer, message });
  };
  const servers = new Map<number, string>();
  for (const s of opts.serverAddresses ?? []) {
    const n = ipToInt(s);
    if (n === null) report(base, `server address ${JSON.stringify(s)} is not an IPv4 address`);
    else servers.set(n, s);
  }
  for (const [mac, ip] of opts.reservations ?? []) {
    if (ipToInt(ip) === null) report(base, `reservation for ${mac}: ${JSON.stringify(ip)} is not an IPv4 address`);
  }
  const pools: Pool[] = [];
  configs.forEach((cfg, i) => {
    const at = `${base}/${i}`;
    const before = problems.length;
    const cidr = parseCidr(cfg.subnet);
    if (cidr === null) {
      report(`${at}/subnet`, `${JSON.stringify(cfg.subnet)} is not a network in CIDR form (like 10.0.0.0/24, host bits zero)`);
      return;
    }
    if (cidr.prefix > 30) {
      report(`${at}/subnet`, `${cfg.subnet} leaves no addresses to hand out (prefix at most /30)`);
      return;
    }
    const mask = maskOf(cidr.prefix);
    const broadcast = (cidr.network | ~mask) >>> 0;
    const inSubnet = (n: number) => (n & mask) >>> 0 === cidr.network;
    const start = ipToInt(cfg.range.start);
    const end = ipToInt(cfg.range.end);
    if (start === null || !inSubnet(start)) report(`${at}/range/start`, `${JSON.stringify(cfg.range.start)} is not an address in ${cfg.subnet}`);
    if (end === null || !inSubnet(end)) report(`${at}/range/end`, `${JSON.stringify(cfg.range.end)} is not an address in ${cfg.subnet}`);
    if (start !== null && end !== null && start > end) report(`${at}/range`, `range start ${cfg.range.start} is after its end ${cfg.range.end}`);
    if (!Number.isSafeInteger(cfg.leaseTime) || cfg.leaseTime < 1) report(`${at}/leaseTime`, `lease time must be a positive whole number of seconds`);
    const excluded = new Map<number, string>([
      [cidr.network, 'the network address'],
      [broadcast, 'the broadcast address'],
    ]);
    for (const [n, s] of servers) if (inSubnet(n)) excluded.set(n, `the server's own address ${s}`);
    if (cfg.router !== undefined) {
      const r = ipToInt(cfg.router);
      if (r === null || !inSubnet(r) || r === cidr.network || r === broadcast) {
        report(`${at}/router`, `router ${JSON.stringify(cfg.router)} is not a host address in ${cfg.subnet}`);
      } else excluded.set(r, `the router ${cfg.router}`);
    }
    (cfg.dns ?? []).forEach((d, k) => {
      const n = ipToInt(d);
      if (n === null) report(`${at}/dns/${k}`, `DNS server ${JSON.stringify(d)} is not an IPv4 address`);
      else if (inSubnet(n) && !excluded.has(n)) excluded.set(n, `the DNS server ${d}`);
    });
    for (const [j, other] of pools.entries()) {
      const wider = maskOf(Math.min(other.prefix, cidr.prefix));
      if ((other.network & wider) >>> 0 === (cidr.network & wider) >>> 0) {
        report(`${at}/subnet`, `${cfg.subnet} overlaps ${other.subnet} (pool ${j}); a request must map to one pool`);
      }
    }
    const reservations = new Map<Mac, number>();
    const reservedBy = new Map<number, Mac>();
    for (const [mac, ip] of opts.reservations ?? []) {
      const n = ipToInt(ip);
      if (n === null || !inSubnet(n)) continue;
      const why = excluded.get(n);
      if (why !== undefined) report(at, `reservation for ${mac}: ${ip} is ${why}`);
      const twin = reservedBy.get(n);
      if (twin !== undefined) report(at, `${ip} is reserved for both ${twin} and ${mac}`);
      reservations.set(mac, n);
      reservedBy.set(n, mac);
    }
    if (problems.length > before || start === null || end === null) return;
    pools.push(
      Object.freeze({
        subnet: `${intToIp(cidr.network)}/${cidr.prefix}`,
        network: cidr.network,
        prefix: cidr.prefix,
        netmask: intToIp(mask),
        broadcast,
        start,
        end,
        ...(cfg.router === undefined ? {} : { router: cfg.router }),
        dns: Object.freeze([...(cfg.dns ?? [])]),
        ...(cfg.domain === undefined ? {} : { domain: cfg.domain }),
        leaseTime: cfg.leaseTime,
        excluded,
        reservations,
        reservedBy,
      }),
    );
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(pools);
}

/**
 * The pool a request belongs to: a relayed request (giaddr set) by the
 * relay's address, a direct one by the address of the interface it came
 * in on. Null when no pool covers it (the caller ignores the request).
 */
export function selectPool(pools: readonly Pool[], at: { giaddr?: string | null; ifaceAddr?: string | null }): Pool | null {
  const relayed = at.giaddr !== undefined && at.giaddr !== null && at.giaddr !== '0.0.0.0';
  const addr = relayed ? at.giaddr : at.ifaceAddr;
  if (addr === undefined || addr === null) return null;
  const n = ipToInt(addr);
  if (n === null) return null;
  return pools.find((p) => poolContains(p, n)) ?? null;
}

/**
 * The range's addresses as strings, built once per pool: the scan in
 * allocate() looks each up by string, and reusing the same string objects
 * (whose hashes V8 caches) makes it about four times faster than building
 * them afresh. A memo, not state: results do not depend on it.
 */
const namesCache = new WeakMap<Pool, readonly string[]>();
const MAX_CACHED_RANGE = 1 << 16;

function rangeNames(pool: Pool): readonly string[] | null {
  const size = pool.end - pool.start + 1;
  if (size > MAX_CACHED_RANGE) return null;
  let names = namesCache.get(pool);
  if (names === undefined) {
    names = Array.from({ length: size }, (_, i) => intToIp(pool.start + i));
    namesCache.set(pool, names);
  }
  return names;
}

/** Why `mac` may not have address `n` (dotted: `text`, when the caller has it) right now, or null when it may. */
function refusal(pool: Pool, leases: LeaseView, mac: Mac, n: number, now: number, outsideRangeOk: boolean, text?: string): string | null {
  const ip = text ?? intToIp(n);
  if (!poolContains(pool, n)) return `${ip} is outside ${pool.subnet}`;
  const excluded = pool.excluded.get(n);
  if (excluded !== undefined) return `${ip} is ${excluded}`;
  if (!outsideRangeOk && (n < pool.start || n > pool.end)) return `${ip} is outside the range ${intToIp(pool.start)}-${intToIp(pool.end)}`;
  const owner = pool.reservedBy.get(n);
  if (owner !== undefined && owner !== mac) return `${ip} is reserved for ${owner}`;
  const rec = leases.byIp(ip);
  if (rec !== undefined && holdsAddress(rec, now)) {
    if (rec.state === 'declined') return `${ip} was declined and is quarantined until ${new Date(rec.expiresAt).toISOString()}`;
    if (rec.mac !== mac) return `${ip} is ${rec.state === 'bound' ? 'leased' : 'offered'} to ${rec.mac ?? 'another client'}`;
  }
  return null;
}

/**
 * Where the next scan for a never-used address starts, per pool. Owned by
 * the caller (the DHCP server's lease handler), so no state lives here.
 */
export type NextFree = WeakMap<Pool, number>;

/** The address `mac` should be offered (see the file comment), or null with the reason. */
export function allocate(pool: Pool, leases: LeaseView, mac: Mac, requestedIp?: string | null, cursor?: NextFree): Allocation {
  const now = leases.now();
  let note: string | undefined;
  const reserved = pool.reservations.get(mac);
  if (reserved !== undefined) {
    const why = refusal(pool, leases, mac, reserved, now, true);
    if (why === null) return { ip: intToIp(reserved), source: 'reservation' };
    note = `reserved address unavailable: ${why}`;
  }
  const withNote = <A extends Allocation>(a: A): A => (note === undefined ? a : { ...a, note });
  const cur = leases.get(mac);
  const curN = cur === undefined ? null : ipToInt(cur.ip);
  if (cur !== undefined && curN !== null && refusal(pool, leases, mac, curN, now, false, cur.ip) === null) {
    return withNote({ ip: cur.ip, source: 'current' });
  }
  const reqN = requestedIp === undefined || requestedIp === null ? null : ipToInt(requestedIp);
  if (reqN !== null && refusal(pool, leases, mac, reqN, now, false) === null) return withNote({ ip: intToIp(reqN), source: 'requested' });

  let stale: { n: number; since: number } | null = null;
  const names = rangeNames(pool);
  const size = pool.end - pool.start + 1;
  const at = cursor?.get(pool);
  const from = at !== undefined && at >= pool.start && at <= pool.end ? at : pool.start;
  for (let k = 0; k < size; k++) {
    const n = from + k > pool.end ? from + k - size : from + k;
    if (pool.excluded.has(n)) continue;
    const owner = pool.reservedBy.get(n);
    if (owner !== undefined && owner !== mac) continue;
    const rec: Lease | undefined = leases.byIp(names?.[n - pool.start] ?? intToIp(n));
    if (rec === undefined) {
      cursor?.set(pool, n + 1);
      return withNote({ ip: intToIp(n), source: 'free' });
    }
    if (holdsAddress(rec, now) && (rec.state === 'declined' || rec.mac !== mac)) continue;
    if (stale === null || rec.updatedAt < stale.since) stale = { n, since: rec.updatedAt };
  }
  if (stale !== null) return withNote({ ip: intToIp(stale.n), source: 'free' });
  return { ip: null, reason: `pool ${pool.subnet} is full: all ${size} addresses of ${intToIp(pool.start)}-${intToIp(pool.end)} are in use, reserved, excluded or quarantined${note === undefined ? '' : `; ${note}`}` };
}

/**
 * The REQUEST path: may `mac` have `ip` (ACK), or must it be NAKed? A MAC
 * whose reservation is available is NAKed for any other address so it
 * moves to the reserved one.
 */
export function checkRequest(pool: Pool, leases: LeaseView, mac: Mac, ip: string): RequestCheck {
  const n = ipToInt(ip);
  if (n === null) return { ok: false, reason: `${JSON.stringify(ip)} is not an IPv4 address` };
  const now = leases.now();
  const reserved = pool.reservations.get(mac);
  if (reserved !== undefined && reserved !== n && refusal(pool, leases, mac, reserved, now, true) === null) {
    return { ok: false, reason: `${mac} has the reservation ${intToIp(reserved)}` };
  }
  const why = refusal(pool, leases, mac, n, now, n === reserved, ip);
  return why === null ? OK : { ok: false, reason: why };
}
