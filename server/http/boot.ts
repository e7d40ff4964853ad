/**
 * The per-machine boot artefacts over HTTP: /boot.ipxe, /ipxe, /ignition and
 * /oem.cpio.gz. Each asks the BootService, so a blade gets byte for byte what
 * `swarmboot render` prints. Ignition and the oem initrd carry the machine's
 * swarm secret: never cached (no-store) and, with a secret gate, served only
 * to the address that holds the MAC's lease.
 */
import express, { type Request, type Response, type Router } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwarmbootError, ForbiddenError } from '../errors.js';
import type { BootService, Rendered } from '../boot/service.js';
import type { MachineStates, TrailStep } from '../state/machines.js';
import type { Counter } from '../metrics.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { endpoints } from '../boot/layout.js';
import { IGNITION_VERSION } from '../../ignition/types.js';
import { evaluatePreconditions } from './conditional.js';
import { addBytes, macParam, remoteIp, sendBody, setRoute } from './request.js';
import { sendError } from './errors.js';

export type ArtefactRoute = 'ipxe' | 'ignition' | 'oem';

interface ArtefactSpec {
  readonly path: string;
  readonly step: TrailStep;
  readonly contentType: string;
  readonly cacheControl: string;
  readonly secret: boolean;
}

/** Route paths come from layout.ts's endpoints (minus the query), so the scripts' URLs and the routes agree. */
function pathOf(url: string): string {
  return url.split('?')[0] as string;
}

const SAMPLE = '00:00:00:00:00:00' as Mac;

export const ARTEFACTS: Readonly<Record<ArtefactRoute, ArtefactSpec>> = {
  ipxe: {
    path: pathOf(endpoints.ipxe(SAMPLE)),
    step: 'ipxe-script',
    contentType: 'text/plain; charset=utf-8',
    // Changes with every profile reload; revalidate rather than reuse.
    cacheControl: 'no-cache',
    secret: false,
  },
  ignition: {
    path: pathOf(endpoints.ignition(SAMPLE)),
    step: 'ignition',
    // Ignition ignores the type; the version parameter tells a human (and curl) what spec this is.
    contentType: `application/vnd.coreos.ignition+json;version=${IGNITION_VERSION}`,
    cacheControl: 'no-store',
    secret: true,
  },
  oem: {
    path: pathOf(endpoints.oem(SAMPLE)),
    step: 'oem',
    contentType: 'application/gzip',
    cacheControl: 'no-store',
    secret: true,
  },
};

export interface BootRoutesDeps {
  boot: BootService;
  machines: MachineStates;
  log: Logger;
  secretRefusals: Counter;
  secretGate?: (mac: Mac, remoteIp: string) => string | null;
  macOfIp?: (ip: string) => Mac | null;
}

export function bootRouter(deps: BootRoutesDeps): Router {
  const router = express.Router();

  router.get(endpoints.bootScript(), (req: Request, res: Response) => {
    setRoute(res, 'boot.ipxe');
    const body = deps.boot.bootScript();
    res.setHeader('Cache-Control', 'no-cache');
    sendBody(req, res, 200, 'text/plain; charset=utf-8', body);
    const ip = remoteIp(req);
    const mac = deps.macOfIp?.(ip) ?? null;
    if (mac !== null && req.method === 'GET') deps.machines.record(mac, 'ipxe-script', { ip, detail: endpoints.bootScript() });
    deps.log.info({ route: 'boot.ipxe', ip, ...(mac !== null ? { mac } : {}) }, 'served the generic boot script');
  });

  // The boot lane (below) answers the exact paths before express sees them; these routes take what express
  // also matches (a trailing slash, another letter case), with the same code.
  for (const kind of Object.keys(ARTEFACTS) as ArtefactRoute[]) {
    router.get(ARTEFACTS[kind].path, (req: Request, res: Response) => {
      setRoute(res, kind);
      addBytes(res, serveArtefact(deps, kind, req, res));
    });
  }
  return router;
}

export interface BootLaneDeps extends BootRoutesDeps {
  /** The app's request and byte counters: the lane counts its own requests, as express's middleware does for the rest. */
  requests: Counter;
  bytesSent: Counter;
}

