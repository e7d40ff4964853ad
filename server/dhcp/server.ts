/**
 * The DHCP server engine, full or proxy mode. It owns no sockets and no
 * state of its own: the caller binds the sockets (port 67, and 4011 for
 * proxy mode) and passes them in with the lease store, the boot service,
 * the boot trail, metrics, a logger and timers (its clock). Datagrams go
 * through a prioritised intake (./intake.ts); per request it decodes,
 * builds a stub reply, runs the handler chain (./handlers.ts), and sends
 * whatever comes out to where RFC 2131 says, after the configured delay.
 *
 * Nothing a client sends can stop it: decode errors are counted and
 * dropped, and an exception inside one request is logged and counted while
 * the server keeps serving.
 *
 * Sending broadcasts: a socket bound to 0.0.0.0 sends 255.255.255.255 where
 * the routing table says (ENETUNREACH with no default route, the wrong
 * interface on a multi-homed host). Linux sends a limited broadcast out of
 * the interface owning the source address when the socket is bound to one,
 * so pass `sendSocket` bound to serverIp:67 (reuseAddr) to pin replies to
 * the boot interface; it is listened on too, since unicast renewals to
 * serverIp:67 are delivered to it rather than to the wildcard socket.
 */
import type { RemoteInfo } from 'node:dgram';
import { DecodeError, SwarmbootError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import type { Counter, Metrics } from '../metrics.js';
import type { BootDecision } from '../boot/decide.js';
import type { Machine, Profile, ProfileSet } from '../profiles/types.js';
import type { TrailStep } from '../state/machines.js';
import { classifyClient, type ClientInfo } from './classify.js';
import { BOOTREQUEST, decodeDhcp, encodeDhcp, type DhcpMessage } from './codec.js';
import {
  fullModeChain,
  PXE_PORT,
  proxyModeChain,
  replyDestination,
  runChain,
  SERVER_PORT,
  type BootPolicy,
  type DhcpEnv,
  type Exchange,
  type Handler,
  type Outcome,
} from './handlers.js';
import { DEFAULT_INTAKE_LIMITS, Intake, type IntakeLimits } from './intake.js';
import type { LeaseStore } from './leases.js';
import { MessageType } from './options.js';
import type { Pool } from './pool.js';
import { makeReply, replyTypeFor } from './pxe-reply.js';

/** The part of a dgram socket the server uses; node:dgram's Socket fits, tests pass fakes. */
export interface DatagramSocket {
  on(event: 'message', listener: (msg: Buffer, rinfo: RemoteInfo) => void): unknown;
  off(event: 'message', listener: (msg: Buffer, rinfo: RemoteInfo) => void): unknown;
  send(msg: Uint8Array, port: number, address: string, callback?: (error: Error | null) => void): void;
  /** node:dgram's; the server enlarges the receive buffer when it can. */
  setRecvBufferSize?(size: number): void;
  getRecvBufferSize?(): number;
  /** node:dgram's: sends libuv has queued because the kernel buffer was full. */
  getSendQueueCount?(): number;
}

/** Timers, injectable so tests can fake the reply delay and the sweep. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface TrailRecorder {
  record(mac: Mac, step: TrailStep, extra?: { detail?: string; ip?: string }): void;
}

export interface DhcpServerOptions {
  mode: 'full' | 'proxy';
  /** Bound to port 67 (normally 0.0.0.0:67, broadcast enabled). */
  socket: DatagramSocket;
  /** Proxy mode: bound to port 4011. */
  socket4011?: DatagramSocket;
  /** Bound to serverIp:67: replies leave through it (see the file comment). */
  sendSocket?: DatagramSocket;
  /** The server's address on the boot network: option 54, siaddr, pool selection. */
  serverIp: string;
  /** Compiled pools, or a function compiling them; it is called again only when the profile set changes (reservations come from it). */
  pools?: readonly Pool[] | (() => readonly Pool[]);
  /** Required in full mode. */
  leases?: LeaseStore;
  boot: BootPolicy;
  hasAsset(name: string): boolean;
  machines: TrailRecorder;
  metrics: Metrics;
  log: Logger;
  /** Delay before OFFERs and proxyDHCP replies (some firmware mishandles instant ones). Default 0. */
  replyDelayMs?: number;
  /** Default 60 s. */
  offerTtlMs?: number;
  /** Default 1 h. */
  declineQuarantineMs?: number;
  /** Lease expiry sweep period. Default 60 s. */
  sweepIntervalMs?: number;
  timers?: Timers;
  /**
   * SO_RCVBUF to ask for on every socket (the kernel caps it at
   * net.core.rmem_max). Default 2 MiB: a boot storm arrives in bursts, and
   * the default ~200 KiB holds only ~150 requests while a GC pause or a
   * journal batch keeps the event loop busy.
   */
  recvBufferBytes?: number;
  /**
   * Replies waiting in a socket's user-space send queue beyond which new
   * ones are dropped (counted as send-backlog): something is blocking the
   * kernel buffer, and queueing more only delays every client. Default 512.
   */
  maxSendQueue?: number;
  /** Bounds of the queues between the sockets and the handlers (see ./intake.ts). */
  intake?: IntakeLimits;
  /** Test seam: replaces socket sends. `via` is the local port the reply leaves from. */
  send?: (msg: Buffer, port: number, address: string, via: number) => void;
}

