/**
 * fetchFlatcar against the fake release server on 127.0.0.1: the good path,
 * idempotence (0 payload bytes the second time), resume after a cut, and
 * each way a release can be wrong, each with its own error code and with
 * the previously installed release left exactly as it was.
 */
import t from 'tap';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, readlinkSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fetchFlatcar, type FetchEvent, type FetchOptions } from '../../../server/assets/fetch.js';
import { AssetError } from '../../../server/assets/errors.js';
import { MANIFEST, partName, readManifest } from '../../../server/assets/store.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL } from '../../../server/boot/layout.js';
import { generateTestKey, signDetached, digestsFor, startReleaseServer, type ReleaseServer, type TestKey } from '../../helpers/release-server.js';

type Test = Pick<typeof t, 'teardown' | 'fail' | 'type' | 'equal' | 'match'>;

const KERNEL_SIZE = 150_000;
const INITRD_SIZE = 600_000;

interface Env {
  srv: ReleaseServer;
  key: TestKey;
  assets: string;
  keyFile: string;
  payload: Record<string, Buffer>;
  opts(extra?: Partial<FetchOptions>): FetchOptions;
}

async function setup(t: Test, version = '3975.2.0'): Promise<Env> {
  const srv = await startReleaseServer(t);
  const key = await generateTestKey();
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-fetch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const assets = join(dir, 'assets');
  const keyFile = join(dir, 'key.asc');
  writeFileSync(keyFile, key.armored);
  srv.set('/key.asc', key.armored);
  const payload = { [FLATCAR_KERNEL]: randomBytes(KERNEL_SIZE), [FLATCAR_INITRD]: randomBytes(INITRD_SIZE) };
  await srv.publish({ channel: 'stable', arch: 'amd64', version, files: payload, key, current: true });
  return {
    srv,
    key,
    assets,
    keyFile,
    payload,
    opts: (extra = {}) => ({ assetsDir: assets, channel: 'stable', arch: 'amd64', version: 'current', baseUrl: srv.baseUrl, signingKey: keyFile, fingerprint: key.fingerprint, idleTimeoutMs: 5000, ...extra }),
  };
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, msg: RegExp): Promise<AssetError | null> {
  try {
    await p;
    t.fail(`expected ${code}, but it succeeded`);
    return null;
  } catch (err) {
    t.type(err, AssetError);
    t.equal((err as AssetError).code, code, `error code ${code}`);
    t.match((err as Error).message, msg);
    return err as AssetError;
  }
}

/** Every file under the dir with its bytes' hash and inode: "untouched" means equal snapshots. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) out[p.slice(dir.length)] = `-> ${readlinkSync(p)}`;
      else if (e.isDirectory()) walk(p);
      else out[p.slice(dir.length)] = `${statSync(p).ino}:${readFileSync(p).toString('base64').slice(0, 40)}:${statSync(p).size}`;
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** Only the installed files and links: hidden .part files may legitimately come and go. */
function installed(dir: string): Record<string, string> {
  return Object.fromEntries(Object.entries(snapshot(dir)).filter(([k]) => !k.split('/').pop()?.endsWith('.part') && !k.includes('.lock')));
}

