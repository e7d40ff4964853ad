/**
 * The asset cache: never makes a request wait, never serves a stale file,
 * stays within its budget, gives memory back when idle.
 */
import t from 'tap';
import { AssetCache, type CacheSource } from '../../../server/http/asset-cache.js';
import { silentLogger } from '../../../server/log.js';

/** A source whose read the test completes by hand. */
function manual(bytes: Buffer, etag: string): CacheSource & { reads: number; finish(over?: { etag?: string; fail?: boolean }): Promise<void> } {
  let release: (over: { etag?: string; fail?: boolean }) => void = () => undefined;
  const src = {
    reads: 0,
    read: () => {
      src.reads++;
      return new Promise<{ bytes: Buffer; etag: string }>((resolve, reject) => {
        release = (over) => (over.fail ? reject(new Error('EIO')) : resolve({ bytes, etag: over.etag ?? etag }));
      });
    },
    finish: async (over: { etag?: string; fail?: boolean } = {}) => {
      release(over);
      await new Promise((r) => setImmediate(r));
    },
  };
  return src;
}

t.test('first request streams from disk and starts one load; later ones get memory', async (t) => {
  const cache = new AssetCache({ budgetBytes: 1000, log: silentLogger() });
  const bytes = Buffer.alloc(100, 1);
  const src = manual(bytes, '"a"');
  t.equal(cache.lookup('"a"', 100, src), null, 'miss: served from disk');
  t.equal(cache.lookup('"a"', 100, src), null, 'still loading: from disk, no second load');
  t.equal(src.reads, 1);
  await src.finish();
  t.equal(cache.lookup('"a"', 100, src), bytes, 'hit');
  t.match(cache.stats(), { entries: 1, bytes: 100, hits: 1, misses: 2, loads: 1, loadFailures: 0 });
});

t.test('a file that changed while loading, or failed to load, is not kept', async (t) => {
  const cache = new AssetCache({ budgetBytes: 1000, log: silentLogger() });
  const changed = manual(Buffer.alloc(100), '"a"');
  cache.lookup('"a"', 100, changed);
  await changed.finish({ etag: '"b"' });
  const failing = manual(Buffer.alloc(100), '"c"');
  cache.lookup('"c"', 100, failing);
  await failing.finish({ fail: true });
  t.match(cache.stats(), { entries: 0, bytes: 0, loadFailures: 2 });
  const again = manual(Buffer.alloc(100, 7), '"a"');
  t.equal(cache.lookup('"a"', 100, again), null, 'tried again on the next request');
  await again.finish();
  t.equal(cache.lookup('"a"', 100, again)?.[0], 7);
});

t.test('budget: least recently used out first; files over half the budget never cached; 0 = off', async (t) => {
  const cache = new AssetCache({ budgetBytes: 300, log: silentLogger() });
  const load = async (etag: string) => {
    const src = manual(Buffer.alloc(100), etag);
    cache.lookup(etag, 100, src);
    await src.finish();
  };
  await load('"1"');
  await load('"2"');
  await load('"3"');
  t.ok(cache.lookup('"1"', 100, manual(Buffer.alloc(0), '"1"')), '1 used again: now the youngest');
  await load('"4"');
  t.equal(cache.stats().evictions, 1);
  t.ok(cache.lookup('"1"', 100, manual(Buffer.alloc(0), '"1"')), '1 kept');
  t.equal(cache.lookup('"2"', 100, manual(Buffer.alloc(100), '"2"')), null, '2, the least recently used, went');
  const big = manual(Buffer.alloc(151), '"big"');
  t.equal(cache.lookup('"big"', 151, big), null);
  t.equal(big.reads, 0, 'over half the budget: not even loaded');
  const off = new AssetCache({ budgetBytes: 0, log: silentLogger() });
  const src = manual(Buffer.alloc(1), '"x"');
  t.equal(off.lookup('"x"', 1, src), null);
  t.equal(src.reads, 0);
  t.notOk(off.enabled);
});

t.test('idle entries are swept; clear() drops everything', async (t) => {
  let now = 0;
  const cache = new AssetCache({ budgetBytes: 1000, idleMs: 60_000, log: silentLogger(), now: () => now });
  const a = manual(Buffer.alloc(10), '"a"');
  cache.lookup('"a"', 10, a);
  await a.finish();
  now = 30_000;
  cache.sweep();
  t.equal(cache.stats().entries, 1, 'not idle long enough');
  now = 61_000;
  cache.sweep();
  t.equal(cache.stats().entries, 0, 'idle past idleMs: dropped');
  const b = manual(Buffer.alloc(10), '"b"');
  cache.lookup('"b"', 10, b);
  cache.clear();
  await b.finish();
  t.equal(cache.stats().entries, 0, 'a load finishing after clear() keeps nothing');
});
