/**
 * The swarm rendezvous: who runs `docker swarm init`, what everyone else
 * needs to join, and swarmboot's view of the swarm built from what the
 * nodes report. A state machine over one SwarmState value, with the clock
 * and the store injected; no HTTP, no sockets (server/swarm/api.ts is the
 * transport).
 *
 * Phases:
 *   none          no swarm. The first manager to ask gets the init lease.
 *   initializing  one manager holds the lease until `lease.until`. Others
 *                 wait; once the lease has run out, the next manager to
 *                 ask takes it over, and a late `init` report from the old
 *                 holder is refused (409), so exactly one swarm is adopted.
 *   active        tokens known. Joiners get their role's token and the
 *                 addresses of the managers in the swarm.
 *
 * Every change is written through the store before the caller sees its
 * result (a lease promised and then forgotten in a crash would let two
 * managers init). A change whose save fails is not applied.
 *
 * Tokens live in the state (the store keeps them 0600) and never leave
 * this module except in join answers and tokens(); nothing here logs them.
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { SwarmbootError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';

export type SwarmPhase = 'none' | 'initializing' | 'active';
export type SwarmRole = 'manager' | 'worker';
/**
 * What swarmboot believes of one node: `joining` (asked to join, so not in
 * a swarm now), `initializing` (holds the init lease), `active` (reported
 * init/joined/active, or reconciled), `leaving`, `left`.
 */
export type NodeState = 'joining' | 'initializing' | 'active' | 'leaving' | 'left';
export type RotateRequest = 'none' | 'worker' | 'manager' | 'both';

export const SWARM_PORT = 2377;
/** Answer to a worker (or a waiting manager) when nothing tells us better. */
export const WAIT_RETRY_SEC = 5;
/** Manager addresses from a reconcile report are handed out for this long. */
export const RECONCILE_MANAGERS_MS = 10 * 60_000;

export interface InitLease {
  readonly mac: Mac;
  readonly hostname: string;
  readonly addr: string;
  readonly grantedAt: number;
  readonly until: number;
}

export interface SwarmTokens {
  readonly worker: string;
  readonly manager: string;
}

export interface NodeRecord {
  readonly mac: Mac;
  readonly role: SwarmRole;
  readonly hostname: string;
  readonly addr: string | null;
  readonly nodeId: string | null;
  readonly state: NodeState;
  /** The last event: a report's event name, or `ask` for a join request. */
  readonly event: string;
  /** When `event` happened (ms). */
  readonly at: number;
}

/** What the leader's reconciler did in one run (event=reconcile). */
export interface ReconcileSummary {
  readonly at: number;
  readonly mac: Mac;
  readonly hostname: string;
  readonly nodeId: string | null;
  /** Addresses (host:port) of the Ready, reachable managers the leader sees. */
  readonly managers: readonly string[];
  readonly nodes: number;
  readonly labeled: number;
  /** Removed nodes, as hostname/ID. */
  readonly removed: readonly string[];
  readonly keptDown: number;
  readonly failed: number;
}

export interface SwarmState {
  readonly version: 1;
  readonly phase: SwarmPhase;
  readonly lease: InitLease | null;
  readonly tokens: SwarmTokens | null;
  /** Who created the current swarm (null when it was adopted from a tokens report of unknown origin). */
  readonly createdBy: { readonly mac: Mac; readonly nodeId: string | null; readonly at: number } | null;
  readonly rotate: { readonly worker: boolean; readonly manager: boolean; readonly requestedAt: number } | null;
  /** Keyed by MAC. */
  readonly nodes: Readonly<Record<string, NodeRecord>>;
  readonly lastReconcile: ReconcileSummary | null;
}

export function emptySwarmState(): SwarmState {
  return { version: 1, phase: 'none', lease: null, tokens: null, createdBy: null, rotate: null, nodes: {}, lastReconcile: null };
}

