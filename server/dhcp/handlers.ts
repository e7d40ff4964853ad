/**
 * The DHCP reply chain (coredhcp's shape, STYLE.md): the server decodes a
 * request, builds a stub reply, and runs small handlers in order, each
 * `(req, ctx, reply) => reply | null`. Null drops the request; a handler
 * that sets `ctx.final` ends the chain with its reply (a NAK). Each handler
 * factory returns a closure over its own memo, so no state is module-level
 * and every handler can be tested alone with a hand-made Exchange.
 *
 *   full mode:  policy -> lease -> standardOptions -> bootFields -> fit
 *   proxy mode: policy -> proxyBoot (buildProxyOffer fits its own reply)
 *
 * Handlers explain themselves through the Exchange: `ignore()` for why a
 * request gets no answer (counted by reason, logged once by the server),
 * `ctx.fields` for the reasons behind an answer (logged once at info).
 */
import type { BootDecision, BootEnv } from '../boot/decide.js';
import { decideBoot } from '../boot/decide.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import type { Machine, Profile, ProfileSet } from '../profiles/types.js';
import type { ClientInfo } from './classify.js';
import { copyOptions, FLAG_BROADCAST, type DhcpMessage } from './codec.js';
import { LeaseConflictError, type LeaseStore } from './leases.js';
import { MessageType, Opt } from './options.js';
import { allocate, checkRequest, poolContains, selectPool, type NextFree, type Pool } from './pool.js';
import { buildProxyOffer, fitReply, makeReply, withBootFields } from './pxe-reply.js';

/** What the chain asks of the boot service (BootService implements it). */
export interface BootPolicy {
  profiles(): ProfileSet;
  /** The machine for a MAC, or null when the unknown-machine policy says ignore. */
  machine(mac: Mac, set?: ProfileSet): Machine | null;
  /** Throws (E_NO_SERVER_URL) when no URL is known. */
  serverUrl(set?: ProfileSet): string;
}

/** The server's long-lived dependencies, shared by every exchange. */
export interface DhcpEnv {
  readonly mode: 'full' | 'proxy';
  readonly serverIp: string;
  readonly boot: BootPolicy;
  /** Full mode only. */
  readonly leases: LeaseStore | null;
  /** The compiled pools for this profile set (reservations come from its machines). */
  pools(set: ProfileSet): readonly Pool[];
  hasAsset(name: string): boolean;
  /** How long an OFFER holds its address for the client's REQUEST. */
  readonly offerTtlMs: number;
  /** How long a DECLINEd address stays out of use. */
  readonly declineQuarantineMs: number;
}

/** Label values of swarmboot_dhcp_ignored_total: a small fixed set. */
export type IgnoreReason =
  | 'unknown-mac'
  | 'no-profile'
  | 'not-pxe'
  | 'wrong-port'
  | 'other-server'
  | 'no-pool'
  | 'pool-full'
  | 'lease-conflict'
  | 'not-leased'
  | 'malformed'
  | 'store-error';

/** What the server records after the chain: the reply's meaning, or what a RELEASE/DECLINE did. */
export type Outcome = 'offer' | 'ack' | 'nak' | 'inform' | 'released' | 'declined' | 'proxy-offer' | 'proxy-ack';

/** One request's context: inputs set by the server, the rest filled in by handlers. */
export interface Exchange {
  readonly env: DhcpEnv;
  readonly type: number;
  readonly client: ClientInfo;
  /** The local port the request arrived on (67, or 4011 in proxy mode). */
  readonly port: number;
  readonly from: { readonly address: string; readonly port: number };
  /** Child logger carrying the MAC. */
  readonly log: Logger;
  /** Reasons for the one info line the server logs about this exchange. */
  readonly fields: Record<string, unknown>;
  set?: ProfileSet;
  machine?: Machine;
  profile?: Profile;
  pool?: Pool;
  /** The address this exchange is about: offered, acked, naked, released, declined. */
  ip?: string;
  decision?: BootDecision;
  outcome?: Outcome;
  ignored?: { readonly reason: IgnoreReason; readonly detail: string; readonly level: 'debug' | 'info' | 'warn' | 'error' };
  /** Set by a handler whose reply must go out as it is (a NAK): later handlers are skipped. */
  final?: boolean;
}

