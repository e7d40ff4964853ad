/**
 * A running HTTP front end on 127.0.0.1:<port 0> for the http tests: the
 * example profiles, the CLI's own BootService (same key, so bodies can be
 * compared with `swarmboot render`), a fixed clock for the boot trail, a
 * temporary assets dir, and a log that the tests can read back.
 * Everything is torn down with the test. (Run alone, this file checks that.)
 */
import type { Test } from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBootService } from '../../server/cli/common.js';
import { packageFile } from '../../server/paths.js';
import { MachineStates } from '../../server/state/machines.js';
import { Metrics } from '../../server/metrics.js';
import { createLogger } from '../../server/log.js';
import { createHttpApp, startHttpServer, type HttpDeps } from '../../server/http/app.js';
import type { BootService } from '../../server/boot/service.js';

export const SERVER_URL = 'http://10.0.0.1:8080';
/** Fixed clock: 2024-05-01T12:00:00.000Z, one second per reading. */
export const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);

type TestLike = Pick<Test, 'teardown'>;

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface Fixture {
  port: number;
  base: string;
  dir: string;
  stateDir: string;
  assetsDir: string;
  boot: BootService;
  machines: MachineStates;
  metrics: Metrics;
  logs: LogLine[];
  request(path: string, opts?: { method?: string; headers?: Record<string, string> }): Promise<Reply>;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

export async function startFixture(t: TestLike, extra: Partial<Pick<HttpDeps, 'secretGate' | 'macOfIp' | 'routers' | 'assetCache'>> = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-http-'));
  const stateDir = join(dir, 'state');
  const assetsDir = join(dir, 'assets');
  mkdirSync(assetsDir, { recursive: true });
  const { boot } = openBootService({ profiles: packageFile('profiles'), state: stateDir, 'server-url': SERVER_URL });
  const logs: LogLine[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) } });
  let tick = 0;
  const machines = await MachineStates.open(join(stateDir, 'machines'), { log, now: () => T0 + 1000 * tick++ });
  const metrics = new Metrics();
  const app = createHttpApp({ boot, machines, metrics, log, assetsDir, ...extra });
  const running = await startHttpServer(app, { address: '127.0.0.1', port: 0, graceMs: 200 });
  t.teardown(async () => {
    await running.close();
    await machines.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const port = running.port;
  return { port, base: `http://127.0.0.1:${port}`, dir, stateDir, assetsDir, boot, machines, metrics, logs, request: (path, opts) => request(port, path, opts) };
}

/** http.request, not fetch: fetch's URL parser would normalise away the `..` and `%2e%2e` the tests must send. */
export function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${path}`)));
    req.on('error', reject);
    req.end();
  });
}

