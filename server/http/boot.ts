/**
 * The per-machine boot artefacts over HTTP: /boot.ipxe, /ipxe, /ignition and
 * /oem.cpio.gz. Each asks the BootService, so a blade gets byte for byte what
 * `swarmboot render` prints. Ignition and the oem initrd carry the machine's
 * swarm secret: never cached (no-store) and, with a secret gate, served only
 * to the address that holds the MAC's lease.
 */
import express, { type Request, type Response, type Router } from 'express';
import { SwarmbootError, ForbiddenError } from '../errors.js';
import type { BootService } from '../boot/service.js';
import type { MachineStates, TrailStep } from '../state/machines.js';
import type { Counter } from '../metrics.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { endpoints } from '../boot/layout.js';
import { IGNITION_VERSION } from '../../ignition/types.js';
import { evaluatePreconditions } from './conditional.js';
import { macParam, remoteIp, sendBody, setRoute, type RouteLabel } from './request.js';

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

  for (const kind of Object.keys(ARTEFACTS) as ArtefactRoute[]) {
    const spec = ARTEFACTS[kind];
    router.get(spec.path, (req: Request, res: Response) => serveArtefact(deps, kind, spec, req, res));
  }
  return router;
}

function serveArtefact(deps: BootRoutesDeps, kind: ArtefactRoute, spec: ArtefactSpec, req: Request, res: Response): void {
  setRoute(res, kind as RouteLabel);
  const ip = remoteIp(req);
  let mac: Mac;
  try {
    mac = macParam(req);
  } catch (err) {
    deps.log.info({ route: kind, ip, reason: (err as Error).message }, `${kind} refused: bad MAC`);
    throw err;
  }
  const log = deps.log.child({ mac });
  if (spec.secret && deps.secretGate) {
    // Before rendering: an unentitled caller learns nothing, not even whether the MAC is known.
    const reason = deps.secretGate(mac, ip);
    if (reason !== null) {
      deps.secretRefusals.inc();
      log.warn({ route: kind, ip, reason }, `${kind} refused by the secret gate`);
      throw new ForbiddenError(`${kind} for ${mac} is not served to ${ip}: ${reason}`);
    }
  }
  let rendered: { body: string | Buffer; etag: string };
  try {
    rendered = deps.boot[kind](mac);
  } catch (err) {
    if (err instanceof SwarmbootError && err.status < 500) log.info({ route: kind, ip, code: err.code, reason: err.message }, `${kind} not served`);
    throw err;
  }
  res.setHeader('ETag', rendered.etag);
  res.setHeader('Cache-Control', spec.cacheControl);
  const verdict = evaluatePreconditions(req.method, { ifNoneMatch: req.get('if-none-match') }, { etag: rendered.etag });
  let status: number;
  if (verdict === 'not-modified') {
    status = 304;
    res.status(304).end();
  } else {
    status = 200;
    sendBody(req, res, 200, spec.contentType, rendered.body);
  }
  const machine = deps.boot.machine(mac);
  if (req.method === 'GET') deps.machines.record(mac, spec.step, { ip, ...(status === 304 ? { detail: 'not modified' } : {}) });
  log.info(
    {
      route: kind,
      ip,
      status,
      method: req.method,
      hostname: machine?.hostname,
      profile: machine?.profile,
      known: machine?.known,
      etag: rendered.etag,
      bytes: typeof rendered.body === 'string' ? Buffer.byteLength(rendered.body) : rendered.body.length,
      gated: spec.secret && deps.secretGate !== undefined,
    },
    `served ${kind}`,
  );
}