/** Where the state is kept between restarts (server/swarm/store.ts). save() must be durable when it returns, or throw. */
export interface SwarmStateStore {
  load(): SwarmState | null;
  save(state: SwarmState): void;
}

/** A refusal that retrying the same request cannot fix: a late init, an init into an active swarm. */
export class SwarmConflictError extends SwarmbootError {
  constructor(message: string) {
    super('E_SWARM_CONFLICT', 409, message);
  }
}

export type JoinAnswer =
  | { readonly action: 'init'; readonly reason: string }
  | { readonly action: 'join'; readonly token: string; readonly managers: readonly string[]; readonly reason: string }
  | { readonly action: 'wait'; readonly retry: number; readonly reason: string };

/** The reply body swarm.sh parses: `key=value` lines. The token is the only secret in it. */
export function formatJoinAnswer(a: JoinAnswer): string {
  const lines = [`action=${a.action}`];
  if (a.action === 'join') lines.push(`token=${a.token}`, `managers=${a.managers.join(',')}`);
  if (a.action === 'wait') lines.push(`retry=${a.retry}`);
  lines.push(`reason=${a.reason.replace(/[\r\n]+/g, ' ')}`);
  return lines.join('\n') + '\n';
}

export interface JoinRequest {
  readonly mac: Mac;
  /** From the profile, not from the request: the profile decides which token a machine gets. */
  readonly role: SwarmRole;
  readonly hostname: string;
  readonly addr: string;
  /** cluster.swarm.init_timeout, in seconds (read per request so a profile reload applies). */
  readonly initTimeout: number;
}

interface ReportBase {
  readonly mac: Mac;
  readonly role: SwarmRole;
  readonly hostname: string;
}

export type SwarmReport =
  | (ReportBase & { readonly event: 'init'; readonly nodeId: string; readonly addr: string; readonly tokens: SwarmTokens })
  | (ReportBase & { readonly event: 'joined' | 'active'; readonly nodeId: string | null; readonly addr: string | null })
  | (ReportBase & { readonly event: 'leaving' | 'left'; readonly nodeId: string | null })
  | (ReportBase & { readonly event: 'reconcile'; readonly nodeId: string | null; readonly summary: Omit<ReconcileSummary, 'at' | 'mac' | 'hostname' | 'nodeId'> })
  /** `rotated`: the reconciler rotated `rotated` and sends both current tokens; `tokens`: it found the server's tokens stale and sends the swarm's. */
  | (ReportBase & { readonly event: 'rotated' | 'tokens'; readonly nodeId: string | null; readonly tokens: SwarmTokens; readonly rotated: readonly SwarmRole[] });

export type SwarmEvent = SwarmReport['event'];
export const SWARM_EVENTS: readonly SwarmEvent[] = ['init', 'joined', 'active', 'leaving', 'left', 'reconcile', 'rotated', 'tokens'];

/** What `swarmboot swarm status` and GET /api/swarm/status show: everything but the tokens. */
export interface SwarmStatus {
  phase: SwarmPhase;
  lease: { mac: Mac; hostname: string; addr: string; grantedAt: string; until: string; expired: boolean } | null;
  createdBy: { mac: Mac; nodeId: string | null; at: string } | null;
  tokens: { worker: boolean; manager: boolean };
  managers: string[];
  rotate: RotateRequest;
  warning: string | null;
  nodes: Array<Omit<NodeRecord, 'at'> & { at: string }>;
  lastReconcile: (Omit<ReconcileSummary, 'at' | 'managers' | 'removed'> & { at: string; managers: string[]; removed: string[] }) | null;
}

/** `addr:2377`, bracketed for IPv6. */
export function managerAddress(addr: string): string {
  return isIPv6(addr) ? `[${addr}]:${SWARM_PORT}` : `${addr}:${SWARM_PORT}`;
}

/** Digest the reconciler compares with its own (`printf '%s\n%s' W M | sha256sum`) to notice tokens changed behind our back. */
export function tokensDigest(tokens: SwarmTokens | null): string {
  if (tokens === null) return 'none';
  return createHash('sha256').update(`${tokens.worker}\n${tokens.manager}`).digest('hex');
}