t.test('fetch current: resolves the version, verifies, installs, links; a rerun moves 0 payload bytes', async (t) => {
  const env = await setup(t);
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ onEvent: (e) => events.push(e), now: () => new Date('2024-05-01T12:00:00Z') }));
  t.equal(r.version, '3975.2.0');
  t.equal(r.transferred, KERNEL_SIZE + INITRD_SIZE);
  t.equal(r.currentUpdated, true);
  const dir = join(env.assets, 'flatcar/stable/3975.2.0/amd64');
  t.same(readFileSync(join(dir, FLATCAR_KERNEL)), env.payload[FLATCAR_KERNEL]);
  t.same(readFileSync(join(dir, FLATCAR_INITRD)), env.payload[FLATCAR_INITRD]);
  t.ok(existsSync(join(dir, `${FLATCAR_KERNEL}.sig`)) && existsSync(join(dir, `${FLATCAR_INITRD}.DIGESTS`)), 'signatures and digests kept beside');
  t.equal(readlinkSync(join(env.assets, 'flatcar/stable/current/amd64')), '../3975.2.0/amd64');
  t.same(readFileSync(join(env.assets, 'flatcar/stable/current/amd64', FLATCAR_KERNEL)), env.payload[FLATCAR_KERNEL], 'the link resolves');
  const m = readManifest(dir);
  t.equal(m?.keyFingerprint, env.key.fingerprint);
  t.equal(m?.verifiedAt, '2024-05-01T12:00:00.000Z');
  t.equal(m?.files[FLATCAR_INITRD]?.size, INITRD_SIZE);
  t.equal(m?.files[FLATCAR_KERNEL]?.signer, env.key.keyId, 'signer recorded');
  t.same(readdirSync(dir).filter((n) => n.startsWith('.')), [MANIFEST], 'no part or lock left behind');
  t.ok(events.some((e) => e.kind === 'verified' && e.file === FLATCAR_INITRD));

  const before = env.srv.payloadBytes;
  const asked = env.srv.requests.length;
  const again = await fetchFlatcar(env.opts());
  t.equal(again.transferred, 0);
  t.equal(again.alreadyVerified, true);
  t.equal(env.srv.payloadBytes, before, 'the server sent no payload byte the second time');
  t.same(env.srv.requests.slice(asked), ['GET /stable/amd64-usr/current/version.txt'], 'only version.txt was asked for (no key, no signatures)');
});

t.test('a pinned version is fetched without touching the current link', async (t) => {
  const env = await setup(t);
  await env.srv.publish({ channel: 'stable', arch: 'amd64', version: '3940.0.0', files: env.payload, key: env.key });
  await fetchFlatcar(env.opts());
  const r = await fetchFlatcar(env.opts({ version: '3940.0.0' }));
  t.equal(r.version, '3940.0.0');
  t.equal(r.currentUpdated, false);
  t.equal(readlinkSync(join(env.assets, 'flatcar/stable/current/amd64')), '../3975.2.0/amd64');
  t.ok(existsSync(join(env.assets, 'flatcar/stable/3940.0.0/amd64', MANIFEST)));
});

t.test('a newer current swings the link; the old release stays', async (t) => {
  const env = await setup(t);
  await fetchFlatcar(env.opts());
  await env.srv.publish({ channel: 'stable', arch: 'amd64', version: '4081.2.0', files: env.payload, key: env.key, current: true });
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ onEvent: (e) => events.push(e) }));
  t.equal(r.version, '4081.2.0');
  t.equal(readlinkSync(join(env.assets, 'flatcar/stable/current/amd64')), '../4081.2.0/amd64');
  t.ok(existsSync(join(env.assets, 'flatcar/stable/3975.2.0/amd64', FLATCAR_KERNEL)));
  t.same(events.find((e) => e.kind === 'current'), { kind: 'current', link: 'flatcar/stable/current/amd64', version: '4081.2.0', previous: '3975.2.0' });
});

t.test('armored signatures and a key fetched by URL, pinned by key id', async (t) => {
  const env = await setup(t);
  await env.srv.publish({ channel: 'beta', arch: 'arm64', version: '4000.1.0', files: env.payload, key: env.key, current: true, armoredSig: true });
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ channel: 'beta', arch: 'arm64', signingKey: env.srv.keyUrl, fingerprint: env.key.keyId, onEvent: (e) => events.push(e) }));
  t.equal(r.version, '4000.1.0');
  t.same(events.find((e) => e.kind === 'key'), { kind: 'key', fingerprint: env.key.fingerprint, source: env.srv.keyUrl, pinnedBy: 'keyid' });
});

/** Installs 3975.2.0 as the prior release, then publishes 4081.2.0 as current for a failure case. */
async function withPrior(t: Test): Promise<{ env: Env; prior: Record<string, string>; next: string }> {
  const env = await setup(t);
  await fetchFlatcar(env.opts());
  const prior = installed(env.assets);
  const next = await env.srv.publish({ channel: 'stable', arch: 'amd64', version: '4081.2.0', files: env.payload, key: env.key, current: true });
  return { env, prior, next };
}

