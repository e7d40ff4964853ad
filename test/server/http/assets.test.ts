import t from 'tap';
import http from 'node:http';
import { mkdirSync, writeFileSync, symlinkSync, truncateSync, readdirSync, readlinkSync, realpathSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startFixture, type Fixture } from '../../helpers/http-fixture.js';
import { requireMac } from '../../../server/mac.js';
import { assetContentType, assetEtag, assetStep } from '../../../server/http/assets.js';
import { AssetCache } from '../../../server/http/asset-cache.js';
import { silentLogger } from '../../../server/log.js';

const REL = 'flatcar/stable/current/amd64';
const KERNEL = `${REL}/flatcar_production_pxe.vmlinuz`;
const INITRD = `${REL}/flatcar_production_pxe_image.cpio.gz`;
const WORKER1 = requireMac('52:54:00:5b:00:11');

interface Files {
  kernel: Buffer;
  initrd: Buffer;
}

function populate(f: Fixture): Files {
  mkdirSync(join(f.assetsDir, REL), { recursive: true });
  const kernel = randomBytes(3 * 1024 * 1024 + 17);
  const initrd = randomBytes(256 * 1024);
  writeFileSync(join(f.assetsDir, KERNEL), kernel);
  writeFileSync(join(f.assetsDir, INITRD), initrd);
  writeFileSync(join(f.assetsDir, 'ipxe.efi'), 'efi');
  writeFileSync(join(f.assetsDir, 'empty.bin'), '');
  writeFileSync(join(f.dir, 'outside-secret.txt'), 'secret');
  symlinkSync(join(f.dir, 'outside-secret.txt'), join(f.assetsDir, 'escape.txt'));
  symlinkSync('../outside-secret.txt', join(f.assetsDir, 'escape-relative.txt'));
  symlinkSync('ipxe.efi', join(f.assetsDir, 'alias.efi'));
  return { kernel, initrd };
}