/**
 * The swarm a token belongs to: `SWMTKN-1-<digest of the swarm's root CA>-<secret>`.
 * Rotating a token changes the secret only; another swarm has another CA.
 * null when the token is not in that form (then nothing is compared).
 */
export function tokenSwarm(token: string): string | null {
  return /^SWMTKN-[0-9]+-([0-9a-z]+)-[0-9a-z]+$/.exec(token)?.[1] ?? null;
}

/** The runtime twin of validate's check: a swarm of N managers survives (N-1)/2 failures. */
export function managerCountWarning(count: number): string | null {
  if (count < 3) return `${count} manager(s) in the swarm: a swarm needs 3 to survive the loss of one`;
  if (count % 2 === 0) return `${count} managers in the swarm: an even count tolerates no more failures than ${count - 1}; keep an odd number`;
  return null;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const byHostname = (a: NodeRecord, b: NodeRecord): number => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0);

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** A working copy of the state: changed freely, then committed whole or dropped. */
type Draft = Mutable<SwarmState> & { nodes: Record<string, NodeRecord> };

function setNode(next: Draft, mac: Mac, fields: Omit<NodeRecord, 'mac'>): void {
  next.nodes[mac] = { mac, ...fields };
}

export interface RendezvousOptions {
  store: SwarmStateStore;
  log: Logger;
  now?: () => number;
}

export class Rendezvous {
  private state: SwarmState;
  private readonly store: SwarmStateStore;
  private readonly log: Logger;
  private readonly now: () => number;
  /** The manager-count warning last logged, so it is logged when it changes, not on every report. */
  private lastWarning: string | null = null;

  private constructor(opts: RendezvousOptions, state: SwarmState) {
    this.store = opts.store;
    this.log = opts.log.child({ subsystem: 'swarm' });
    this.now = opts.now ?? Date.now;
    this.state = state;
  }

  /** Loads the saved state (or starts empty) and says where it stands. */
  static open(opts: RendezvousOptions): Rendezvous {
    const saved = opts.store.load();
    const r = new Rendezvous(opts, saved ?? emptySwarmState());
    const s = r.state;
    r.log.info(
      { phase: s.phase, nodes: Object.keys(s.nodes).length, managers: r.managerAddresses(null).length, leaseHolder: s.lease?.mac ?? null, restored: saved !== null },
      'swarm rendezvous state loaded',
    );
    r.checkManagerCount();
    return r;
  }

  /** A copy of the whole state, tokens included: for the store's tests and for the status view. */
  snapshot(): SwarmState {
    return structuredClone(this.state);
  }

  phase(): SwarmPhase {
    return this.state.phase;
  }

  // ---- join -----------------------------------------------------------------

  join(req: JoinRequest): JoinAnswer {
    const now = this.now();
    const next = this.draft();
    const prev = next.nodes[req.mac];
    const alreadyWaiting = prev !== undefined && prev.state === 'joining' && prev.role === req.role && prev.addr === req.addr && prev.hostname === req.hostname;
    // Asking means its dockerd is not in a swarm now (swarm.sh asks only
    // then): whatever we believed of this node is over. `at` stays the
    // time it started asking.
    setNode(next, req.mac, { role: req.role, hostname: req.hostname, addr: req.addr, nodeId: null, state: 'joining', event: 'ask', at: alreadyWaiting ? prev.at : now });

    const answer = this.decide(next, req, now);
    if (answer.action === 'init') setNode(next, req.mac, { ...next.nodes[req.mac]!, state: 'initializing', at: now });
    // A repeated wait of a node already known to wait changes nothing worth a disk write.
    this.commit(next, alreadyWaiting && answer.action === 'wait');
    const fields = { mac: req.mac, hostname: req.hostname, role: req.role, addr: req.addr, action: answer.action, reason: answer.reason };
    if (answer.action === 'wait') this.log.debug({ ...fields, retry: answer.retry }, 'swarm join: wait');
    else if (answer.action === 'join') this.log.info({ ...fields, managers: answer.managers }, 'swarm join: join');
    else this.log.info({ ...fields, until: iso(next.lease?.until ?? now) }, 'swarm join: init');
    this.checkManagerCount();
    return answer;
  }

