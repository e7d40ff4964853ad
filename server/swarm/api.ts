/**
 * The swarm rendezvous over HTTP, for ignition/swarm.sh (which parses the
 * replies without jq) and for `swarmboot swarm`:
 *
 *   POST /api/swarm/join      role, hostname, addr        -> action=init|join|wait lines
 *   POST /api/swarm/report    event=init|joined|active|leaving|left|reconcile|rotated|tokens, ...
 *   GET  /api/swarm/desired   (managers) labels per hostname, remove_down_after, rotate, tokens_sha256
 *   POST /api/swarm/rotate    (loopback only) which=worker|manager|both
 *   GET  /api/swarm/status    JSON, no tokens
 *
 * Node calls carry `Authorization: Bearer <machine secret>` and
 * `X-Swarmboot-Mac: <mac>`; a missing or wrong secret, or a MAC no profile
 * serves, gets 403, one warn line and a count in
 * swarmboot_swarm_auth_failures_total. The secret is checked before the MAC
 * is looked up, so a caller without the server key cannot probe which MACs
 * are listed. Request bodies (tokens) are never logged.
 *
 * Mount with createHttpApp({ routers: [createSwarmRouter(deps)] }).
 */
import express, { type ErrorRequestHandler, type Request, type Response, type Router } from 'express';
import { isIP } from 'node:net';
import type { BootService } from '../boot/service.js';
import { BadRequestError, ForbiddenError, SwarmbootError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import type { Metrics } from '../metrics.js';
import type { Machine, Profile, ProfileSet, SwarmSettings } from '../profiles/types.js';
import type { MachineStates } from '../state/machines.js';
import { remoteIp, sendBody, setRoute } from '../http/request.js';
import { checkMachineSecret } from './secret.js';
import {
  SWARM_EVENTS,
  SwarmConflictError,
  formatJoinAnswer,
  type Rendezvous,
  type RotateRequest,
  type SwarmEvent,
  type SwarmReport,
  type SwarmRole,
  type SwarmTokens,
} from './rendezvous.js';

export interface SwarmRouterDeps {
  /** Profiles (roles, hostnames, labels, swarm settings) and the unknown-machine policy. */
  boot: BootService;
  swarm: Rendezvous;
  /** Init/joined/active/leaving/left reports also land here, for `GET /api/machines`. */
  machines: MachineStates;
  metrics: Metrics;
  log: Logger;
  /** The key machine secrets derive from (server/swarm/secret.ts). */
  serverKey: Buffer;
  /** Who may call POST /api/swarm/rotate; loopback peers by default. Tests inject a refusal here. */
  adminAllowed?: (remoteIp: string) => boolean;
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6. */
export function isLoopback(ip: string): boolean {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return ip === '::1';
}

/** Node IDs are 25 base-36 characters; anything shaped like an identifier is accepted, nothing that could break a line. */
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** SWMTKN-1-<cluster hash>-<secret>; restricted so a token can never break the `token=` reply line. */
const TOKEN = /^SWMTKN-[0-9]+-[A-Za-z0-9-]{1,256}$/;
const MANAGER_ADDR = /^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]{1,5}$/;
/** Docker accepts any label value; a line-based reply cannot carry control characters. */
const CONTROL = /[\u0000-\u001f\u007f]/;

type Form = Record<string, string>;

function form(req: Request): Form {
  const body: unknown = req.body;
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object') throw new BadRequestError('expected an application/x-www-form-urlencoded body');
  const out: Form = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new BadRequestError(`field ${k} given more than once`);
    out[k] = v;
  }
  return out;
}

function optional(f: Form, name: string, pattern: RegExp | ((v: string) => boolean), what: string): string | null {
  const v = f[name];
  if (v === undefined || v === '') return null;
  const ok = typeof pattern === 'function' ? pattern(v) : pattern.test(v);
  // The value itself is left out of the message: it may be a token.
  if (!ok) throw new BadRequestError(`${name} is not ${what}`);
  return v;
}

function required(f: Form, name: string, pattern: RegExp | ((v: string) => boolean), what: string): string {
  const v = optional(f, name, pattern, what);
  if (v === null) throw new BadRequestError(`${name} is required`);
  return v;
}

const isAddr = (v: string): boolean => isIP(v) !== 0;

