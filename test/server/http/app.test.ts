import t from 'tap';
import http from 'node:http';
import express from 'express';
import { writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { startFixture, request } from '../../helpers/http-fixture.js';
import { createHttpApp, startHttpServer } from '../../../server/http/app.js';
import { silentLogger } from '../../../server/log.js';
import { oneLine } from '../../../server/http/errors.js';
import { ConfigError, SwarmbootError } from '../../../server/errors.js';

t.test('/healthz: ok, or JSON detail when asked', async (t) => {
  const f = await startFixture(t);
  const r = await f.request('/healthz');
  t.equal(r.status, 200);
  t.equal(r.text, 'ok\n');
  t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  t.notOk(r.headers['x-powered-by']);
  const j = await f.request('/healthz', { headers: { accept: 'application/json' } });
  t.match(JSON.parse(j.text), { status: 'ok', cluster: 'rack1', profiles: 3, machines: 7, uptimeSeconds: Number });
});

t.test('/metrics: exposition with the HTTP counters', async (t) => {
  const f = await startFixture(t);
  const first = await f.request('/metrics');
  t.equal(first.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.match(first.text, /^# TYPE swarmboot_http_requests_total counter$/m);
  t.match(first.text, /^# TYPE swarmboot_http_bytes_sent_total counter$/m);
  t.match(first.text, /^swarmboot_http_secret_refusals_total 0$/m);
  writeFileSync(join(f.assetsDir, 'ipxe.efi'), Buffer.alloc(1000));
  const ipxe = await f.request('/ipxe?mac=52:54:00:5b:00:11');
  await f.request('/assets/ipxe.efi');
  await f.request('/assets/ipxe.efi', { headers: { range: 'bytes=0-99' } });
  await f.request('/nowhere');
  const m = (await f.request('/metrics')).text;
  t.match(m, /^swarmboot_http_requests_total\{route="ipxe",status="200"\} 1$/m);
  t.match(m, /^swarmboot_http_requests_total\{route="assets",status="200"\} 1$/m);
  t.match(m, /^swarmboot_http_requests_total\{route="assets",status="206"\} 1$/m);
  t.match(m, /^swarmboot_http_requests_total\{route="unmatched",status="404"\} 1$/m);
  t.match(m, /^swarmboot_http_requests_total\{route="metrics",status="200"\} 1$/m);
  t.match(m, /^swarmboot_http_bytes_sent_total\{route="assets"\} 1100$/m);
  t.match(m, new RegExp(`^swarmboot_http_bytes_sent_total\\{route="ipxe"\\} ${ipxe.body.length}$`, 'm'));
});

t.test('errors: one handler, one line, codes; unknown routes 404; bugs are 500 with a logged stack', async (t) => {
  const extra = express.Router();
  extra.get('/api/swarm/boom', () => {
    throw new Error('secret internals');
  });
  extra.get('/api/swarm/busy', () => {
    throw new SwarmbootError('E_BUSY', 503, 'try again');
  });
  extra.get('/api/swarm/config', () => {
    throw new ConfigError([
      { file: 'a.yaml', line: 1, col: 2, pointer: '/x', message: 'bad' },
      { file: 'b.yaml', line: 3, col: 4, pointer: '', message: 'worse' },
    ]);
  });
  extra.get('/api/swarm/async', async () => {
    await new Promise((r) => setTimeout(r, 1));
    throw new SwarmbootError('E_ASYNC', 409, 'async refusal');
  });
  extra.get('/api/swarm/ok', (_req, res) => void res.type('text/plain').send('extra router'));
  const f = await startFixture(t, { routers: [extra] });

  t.equal((await f.request('/api/swarm/ok')).text, 'extra router', 'extra routers are mounted before the 404');
  const cases: [string, number, string][] = [
    ['/nowhere', 404, 'E_NOT_FOUND: no route for GET /nowhere\n'],
    ['/api/swarm/boom', 500, 'internal error\n'],
    ['/api/swarm/busy', 503, 'E_BUSY: try again\n'],
    ['/api/swarm/async', 409, 'E_ASYNC: async refusal\n'],
    ['/api/swarm/config', 500, 'E_CONFIG: a.yaml:1:2: bad (at /x) (and 1 more line(s); see the server log)\n'],
  ];
  for (const [path, status, body] of cases) {
    const r = await f.request(path);
    t.equal(r.status, status, path);
    t.equal(r.text, body, path);
    t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  }
  const decode = await f.request('/api/machines/%E0%A4%A');
  t.equal(decode.status, 400, 'express decoding errors keep their 4xx');
  t.match(decode.text, /^E_HTTP: /);
  const bug = f.logs.find((l) => l.msg === 'internal error');
  t.ok(bug, 'the bug is logged');
  t.match((bug?.err as { stack?: string } | undefined)?.stack, /secret internals/, 'with its stack');
  t.equal(f.logs.filter((l) => l.level >= 50).length, 3, 'the 5xx are logged at error level, the 4xx are not');
});

t.test('oneLine collapses multi-line messages', async (t) => {
  t.equal(oneLine('one'), 'one');
  t.equal(oneLine('a\nb\nc\n'), 'a (and 2 more line(s); see the server log)');
  t.equal(oneLine(''), '');
});

t.test('startHttpServer: port 0, clear listen error, close cuts a stalled download after the grace time', async (t) => {
  const f = await startFixture(t);
  const busy = await startHttpServer((_req, res) => res.end('x'), { address: '127.0.0.1', port: f.port }).catch((e: unknown) => e);
  t.match(busy, { code: 'E_LISTEN', message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${f.port}: EADDRINUSE`) });

  const big = join(f.assetsDir, 'big.bin');
  writeFileSync(big, '');
  truncateSync(big, 64 * 1024 * 1024);
  const srv = await startHttpServer(createHttpApp({ boot: f.boot, machines: f.machines, metrics: f.metrics, log: silentLogger(), assetsDir: f.assetsDir }), {
    address: '127.0.0.1',
    port: 0,
    graceMs: 300,
  });
  t.ok(srv.port > 0);
  // A client that reads one chunk and then stops reading: the server is stuck on backpressure.
  let client: http.ClientRequest | null = null;
  const started = new Promise<void>((resolve) => {
    client = http.get({ host: '127.0.0.1', port: srv.port, path: '/assets/big.bin', agent: false }, (res) => {
      res.once('data', () => {
        res.pause();
        resolve();
      });
    });
    client.on('error', () => undefined);
  });
  await started;
  const began = Date.now();
  await srv.close();
  t.ok(Date.now() - began < 3000, `close did not wait for the stalled client (${Date.now() - began} ms)`);
  (client as http.ClientRequest | null)?.destroy();
  await t.rejects(request(srv.port, '/healthz'), 'no longer listening');
});