t.test('GET and HEAD: whole file, headers, strong ETag from (ino, size, mtime)', async (t) => {
  const f = await startFixture(t);
  const { kernel } = populate(f);
  const r = await f.request(`/assets/${KERNEL}`);
  t.equal(r.status, 200);
  t.ok(r.body.equals(kernel), 'same bytes');
  t.equal(r.headers['content-length'], String(kernel.length));
  t.equal(r.headers['accept-ranges'], 'bytes');
  t.equal(r.headers['content-type'], 'application/octet-stream');
  const st = statSync(join(f.assetsDir, KERNEL), { bigint: true });
  t.equal(r.headers.etag, assetEtag(st.ino, st.size, st.mtimeNs));
  t.match(r.headers.etag, /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
  t.equal(r.headers['last-modified'], new Date(Number(st.mtimeMs)).toUTCString());
  t.notOk(r.headers['x-powered-by']);

  const head = await f.request(`/assets/${KERNEL}`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
  t.equal(head.headers['content-length'], String(kernel.length));
  t.equal(head.headers.etag, r.headers.etag);
  const headRange = await f.request(`/assets/${KERNEL}`, { method: 'HEAD', headers: { range: 'bytes=0-9' } });
  t.equal(headRange.status, 200, 'Range is defined for GET only: HEAD describes the whole file');

  const alias = await f.request('/assets/alias.efi');
  t.equal(alias.text, 'efi', 'a symlink inside the root is followed');
  const empty = await f.request('/assets/empty.bin');
  t.equal(empty.status, 200);
  t.equal(empty.headers['content-length'], '0');
});

t.test('Range requests per RFC 9110', async (t) => {
  const f = await startFixture(t);
  const { kernel } = populate(f);
  const size = kernel.length;
  const url = `/assets/${KERNEL}`;
  const partial = async (range: string, start: number, end: number) => {
    const r = await f.request(url, { headers: { range } });
    t.equal(r.status, 206, range);
    t.equal(r.headers['content-range'], `bytes ${start}-${end}/${size}`, `${range} content-range`);
    t.equal(r.headers['content-length'], String(end - start + 1), `${range} content-length`);
    t.ok(r.body.equals(kernel.subarray(start, end + 1)), `${range} bytes`);
  };
  await partial('bytes=0-499', 0, 499);
  await partial('bytes=-500', size - 500, size - 1);
  await partial('bytes=100-', 100, size - 1);
  await partial(`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1);

  const bad = await f.request(url, { headers: { range: `bytes=${size}-` } });
  t.equal(bad.status, 416);
  t.equal(bad.headers['content-range'], `bytes */${size}`);
  t.match(bad.text, /^E_RANGE: range not satisfiable/);
  t.equal(bad.text.trim().split('\n').length, 1);
  t.notOk(bad.headers.etag, 'error responses carry no validators of the file');

  const multi = await f.request(url, { headers: { range: 'bytes=0-1,10-11' } });
  t.equal(multi.status, 200, 'multi-range: the whole file');
  t.equal(multi.body.length, size);

  const etag = String((await f.request(url, { method: 'HEAD' })).headers.etag);
  const stale = await f.request(url, { headers: { range: 'bytes=0-9', 'if-range': '"stale"' } });
  t.equal(stale.status, 200, 'If-Range with a stale ETag: whole file');
  t.ok(stale.body.equals(kernel));
  const fresh = await f.request(url, { headers: { range: 'bytes=0-9', 'if-range': etag } });
  t.equal(fresh.status, 206, 'If-Range with the current ETag: the range');
  const lm = String(fresh.headers['last-modified']);
  const byDate = await f.request(url, { headers: { range: 'bytes=0-9', 'if-range': lm } });
  t.equal(byDate.status, 206, 'If-Range with the current Last-Modified');
  const oldDate = await f.request(url, { headers: { range: 'bytes=0-9', 'if-range': new Date(Date.parse(lm) - 60_000).toUTCString() } });
  t.equal(oldDate.status, 200);
});

t.test('conditional GET: 304 by ETag and by date, 412 on If-Match', async (t) => {
  const f = await startFixture(t);
  populate(f);
  const url = `/assets/${KERNEL}`;
  const first = await f.request(url, { method: 'HEAD' });
  const etag = String(first.headers.etag);
  const nm = await f.request(url, { headers: { 'if-none-match': `"x", ${etag}` } });
  t.equal(nm.status, 304);
  t.equal(nm.body.length, 0);
  t.equal(nm.headers.etag, etag);
  const ims = await f.request(url, { headers: { 'if-modified-since': String(first.headers['last-modified']) } });
  t.equal(ims.status, 304);
  const changed = await f.request(url, { headers: { 'if-none-match': '"old"' } });
  t.equal(changed.status, 200);
  const im = await f.request(url, { headers: { 'if-match': '"old"' } });
  t.equal(im.status, 412);
  t.match(im.text, /^E_PRECONDITION: /);

  // Replacing the file (new inode, as a rename does) changes the ETag.
  writeFileSync(join(f.assetsDir, `${KERNEL}.new`), 'new kernel');
  spawnSync('mv', [join(f.assetsDir, `${KERNEL}.new`), join(f.assetsDir, KERNEL)]);
  const after = await f.request(url, { headers: { 'if-none-match': etag } });
  t.equal(after.status, 200);
  t.equal(after.text, 'new kernel');
  t.not(after.headers.etag, etag);
});

t.test('path safety: traversal, encodings, NUL, symlinks out, directories, non-files', async (t) => {
  const f = await startFixture(t);
  populate(f);
  spawnSync('mkfifo', [join(f.assetsDir, 'fifo')]);
  const cases: [string, number, RegExp][] = [
    ['/assets/../package.json', 400, /"\.\." segment/],
    ['/assets/%2e%2e/package.json', 400, /"\.\." segment/],
    ['/assets/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd', 400, /"\.\." segment/],
    ['/assets/..%2f..%2fpackage.json', 400, /encoded slash/],
    ['/assets/flatcar%2fstable', 400, /encoded slash/],
    ['/assets/..%5c..%5cpackage.json', 400, /backslash/],
    ['/assets/ipxe.efi%00.txt', 400, /NUL/],
    ['/assets/%ff', 400, /percent-encoding/],
    ['/assets/escape.txt', 403, /outside the assets directory/],
    ['/assets/escape-relative.txt', 403, /outside the assets directory/],
    ['/assets/flatcar', 404, /is a directory/],
    ['/assets/flatcar/', 404, /directory/],
    ['/assets/', 404, /assets directory itself/],
    ['/assets', 404, /assets directory itself/],
    ['/assets/fifo', 404, /no such asset/],
    ['/assets/missing.bin', 404, /no such asset: missing.bin/],
    ['/assets/.hidden', 404, /hidden/],
  ];
  for (const [path, status, reason] of cases) {
    const r = await f.request(path);
    t.equal(r.status, status, path);
    t.match(r.text, reason, `${path}: ${r.text.trim()}`);
    t.notMatch(r.text, /secret|"name": "swarmboot"/, `${path} leaks nothing`);
    t.equal(r.text.trim().split('\n').length, 1, `${path}: one line`);
  }
  const post = await f.request(`/assets/${KERNEL}`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.allow, 'GET, HEAD');
});

t.test('assets directory missing: 404 saying so', async (t) => {
  const f = await startFixture(t);
  spawnSync('rmdir', [f.assetsDir]);
  const r = await f.request('/assets/ipxe.efi');
  t.equal(r.status, 404);
  t.match(r.text, /assets directory is missing/);
});

t.test('kernel and initrd fetches go on the boot trail of the MAC holding the IP', async (t) => {
  const f = await startFixture(t, { macOfIp: (ip) => (ip === '127.0.0.1' ? WORKER1 : null) });
  populate(f);
  await f.request(`/assets/${KERNEL}`);
  await f.request(`/assets/${INITRD}`);
  await f.request(`/assets/${INITRD}`, { headers: { range: 'bytes=100-' } });
  await f.request('/assets/ipxe.efi');
  await f.request(`/assets/${KERNEL}`, { method: 'HEAD' });
  const trail = f.machines.get(WORKER1)?.trail ?? [];
  t.same(
    trail.map((e) => [e.step, e.detail, e.ip]),
    [
      ['kernel', KERNEL, '127.0.0.1'],
      ['initrd', INITRD, '127.0.0.1'],
    ],
    'resumed ranges, HEAD and non-boot files add no step',
  );
  t.equal(assetStep('x/flatcar_production_pxe.vmlinuz'), 'kernel');
  t.equal(assetStep('oem.cpio.gz'), 'initrd');
  t.equal(assetStep('ipxe.efi'), null);
  t.equal(assetContentType('a/version.txt'), 'text/plain; charset=utf-8');
  t.equal(assetContentType('a/x.cpio.gz'), 'application/octet-stream');
  const served = f.logs.filter((l) => l.msg === 'asset served');
  t.equal(served.length, 4, 'one log line per transfer');
  t.match(served[0], { mac: WORKER1, path: KERNEL, status: 200, ip: '127.0.0.1' });
});

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Descriptors of this process open on `path` (the precise leak check; the count is the coarse one). */
function fdsOn(path: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed while we looked
    }
  }
  return n;
}

t.test('a client aborting mid-download does not leak the file descriptor', async (t) => {
  const f = await startFixture(t);
  const big = join(realpathSync(f.assetsDir), 'big.bin');
  writeFileSync(big, '');
  truncateSync(big, 64 * 1024 * 1024);
  // Warm up the server (lazy root realpath, keep-alive state) so the baseline is steady.
  await f.request('/assets/big.bin', { headers: { range: 'bytes=0-0' } });
  const baseline = fdCount();
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: f.port, path: '/assets/big.bin', agent: false }, (res) => {
        t.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
    });
  }
  const deadline = Date.now() + 5000;
  const aborted = () => f.logs.filter((l) => l.msg === 'asset download aborted by the client').length;
  while ((fdCount() > baseline || fdsOn(big) > 0 || aborted() < 5) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(fdsOn(big), 0, 'no descriptor left open on the file');
  t.ok(fdCount() <= baseline, `descriptor count back to baseline (${fdCount()} <= ${baseline})`);
  t.equal(aborted(), 5, 'each abort logged');
});

t.test('asset cache: a repeated file comes from memory, byte-exact, ranges too; a replaced file is never served stale', async (t) => {
  const cache = new AssetCache({ budgetBytes: 64 * 1024 * 1024, log: silentLogger() });
  const f = await startFixture(t, { assetCache: cache });
  const { kernel } = populate(f);
  const first = await f.request(`/assets/${KERNEL}`);
  t.ok(first.body.equals(kernel), 'first: from disk');
  for (let i = 0; i < 100 && cache.stats().bytes === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(cache.stats().bytes, kernel.length, 'loaded in the background');
  const second = await f.request(`/assets/${KERNEL}`);
  t.ok(second.body.equals(kernel), 'second: same bytes');
  t.equal(second.headers.etag, first.headers.etag);
  const part = await f.request(`/assets/${KERNEL}`, { headers: { range: 'bytes=1000000-2000000' } });
  t.equal(part.status, 206);
  t.ok(part.body.equals(kernel.subarray(1_000_000, 2_000_001)), 'a range from memory');
  t.equal(cache.stats().hits, 2);
  t.match(f.logs.filter((l) => l.msg === 'asset served').map((l) => l['from']), ['disk', 'memory', 'memory']);

  // The asset fetcher replaces files by rename: a new inode, so a new ETag and a new cache key.
  const fresh = randomBytes(kernel.length);
  writeFileSync(join(f.assetsDir, `${KERNEL}.new`), fresh);
  renameSync(join(f.assetsDir, `${KERNEL}.new`), join(f.assetsDir, KERNEL));
  const after = await f.request(`/assets/${KERNEL}`);
  t.ok(after.body.equals(fresh), 'the new file, not the cached old one');
  t.not(after.headers.etag, first.headers.etag);
});