t.test('tampered payload: E_ASSET_SIGNATURE, part deleted, prior release untouched', async (t) => {
  const { env, prior, next } = await withPrior(t);
  const bad = Buffer.from(env.payload[FLATCAR_INITRD] ?? Buffer.alloc(0));
  bad[1000] = (bad[1000] ?? 0) ^ 0xff;
  env.srv.set(next + FLATCAR_INITRD, bad);
  env.srv.set('/stable/amd64-usr/current/' + FLATCAR_INITRD, bad);
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_SIGNATURE', /BAD signature/);
  t.same(installed(env.assets), prior);
  t.notOk(existsSync(join(env.assets, 'flatcar/stable/4081.2.0/amd64', partName(FLATCAR_INITRD))), 'a wrong complete file is not kept for resuming');
  t.notOk(existsSync(join(env.assets, 'flatcar/stable/4081.2.0/amd64', FLATCAR_KERNEL)), 'the good kernel was not installed alone');
});

t.test('signed by another key: E_ASSET_UNTRUSTED_SIGNER', async (t) => {
  const { env, prior, next } = await withPrior(t);
  const other = await generateTestKey('Mallory');
  env.srv.set(next + FLATCAR_KERNEL + '.sig', await signDetached(env.payload[FLATCAR_KERNEL] ?? Buffer.alloc(0), other));
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_UNTRUSTED_SIGNER', new RegExp(`signed by ${other.keyId}.*not part of the pinned signing key ${env.key.fingerprint}`));
  t.same(installed(env.assets), prior);
});

t.test('the configured key does not match the pinned fingerprint: E_ASSET_KEY', async (t) => {
  const { env, prior } = await withPrior(t);
  const other = await generateTestKey('Mallory');
  const otherFile = join(env.assets, '..', 'other.asc');
  writeFileSync(otherFile, other.armored);
  await rejectsCode(t, fetchFlatcar(env.opts({ signingKey: otherFile })), 'E_ASSET_KEY', /does not match the pinned fingerprint/);
  await rejectsCode(t, fetchFlatcar(env.opts({ fingerprint: 'nothex' })), 'E_ASSET_KEY', /not hexadecimal/);
  t.same(installed(env.assets), prior);
});

t.test('missing .sig: E_ASSET_SIGNATURE_MISSING (not "file missing")', async (t) => {
  const { env, prior, next } = await withPrior(t);
  env.srv.remove(next + FLATCAR_INITRD + '.sig');
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_SIGNATURE_MISSING', /\.sig is missing.*refusing an unsigned/);
  t.same(installed(env.assets), prior);
});

t.test('DIGESTS disagrees with a well-signed file: E_ASSET_DIGEST', async (t) => {
  const { env, prior, next } = await withPrior(t);
  env.srv.set(next + FLATCAR_KERNEL + '.DIGESTS', digestsFor(FLATCAR_KERNEL, Buffer.from('something else')));
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_DIGEST', /does not match DIGESTS/);
  t.same(installed(env.assets), prior);
  env.srv.set(next + FLATCAR_KERNEL + '.DIGESTS', '# SHA512 HASH\n');
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_DIGEST_MISSING', /no SHA512 line/);
});

t.test('404 on current/version.txt and on a release without PXE files', async (t) => {
  const { env, prior, next } = await withPrior(t);
  await rejectsCode(t, fetchFlatcar(env.opts({ channel: 'alpha' })), 'E_ASSET_NOT_FOUND', /cannot resolve "current": .*alpha\/amd64-usr\/current\/version.txt answered 404/);
  env.srv.remove(next + FLATCAR_KERNEL);
  env.srv.remove(next + FLATCAR_KERNEL + '.sig');
  await rejectsCode(t, fetchFlatcar(env.opts({ version: '4081.2.0' })), 'E_ASSET_NOT_FOUND', /has no flatcar_production_pxe.vmlinuz .*no PXE files/);
  t.same(installed(env.assets), prior);
  t.equal(readlinkSync(join(env.assets, 'flatcar/stable/current/amd64')), '../3975.2.0/amd64');
  t.notOk(existsSync(join(env.assets, 'flatcar/stable/4081.2.0')), 'no empty release dir left behind');
});

t.test('bad version.txt is refused before it becomes a path', async (t) => {
  const env = await setup(t);
  env.srv.set('/stable/amd64-usr/current/version.txt', 'FLATCAR_VERSION=../../etc\n');
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_VERSION', /not a version/);
  t.notOk(existsSync(env.assets));
});

