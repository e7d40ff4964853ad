/**
 * A fake Flatcar release server on 127.0.0.1:<port 0>, laid out like
 * `https://<channel>.release.flatcar-linux.net/<arch>-usr/`:
 *
 *   /<channel>/<arch>-usr/<version>/<file>, .sig, .DIGESTS
 *   /<channel>/<arch>-usr/current/... (what `current` points at)
 *   /key.asc
 *
 * Files are signed with a key the test generates (curve25519: milliseconds).
 * Faults are switches on the server: drop a file (404), cut a response after
 * N bytes, ignore Range. It counts the payload bytes it sends, so a test can
 * prove a second fetch transferred nothing.
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as openpgp from 'openpgp';
import { releaseDir, writeManifest, type Manifest } from '../../server/assets/store.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL } from '../../server/boot/layout.js';
import type { FlatcarArch, FlatcarChannel } from '../../server/profiles/types.js';

type TestLike = { teardown(fn: () => unknown): void };

export interface TestKey {
  readonly privateKey: openpgp.PrivateKey;
  readonly publicKey: openpgp.PublicKey;
  readonly armored: string;
  readonly fingerprint: string;
  readonly keyId: string;
}

export async function generateTestKey(name = 'Test Release Signing'): Promise<TestKey> {
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name }], format: 'object' });
  return { privateKey, publicKey, armored: publicKey.armor(), fingerprint: publicKey.getFingerprint().toUpperCase(), keyId: publicKey.getKeyID().toHex().toUpperCase() };
}

/** Detached signature over `data`: binary as Flatcar publishes, or armored. */
export async function signDetached(data: Uint8Array, key: TestKey, armored = false): Promise<Buffer> {
  const message = await openpgp.createMessage({ binary: data });
  if (armored) return Buffer.from(await openpgp.sign({ message, signingKeys: key.privateKey, detached: true, format: 'armored' }));
  return Buffer.from(await openpgp.sign({ message, signingKeys: key.privateKey, detached: true, format: 'binary' }));
}

/** A DIGESTS file in Flatcar's block format. */
export function digestsFor(name: string, data: Uint8Array): string {
  const h = (alg: string) => createHash(alg).update(data).digest('hex');
  return `# MD5 HASH\n${h('md5')}  ${name}\n# SHA1 HASH\n${h('sha1')}  ${name}\n# SHA512 HASH\n${h('sha512')}  ${name}\n`;
}

export interface ReleaseFiles {
  readonly channel: string;
  readonly arch: string;
  readonly version: string;
  /** Payloads by file name. */
  readonly files: Readonly<Record<string, Uint8Array>>;
  readonly key: TestKey;
  /** Also publish as `current` (version.txt included). */
  readonly current?: boolean;
  readonly armoredSig?: boolean;
}

export interface ReleaseServer {
  readonly port: number;
  /** The --base-url template for this server. */
  readonly baseUrl: string;
  readonly keyUrl: string;
  /** Payload (non .sig/.DIGESTS/version.txt/key) body bytes sent so far. */
  payloadBytes: number;
  /** Request log: `METHOD path [range]`. */
  readonly requests: string[];
  /**
   * Serve `path` truncated after `bytes` body bytes (`times` times, default 1):
   * the connection is then closed, or with `hang` left open and silent.
   */
  cut(path: string, bytes: number, opts?: { times?: number; hang?: boolean }): void;
  ignoreRange: boolean;
  set(path: string, data: Uint8Array | string): void;
  remove(path: string): void;
  get(path: string): Buffer | undefined;
  /** Publishes a signed release; returns the path prefix `/<channel>/<arch>-usr/<version>/`. */
  publish(r: ReleaseFiles): Promise<string>;
}

function isPayload(path: string): boolean {
  return !/(\.sig|\.DIGESTS|\.asc|version\.txt)$/.test(path);
}

export async function startReleaseServer(t: TestLike): Promise<ReleaseServer> {
  const files = new Map<string, Buffer>();
  const cuts = new Map<string, { bytes: number; times: number; hang: boolean }>();
  const sockets = new Set<import('node:net').Socket>();

  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const range = req.headers.range;
    state.requests.push(`${req.method} ${path}${range ? ` ${range}` : ''}`);
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    let start = 0;
    let end = body.length - 1;
    let status = 200;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const m = range && !state.ignoreRange ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${body.length}`;
    }
    const slice = body.subarray(start, end + 1);
    headers['content-length'] = slice.length;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = cuts.get(path);
    if (cut && cut.times > 0) {
      cut.times--;
      const n = Math.max(0, cut.bytes - start);
      const part = slice.subarray(0, n);
      if (isPayload(path)) state.payloadBytes += part.length;
      // Hand the bytes to the socket, then kill it: the client sees a body shorter than Content-Length.
      res.write(part, () => {
        if (!cut.hang) setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    if (isPayload(path)) state.payloadBytes += slice.length;
    res.end(slice);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );

  const state: ReleaseServer = {
    port,
    baseUrl: `http://127.0.0.1:${port}/{channel}/{arch}-usr/`,
    keyUrl: `http://127.0.0.1:${port}/key.asc`,
    payloadBytes: 0,
    requests: [],
    ignoreRange: false,
    cut: (path, bytes, opts = {}) => void cuts.set(path, { bytes, times: opts.times ?? 1, hang: opts.hang ?? false }),
    set: (path, data) => void files.set(path, Buffer.from(data)),
    remove: (path) => void files.delete(path),
    get: (path) => files.get(path),
    async publish(r) {
      const dirs = [`/${r.channel}/${r.arch}-usr/${r.version}/`];
      if (r.current) dirs.push(`/${r.channel}/${r.arch}-usr/current/`);
      for (const [name, data] of Object.entries(r.files)) {
        const sig = await signDetached(data, r.key, r.armoredSig);
        for (const d of dirs) {
          files.set(d + name, Buffer.from(data));
          files.set(`${d}${name}.sig`, sig);
          files.set(`${d}${name}.DIGESTS`, Buffer.from(digestsFor(name, data)));
        }
      }
      const [major, minor, patch] = r.version.split('.');
      const versionTxt = `FLATCAR_BUILD=${major}\nFLATCAR_BRANCH=${minor}\nFLATCAR_PATCH=${patch}\nFLATCAR_VERSION=${r.version}\nFLATCAR_VERSION_ID=${r.version}\n`;
      for (const d of dirs) files.set(d + 'version.txt', Buffer.from(versionTxt));
      return dirs[0] ?? '';
    },
  };
  return state;
}

/**
 * A release dir as a fetch leaves it, without the network: small fake
 * payloads and (unless `manifest: false`) a manifest saying they were verified.
 */
export function plantRelease(assets: string, channel: FlatcarChannel, version: string, arch: FlatcarArch, opts: { manifest?: boolean; skip?: string } = {}): string {
  const dir = releaseDir(assets, { channel, version, arch });
  mkdirSync(dir, { recursive: true });
  const files: Record<string, Manifest['files'][string]> = {};
  for (const [name, body] of [
    [FLATCAR_KERNEL, 'kernel'],
    [FLATCAR_INITRD, 'initrd!'],
  ] as const) {
    if (name === opts.skip) continue;
    writeFileSync(join(dir, name), body);
    files[name] = { size: body.length, sha512: '0'.repeat(128), signer: 'AAAAAAAAAAAAAAAA', signedAt: null };
  }
  if (opts.manifest !== false) writeManifest(dir, { format: 1, channel, version, arch, source: 'test', verifiedAt: '2024-05-01T12:00:00.000Z', keyFingerprint: 'F'.repeat(40), files });
  return dir;
}