export type HandlerResult = DhcpMessage | null;
export type Handler = (req: DhcpMessage, ctx: Exchange, reply: DhcpMessage) => HandlerResult | Promise<HandlerResult>;

export const UNSPECIFIED = '0.0.0.0';
export const BROADCAST = '255.255.255.255';
export const SERVER_PORT = 67;
export const CLIENT_PORT = 68;
export const PXE_PORT = 4011;

/** Records why the request gets no answer and returns null, so handlers can `return ignore(...)`. */
export function ignore(ctx: Exchange, reason: IgnoreReason, detail: string, level: 'debug' | 'info' | 'warn' | 'error' = 'info'): null {
  ctx.ignored = { reason, detail, level };
  return null;
}

/**
 * Unknown machines follow the cluster's policy: BootService.machine gives
 * null for "ignore", and such a client gets nothing at all, not even an
 * address, so swarmboot can share a segment with other hosts.
 */
export function policy(): Handler {
  return (_req, ctx, reply) => {
    const set = ctx.env.boot.profiles();
    ctx.set = set;
    const machine = ctx.env.boot.machine(ctx.client.mac, set);
    if (machine === null) return ignore(ctx, 'unknown-mac', 'MAC is in no profile and unknown_machines is ignore', 'debug');
    const profile = set.profiles.get(machine.profile);
    if (profile === undefined) return ignore(ctx, 'no-profile', `profile ${machine.profile} is not loaded`, 'warn');
    ctx.machine = machine;
    ctx.profile = profile;
    ctx.fields.profile = profile.name;
    ctx.fields.hostname = machine.hostname;
    if (!machine.known) ctx.fields.known = false;
    return reply;
  };
}

/** RFC 2131 4.3.2: which of the four REQUEST situations this is. */
export type RequestState =
  | { readonly state: 'selecting'; readonly serverId: string; readonly ip: string | undefined }
  | { readonly state: 'init-reboot'; readonly ip: string }
  | { readonly state: 'renewing'; readonly ip: string }
  | { readonly state: 'malformed' };

export function requestState(req: DhcpMessage): RequestState {
  const serverId = req.serverId;
  if (serverId !== undefined) return { state: 'selecting', serverId, ip: req.requestedIp };
  // RENEWING (unicast) and REBINDING (broadcast) look alike once received: ciaddr set, no server id.
  if (req.ciaddr !== UNSPECIFIED) return { state: 'renewing', ip: req.ciaddr };
  const ip = req.requestedIp;
  return ip === undefined ? { state: 'malformed' } : { state: 'init-reboot', ip };
}

/** A DHCPNAK for `req`: options 53, 54 and 56 (the reason), broadcast bit set when relayed (RFC 2131 4.3.2). */
export function buildNak(req: DhcpMessage, serverIp: string, reason: string): DhcpMessage {
  const stub = makeReply(req, MessageType.NAK, serverIp);
  const options = copyOptions(stub.options);
  options.set(Opt.MESSAGE, Buffer.from(reason.slice(0, 250), 'latin1'));
  const relayed = req.giaddr !== UNSPECIFIED;
  return stub.with({ options, flags: relayed ? req.flags | FLAG_BROADCAST : req.flags });
}

function nak(req: DhcpMessage, ctx: Exchange, ip: string | undefined, reason: string): DhcpMessage {
  ctx.outcome = 'nak';
  ctx.final = true;
  if (ip !== undefined) ctx.ip = ip;
  ctx.fields.reason = reason;
  return buildNak(req, ctx.env.serverIp, reason);
}