function count(f: Form, name: string): number {
  const v = optional(f, name, /^[0-9]{1,9}$/, 'a count');
  return v === null ? 0 : Number(v);
}

function list(f: Form, name: string, pattern: RegExp, what: string): string[] {
  const v = f[name];
  if (v === undefined || v === '') return [];
  const items = v.split(',').filter((x) => x !== '');
  for (const x of items) if (!pattern.test(x)) throw new BadRequestError(`${name} holds something that is not ${what}`);
  return items;
}

function tokens(f: Form): SwarmTokens {
  return { worker: required(f, 'worker_token', TOKEN, 'a swarm join token'), manager: required(f, 'manager_token', TOKEN, 'a swarm join token') };
}

function text(req: Request, res: Response, status: number, body: string): void {
  res.setHeader('Cache-Control', 'no-store');
  sendBody(req, res, status, 'text/plain; charset=utf-8', body);
}

/** Labels for one hostname, as the reconciler applies them. */
export interface DesiredLabels {
  hostname: string;
  labels: Readonly<Record<string, string>>;
}

export interface Desired {
  removeDownAfter: number | null;
  rotate: RotateRequest;
  tokensDigest: string;
  labels: readonly DesiredLabels[];
}

/**
 * The body of GET /api/swarm/desired, one `key=value` per line:
 *   remove_down_after=<seconds>|never
 *   rotate=none|worker|manager|both
 *   tokens_sha256=<hex>|none
 *   label=<hostname> <key>=<value>      (one per label, sorted)
 * Hostnames and label keys contain no spaces (the profile schema says so),
 * so `read -r host kv` splits them; the value is the rest of the line.
 */
export function renderDesired(d: Desired): string {
  const lines = [
    `remove_down_after=${d.removeDownAfter === null ? 'never' : String(d.removeDownAfter)}`,
    `rotate=${d.rotate}`,
    `tokens_sha256=${d.tokensDigest}`,
  ];
  const sorted = [...d.labels].sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  for (const { hostname, labels } of sorted) {
    for (const key of Object.keys(labels).sort()) lines.push(`label=${hostname} ${key}=${labels[key] ?? ''}`);
  }
  return lines.join('\n') + '\n';
}

interface Caller {
  mac: Mac;
  machine: Machine;
  profile: Profile;
  role: SwarmRole;
  set: ProfileSet;
  swarm: SwarmSettings;
}

