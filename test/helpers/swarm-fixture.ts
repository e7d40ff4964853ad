/**
 * The swarm router in a bare express app on 127.0.0.1:<port 0>, over the
 * example profiles, with a fixed server key, an in-memory rendezvous store,
 * a fixed clock and a log the tests read back. Torn down with the test.
 * (Run alone, this file checks that it starts.)
 */
import type { Test } from 'tap';
import express from 'express';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BootService } from '../../server/boot/service.js';
import { startHttpServer } from '../../server/http/app.js';
import { createLogger } from '../../server/log.js';
import { parseMac, type Mac } from '../../server/mac.js';
import { Metrics } from '../../server/metrics.js';
import { loadProfileDir } from '../../server/profiles/load.js';
import type { ProfileSet } from '../../server/profiles/types.js';
import { packageFile } from '../../server/paths.js';
import { MachineStates } from '../../server/state/machines.js';
import { createSwarmRouter, type SwarmRouterDeps } from '../../server/swarm/api.js';
import { Rendezvous } from '../../server/swarm/rendezvous.js';
import { machineSecret } from '../../server/swarm/secret.js';
import { MemorySwarmStore } from '../../server/swarm/store.js';

export const KEY = Buffer.alloc(32, 7);
export const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);

/** The example profiles' machines. */
export const MGR1 = parseMac('52:54:00:5b:00:01') as Mac;
export const MGR2 = parseMac('52:54:00:5b:00:02') as Mac;
export const MGR3 = parseMac('52:54:00:5b:00:03') as Mac;
export const WORKER1 = parseMac('52:54:00:5b:00:11') as Mac;
export const WORKER2 = parseMac('52:54:00:5b:00:12') as Mac;
export const UNKNOWN = parseMac('52:54:00:99:99:99') as Mac;

export const secret = (mac: Mac): string => machineSecret(KEY, mac);

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export interface SwarmFixture {
  base: string;
  port: number;
  swarm: Rendezvous;
  store: MemorySwarmStore;
  machines: MachineStates;
  metrics: Metrics;
  logs: LogLine[];
  /** Raw text of every log line, for greps. */
  rawLogs: string[];
  /** Swap the profile set the server sees (a reload). */
  setProfiles(set: ProfileSet): void;
  profiles: ProfileSet;
  advance(ms: number): void;
  request(method: string, path: string, opts?: { headers?: Record<string, string>; form?: Record<string, string>; body?: string }): Promise<Reply>;
  /** A node's authenticated call, as swarm.sh makes it. */
  node(mac: Mac, method: string, path: string, form?: Record<string, string>): Promise<Reply>;
}

type TestLike = Pick<Test, 'teardown'>;

export async function startSwarmFixture(t: TestLike, extra: Partial<Pick<SwarmRouterDeps, 'adminAllowed'>> = {}): Promise<SwarmFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-swarm-api-'));
  let set = loadProfileDir(packageFile('profiles'));
  const boot = new BootService({ profiles: () => set, serverKey: KEY, serverUrlOverride: 'http://10.0.0.1:8080', swarmScript: '#!/bin/sh\n' });
  const logs: LogLine[] = [];
  const rawLogs: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: {
      write: (s: string) => {
        rawLogs.push(s);
        logs.push(JSON.parse(s) as LogLine);
      },
    },
  });
  let now = T0;
  const machines = await MachineStates.open(join(dir, 'machines'), { log, now: () => now });
  const metrics = new Metrics();
  const store = new MemorySwarmStore();
  const swarm = Rendezvous.open({ store, log, now: () => now });
  const app = express();
  app.use(createSwarmRouter({ boot, swarm, machines, metrics, log, serverKey: KEY, ...extra }));
  const running = await startHttpServer(app, { address: '127.0.0.1', port: 0, graceMs: 200 });
  t.teardown(async () => {
    await running.close();
    await machines.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const request: SwarmFixture['request'] = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const body = opts.body ?? (opts.form ? new URLSearchParams(opts.form).toString() : undefined);
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      if (body !== undefined) {
        headers['content-type'] ??= 'application/x-www-form-urlencoded';
        headers['content-length'] = String(Buffer.byteLength(body));
      }
      const req = http.request({ host: '127.0.0.1', port: running.port, path, method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${path}`)));
      req.on('error', reject);
      req.end(body);
    });

  return {
    base: `http://127.0.0.1:${running.port}`,
    port: running.port,
    swarm,
    store,
    machines,
    metrics,
    logs,
    rawLogs,
    get profiles() {
      return set;
    },
    setProfiles: (s) => void (set = s),
    advance: (ms) => void (now += ms),
    request,
    node: (mac, method, path, form) =>
      request(method, path, { headers: { authorization: `Bearer ${secret(mac)}`, 'x-swarmboot-mac': mac }, ...(form ? { form } : {}) }),
  };
}

/** `key=value` lines into an object (what swarm.sh's read loop does). */
export function lines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