/**
 * Full mode's address handling: DISCOVER offers (in memory), REQUEST binds
 * (durably, before the ACK goes out) or NAKs, RELEASE frees, DECLINE
 * quarantines, INFORM answers without touching leases. Address choice and
 * the ACK/NAK verdict come from pool.ts.
 */
export function lease(): Handler {
  // Next-fit for fresh addresses: a boot storm must not rescan the taken part of the range per DISCOVER.
  const nextFree: NextFree = new WeakMap();
  // Not an async function: only the store's writes (bind, release, decline) need
  // waiting for, and a DISCOVER or a NAK should not pay for promises it never awaits.
  return (req, ctx, reply) => {
    const { env, client } = ctx;
    const leases = env.leases;
    if (leases === null) throw new Error('full-mode lease handler without a lease store');
    const pools = env.pools(ctx.set ?? env.boot.profiles());
    const mac = client.mac;
    const hostname = ctx.machine?.hostname;

    const serverIdOk = (): boolean => {
      const id = req.serverId;
      return id === undefined || id === env.serverIp;
    };

    switch (ctx.type) {
      case MessageType.DISCOVER: {
        const pool = selectPool(pools, { giaddr: req.giaddr, ifaceAddr: env.serverIp });
        if (pool === null) return ignore(ctx, 'no-pool', noPoolDetail(req, env), 'warn');
        const got = allocate(pool, leases, mac, req.requestedIp, nextFree);
        if (got.ip === null) return ignore(ctx, 'pool-full', got.reason, 'warn');
        try {
          leases.offer(mac, got.ip, env.offerTtlMs, hostname);
        } catch (err) {
          if (err instanceof LeaseConflictError) return ignore(ctx, 'lease-conflict', err.message, 'warn');
          throw err;
        }
        ctx.pool = pool;
        ctx.ip = got.ip;
        ctx.outcome = 'offer';
        ctx.fields.source = got.source;
        if (got.note !== undefined) ctx.fields.note = got.note;
        return reply.with({ yiaddr: got.ip });
      }

      case MessageType.REQUEST: {
        const rs = requestState(req);
        if (rs.state === 'malformed') return ignore(ctx, 'malformed', 'REQUEST with neither server id, requested address nor ciaddr');
        ctx.fields.state = rs.state;
        if (rs.state === 'selecting' && rs.serverId !== env.serverIp) {
          // The client took another server's offer: ours is void. Releasing it also
          // ends a binding on the same address, which that client no longer uses.
          const mine = leases.get(mac);
          const ignored = (): null => ignore(ctx, 'other-server', `client chose server ${rs.serverId}`);
          return mine?.state === 'offered' ? leases.release(mac, mine.ip).then(ignored) : ignored();
        }
        if (rs.ip === undefined) return nak(req, ctx, undefined, 'REQUEST names no address');
        const ip = rs.ip;
        const pool = selectPool(pools, { giaddr: req.giaddr, ifaceAddr: env.serverIp });
        if (pool === null) return ignore(ctx, 'no-pool', noPoolDetail(req, env), 'warn');
        if (!poolContains(pool, ip)) return nak(req, ctx, ip, `${ip} is not in this network (${pool.subnet})`);
        if (rs.state === 'selecting') {
          const mine = leases.get(mac);
          if (mine?.ip !== ip) return nak(req, ctx, ip, `${ip} was not offered to this client${mine ? ` (its address is ${mine.ip})` : ''}`);
        }
        const verdict = checkRequest(pool, leases, mac, ip);
        if (!verdict.ok) return nak(req, ctx, ip, verdict.reason);
        return leases.bind(mac, ip, pool.leaseTime * 1000, hostname).then(
          () => {
            ctx.pool = pool;
            ctx.ip = ip;
            ctx.outcome = 'ack';
            return reply.with({ yiaddr: ip });
          },
          (err: unknown) => {
            if (err instanceof LeaseConflictError) return nak(req, ctx, ip, err.message);
            // Not durable, so no ACK: the client retries, and a restart recovers the store.
            return ignore(ctx, 'store-error', `lease not stored: ${(err as Error).message}`, 'error');
          },
        );
      }

      case MessageType.INFORM: {
        if (req.ciaddr === UNSPECIFIED) return ignore(ctx, 'malformed', 'INFORM without ciaddr');
        // Only for networks we serve: the options would be wrong anywhere else.
        const pool = pools.find((p) => poolContains(p, req.ciaddr));
        if (pool === undefined) return ignore(ctx, 'no-pool', `INFORM from ${req.ciaddr}, outside every pool's subnet`);
        ctx.pool = pool;
        ctx.ip = req.ciaddr;
        ctx.outcome = 'inform';
        // RFC 2131 4.3.5: no yiaddr, no lease time; makeReply already echoed ciaddr.
        return reply;
      }

      case MessageType.RELEASE: {
        if (!serverIdOk()) return ignore(ctx, 'other-server', `RELEASE for server ${req.serverId ?? ''}`);
        const ip = req.ciaddr;
        if (ip === UNSPECIFIED) return ignore(ctx, 'malformed', 'RELEASE without ciaddr');
        ctx.ip = ip;
        return leases.release(mac, ip).then((released) => {
          if (!released) return ignore(ctx, 'not-leased', `RELEASE of ${ip}, which is not leased to this client`);
          ctx.outcome = 'released';
          return null;
        });
      }

      case MessageType.DECLINE: {
        if (!serverIdOk()) return ignore(ctx, 'other-server', `DECLINE for server ${req.serverId ?? ''}`);
        const ip = req.requestedIp;
        if (ip === undefined) return ignore(ctx, 'malformed', 'DECLINE without a requested address (option 50)');
        ctx.ip = ip;
        // Only the holder may take an address out of use, or any host could drain the pool.
        if (leases.byIp(ip)?.mac !== mac) return ignore(ctx, 'not-leased', `DECLINE of ${ip}, which is not leased or offered to this client`, 'warn');
        return leases.decline(ip, env.declineQuarantineMs, mac).then(() => {
          ctx.outcome = 'declined';
          ctx.fields.quarantineMs = env.declineQuarantineMs;
          return null;
        });
      }

      default:
        return ignore(ctx, 'malformed', `message type ${ctx.type} is not for a server`);
    }
  };
}

