/**
 * The lease store: the one owner of DHCP lease state. Bound, released and
 * declined records are persisted in a Journal (server/store/journal.ts),
 * keyed by IP, so after kill -9 and a restart every bound MAC keeps its
 * address; released and expired records are kept too, so a machine that
 * comes back later is offered its old address again (pool.ts prefers it).
 *
 * Offers live in memory only. An OFFER promises nothing: the client must
 * still REQUEST, and the REQUEST path persists (bind) before it ACKs. Not
 * persisting offers halves the fsyncs of a boot storm. The cost after a
 * crash: an address offered just before it may be offered to someone else
 * too; whichever REQUEST comes second is NAKed (pool.checkRequest) and that
 * client starts over, which RFC 2131 clients handle.
 *
 * Policy (which address a MAC should get, what to NAK) lives in pool.ts;
 * this file only refuses changes that would give one address to two MACs
 * (LeaseConflictError). Time comes from the injected clock.
 */
import { BadRequestError, SwarmbootError } from '../errors.js';
import { parseMac, type Mac } from '../mac.js';
import type { Logger } from '../log.js';
import { Journal, type FsyncPolicy, type JournalIo, type JournalStats } from '../store/journal.js';
import { ipToInt } from './pool.js';

export type LeaseState = 'offered' | 'bound' | 'declined' | 'released';

export interface Lease {
  /** Null only for an address declined without a known client. */
  readonly mac: Mac | null;
  readonly ip: string;
  readonly state: LeaseState;
  /** ms since the epoch. For 'declined', the end of the quarantine; for 'released', when it was released. */
  readonly expiresAt: number;
  readonly hostname?: string;
  readonly updatedAt: number;
}

/** What address selection reads; LeaseStore implements it, pure tests can fake it. */
export interface LeaseView {
  now(): number;
  /** The MAC's newest record (an active offer first), whatever its state or expiry. */
  get(mac: Mac): Lease | undefined;
  /** The address's record (an active offer overlays the stored one), whatever its state or expiry. */
  byIp(ip: string): Lease | undefined;
}

/** True while the record keeps the address from anyone else: an unexpired offer, lease or quarantine. */
export function holdsAddress(lease: Lease, now: number): boolean {
  return lease.state !== 'released' && lease.expiresAt > now;
}

/** Someone asked for an address another MAC holds, or one in quarantine. */
export class LeaseConflictError extends SwarmbootError {
  constructor(message: string) {
    super('E_LEASE_CONFLICT', 409, message);
  }
}

export interface LeaseCounts {
  offered: number;
  bound: number;
  declined: number;
  released: number;
  /** Bound records past their expiry that the sweep has not yet marked released. */
  expired: number;
}

export interface LeaseStoreOptions {
  log: Logger;
  now?: () => number;
  fsync?: FsyncPolicy;
  /**
   * The shortest time between two fdatasyncs of the lease journal (see
   * Journal): under a boot storm more binds share each, and each ACK waits
   * at most this much longer. DHCP clients retransmit after seconds.
   * Default 5 ms.
   */
  syncIntervalMs?: number;
  compactEvery?: number;
  onCorrupt?: 'fail' | 'quarantine';
  io?: JournalIo;
}

const STORED_STATES = new Set<string>(['bound', 'declined', 'released']);

/** Expired leases written per event-loop turn by expire(). */
const EXPIRE_SLICE = 512;

/** See LeaseStoreOptions.syncIntervalMs: measured with perfdhcp at 4,000-8,000 exchanges/s, 5 ms took a fifth to a third off the CPU per exchange. */
const DEFAULT_SYNC_INTERVAL_MS = 5;