  private decide(next: Draft, req: JoinRequest, now: number): JoinAnswer {
    const isManager = req.role === 'manager';
    if (next.phase === 'active') {
      if (isManager && !this.swarmAlive(next, req.mac)) {
        // Every manager we knew has since asked to join (a rack-wide power
        // cut wipes diskless nodes): nobody is left to join through.
        this.log.warn({ mac: req.mac, hostname: req.hostname, createdBy: next.createdBy?.mac ?? null }, 'swarm lost: no manager is left in it; electing a new first manager');
        next.phase = 'none';
        next.tokens = null;
        next.createdBy = null;
        next.rotate = null;
      } else {
        const managers = this.managerAddresses(req.mac, next, now).filter((m) => m !== managerAddress(req.addr));
        const token = next.tokens?.[req.role];
        if (managers.length === 0 || token === undefined) {
          return { action: 'wait', retry: WAIT_RETRY_SEC, reason: 'no manager is in the swarm right now' };
        }
        return { action: 'join', token, managers, reason: `join as ${req.role} through ${managers.length} manager(s)` };
      }
    }
    if (next.phase === 'initializing' && next.lease !== null) {
      const lease = next.lease;
      if (lease.mac === req.mac) {
        // The holder asking again (its init failed): same lease, not a longer one.
        return { action: 'init', reason: `this node holds the init lease until ${iso(lease.until)}` };
      }
      if (now < lease.until || !isManager) {
        const left = Math.max(1, Math.ceil((lease.until - now) / 1000));
        return { action: 'wait', retry: isManager ? Math.min(WAIT_RETRY_SEC, left) : WAIT_RETRY_SEC, reason: `${lease.hostname} is creating the swarm` };
      }
      this.log.warn(
        { mac: req.mac, hostname: req.hostname, previous: lease.mac, previousHostname: lease.hostname, grantedAt: iso(lease.grantedAt), expired: iso(lease.until) },
        'init lease ran out without a report; the next manager takes it over',
      );
      const old = next.nodes[lease.mac];
      if (old !== undefined && old.state === 'initializing') setNode(next, lease.mac, { ...old, state: 'joining' });
    }
    if (!isManager) return { action: 'wait', retry: WAIT_RETRY_SEC, reason: 'no swarm yet: waiting for a manager to create it' };
    next.phase = 'initializing';
    next.lease = { mac: req.mac, hostname: req.hostname, addr: req.addr, grantedAt: now, until: now + req.initTimeout * 1000 };
    return { action: 'init', reason: `elected to create the swarm; report within ${req.initTimeout}s` };
  }

  /**
   * Whether some manager other than `asker` may still be in the swarm: one
   * whose last word was that it is in (init, joined, active, a reconcile
   * run) or on its way out. Managers that asked to join since, or left,
   * are not.
   */
  private swarmAlive(s: SwarmState, asker: Mac): boolean {
    return Object.values(s.nodes).some((n) => n.mac !== asker && n.role === 'manager' && (n.state === 'active' || n.state === 'leaving'));
  }

  /**
   * Managers to hand to joiners: the active manager records, plus the
   * Ready managers in the leader's last reconcile report while it is fresh.
   * The asker's own record is left out (a rebooted manager must not try
   * to join through its former self).
   */
  managerAddresses(asker: Mac | null, s: SwarmState = this.state, now: number = this.now()): string[] {
    const out = new Set<string>();
    for (const n of Object.values(s.nodes).sort(byHostname)) {
      if (n.role === 'manager' && n.state === 'active' && n.addr !== null && n.mac !== asker) out.add(managerAddress(n.addr));
    }
    const rec = s.lastReconcile;
    if (rec !== null && now - rec.at < RECONCILE_MANAGERS_MS) {
      const own = asker === null ? undefined : s.nodes[asker]?.addr;
      for (const m of rec.managers) if (own === undefined || own === null || m !== managerAddress(own)) out.add(m);
    }
    return [...out];
  }