function noPoolDetail(req: DhcpMessage, env: DhcpEnv): string {
  return req.giaddr !== UNSPECIFIED ? `no pool covers relay ${req.giaddr}` : `no pool covers the server address ${env.serverIp}`;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(Math.min(Math.max(Math.floor(n), 0), 0xffffffff));
  return b;
}

function ipBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

interface PoolOptionBytes {
  readonly netmask: Buffer;
  readonly router?: Buffer;
  readonly dns?: Buffer;
  readonly domain?: Buffer;
  readonly leaseTime: Buffer;
  readonly renewal: Buffer;
  readonly rebinding: Buffer;
}

/**
 * Options 1/3/6/12/15/51/58/59 from the pool and the machine. INFORM
 * replies get no lease times (RFC 2131 4.3.5). T1 and T2 are the RFC
 * defaults, 50% and 87.5% of the lease.
 */
export function standardOptions(): Handler {
  // A pool's option bytes never change; built once per compiled pool.
  const memo = new WeakMap<Pool, PoolOptionBytes>();
  const bytesFor = (pool: Pool): PoolOptionBytes => {
    let b = memo.get(pool);
    if (b === undefined) {
      b = {
        netmask: ipBytes(pool.netmask),
        ...(pool.router !== undefined && { router: ipBytes(pool.router) }),
        ...(pool.dns.length > 0 && { dns: Buffer.concat(pool.dns.map(ipBytes)) }),
        ...(pool.domain !== undefined && { domain: Buffer.from(pool.domain, 'latin1') }),
        leaseTime: u32(pool.leaseTime),
        renewal: u32(pool.leaseTime * 0.5),
        rebinding: u32(pool.leaseTime * 0.875),
      };
      memo.set(pool, b);
    }
    return b;
  };
  return (_req, ctx, reply) => {
    const pool = ctx.pool;
    if (pool === undefined) return reply;
    const b = bytesFor(pool);
    const options = copyOptions(reply.options);
    options.set(Opt.SUBNET_MASK, b.netmask);
    if (b.router !== undefined) options.set(Opt.ROUTER, b.router);
    if (b.dns !== undefined) options.set(Opt.DNS, b.dns);
    const hostname = ctx.machine?.hostname;
    if (hostname !== undefined && hostname !== '') options.set(Opt.HOSTNAME, Buffer.from(hostname, 'latin1'));
    if (b.domain !== undefined) options.set(Opt.DOMAIN_NAME, b.domain);
    if (ctx.outcome !== 'inform') {
      options.set(Opt.LEASE_TIME, b.leaseTime);
      options.set(Opt.RENEWAL_TIME, b.renewal);
      options.set(Opt.REBINDING_TIME, b.rebinding);
    }
    return reply.with({ options });
  };
}