/** Validates a stored record on load (journal decode hook). */
export function decodeLease(raw: unknown, key: string): Lease {
  if (typeof raw !== 'object' || raw === null) throw new Error('not an object');
  const r = raw as Record<string, unknown>;
  const ip = r.ip;
  if (typeof ip !== 'string' || ipToInt(ip) === null || ip !== key) throw new Error(`bad ip ${JSON.stringify(ip)} for key ${key}`);
  const state = r.state;
  if (typeof state !== 'string' || !STORED_STATES.has(state)) throw new Error(`bad state ${JSON.stringify(state)}`);
  let mac: Mac | null = null;
  if (r.mac !== null || state !== 'declined') {
    mac = typeof r.mac === 'string' ? parseMac(r.mac) : null;
    if (mac === null || mac !== r.mac) throw new Error(`bad mac ${JSON.stringify(r.mac)}`);
  }
  for (const f of ['expiresAt', 'updatedAt'] as const) {
    if (typeof r[f] !== 'number' || !Number.isFinite(r[f])) throw new Error(`bad ${f}`);
  }
  if (r.hostname !== undefined && typeof r.hostname !== 'string') throw new Error('bad hostname');
  return makeLease({
    mac,
    ip,
    state: state as LeaseState,
    expiresAt: r.expiresAt as number,
    updatedAt: r.updatedAt as number,
    ...(r.hostname === undefined ? {} : { hostname: r.hostname as string }),
  });
}

function makeLease(l: Lease): Lease {
  return newLease(l.mac, l.ip, l.state, l.expiresAt, l.updatedAt, l.hostname);
}

/** A frozen record with its fields in one fixed order (the journal's JSON keeps it). */
function newLease(mac: Mac | null, ip: string, state: LeaseState, expiresAt: number, updatedAt: number, hostname: string | undefined): Lease {
  return Object.freeze(hostname === undefined ? { mac, ip, state, expiresAt, updatedAt } : { mac, ip, state, expiresAt, updatedAt, hostname });
}

function requireIp(ip: string): void {
  if (ipToInt(ip) === null) throw new BadRequestError(`not an IPv4 address: ${JSON.stringify(ip)}`);
}

export class LeaseStore implements LeaseView, Iterable<Lease> {
  private readonly journal: Journal<Lease>;
  private readonly clock: () => number;
  private readonly log: Logger;
  /** MAC -> IP of its newest stored record. */
  private readonly macIndex = new Map<Mac, string>();
  private readonly offers = new Map<string, Lease>();
  private readonly offerByMac = new Map<Mac, string>();

  private constructor(journal: Journal<Lease>, clock: () => number, log: Logger) {
    this.journal = journal;
    this.clock = clock;
    this.log = log;
    for (const lease of journal.state.values()) this.index(lease);
  }

  /** Opens (creating) the store `leases` in `dir`; see Journal.open for recovery and errors. */
  static async open(dir: string, opts: LeaseStoreOptions): Promise<LeaseStore> {
    const log = opts.log.child({ subsystem: 'leases' });
    const journal = await Journal.open<Lease>(dir, 'leases', {
      log: opts.log,
      decode: decodeLease,
      ...(opts.fsync === undefined ? {} : { fsync: opts.fsync }),
      syncIntervalMs: opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS,
      ...(opts.compactEvery === undefined ? {} : { compactEvery: opts.compactEvery }),
      ...(opts.onCorrupt === undefined ? {} : { onCorrupt: opts.onCorrupt }),
      ...(opts.io === undefined ? {} : { io: opts.io }),
    });
    return new LeaseStore(journal, opts.now ?? Date.now, log);
  }

  now(): number {
    return this.clock();
  }

  get(mac: Mac): Lease | undefined {
    const offerIp = this.offerByMac.get(mac);
    const offer = offerIp === undefined ? undefined : this.offers.get(offerIp);
    if (offer !== undefined && offer.mac === mac && offer.expiresAt > this.clock()) return offer;
    const ip = this.macIndex.get(mac);
    return ip === undefined ? undefined : this.journal.get(ip);
  }

  byIp(ip: string): Lease | undefined {
    const offer = this.offers.get(ip);
    if (offer !== undefined && offer.expiresAt > this.clock()) return offer;
    return this.journal.get(ip);
  }