  // ---- reports --------------------------------------------------------------

  /** Applies a node's report. Throws SwarmConflictError (409) for an init that is not the adopted one. */
  report(r: SwarmReport): void {
    const now = this.now();
    const next = this.draft();
    const prev = next.nodes[r.mac];
    const base = { role: r.role, hostname: r.hostname, addr: prev?.addr ?? null, nodeId: prev?.nodeId ?? null, at: now };
    const who = { mac: r.mac, hostname: r.hostname, role: r.role, event: r.event };
    switch (r.event) {
      case 'init': {
        this.acceptInit(next, r, now);
        setNode(next, r.mac, { ...base, addr: r.addr, nodeId: r.nodeId, state: 'active', event: 'init' });
        this.log.info({ ...who, nodeId: r.nodeId, addr: r.addr }, 'swarm created; join tokens stored');
        break;
      }
      case 'joined':
      case 'active': {
        setNode(next, r.mac, { ...base, addr: r.addr ?? base.addr, nodeId: r.nodeId ?? base.nodeId, state: 'active', event: r.event });
        this.log.info({ ...who, nodeId: r.nodeId, addr: r.addr }, r.event === 'joined' ? 'node joined the swarm' : 'node is in the swarm');
        break;
      }
      case 'leaving':
      case 'left': {
        setNode(next, r.mac, { ...base, nodeId: r.nodeId ?? base.nodeId, state: r.event, event: r.event });
        this.log.info({ ...who, nodeId: r.nodeId }, r.event === 'leaving' ? 'node is leaving the swarm' : 'node left the swarm');
        if (r.event === 'left' && r.role === 'manager' && next.phase === 'active' && !this.swarmAlive(next, r.mac)) {
          // Only a last manager with leave_last_manager reports `left`: its
          // `swarm leave --force` discarded the swarm.
          this.log.warn({ ...who }, 'the last manager left: the swarm is gone; the next manager to ask creates a new one');
          Object.assign(next, { phase: 'none', tokens: null, createdBy: null, rotate: null, lease: null });
        }
        break;
      }
      case 'reconcile': {
        if (r.role !== 'manager') this.refuse(who, `${r.hostname} is not a manager; only the leader reconciles`);
        const s = r.summary;
        next.lastReconcile = { ...s, at: now, mac: r.mac, hostname: r.hostname, nodeId: r.nodeId };
        setNode(next, r.mac, { ...base, nodeId: r.nodeId ?? base.nodeId, state: 'active', event: prev?.event ?? 'reconcile', at: prev?.state === 'active' ? prev.at : now });
        const acted = s.labeled > 0 || s.removed.length > 0 || s.failed > 0;
        (acted ? this.log.info : this.log.debug).call(
          this.log,
          { mac: r.mac, hostname: r.hostname, managers: s.managers.length, nodes: s.nodes, labeled: s.labeled, removed: s.removed, keptDown: s.keptDown, failed: s.failed },
          'swarm reconciled by the leader',
        );
        break;
      }
      case 'rotated':
      case 'tokens': {
        if (r.role !== 'manager') this.refuse(who, `${r.hostname} is not a manager; only managers hand in tokens`);
        this.acceptTokens(next, r, now);
        setNode(next, r.mac, { ...base, nodeId: r.nodeId ?? base.nodeId, state: 'active', event: prev?.event ?? r.event, at: prev?.state === 'active' ? prev.at : now });
        break;
      }
    }
    this.commit(next, false);
    this.checkManagerCount();
  }