/** Is this a network-boot client at all? The booted OS's own DHCP client is not, and gets no boot file. */
export function wantsBoot(client: ClientInfo, profile: Profile | undefined): boolean {
  return client.isPxe || client.isHttpClient || client.isIpxe || (profile?.forceIpxe ?? false);
}

/** decideBoot for this exchange; a missing server URL becomes a 'none' decision with the reason. */
export function decide(ctx: Exchange): BootDecision {
  const { env, client, profile, set } = ctx;
  if (profile === undefined) return { kind: 'none', reason: 'no profile' };
  let serverUrl: string;
  try {
    serverUrl = env.boot.serverUrl(set);
  } catch (err) {
    return { kind: 'none', reason: (err as Error).message };
  }
  const bootEnv: BootEnv = { serverUrl, serverIp: env.serverIp, hasAsset: (name) => env.hasAsset(name) };
  return decideBoot(client, profile, bootEnv);
}

function noteDecision(ctx: Exchange, decision: BootDecision): void {
  ctx.decision = decision;
  if (decision.kind !== 'none') ctx.fields.bootFile = decision.file;
  ctx.fields.boot = decision.reason;
}

/** siaddr/file/60/66/67/43/97 for boot clients (decideBoot picks the file); other clients pass through untouched. */
export function bootFields(): Handler {
  return (req, ctx, reply) => {
    if (!wantsBoot(ctx.client, ctx.profile)) {
      ctx.fields.boot = 'not a network-boot client: no boot file';
      return reply;
    }
    const decision = decide(ctx);
    noteDecision(ctx, decision);
    return withBootFields(reply, req, ctx.client, decision, ctx.env.serverIp);
  };
}

/** IPv4 + UDP headers, which option 57's maximum counts. */
const IP_UDP_HEADERS = 28;
const MIN_MAX_MESSAGE_SIZE = 576;

/** encodeDhcp's output length for `msg`, without encoding it. */
export function encodedLength(msg: DhcpMessage): number {
  let len = 240 + 1;
  msg.options.forEach((value) => (len += value.length === 0 ? 2 : value.length + 2 * Math.ceil(value.length / 255)));
  return Math.max(300, len);
}

/** Keeps the reply within the client's maximum message size (fitReply), measuring before encoding anything. */
export function fit(): Handler {
  return (req, _ctx, reply) => {
    const limit = Math.max(req.maxMessageSize ?? MIN_MAX_MESSAGE_SIZE, MIN_MAX_MESSAGE_SIZE) - IP_UDP_HEADERS;
    // Nearly every reply fits; fitReply would encode it once just to find that out.
    return encodedLength(reply) <= limit ? reply : fitReply(reply, req);
  };
}

/**
 * proxyDHCP: only PXE/HTTPClient clients, never an address. A DISCOVER on
 * port 67 gets a proxy OFFER; a REQUEST (or INFORM) on port 4011 an ACK.
 * REQUESTs on port 67 belong to the site's DHCP server and are left alone.
 */