t.test('connection cut mid-file: E_ASSET_TRUNCATED, part kept, next run resumes with Range', async (t) => {
  const { env, prior, next } = await withPrior(t);
  env.srv.cut(next + FLATCAR_INITRD, 250_000);
  const before = env.srv.payloadBytes;
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_TRUNCATED', /after 250000 of 600000 bytes.*resumes/);
  t.same(installed(env.assets), prior);
  const part = join(env.assets, 'flatcar/stable/4081.2.0/amd64', partName(FLATCAR_INITRD));
  t.equal(statSync(part).size, 250_000, 'what arrived was kept');
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ onEvent: (e) => events.push(e) }));
  t.equal(r.version, '4081.2.0');
  t.ok(env.srv.requests.includes(`GET ${next}${FLATCAR_INITRD} bytes=250000-`), 'asked for the rest only');
  t.same(events.find((e) => e.kind === 'download-start' && e.file === FLATCAR_INITRD), { kind: 'download-start', file: FLATCAR_INITRD, from: 250_000, total: INITRD_SIZE });
  t.equal(env.srv.payloadBytes - before, KERNEL_SIZE + INITRD_SIZE, 'the initrd crossed the wire once in total');
  t.same(readFileSync(join(env.assets, 'flatcar/stable/current/amd64', FLATCAR_INITRD)), env.payload[FLATCAR_INITRD]);
});

t.test('a server that ignores Range: the resume restarts from 0 and still verifies', async (t) => {
  const { env, next } = await withPrior(t);
  env.srv.cut(next + FLATCAR_KERNEL, 50_000);
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_TRUNCATED', /after 50000 of 150000/);
  env.srv.ignoreRange = true;
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ onEvent: (e) => events.push(e) }));
  t.equal(r.version, '4081.2.0');
  t.same(events.find((e) => e.kind === 'download-start' && e.file === FLATCAR_KERNEL), { kind: 'download-start', file: FLATCAR_KERNEL, from: 0, total: KERNEL_SIZE });
  t.same(readFileSync(join(env.assets, 'flatcar/stable/4081.2.0/amd64', FLATCAR_KERNEL)), env.payload[FLATCAR_KERNEL]);
});

t.test('a complete part from an earlier run is not downloaded again (416)', async (t) => {
  const { env, next } = await withPrior(t);
  // Initrd 404 after the kernel downloaded completely: the kernel part stays for next time.
  env.srv.remove(next + FLATCAR_INITRD + '.DIGESTS');
  await rejectsCode(t, fetchFlatcar(env.opts()), 'E_ASSET_DIGEST_MISSING', /DIGESTS is missing/);
  t.equal(statSync(join(env.assets, 'flatcar/stable/4081.2.0/amd64', partName(FLATCAR_KERNEL))).size, KERNEL_SIZE);
  await env.srv.publish({ channel: 'stable', arch: 'amd64', version: '4081.2.0', files: env.payload, key: env.key, current: true });
  const before = env.srv.payloadBytes;
  await fetchFlatcar(env.opts());
  t.equal(env.srv.payloadBytes - before, INITRD_SIZE, 'only the initrd was transferred');
});

t.test('a stalled server hits the idle timeout: E_ASSET_TRUNCATED, resumable', async (t) => {
  const { env, next } = await withPrior(t);
  env.srv.cut(next + FLATCAR_INITRD, 100_000, { hang: true });
  await rejectsCode(t, fetchFlatcar(env.opts({ idleTimeoutMs: 1000 })), 'E_ASSET_TRUNCATED', /the server stalled after 100000 of 600000 bytes/);
  const r = await fetchFlatcar(env.opts());
  t.equal(r.version, '4081.2.0');
  t.ok(env.srv.requests.includes(`GET ${next}${FLATCAR_INITRD} bytes=100000-`));
});

t.test('installed files that lost their manifest are re-verified, not re-downloaded', async (t) => {
  const env = await setup(t);
  await fetchFlatcar(env.opts());
  const dir = join(env.assets, 'flatcar/stable/3975.2.0/amd64');
  rmSync(join(dir, MANIFEST));
  const before = env.srv.payloadBytes;
  const events: FetchEvent[] = [];
  const r = await fetchFlatcar(env.opts({ onEvent: (e) => events.push(e) }));
  t.equal(r.transferred, 0);
  t.equal(env.srv.payloadBytes, before);
  t.equal(events.filter((e) => e.kind === 'reused').length, 2);
  t.ok(existsSync(join(dir, MANIFEST)));
});