/** Datagrams handled per turn of the event loop before the sockets are read again. */
const PUMP_BATCH = 64;

const TYPE_LABELS: Readonly<Record<number, string>> = {
  [MessageType.DISCOVER]: 'discover',
  [MessageType.OFFER]: 'offer',
  [MessageType.REQUEST]: 'request',
  [MessageType.DECLINE]: 'decline',
  [MessageType.ACK]: 'ack',
  [MessageType.NAK]: 'nak',
  [MessageType.RELEASE]: 'release',
  [MessageType.INFORM]: 'inform',
};

function typeLabel(type: number | undefined): string {
  return (type !== undefined ? TYPE_LABELS[type] : undefined) ?? (type === undefined ? 'bootp' : 'other');
}

/** A settled promise for requests that were finished synchronously. */
const DONE: Promise<void> = Promise.resolve();

type MessageLabels = Readonly<{ type: string; direction: 'in' | 'out' }>;

/** The label objects of swarmboot_dhcp_messages_total, made once: one fewer object per counted message. */
function labelTable(direction: 'in' | 'out'): (type: number) => MessageLabels {
  const known = new Map<number, MessageLabels>();
  for (const code of Object.keys(TYPE_LABELS)) known.set(Number(code), Object.freeze({ type: typeLabel(Number(code)), direction }));
  const other = Object.freeze({ type: 'other', direction });
  return (type) => known.get(type) ?? other;
}
const labelsIn = labelTable('in');
const labelsOut = labelTable('out');
const LABELS_IN_BOOTP: MessageLabels = Object.freeze({ type: 'bootp', direction: 'in' });
const LABELS_OUT_BOOTP: MessageLabels = Object.freeze({ type: 'bootp', direction: 'out' });

const IN_STEP: Readonly<Partial<Record<number, TrailStep>>> = {
  [MessageType.DISCOVER]: 'dhcp-discover',
  [MessageType.REQUEST]: 'dhcp-request',
};

const OUT_STEP: Readonly<Record<string, TrailStep>> = {
  offer: 'dhcp-offer',
  ack: 'dhcp-ack',
  inform: 'dhcp-ack',
  nak: 'dhcp-nak',
  released: 'dhcp-release',
  declined: 'dhcp-decline',
  'proxy-offer': 'proxy-offer',
  'proxy-ack': 'proxy-offer',
};