export function createSwarmRouter(deps: SwarmRouterDeps): Router {
  const log = deps.log.child({ subsystem: 'swarm-api' });
  const adminAllowed = deps.adminAllowed ?? isLoopback;
  const authFailures = deps.metrics.counter('swarmboot_swarm_auth_failures_total', 'Swarm API calls refused: missing or wrong secret, unknown MAC, wrong role, admin call from afar.');
  const answers = deps.metrics.counter('swarmboot_swarm_join_answers_total', 'Swarm join requests answered, by action (init, join, wait).');
  const reports = deps.metrics.counter('swarmboot_swarm_reports_total', 'Swarm reports accepted, by event.');
  const refused = deps.metrics.counter('swarmboot_swarm_refusals_total', 'Swarm API calls refused as bad (400) or conflicting (409), by endpoint and status.');
  const managers = deps.metrics.gauge('swarmboot_swarm_managers', 'Managers in the swarm as swarmboot knows them (the leader\'s last report, else the nodes\' own).');
  deps.metrics.onCollect(() => managers.set(deps.swarm.phase() === 'active' ? deps.swarm.managerCount() : 0));

  const deny = (req: Request, endpoint: string, reason: string, mac: string | null, message: string): never => {
    authFailures.inc({ endpoint, reason });
    log.warn({ endpoint, reason, mac, remote: remoteIp(req) }, 'swarm API call refused');
    throw new ForbiddenError(message);
  };

  /** Who is calling: a listed (or policy-admitted) machine in the swarm that knows its secret. */
  const authenticate = (req: Request, endpoint: string): Caller => {
    const header = req.get('x-swarmboot-mac');
    const mac = header === undefined ? null : parseMac(header);
    if (mac === null) return deny(req, endpoint, header === undefined ? 'no-mac' : 'bad-mac', null, 'X-Swarmboot-Mac is missing or not a MAC address');
    const auth = /^Bearer[ \t]+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    if (auth === null) return deny(req, endpoint, 'no-secret', mac, `no swarm secret presented for ${mac} (Authorization: Bearer <secret>)`);
    if (!checkMachineSecret(deps.serverKey, mac, auth[1] ?? '')) return deny(req, endpoint, 'wrong-secret', mac, `wrong swarm secret for ${mac}`);
    const set = deps.boot.profiles();
    const machine = deps.boot.machine(mac, set);
    const profile = machine === null ? undefined : set.profiles.get(machine.profile);
    if (machine === null || profile === undefined) return deny(req, endpoint, 'unknown-mac', mac, `no profile serves ${mac}`);
    if (profile.role === 'none') return deny(req, endpoint, 'not-in-swarm', mac, `${mac} (${machine.hostname}) has role none in profile ${profile.name}: not part of the swarm`);
    return { mac, machine, profile, role: profile.role, set, swarm: set.cluster.swarm };
  };

  const router = express.Router();
  const urlencoded = express.urlencoded({ extended: false, limit: '32kb' });

  router.post('/api/swarm/join', urlencoded, (req, res) => {
    setRoute(res, 'api');
    const c = authenticate(req, 'join');
    if (c.swarm.mode !== 'automatic') {
      log.warn({ mac: c.mac, hostname: c.machine.hostname, mode: c.swarm.mode }, 'join request refused: the cluster\'s swarm mode has no rendezvous');
      throw new SwarmConflictError(`swarm mode is ${c.swarm.mode}: there is no rendezvous${c.swarm.mode === 'static' ? ' (static mode joins with the token in swarm.env)' : ''}`);
    }
    const f = form(req);
    const addr = required(f, 'addr', isAddr, 'an IP address');
    // The profile decides the role and the hostname; a stale config saying otherwise is worth a line, not a refusal.
    if (f.role !== undefined && f.role !== c.role) log.warn({ mac: c.mac, asked: f.role, profile: c.profile.name, role: c.role }, 'join request names another role than the profile; the profile wins');
    if (f.hostname !== undefined && f.hostname !== '' && f.hostname !== c.machine.hostname) log.warn({ mac: c.mac, asked: f.hostname, hostname: c.machine.hostname }, 'join request names another hostname than the profile');
    const answer = deps.swarm.join({ mac: c.mac, role: c.role, hostname: c.machine.hostname, addr, initTimeout: c.swarm.initTimeout });
    answers.inc({ action: answer.action });
    text(req, res, 200, formatJoinAnswer(answer));
  });

  router.post('/api/swarm/report', urlencoded, (req, res) => {
    setRoute(res, 'api');
    const c = authenticate(req, 'report');
    if (c.swarm.mode === 'off') {
      log.warn({ mac: c.mac, hostname: c.machine.hostname }, 'report refused: swarm mode is off');
      throw new SwarmConflictError('swarm mode is off');
    }
    const f = form(req);
    const event = f.event as SwarmEvent | undefined;
    if (event === undefined || !SWARM_EVENTS.includes(event)) throw new BadRequestError(`event must be one of ${SWARM_EVENTS.join(', ')}`);
    const base = { mac: c.mac, role: c.role, hostname: c.machine.hostname };
    const nodeId = optional(f, 'node_id', NODE_ID, 'a node ID');
    const addr = optional(f, 'addr', isAddr, 'an IP address');
    let report: SwarmReport;
    switch (event) {
      case 'init':
        report = { ...base, event, nodeId: required(f, 'node_id', NODE_ID, 'a node ID'), addr: required(f, 'addr', isAddr, 'an IP address'), tokens: tokens(f) };
        break;
      case 'joined':
      case 'active':
        report = { ...base, event, nodeId, addr };
        break;
      case 'leaving':
      case 'left':
        report = { ...base, event, nodeId };
        break;
      case 'reconcile':
        report = {
          ...base,
          event,
          nodeId,
          summary: {
            managers: list(f, 'managers', MANAGER_ADDR, 'a host:port address'),
            nodes: count(f, 'nodes'),
            labeled: count(f, 'labeled'),
            removed: list(f, 'removed', /^[A-Za-z0-9._/-]{1,200}$/, 'a hostname/ID'),
            keptDown: count(f, 'kept_down'),
            failed: count(f, 'failed'),
          },
        };
        break;
      case 'rotated':
      case 'tokens':
        report = { ...base, event, nodeId, tokens: tokens(f), rotated: list(f, 'rotated', /^(worker|manager)$/, 'worker or manager') as SwarmRole[] };
        break;
    }
    deps.swarm.report(report);
    reports.inc({ event });
    if (event === 'init' || event === 'joined' || event === 'active' || event === 'leaving' || event === 'left') {
      deps.machines.reportSwarm(c.mac, { event, role: c.role, ...(nodeId !== null ? { nodeId } : {}), ...(addr !== null ? { addr } : {}) });
    }
    text(req, res, 200, 'ok\n');
  });

  router.get('/api/swarm/desired', (req, res) => {
    setRoute(res, 'api');
    const c = authenticate(req, 'desired');
    if (c.role !== 'manager') deny(req, 'desired', 'not-manager', c.mac, `${c.mac} (${c.machine.hostname}) is a ${c.role}: the desired state is for managers`);
    const removeDownAfter = c.swarm.mode === 'automatic' ? c.swarm.removeDownAfter : null;
    text(req, res, 200, renderDesired({ removeDownAfter, rotate: deps.swarm.rotateRequest(), tokensDigest: deps.swarm.tokensDigest(), labels: desiredLabels(c.set) }));
  });

  router.post('/api/swarm/rotate', urlencoded, (req, res) => {
    setRoute(res, 'api');
    if (!adminAllowed(remoteIp(req))) deny(req, 'rotate', 'not-loopback', null, 'token rotation is accepted from loopback only: run `swarmboot swarm rotate-tokens` on the server');
    const which = form(req).which ?? 'both';
    if (which !== 'worker' && which !== 'manager' && which !== 'both') throw new BadRequestError('which must be worker, manager or both');
    const pending = deps.swarm.requestRotation(which);
    text(req, res, 200, `ok rotate=${pending}\n`);
  });

  router.get('/api/swarm/status', (req, res) => {
    setRoute(res, 'api');
    res.setHeader('Cache-Control', 'no-store');
    sendBody(req, res, 200, 'application/json; charset=utf-8', JSON.stringify(deps.swarm.status(), null, 2) + '\n');
  });

  /**
   * Every labelled machine in the swarm, plus machines admitted by the
   * unknown-machine policy that have reported (their hostnames are known
   * only from the reports).
   */
  const desiredLabels = (set: ProfileSet): DesiredLabels[] => {
    const out = new Map<string, DesiredLabels>();
    const add = (m: Machine): void => {
      const role = set.profiles.get(m.profile)?.role;
      if (role === undefined || role === 'none' || Object.keys(m.labels).length === 0) return;
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.labels)) {
        if (CONTROL.test(v)) log.warn({ hostname: m.hostname, label: k }, 'label value holds a control character (newline, tab...); not applied');
        else labels[k] = v;
      }
      out.set(m.hostname, { hostname: m.hostname, labels });
    };
    for (const m of set.machines.values()) add(m);
    for (const n of deps.swarm.nodes()) {
      if (set.machines.has(n.mac)) continue;
      const m = deps.boot.machine(n.mac, set);
      if (m !== null && !out.has(m.hostname)) add(m);
    }
    return [...out.values()];
  };

  const onError: ErrorRequestHandler = (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const endpoint = (req.originalUrl.split('?')[0] ?? '').replace(/^\/api\/swarm\//, '');
    let status = 500;
    let line = 'internal error';
    if (err instanceof SwarmbootError) {
      status = err.status;
      line = `${err.code}: ${err.message}`;
    } else if (err instanceof Error && typeof (err as { status?: unknown }).status === 'number' && (err as { expose?: unknown }).expose !== false) {
      // body-parser: too large, malformed encoding.
      status = (err as unknown as { status: number }).status;
      line = `E_HTTP: ${err.message}`;
    }
    if (status >= 500) log.error({ err, endpoint }, 'swarm API error');
    else if (status !== 403) refused.inc({ endpoint, status: String(status) });
    // 403s and 409s were logged where they were decided, with their reasons.
    if (status >= 400 && status < 500 && status !== 403 && status !== 409) {
      log.warn({ endpoint, status, mac: req.get('x-swarmboot-mac') ?? null, remote: remoteIp(req), reason: line }, 'swarm API call refused');
    }
    text(req, res, status, line.replace(/[\r\n]+/g, ' ') + '\n');
  };
  router.use('/api/swarm', onError);
  return router;
}
