/**
 * The HTTP front end: the boot lane for the per-machine artefacts (the
 * requests a rack makes all at once), then one express app for the assets,
 * health, metrics and the machine API. It holds no policy: every answer
 * comes from the injected BootService and stores, and the listening socket
 * is created by startHttpServer so tests can bind port 0.
 */
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BootService } from '../boot/service.js';
import type { MachineStates } from '../state/machines.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { SwarmbootError } from '../errors.js';
import { bootLane, bootRouter } from './boot.js';
import { assetsRouter } from './assets.js';
import type { AssetCache } from './asset-cache.js';
import { machinesRouter } from './machines.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { note, sendBody, setRoute } from './request.js';

export interface HttpDeps {
  boot: BootService;
  /** Boot trail. */
  machines: MachineStates;
  metrics: Metrics;
  log: Logger;
  /** Served under /assets/. */
  assetsDir: string;
  /** Secret gate (full DHCP mode, config default on): returns null if `remoteIp` may fetch `mac`'s Ignition/oem, else a reason string. Absent = no gate. */
  secretGate?: (mac: Mac, remoteIp: string) => string | null;
  /** Which MAC holds this IP (from DHCP leases), to put asset fetches (kernel, initrd) on a machine's boot trail. */
  macOfIp?: (ip: string) => Mac | null;
  /** Whole asset files in memory (asset-cache.ts); absent = always from disk. */
  assetCache?: AssetCache;
  /** Extra routers mounted before the 404 handler (the swarm API of issue 4 plugs in here). */
  routers?: express.Router[];
}

export function createHttpApp(deps: HttpDeps): http.RequestListener {
  const log = deps.log.child({ subsystem: 'http' });
  const requests = deps.metrics.counter('swarmboot_http_requests_total', 'HTTP requests answered, by route and status.');
  const bytesSent = deps.metrics.counter('swarmboot_http_bytes_sent_total', 'HTTP response body bytes written, by route.');
  const secretRefusals = deps.metrics.counter('swarmboot_http_secret_refusals_total', 'Ignition/oem requests refused by the secret gate.');
  const started = Date.now();

  const app = express();
  app.disable('x-powered-by');
  // Each route sets its own strong ETag; express's would hash bodies twice.
  app.set('etag', false);

  app.use((_req, res, next) => {
    const n = note(res);
    // 'close' fires for finished and aborted responses alike: every request is counted once.
    res.once('close', () => {
      requests.inc({ route: n.route, status: String(res.statusCode) });
      if (n.bytes > 0) bytesSent.inc({ route: n.route }, n.bytes);
    });
    next();
  });

  const bootDeps = { boot: deps.boot, machines: deps.machines, log, secretRefusals, ...(deps.secretGate ? { secretGate: deps.secretGate } : {}), ...(deps.macOfIp ? { macOfIp: deps.macOfIp } : {}) };
  app.use(bootRouter(bootDeps));
  app.use('/assets', assetsRouter({ assetsDir: deps.assetsDir, machines: deps.machines, log, ...(deps.macOfIp ? { macOfIp: deps.macOfIp } : {}), ...(deps.assetCache ? { cache: deps.assetCache } : {}) }));

  app.get('/healthz', (req, res) => {
    setRoute(res, 'healthz');
    res.setHeader('Cache-Control', 'no-store');
    if (req.accepts(['text/plain', 'application/json']) === 'application/json') {
      const set = deps.boot.profiles();
      const detail = { status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000), cluster: set.cluster.name, profiles: set.profiles.size, machines: set.machines.size, profileFiles: set.files.length };
      sendBody(req, res, 200, 'application/json; charset=utf-8', JSON.stringify(detail) + '\n');
    } else {
      sendBody(req, res, 200, 'text/plain; charset=utf-8', 'ok\n');
    }
  });

  app.get('/metrics', (req, res) => {
    setRoute(res, 'metrics');
    res.setHeader('Cache-Control', 'no-store');
    sendBody(req, res, 200, 'text/plain; version=0.0.4; charset=utf-8', deps.metrics.render());
  });

  app.use(machinesRouter({ boot: deps.boot, machines: deps.machines }));
  for (const r of deps.routers ?? []) app.use(r);

  app.use(notFoundHandler);
  app.use(errorHandler(log));

  const lane = bootLane({ ...bootDeps, requests, bytesSent });
  return (req, res) => {
    if (!lane(req, res)) app(req, res);
  };
}

export interface RunningHttpServer {
  server: http.Server;
  port: number;
  /** Stops accepting, lets running responses finish for up to `graceMs`, then cuts what is left. */
  close(): Promise<void>;
}

export function startHttpServer(app: http.RequestListener, opts: { address: string; port: number; graceMs?: number }): Promise<RunningHttpServer> {
  const server = http.createServer(app);
  // Node's 5 s default starts when the last byte of a response is handed to
  // the kernel; a blade still draining megabytes of socket buffer behind a
  // 48 MiB kernel can reuse the connection for its initrd just as the server
  // closes it ("socket hang up" in the boot-storm benchmark). nginx's 65 s.
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new SwarmbootError('E_LISTEN', 500, `HTTP: cannot listen on ${opts.address}:${opts.port}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.address, () => {
      server.off('error', onError);
      const port = (server.address() as AddressInfo).port;
      let closing: Promise<void> | null = null;
      resolve({
        server,
        port,
        close: () => {
          closing ??= new Promise<void>((done) => {
            // A blade halfway through a 400 MB initrd deserves a moment; a hung client does not get forever.
            const timer = setTimeout(() => server.closeAllConnections(), opts.graceMs ?? 5000);
            timer.unref();
            server.close(() => {
              clearTimeout(timer);
              done();
            });
            server.closeIdleConnections();
          });
          return closing;
        },
      });
    });
  });
}