  /**
   * Reserves `ip` for `mac` for `ttlMs` in memory (see the file comment).
   * Replaces the MAC's previous offer. Throws LeaseConflictError when
   * another MAC holds the address or it is quarantined.
   */
  offer(mac: Mac, ip: string, ttlMs: number, hostname?: string): Lease {
    requireIp(ip);
    const now = this.clock();
    this.assertFree(mac, ip, now);
    this.dropOffer(mac);
    const expired = this.offers.get(ip);
    if (expired !== undefined) this.dropOffer(expired.mac);
    const lease = newLease(mac, ip, 'offered', now + ttlMs, now, hostname);
    this.offers.set(ip, lease);
    this.offerByMac.set(mac, ip);
    return lease;
  }

  /**
   * Binds `ip` to `mac` for `leaseMs` and resolves once that is durable:
   * send the ACK only after it resolves. A MAC holds one lease: its other
   * bound address, if any, is released. Keeps the stored hostname when none
   * is given. Throws LeaseConflictError like offer().
   */
  bind(mac: Mac, ip: string, leaseMs: number, hostname?: string): Promise<Lease> {
    // Not an async function: this is every ACK's path, and one promise (the write's) is enough.
    let released: Promise<void> | undefined;
    let stored: Promise<void>;
    let lease: Lease;
    try {
      requireIp(ip);
      const now = this.clock();
      this.assertFree(mac, ip, now);
      const prevIp = this.macIndex.get(mac);
      const prev = prevIp === undefined ? undefined : this.journal.get(prevIp);
      if (prev !== undefined && prev.ip !== ip && prev.mac === mac && prev.state === 'bound' && prev.expiresAt > now) {
        released = this.store(newLease(prev.mac, prev.ip, 'released', now, now, prev.hostname));
      }
      this.dropOffer(mac);
      const offerHere = this.offers.get(ip);
      if (offerHere !== undefined) this.dropOffer(offerHere.mac);
      const old = this.journal.get(ip);
      const name = hostname ?? (old?.mac === mac ? old.hostname : undefined);
      lease = newLease(mac, ip, 'bound', now + leaseMs, now, name);
      stored = this.store(lease);
    } catch (err) {
      return Promise.reject(err);
    }
    return (released === undefined ? stored : Promise.all([released, stored])).then(() => lease);
  }

  /** A DHCPRELEASE: resolves true once stored, false when `ip` is not bound to `mac` (nothing changes). */
  async release(mac: Mac, ip: string): Promise<boolean> {
    const now = this.clock();
    const offer = this.offers.get(ip);
    const hadOffer = offer !== undefined && offer.mac === mac;
    if (hadOffer) this.dropOffer(mac);
    const rec = this.journal.get(ip);
    if (rec === undefined || rec.mac !== mac || rec.state !== 'bound') return hadOffer;
    await this.store({ ...rec, state: 'released', expiresAt: now, updatedAt: now });
    return true;
  }

  /**
   * A DHCPDECLINE (the client found `ip` in use by someone else) or a
   * conflict the server detected: the address is quarantined for
   * `quarantineMs`. `mac` defaults to the address's current holder.
   */
  async decline(ip: string, quarantineMs: number, mac?: Mac): Promise<Lease> {
    requireIp(ip);
    const now = this.clock();
    const offer = this.offers.get(ip);
    if (offer !== undefined) this.dropOffer(offer.mac);
    const who = mac ?? this.journal.get(ip)?.mac ?? offer?.mac ?? null;
    const lease = makeLease({ mac: who, ip, state: 'declined', expiresAt: now + quarantineMs, updatedAt: now });
    await this.store(lease);
    this.log.warn({ ip, mac: who, quarantineMs }, 'address declined; quarantined');
    return lease;
  }