/**
 * The hot path, in front of express: GET and HEAD of exactly /ipxe,
 * /ignition and /oem.cpio.gz. A rack of blades asks for these at once, and
 * express's router, request decoration and per-response listeners cost
 * more than the answer itself (a cached render is a map lookup): profiled
 * at 18% of the CPU per Ignition request, plus the query parser. Returns
 * false for every other request, which express then answers; errors are
 * sent here, in the form express's error handler uses.
 */
export function bootLane(deps: BootLaneDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  const kindOfPath = new Map<string, ArtefactRoute>((Object.keys(ARTEFACTS) as ArtefactRoute[]).map((k) => [ARTEFACTS[k].path, k]));
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const kind = kindOfPath.get(q < 0 ? url : url.slice(0, q));
    if (kind === undefined) return false;
    let bytes = 0;
    try {
      bytes = serveArtefact(deps, kind, req, res);
    } catch (err) {
      if (res.headersSent) res.destroy(err instanceof Error ? err : new Error(String(err)));
      else sendError(deps.log, req, res, err);
    }
    deps.requests.inc({ route: kind, status: String(res.statusCode) });
    if (bytes > 0) deps.bytesSent.inc({ route: kind }, bytes);
    return true;
  };
}

/** Bodies as bytes, once per rendered artefact (renders are cached, so this is too). */
const encoded = new WeakMap<Rendered<string | Buffer>, Buffer>();

function bytesOf(rendered: Rendered<string | Buffer>): Buffer {
  if (typeof rendered.body !== 'string') return rendered.body;
  let buf = encoded.get(rendered);
  if (buf === undefined) {
    buf = Buffer.from(rendered.body, 'utf8');
    encoded.set(rendered, buf);
  }
  return buf;
}

/** Answers one artefact request in full, or throws a SwarmbootError for the caller to send. Returns the body bytes written. */
function serveArtefact(deps: BootRoutesDeps, kind: ArtefactRoute, req: IncomingMessage, res: ServerResponse): number {
  const spec = ARTEFACTS[kind];
  const ip = remoteIp(req);
  let mac: Mac;
  try {
    mac = macParam(req);
  } catch (err) {
    deps.log.info({ route: kind, ip, reason: (err as Error).message }, `${kind} refused: bad MAC`);
    throw err;
  }
  if (spec.secret && deps.secretGate) {
    // Before rendering: an unentitled caller learns nothing, not even whether the MAC is known.
    const reason = deps.secretGate(mac, ip);
    if (reason !== null) {
      deps.secretRefusals.inc();
      deps.log.warn({ mac, route: kind, ip, reason }, `${kind} refused by the secret gate`);
      throw new ForbiddenError(`${kind} for ${mac} is not served to ${ip}: ${reason}`);
    }
  }
  let rendered: Rendered<string | Buffer>;
  try {
    rendered = deps.boot[kind](mac);
  } catch (err) {
    if (err instanceof SwarmbootError && err.status < 500) deps.log.info({ mac, route: kind, ip, code: err.code, reason: err.message }, `${kind} not served`);
    throw err;
  }
  const body = bytesOf(rendered);
  const verdict = evaluatePreconditions(req.method ?? 'GET', { ifNoneMatch: req.headers['if-none-match'] }, { etag: rendered.etag });
  let sent = 0;
  if (verdict === 'not-modified') {
    res.writeHead(304, ['ETag', rendered.etag, 'Cache-Control', spec.cacheControl]);
    res.end();
  } else {
    // One flat header list: writeHead takes it as is, without setHeader's per-call bookkeeping.
    res.writeHead(200, ['ETag', rendered.etag, 'Cache-Control', spec.cacheControl, 'Content-Type', spec.contentType, 'Content-Length', String(body.length), 'X-Content-Type-Options', 'nosniff']);
    if (req.method === 'HEAD') {
      res.end();
    } else {
      res.end(body);
      sent = body.length;
    }
  }
  const status = res.statusCode;
  if (req.method === 'GET') deps.machines.record(mac, spec.step, { ip, ...(status === 304 ? { detail: 'not modified' } : {}) });
  if (deps.log.isLevelEnabled('info')) {
    const machine = deps.boot.machine(mac);
    deps.log.info(
      {
        mac,
        route: kind,
        ip,
        status,
        method: req.method,
        hostname: machine?.hostname,
        profile: machine?.profile,
        known: machine?.known,
        etag: rendered.etag,
        bytes: body.length,
        gated: spec.secret && deps.secretGate !== undefined,
      },
      `served ${kind}`,
    );
  }
  return sent;
}