export function proxyBoot(): Handler {
  return (req, ctx) => {
    const { client } = ctx;
    if (!(client.isPxe || client.isHttpClient)) return ignore(ctx, 'not-pxe', 'proxy mode answers only PXE/HTTPClient clients (option 60)', 'debug');
    if (ctx.port === PXE_PORT) {
      if (ctx.type !== MessageType.REQUEST && ctx.type !== MessageType.INFORM) {
        return ignore(ctx, 'wrong-port', `message type ${ctx.type} on port ${PXE_PORT} (only REQUEST/INFORM)`, 'debug');
      }
    } else if (ctx.type !== MessageType.DISCOVER) {
      return ignore(ctx, 'wrong-port', `message type ${ctx.type} on port ${ctx.port} is for the site's DHCP server`, 'debug');
    }
    const decision = decide(ctx);
    noteDecision(ctx, decision);
    const offer = buildProxyOffer(req, client, decision, ctx.env.serverIp);
    if (offer === null) return ignore(ctx, 'not-pxe', `nothing to boot: ${decision.reason}`, 'warn');
    ctx.outcome = ctx.port === PXE_PORT ? 'proxy-ack' : 'proxy-offer';
    if (req.ciaddr !== UNSPECIFIED) ctx.ip = req.ciaddr;
    return offer;
  };
}

export function fullModeChain(): Handler[] {
  return [policy(), lease(), standardOptions(), bootFields(), fit()];
}

export function proxyModeChain(): Handler[] {
  return [policy(), proxyBoot()];
}

/**
 * Runs `chain` over the stub; null when a handler dropped the request.
 * Synchronous as long as the handlers are: a promise comes back only when
 * one of them returned one (a lease write), and the rest of the chain
 * continues after it settles.
 */
export function runChain(chain: readonly Handler[], req: DhcpMessage, ctx: Exchange, stub: DhcpMessage): HandlerResult | Promise<HandlerResult> {
  return continueChain(chain, 0, req, ctx, stub);
}

function continueChain(chain: readonly Handler[], from: number, req: DhcpMessage, ctx: Exchange, reply: DhcpMessage): HandlerResult | Promise<HandlerResult> {
  for (let i = from; i < chain.length; i++) {
    const r = chain[i]!(req, ctx, reply);
    if (r instanceof Promise) {
      return r.then((next) => (next === null ? null : ctx.final === true ? next : continueChain(chain, i + 1, req, ctx, next)));
    }
    if (r === null) return null;
    reply = r;
    if (ctx.final === true) break;
  }
  return reply;
}

/**
 * Where a reply goes (RFC 2131 4.1): the port-4011 exchange answers its
 * sender; relayed requests go to the relay (giaddr:67); NAKs are broadcast;
 * a client with an address (ciaddr: renewing, rebinding, INFORM) gets
 * unicast; anything else is broadcast, since sending unicast to a client
 * without an address needs a raw socket to skip ARP.
 *
 * ciaddr is trusted for unicast only when the datagram came from it: a
 * configured client sends from its own address, while a forged ciaddr
 * would make us ARP for arbitrary addresses, and each unresolved neighbour
 * parks replies in the socket's send buffer for seconds, stalling every
 * other reply behind them.
 */
export function replyDestination(req: DhcpMessage, reply: DhcpMessage, arrival: { port: number; from: { address: string; port: number } }): { address: string; port: number } {
  if (arrival.port === PXE_PORT) return { address: arrival.from.address, port: arrival.from.port };
  if (req.giaddr !== UNSPECIFIED) return { address: req.giaddr, port: SERVER_PORT };
  if (reply.messageType === MessageType.NAK) return { address: BROADCAST, port: CLIENT_PORT };
  if (req.ciaddr !== UNSPECIFIED && req.ciaddr === arrival.from.address) return { address: req.ciaddr, port: CLIENT_PORT };
  return { address: BROADCAST, port: CLIENT_PORT };
}