  private acceptInit(next: Draft, r: Extract<SwarmReport, { event: 'init' }>, now: number): void {
    const who = { mac: r.mac, hostname: r.hostname, nodeId: r.nodeId };
    if (next.phase === 'active') {
      const c = next.createdBy;
      // A retried report whose first reply was lost.
      if (c !== null && c.mac === r.mac && c.nodeId === r.nodeId && tokensDigest(next.tokens) === tokensDigest(r.tokens)) return;
      this.log.warn({ ...who, createdBy: c?.mac ?? null }, 'init report refused: the swarm already exists');
      throw new SwarmConflictError(`the swarm already exists${c !== null ? ` (created by ${c.mac})` : ''}; this node's swarm is not the cluster's: leave it and join`);
    }
    const lease = next.lease;
    if (next.phase !== 'initializing' || lease === null) {
      this.log.warn(who, 'init report refused: this node holds no init lease');
      throw new SwarmConflictError('no init lease is held: ask /api/swarm/join first');
    }
    if (lease.mac !== r.mac) {
      this.log.warn({ ...who, leaseHolder: lease.mac, leaseHolderHostname: lease.hostname }, 'late init refused: the init lease was taken over');
      throw new SwarmConflictError(`late init: the init lease was taken over by ${lease.hostname} (${lease.mac}); leave this swarm and join`);
    }
    // The holder may report after its lease ran out, as long as nobody took it over.
    Object.assign(next, { phase: 'active', lease: null, tokens: r.tokens, createdBy: { mac: r.mac, nodeId: r.nodeId, at: now }, rotate: null });
  }

  private acceptTokens(next: Draft, r: Extract<SwarmReport, { event: 'rotated' | 'tokens' }>, now: number): void {
    const who = { mac: r.mac, hostname: r.hostname, nodeId: r.nodeId, event: r.event };
    if (next.phase !== 'active') {
      // A running swarm beats one that may be about to be created: adopt it,
      // and a pending init by the lease holder will be refused.
      this.log.warn({ ...who, phase: next.phase, leaseHolder: next.lease?.mac ?? null }, 'adopting the running swarm a manager reported');
      Object.assign(next, { phase: 'active', lease: null, tokens: r.tokens, createdBy: next.lease?.mac === r.mac ? { mac: r.mac, nodeId: r.nodeId, at: now } : null, rotate: null });
      return;
    }
    const ours = next.tokens === null ? null : tokenSwarm(next.tokens.worker);
    const theirs = tokenSwarm(r.tokens.worker);
    if (ours !== null && theirs !== null && ours !== theirs) {
      // Two swarms: e.g. a first manager that created one while the server
      // could not hear it, after another was adopted. Taking its tokens
      // would hand joiners to the wrong swarm, and flip back at the next
      // report from the other one.
      this.refuse(who, `these tokens belong to another swarm than the cluster's (root CA ${theirs.slice(0, 8)}..., not ${ours.slice(0, 8)}...); if the cluster's root CA was rotated on purpose, stop swarmboot, move state/swarm.json away and start it: the leader hands the tokens in again`);
    }
    const changed = tokensDigest(next.tokens) !== tokensDigest(r.tokens);
    next.tokens = r.tokens;
    if (r.event === 'rotated') {
      const pending = next.rotate;
      if (pending !== null) {
        const worker = pending.worker && !r.rotated.includes('worker');
        const manager = pending.manager && !r.rotated.includes('manager');
        next.rotate = worker || manager ? { ...pending, worker, manager } : null;
      }
      this.log.info({ ...who, rotated: r.rotated }, 'join tokens rotated; new joiners get the new ones');
    } else if (changed) {
      this.log.info(who, 'join tokens changed on the swarm (rotated outside swarmboot); stored the current ones');
    }
  }

  // ---- rotation and desired state -------------------------------------------