export class DhcpServer {
  private readonly opts: DhcpServerOptions;
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly chain: readonly Handler[];
  private readonly env: DhcpEnv;
  private readonly messages: Counter;
  private readonly decodeErrors: Counter;
  private readonly ignored: Counter;
  private readonly listeners: { socket: DatagramSocket; fn: (msg: Buffer, rinfo: RemoteInfo) => void }[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly delays = new Map<unknown, () => void>();
  private poolCache: { set: ProfileSet; pools: readonly Pool[] } | null = null;
  private readonly warned = new Map<string, { at: number; held: number }>();
  private readonly intake: Intake;
  private pumping = false;
  private sweepTimer: unknown = null;
  private sweeping = false;
  private closed = false;

  constructor(opts: DhcpServerOptions) {
    if (opts.mode === 'full' && opts.leases === undefined) {
      throw new SwarmbootError('E_DHCP_SETUP', 500, 'full DHCP mode needs a lease store');
    }
    this.opts = opts;
    this.intake = new Intake(opts.intake ?? DEFAULT_INTAKE_LIMITS);
    this.log = opts.log.child({ subsystem: 'dhcp', mode: opts.mode });
    this.timers = opts.timers ?? realTimers;
    this.chain = opts.mode === 'full' ? fullModeChain() : proxyModeChain();
    this.env = {
      mode: opts.mode,
      serverIp: opts.serverIp,
      boot: opts.boot,
      leases: opts.leases ?? null,
      pools: (set) => this.poolsFor(set),
      hasAsset: (name) => opts.hasAsset(name),
      offerTtlMs: opts.offerTtlMs ?? 60_000,
      declineQuarantineMs: opts.declineQuarantineMs ?? 3_600_000,
    };

    const m = opts.metrics;
    this.messages = m.counter('swarmboot_dhcp_messages_total', 'DHCP messages received (direction=in) and sent (direction=out), by message type.');
    this.decodeErrors = m.counter('swarmboot_dhcp_decode_errors_total', 'Packets on the DHCP ports that did not decode as DHCP; dropped.');
    this.ignored = m.counter('swarmboot_dhcp_ignored_total', 'DHCP requests that got no reply, by reason.');
    const inUse = m.gauge('swarmboot_dhcp_leases_in_use', 'Addresses offered or leased right now (full mode).');
    const leases = opts.leases;
    m.onCollect(() => inUse.set(leases?.inUse() ?? 0));

    this.listen(opts.socket, SERVER_PORT);
    if (opts.sendSocket !== undefined) this.listen(opts.sendSocket, SERVER_PORT);
    if (opts.socket4011 !== undefined) this.listen(opts.socket4011, PXE_PORT);

    if (leases !== undefined) {
      this.sweepTimer = this.timers.setInterval(() => void this.sweep(), opts.sweepIntervalMs ?? 60_000);
    }
    this.log.info({ serverIp: opts.serverIp, replyDelayMs: opts.replyDelayMs ?? 0, pxePort: opts.socket4011 !== undefined }, 'DHCP server ready');
  }

  /**
   * Handles one datagram as if it arrived on local port `port`. Resolves
   * once the reply (if any) was handed to the socket; never rejects.
   */
  receive(msg: Buffer, from: { address: string; port: number }, port: number = SERVER_PORT): Promise<void> {
    return this.dispatch(msg, from, port) ?? DONE;
  }

  /**
   * receive() without its promise when the request was answered (or
   * dropped) synchronously, as every DISCOVER is: the pump needs none, and
   * a promise per datagram is measurable at 10,000 datagrams/s. Only a
   * request still waiting (a lease write, the reply delay) is tracked, so
   * settled() and close() can wait for it.
   */
  private dispatch(msg: Buffer, from: { address: string; port: number }, port: number): Promise<void> | undefined {
    let pending: Promise<void> | undefined;
    try {
      pending = this.handle(msg, from, port);
    } catch (err) {
      this.internalError(err);
      return undefined;
    }
    if (pending === undefined) return undefined;
    const p: Promise<void> = pending.then(
      () => void this.inflight.delete(p),
      (err: unknown) => {
        // handle() catches per-request errors itself; this is the last line of defence.
        this.inflight.delete(p);
        this.internalError(err);
      },
    );
    this.inflight.add(p);
    return p;
  }

  private internalError(err: unknown): void {
    this.ignored.inc({ reason: 'internal-error' });
    this.log.error({ err }, 'DHCP request failed');
  }

  /** Resolves when every request received so far has been answered or dropped. */
  async settled(): Promise<void> {
    for (;;) {
      if (this.inflight.size > 0) await Promise.all([...this.inflight]);
      else if (this.pumping || this.intake.length > 0) await new Promise((r) => setImmediate(r));
      else return;
    }
  }

  /** One expiry sweep (the timer runs it every sweepIntervalMs). */
  async sweep(): Promise<void> {
    const leases = this.opts.leases;
    if (leases === undefined || this.sweeping) return;
    this.sweeping = true;
    try {
      await leases.expire();
    } catch (err) {
      this.log.error({ err }, 'lease expiry sweep failed');
    } finally {
      this.sweeping = false;
    }
  }

  /** Stops listening, cancels delayed replies, and waits for requests in progress (binds included). Leaves the sockets to their owner. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { socket, fn } of this.listeners) socket.off('message', fn);
    if (this.sweepTimer !== null) this.timers.clearInterval(this.sweepTimer);
    for (const [handle, wake] of this.delays) {
      this.timers.clearTimeout(handle);
      wake();
    }
    this.delays.clear();
    // Datagrams not yet looked at are dropped, as the kernel would have.
    this.intake.clear();
    await this.settled();
  }

  private listen(socket: DatagramSocket, port: number): void {
    const want = this.opts.recvBufferBytes ?? 2 << 20;
    if (want > 0 && socket.setRecvBufferSize !== undefined) {
      try {
        socket.setRecvBufferSize(want);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, port }, 'could not enlarge the DHCP receive buffer');
      }
      const got = socket.getRecvBufferSize?.();
      if (got !== undefined && got < want) this.log.info({ port, bytes: got, wanted: want }, 'DHCP receive buffer capped by net.core.rmem_max');
    }
    const fn = (msg: Buffer, rinfo: RemoteInfo): void => {
      if (this.closed) return;
      if (this.intake.push({ buf: msg, from: rinfo, port }) > 0) {
        this.ignored.inc({ reason: 'overload' });
        this.warnSometimes('overload', { queued: this.intake.length }, 'DHCP requests dropped: more arriving than the server answers');
      }
      if (!this.pumping) {
        this.pumping = true;
        setImmediate(() => this.pump());
      }
    };
    socket.on('message', fn);
    this.listeners.push({ socket, fn });
  }

  /**
   * Handles a batch from the intake, then yields to the event loop so the
   * sockets are read again before the next batch: the kernel buffer keeps
   * draining while we work, and the intake decides what goes first.
   */
  private pump(): void {
    for (let k = 0; k < PUMP_BATCH && !this.closed; k++) {
      const a = this.intake.next();
      if (a === undefined) break;
      this.dispatch(a.buf, a.from, a.port);
    }
    if (this.intake.length > 0 && !this.closed) setImmediate(() => this.pump());
    else this.pumping = false;
  }

  private poolsFor(set: ProfileSet): readonly Pool[] {
    const pools = this.opts.pools;
    if (pools === undefined) return [];
    if (typeof pools !== 'function') return pools;
    if (this.poolCache?.set === set) return this.poolCache.pools;
    let compiled: readonly Pool[];
    try {
      compiled = pools();
    } catch (err) {
      // A reservation that clashes with the pools: keep serving with what we had.
      compiled = this.poolCache?.pools ?? [];
      this.log.error({ err }, 'could not compile the DHCP pools for the new profiles; keeping the previous ones');
    }
    this.poolCache = { set, pools: compiled };
    return compiled;
  }

  private drop(reason: string, level: 'debug' | 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string, log?: Logger): undefined {
    this.ignored.inc({ reason });
    if (this.log.isLevelEnabled(level)) (log ?? this.log)[level]({ ...fields, ignored: reason }, msg);
    return undefined;
  }

  /** Decodes and answers one datagram; a promise only while it waits for a lease write or the reply delay. */
  private handle(buf: Buffer, from: { address: string; port: number }, port: number): Promise<void> | undefined {
    let req: DhcpMessage;
    try {
      req = decodeDhcp(buf);
    } catch (err) {
      this.decodeErrors.inc();
      if (this.log.isLevelEnabled('debug')) this.log.debug({ from: from.address, bytes: buf.length, err: (err as Error).message }, 'undecodable packet dropped');
      return undefined;
    }
    const type = req.messageType;
    this.messages.inc(type === undefined ? LABELS_IN_BOOTP : labelsIn(type));
    if (req.op !== BOOTREQUEST) return this.drop('not-a-request', 'debug', { from: from.address }, 'BOOTREPLY on the server port dropped');
    if (type === undefined) return this.drop('bootp', 'debug', { from: from.address }, 'plain BOOTP request (no option 53) dropped');

    let client: ClientInfo;
    try {
      client = classifyClient(req);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      return this.drop('not-ethernet', 'debug', { from: from.address, reason: err.message }, 'request dropped');
    }

    const ctx = new Request(this.env, type, client, port, from, this.log, req);
    const replyType = replyTypeFor(req) ?? MessageType.ACK;
    let result: DhcpMessage | null | Promise<DhcpMessage | null>;
    try {
      result = runChain(this.chain, req, ctx, makeReply(req, replyType, this.opts.serverIp));
    } catch (err) {
      return this.chainFailed(err, ctx);
    }
    if (result instanceof Promise) {
      return result.then(
        (reply) => this.answer(ctx, reply),
        (err: unknown) => this.chainFailed(err, ctx),
      );
    }
    return this.answer(ctx, result);
  }

  private chainFailed(err: unknown, ctx: Request): undefined {
    this.drop('internal-error', 'error', { err, type: typeLabel(ctx.type) }, 'DHCP request failed; no reply', ctx.log);
    return undefined;
  }

  /** After the chain: records the trail, logs, and sends the reply (if any) where RFC 2131 says. */
  private answer(ctx: Request, reply: DhcpMessage | null): Promise<void> | undefined {
    let out: Buffer | null = null;
    try {
      if (reply !== null) out = encodeDhcp(reply);
    } catch (err) {
      return this.chainFailed(err, ctx);
    }

    const { type, req } = ctx;
    const mac = ctx.client.mac;
    const trailIn = IN_STEP[type];
    if (ctx.machine !== undefined && trailIn !== undefined) this.opts.machines.record(mac, trailIn, reqTrail(req, ctx));

    if (reply === null || out === null) {
      if (ctx.ignored !== undefined) {
        const { reason, level, detail } = ctx.ignored;
        this.ignored.inc({ reason });
        if (this.log.isLevelEnabled(level)) this.log[level]({ ...ctx.logFields(), reason: detail, ignored: reason }, `${typeLabel(type).toUpperCase()} ignored`);
      } else if (ctx.outcome !== undefined) {
        const step = OUT_STEP[ctx.outcome];
        if (step !== undefined) this.opts.machines.record(mac, step, ctx.ip !== undefined ? { ip: ctx.ip } : {});
        if (this.log.isLevelEnabled('info')) this.log.info(ctx.logFields(), `${typeLabel(type).toUpperCase()}: address ${ctx.outcome}`);
      }
      return undefined;
    }

    const delay = this.opts.replyDelayMs ?? 0;
    if (delay > 0 && (reply.messageType === MessageType.OFFER || this.opts.mode === 'proxy')) {
      return this.sleep(delay).then(() => {
        if (!this.closed) this.send(ctx, reply, out);
      });
    }
    this.send(ctx, reply, out);
    return undefined;
  }

  private send(ctx: Request, reply: DhcpMessage, out: Buffer): void {
    const sentType = reply.messageType;
    const dest = replyDestination(ctx.req, reply, ctx);
    this.transmit(out, dest, ctx.port === PXE_PORT ? PXE_PORT : SERVER_PORT, ctx, () => this.messages.inc(sentType === undefined ? LABELS_OUT_BOOTP : labelsOut(sentType)));
    const step = ctx.outcome !== undefined ? OUT_STEP[ctx.outcome] : undefined;
    if (step !== undefined && ctx.machine !== undefined) {
      const extra: { ip?: string; detail?: string } = {};
      if (ctx.ip !== undefined) extra.ip = ctx.ip;
      if (ctx.decision !== undefined && ctx.decision.kind !== 'none') extra.detail = ctx.decision.file;
      this.opts.machines.record(ctx.client.mac, step, extra);
    }
    if (this.log.isLevelEnabled('info')) {
      this.log.info({ ...ctx.logFields(), to: `${dest.address}:${dest.port}` }, `${typeLabel(ctx.type).toUpperCase()} -> ${typeLabel(sentType).toUpperCase()}`);
    }
  }

  /** A warning that could repeat per packet: at most one per key every 10 s, with how many were held back. */
  private warnSometimes(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const w = this.warned.get(key);
    if (w !== undefined && now - w.at < 10_000) {
      w.held += 1;
      return;
    }
    this.warned.set(key, { at: now, held: 0 });
    this.log.warn({ ...fields, ...(w !== undefined && w.held > 0 && { alsoSince: w.held }) }, msg);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const handle = this.timers.setTimeout(() => {
        this.delays.delete(handle);
        resolve();
      }, ms);
      this.delays.set(handle, resolve);
    });
  }

  private transmit(buf: Buffer, dest: { address: string; port: number }, via: number, ctx: Exchange, sent: () => void): void {
    if (this.opts.send !== undefined) {
      this.opts.send(buf, dest.port, dest.address, via);
      sent();
      return;
    }
    const socket = via === PXE_PORT ? (this.opts.socket4011 ?? this.opts.socket) : (this.opts.sendSocket ?? this.opts.socket);
    const queued = socket.getSendQueueCount?.() ?? 0;
    if (queued >= (this.opts.maxSendQueue ?? 512)) {
      this.ignored.inc({ reason: 'send-backlog' });
      this.warnSometimes('send-backlog', { queued, to: `${dest.address}:${dest.port}` }, 'DHCP replies dropped: send queue full');
      return;
    }
    socket.send(buf, dest.port, dest.address, (err) => {
      if (err) {
        this.ignored.inc({ reason: 'send-error' });
        this.warnSometimes(`send-error ${err.message}`, { err: err.message, to: `${dest.address}:${dest.port}`, mac: ctx.client.mac }, 'DHCP reply could not be sent');
      } else sent();
    });
  }
}