  /**
   * The periodic sweep: drops expired offers, marks expired leases released
   * (keeping who had them), forgets ended quarantines. Resolves to the
   * number of records changed, once stored.
   */
  async expire(): Promise<number> {
    const now = this.clock();
    let changed = 0;
    for (const [ip, offer] of this.offers) {
      if (offer.expiresAt > now) continue;
      this.offers.delete(ip);
      if (offer.mac !== null && this.offerByMac.get(offer.mac) === ip) this.offerByMac.delete(offer.mac);
      changed += 1;
    }
    const writes: Promise<unknown>[] = [];
    let sinceYield = 0;
    for (const seen of [...this.journal.state.values()]) {
      if (seen.expiresAt > now) continue;
      // A boot storm's leases can all run out in one sweep: yield now and then so DHCP keeps being
      // answered (each change serialises a record), and take the lease as it is after the pause.
      if (sinceYield >= EXPIRE_SLICE) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const rec = this.journal.get(seen.ip);
      if (rec === undefined || rec.expiresAt > now) continue;
      sinceYield += 1;
      if (rec.state === 'bound') {
        writes.push(this.store({ ...rec, state: 'released', updatedAt: now }));
      } else if (rec.state === 'declined') {
        if (rec.mac !== null && this.macIndex.get(rec.mac) === rec.ip) this.macIndex.delete(rec.mac);
        writes.push(this.journal.delete(rec.ip));
      } else {
        continue;
      }
      changed += 1;
    }
    await Promise.all(writes);
    if (changed > 0) this.log.debug({ changed }, 'lease sweep');
    return changed;
  }

  /** Addresses handed out right now: unexpired offers and bound leases. */
  inUse(): number {
    const c = this.counts();
    return c.offered + c.bound;
  }

  counts(): LeaseCounts {
    const now = this.clock();
    const c: LeaseCounts = { offered: 0, bound: 0, declined: 0, released: 0, expired: 0 };
    for (const l of this) {
      if (l.state === 'released') c.released += 1;
      else if (l.expiresAt > now) c[l.state] += 1;
      else if (l.state === 'bound') c.expired += 1;
      // An ended quarantine counts nowhere: the sweep forgets it.
    }
    return c;
  }

  /** Every record, an active offer in place of the stored record for its address. */
  *[Symbol.iterator](): IterableIterator<Lease> {
    const now = this.clock();
    for (const [ip, rec] of this.journal.state) {
      const offer = this.offers.get(ip);
      yield offer !== undefined && offer.expiresAt > now ? offer : rec;
    }
    for (const [ip, offer] of this.offers) {
      if (!this.journal.state.has(ip) && offer.expiresAt > now) yield offer;
    }
  }

  flush(): Promise<void> {
    return this.journal.flush();
  }

  close(): Promise<void> {
    return this.journal.close();
  }

  journalStats(): JournalStats {
    return this.journal.stats();
  }

  private assertFree(mac: Mac, ip: string, now: number): void {
    const cur = this.byIp(ip);
    if (cur === undefined || !holdsAddress(cur, now)) return;
    if (cur.state === 'declined') throw new LeaseConflictError(`${ip} is quarantined (declined) until ${new Date(cur.expiresAt).toISOString()}`);
    if (cur.mac !== mac) throw new LeaseConflictError(`${ip} is ${cur.state === 'bound' ? 'leased' : 'offered'} to ${cur.mac ?? 'unknown'}`);
  }

  private dropOffer(mac: Mac | null): void {
    if (mac === null) return;
    const ip = this.offerByMac.get(mac);
    if (ip === undefined) return;
    this.offerByMac.delete(mac);
    if (this.offers.get(ip)?.mac === mac) this.offers.delete(ip);
  }

  private store(lease: Lease): Promise<void> {
    const frozen = Object.isFrozen(lease) ? lease : makeLease(lease);
    const old = this.journal.get(frozen.ip);
    if (old?.mac != null && old.mac !== frozen.mac && this.macIndex.get(old.mac) === frozen.ip) this.macIndex.delete(old.mac);
    const p = this.journal.put(frozen.ip, frozen);
    this.index(frozen);
    return p;
  }

  private index(lease: Lease): void {
    if (lease.mac === null) return;
    const curIp = this.macIndex.get(lease.mac);
    const cur = curIp === undefined ? undefined : this.journal.get(curIp);
    // The newest record wins; on a tie, a bound one (one lease per MAC, so at most one is).
    if (cur === undefined || cur.mac !== lease.mac || cur.updatedAt < lease.updatedAt || (cur.updatedAt === lease.updatedAt && lease.state === 'bound')) {
      this.macIndex.set(lease.mac, lease.ip);
    }
  }
}