  requestRotation(which: Exclude<RotateRequest, 'none'>): RotateRequest {
    if (this.state.phase !== 'active') {
      this.log.warn({ requested: which, phase: this.state.phase }, 'token rotation refused: there is no swarm');
      throw new SwarmConflictError(`no swarm to rotate tokens in (phase: ${this.state.phase})`);
    }
    const next = this.draft();
    const prev = next.rotate;
    next.rotate = {
      worker: (prev?.worker ?? false) || which === 'worker' || which === 'both',
      manager: (prev?.manager ?? false) || which === 'manager' || which === 'both',
      requestedAt: prev?.requestedAt ?? this.now(),
    };
    this.commit(next, false);
    const pending = this.rotateRequest();
    this.log.info({ requested: which, pending }, 'join token rotation requested; the leader\'s reconciler applies it');
    return pending;
  }

  rotateRequest(): RotateRequest {
    const r = this.state.rotate;
    if (r === null) return 'none';
    return r.worker && r.manager ? 'both' : r.worker ? 'worker' : r.manager ? 'manager' : 'none';
  }

  tokensDigest(): string {
    return tokensDigest(this.state.tokens);
  }

  // ---- views ----------------------------------------------------------------

  nodes(): NodeRecord[] {
    return Object.values(this.state.nodes).sort(byHostname);
  }

  node(mac: Mac): NodeRecord | undefined {
    return this.state.nodes[mac];
  }

  /** The best manager count we have: the leader's last fresh report, else the active manager records. */
  managerCount(now: number = this.now()): number {
    const rec = this.state.lastReconcile;
    if (rec !== null && now - rec.at < RECONCILE_MANAGERS_MS) return rec.managers.length;
    return Object.values(this.state.nodes).filter((n) => n.role === 'manager' && n.state === 'active').length;
  }

  warning(): string | null {
    return this.state.phase === 'active' ? managerCountWarning(this.managerCount()) : null;
  }

  status(): SwarmStatus {
    const s = this.state;
    const now = this.now();
    const rec = s.lastReconcile;
    return {
      phase: s.phase,
      lease: s.lease === null ? null : { mac: s.lease.mac, hostname: s.lease.hostname, addr: s.lease.addr, grantedAt: iso(s.lease.grantedAt), until: iso(s.lease.until), expired: now >= s.lease.until },
      createdBy: s.createdBy === null ? null : { mac: s.createdBy.mac, nodeId: s.createdBy.nodeId, at: iso(s.createdBy.at) },
      tokens: { worker: s.tokens !== null, manager: s.tokens !== null },
      managers: this.managerAddresses(null),
      rotate: this.rotateRequest(),
      warning: this.warning(),
      nodes: this.nodes().map((n) => ({ ...n, at: iso(n.at) })),
      lastReconcile: rec === null ? null : { ...rec, at: iso(rec.at), managers: [...rec.managers], removed: [...rec.removed] },
    };
  }

  // ---- internals ------------------------------------------------------------

  private draft(): Draft {
    return structuredClone(this.state) as Draft;
  }

  /**
   * Saves, then swaps. `quiet`: a repeated wait for a node already known to
   * be waiting changes nothing worth a disk write.
   */
  private commit(next: SwarmState, quiet: boolean): void {
    if (!quiet) {
      try {
        this.store.save(next);
      } catch (err) {
        this.log.error({ err }, 'could not save the swarm state; the change was not applied');
        throw new SwarmbootError('E_SWARM_STATE_IO', 503, 'could not save the swarm state; try again');
      }
    }
    this.state = next;
  }

  private refuse(fields: object, message: string): never {
    this.log.warn(fields, `report refused: ${message}`);
    throw new SwarmConflictError(message);
  }

  private checkManagerCount(): void {
    const w = this.warning();
    if (w === this.lastWarning) return;
    if (w !== null) this.log.warn({ managers: this.managerCount() }, w);
    else if (this.lastWarning !== null) this.log.info({ managers: this.managerCount() }, 'manager count is odd and at least 3 again');
    this.lastWarning = w;
  }
}
