import t from 'tap';
import http from 'node:http';
import { open, type FileHandle } from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { BufferPool, TurnBudget, pumpBuffer, pumpFile, type PumpResult } from '../../../server/http/pump.js';

const dir = mkdtempSync(join(tmpdir(), 'swarmboot-pump-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

interface Served {
  port: number;
  results: Promise<{ result: PumpResult; fh: FileHandle }>[];
}

/** A bare http server that pumps bytes start..end of `file` with `pool` to every request. */
async function serve(t: Pick<typeof import('tap').default, 'teardown'>, file: string, start: number, end: number, pool: BufferPool): Promise<Served> {
  const results: Served['results'] = [];
  const server = http.createServer((_req, res) => {
    results.push(
      (async () => {
        const fh = await open(file, 'r');
        res.setHeader('Content-Length', end - start + 1);
        return { result: await pumpFile(fh, start, end, res, pool), fh };
      })(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { port: (server.address() as AddressInfo).port, results };
}

function fetchAll(port: number): Promise<{ body: Buffer; error: string | null }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ body: Buffer.concat(chunks), error: null }));
      res.on('error', (e) => resolve({ body: Buffer.concat(chunks), error: e.message }));
    });
    req.on('error', (e) => resolve({ body: Buffer.concat(chunks), error: e.message }));
  });
}

/** Reads the first chunk of the response, then drops the connection, as a client that gives up does. */
function hangUpAfterFirstChunk(port: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => undefined);
  });
}

t.test('copies exactly the range, across many small chunks, and returns its buffers', async (t) => {
  const data = randomBytes(1000);
  const file = join(dir, 'data.bin');
  writeFileSync(file, data);
  const pool = new BufferPool(7, 4);
  for (const [start, end] of [
    [0, 999],
    [3, 3],
    [13, 500],
    [993, 999],
  ] as const) {
    const s = await serve(t, file, start, end, pool);
    const got = await fetchAll(s.port);
    t.equal(got.error, null);
    t.ok(got.body.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
    const { result, fh } = await (s.results[0] as Served['results'][number]);
    t.same(result, { ok: true, bytes: end - start + 1, aborted: false });
    t.equal(fh.fd, -1, 'file handle closed');
  }
  t.equal(pool.idle, 2, 'both buffers back in the pool, and reused (never more than two)');
});

t.test('a file that shrank: connection cut, error reported, handle closed', async (t) => {
  const file = join(dir, 'short.bin');
  writeFileSync(file, randomBytes(100));
  const s = await serve(t, file, 0, 199, new BufferPool(64, 4));
  const got = await fetchAll(s.port);
  t.ok(got.error !== null || got.body.length < 200, 'the client sees a cut, not a complete body');
  const { result, fh } = await (s.results[0] as Served['results'][number]);
  t.equal(result.ok, false);
  t.equal(result.aborted, false);
  t.match(result.err?.message, /file shrank while being served \(ended at byte 100, expected 200\)/);
  t.equal(fh.fd, -1);
});

t.test('a client going away mid-transfer: reported as aborted, handle closed', async (t) => {
  const file = join(dir, 'big.bin');
  writeFileSync(file, '');
  truncateSync(file, 64 * 1024 * 1024);
  const pool = new BufferPool(1024 * 1024, 4);
  const s = await serve(t, file, 0, 64 * 1024 * 1024 - 1, pool);
  await hangUpAfterFirstChunk(s.port);
  const { result, fh } = await (s.results[0] as Served['results'][number]);
  t.equal(result.ok, false);
  t.equal(result.aborted, true);
  t.ok(result.bytes < 64 * 1024 * 1024);
  t.equal(fh.fd, -1);
  t.ok(pool.idle <= 2);
});

/** A bare http server that sends bytes start..end of `buf` with pumpBuffer. */
async function serveBuffer(t: Pick<typeof import('tap').default, 'teardown'>, buf: Buffer, start: number, end: number, chunk: number): Promise<{ port: number; results: Promise<PumpResult>[] }> {
  const results: Promise<PumpResult>[] = [];
  const server = http.createServer((_req, res) => {
    res.setHeader('Content-Length', end - start + 1);
    results.push(pumpBuffer(buf, start, end, res, chunk));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { port: (server.address() as AddressInfo).port, results };
}

t.test('pumpBuffer: exactly the range, in slices; a client going away is reported as aborted', async (t) => {
  const data = randomBytes(1000);
  for (const [start, end] of [
    [0, 999],
    [3, 3],
    [13, 500],
  ] as const) {
    const s = await serveBuffer(t, data, start, end, 7);
    const got = await fetchAll(s.port);
    t.ok(got.body.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
    t.same(await s.results[0], { ok: true, bytes: end - start + 1, aborted: false });
  }
  const big = Buffer.alloc(64 * 1024 * 1024);
  const s = await serveBuffer(t, big, 0, big.length - 1, 1024 * 1024);
  await hangUpAfterFirstChunk(s.port);
  const result = await (s.results[0] as Promise<PumpResult>);
  t.equal(result.ok, false);
  t.equal(result.aborted, true);
  t.ok(result.bytes < big.length);
});

t.test('TurnBudget: a turn hands out its bytes in order, the rest wait for the next turns', async (t) => {
  const budget = new TurnBudget(10);
  t.equal(budget.take(6), null, 'fits');
  t.equal(budget.take(4), null, 'fits exactly');
  const order: string[] = [];
  const a = budget.take(5);
  const b = budget.take(1);
  t.not(a, null, 'over the budget: waits');
  t.not(b, null, 'queued behind a, though 1 byte would fit: first come first served');
  void a?.then(() => order.push('a'));
  void b?.then(() => order.push('b'));
  const big = budget.take(50);
  void big?.then(() => order.push('big'));
  await new Promise((r) => setImmediate(r));
  t.same(order, ['a', 'b'], 'next turn: a and b (6 bytes) granted, big does not fit after them');
  await new Promise((r) => setImmediate(r));
  t.same(order, ['a', 'b', 'big'], 'the turn after: a chunk larger than the budget goes alone');
});

t.test('pumps sharing a budget all finish, byte-exact', async (t) => {
  const data = randomBytes(200_000);
  const budget = new TurnBudget(20_000);
  const results: Promise<PumpResult>[] = [];
  const server = http.createServer((_req, res) => {
    res.setHeader('Content-Length', data.length);
    results.push(pumpBuffer(data, 0, data.length - 1, res, 8192, undefined, budget));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const port = (server.address() as AddressInfo).port;
  const got = await Promise.all([...Array(5).keys()].map(() => fetchAll(port)));
  for (const g of got) t.ok(g.body.equals(data));
  for (const r of await Promise.all(results)) t.same(r, { ok: true, bytes: data.length, aborted: false });
});