/**
 * One request's Exchange, plus what the server itself needs of it. A class
 * rather than an object literal with a getter: one per datagram, and the
 * MAC's child logger is made only when a handler logs through it.
 */
class Request implements Exchange {
  readonly fields: Record<string, unknown> = {};
  set?: ProfileSet;
  machine?: Machine;
  profile?: Profile;
  pool?: Pool;
  ip?: string;
  decision?: BootDecision;
  outcome?: Outcome;
  ignored?: Exchange['ignored'];
  final?: boolean;
  private child: Logger | undefined;

  constructor(
    readonly env: DhcpEnv,
    readonly type: number,
    readonly client: ClientInfo,
    readonly port: number,
    readonly from: { readonly address: string; readonly port: number },
    private readonly parent: Logger,
    readonly req: DhcpMessage,
  ) {}

  get log(): Logger {
    return (this.child ??= this.parent.child({ mac: this.client.mac }));
  }

  /**
   * The fields of the one line logged about this exchange. The MAC comes
   * first, where the child logger's binding would put it, so the server's
   * own lines need no child logger.
   */
  logFields(): Record<string, unknown> {
    const req = this.req;
    return { mac: this.client.mac, type: typeLabel(this.type), ...(req.giaddr !== '0.0.0.0' && { relay: req.giaddr }), ...(this.ip !== undefined && { ip: this.ip }), ...this.fields };
  }
}

function reqTrail(req: DhcpMessage, ctx: Exchange): { detail?: string; ip?: string } {
  const asked = req.requestedIp ?? (req.ciaddr !== '0.0.0.0' ? req.ciaddr : undefined);
  const state = typeof ctx.fields.state === 'string' ? ctx.fields.state : undefined;
  return { ...(asked !== undefined && { ip: asked }), ...(state !== undefined && { detail: state }) };
}
