/**
 * `assets fetch`: one Flatcar release's PXE files, proven authentic, then
 * put in place. The order is what makes it safe:
 *
 *   1. resolve `current` through version.txt to a concrete X.Y.Z;
 *   2. stop here if that release is already verified (nothing is downloaded);
 *   3. for each payload: .sig and DIGESTS first (small, and a 404 shows the
 *      release lacks PXE files before hundreds of MB move), then the payload
 *      into `.<file>.part`, resuming what an earlier run left;
 *   4. check every payload's signature against the pinned key and its SHA-512
 *      against DIGESTS; a bad one's part is deleted;
 *   5. only when all passed: rename everything into place, write the manifest,
 *      and swing the `current` link.
 *
 * Any failure before 5 leaves the installed files and links as they were.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FlatcarArch, FlatcarChannel } from '../profiles/types.js';
import { AssetError } from './errors.js';
import { downloadResumable, exists, fetchSmall, type FetchLike } from './download.js';
import { DEFAULT_BASE_URL, DEFAULT_FINGERPRINT, DEFAULT_SIGNING_KEY_URL, PXE_FILES, isVersion, parsePin, parseVersionTxt, pinMatches, releaseBase, releaseUrl, sha512FromDigests, type KeyPin } from './release.js';
import { readSigningKey, sha512File, verifyDetached, type SigningKey } from './verify.js';
import { checkRelease, installFile, lockRelease, partName, readCurrent, releaseDir, removeManifest, setCurrent, writeFileAtomic, writeManifest, type Manifest, type ManifestFile } from './store.js';

export interface FetchOptions {
  readonly assetsDir: string;
  readonly channel: FlatcarChannel;
  /** `current` or X.Y.Z. */
  readonly version: string;
  readonly arch: FlatcarArch;
  /** Release directory URL; `{channel}` and `{arch}` are substituted. */
  readonly baseUrl?: string;
  /** Key file path, or an http(s) URL. */
  readonly signingKey?: string;
  /** Full fingerprint (40/64 hex) or 16-hex key id of the signing key. */
  readonly fingerprint?: string;
  /** Point `current/<arch>` at the fetched release (default: when `version` is `current`). */
  readonly updateCurrent?: boolean;
  readonly fetch?: FetchLike;
  readonly idleTimeoutMs?: number;
  readonly now?: () => Date;
  readonly onEvent?: (e: FetchEvent) => void;
}

export type FetchEvent =
  | { readonly kind: 'resolved'; readonly version: string; readonly url: string }
  | { readonly kind: 'up-to-date'; readonly dir: string }
  | { readonly kind: 'key'; readonly fingerprint: string; readonly source: string; readonly pinnedBy: 'fingerprint' | 'keyid' }
  | { readonly kind: 'download-start'; readonly file: string; readonly from: number; readonly total: number | null }
  | { readonly kind: 'download-progress'; readonly file: string; readonly done: number; readonly total: number | null }
  | { readonly kind: 'download-done'; readonly file: string; readonly transferred: number; readonly size: number }
  | { readonly kind: 'reused'; readonly file: string; readonly why: string }
  | { readonly kind: 'verified'; readonly file: string; readonly signer: string }
  | { readonly kind: 'installed'; readonly dir: string }
  | { readonly kind: 'current'; readonly link: string; readonly version: string; readonly previous: string | null };

export interface FetchResult {
  readonly channel: FlatcarChannel;
  readonly arch: FlatcarArch;
  readonly version: string;
  readonly dir: string;
  /** Payload bytes received over the network (0 when everything was in place). */
  readonly transferred: number;
  readonly alreadyVerified: boolean;
  readonly keyFingerprint: string | null;
  readonly currentUpdated: boolean;
}

interface Staged {
  readonly file: string;
  readonly sig: Buffer;
  readonly digests: Buffer;
  /** Where the verified payload is now: the part, or the already installed file. */
  readonly path: string;
  readonly entry: ManifestFile;
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

async function loadKey(opts: FetchOptions, pin: KeyPin, http: { fetch?: FetchLike; idleTimeoutMs?: number }): Promise<SigningKey> {
  const source = opts.signingKey ?? DEFAULT_SIGNING_KEY_URL;
  let bytes: Buffer;
  if (isUrl(source)) {
    try {
      bytes = await fetchSmall(source, http);
    } catch (err) {
      throw new AssetError('E_ASSET_KEY', `cannot get the signing key: ${(err as Error).message}`);
    }
  } else {
    try {
      bytes = readFileSync(source);
    } catch (err) {
      throw new AssetError('E_ASSET_KEY', `cannot read the signing key ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return readSigningKey(bytes, pin, source);
}

/** Resolves `current` to the concrete version via `<base>current/version.txt`. */
export async function resolveVersion(base: string, version: string, http: { fetch?: FetchLike; idleTimeoutMs?: number }): Promise<{ version: string; url: string }> {
  if (version !== 'current') {
    if (!isVersion(version)) throw new AssetError('E_ASSET_VERSION', `--version must be "current" or X.Y.Z, not ${JSON.stringify(version)}`);
    return { version, url: releaseUrl(base, version, '') };
  }
  const url = releaseUrl(base, 'current', 'version.txt');
  let text: Buffer;
  try {
    text = await fetchSmall(url, { ...http, maxBytes: 64 * 1024 });
  } catch (err) {
    if (err instanceof AssetError && err.code === 'E_ASSET_NOT_FOUND') {
      throw new AssetError('E_ASSET_NOT_FOUND', `cannot resolve "current": ${url} answered 404 (wrong --channel/--arch or --base-url?)`);
    }
    throw err;
  }
  return { version: parseVersionTxt(text.toString('utf8'), url), url };
}

export async function fetchFlatcar(opts: FetchOptions): Promise<FetchResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const http = { ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}) };
  const { channel, arch } = opts;
  // Flag mistakes fail before any network traffic.
  const pin = parsePin(opts.fingerprint ?? DEFAULT_FINGERPRINT);
  const base = releaseBase(opts.baseUrl ?? DEFAULT_BASE_URL, channel, arch);
  const resolved = await resolveVersion(base, opts.version, http);
  const version = resolved.version;
  emit({ kind: 'resolved', version, url: resolved.url });
  const dir = releaseDir(opts.assetsDir, { channel, version, arch });
  const wantCurrent = opts.updateCurrent ?? opts.version === 'current';

  const before = checkRelease(dir);
  if (before.state === 'verified' && before.manifest !== null && pinMatches(pin, before.manifest.keyFingerprint)) {
    emit({ kind: 'up-to-date', dir });
    const currentUpdated = wantCurrent ? swingCurrent(opts.assetsDir, channel, arch, version, emit) : false;
    return { channel, arch, version, dir, transferred: 0, alreadyVerified: true, keyFingerprint: before.manifest.keyFingerprint, currentUpdated };
  }

  const unlock = lockRelease(dir);
  try {
    const key = await loadKey(opts, pin, http);
    emit({ kind: 'key', fingerprint: key.fingerprint, source: key.source, pinnedBy: key.pin.kind });
    let transferred = 0;
    const staged: Staged[] = [];
    for (const file of PXE_FILES) {
      const s = await stageFile(base, version, file, dir, key, http, emit);
      transferred += s.transferred;
      staged.push(s.staged);
    }

    // All verified: from here on, only renames.
    removeManifest(dir);
    for (const s of staged) {
      writeFileAtomic(join(dir, `${s.file}.sig`), s.sig);
      writeFileAtomic(join(dir, `${s.file}.DIGESTS`), s.digests);
      if (s.path !== join(dir, s.file)) installFile(s.path, join(dir, s.file));
    }
    const manifest: Manifest = {
      format: 1,
      channel,
      version,
      arch,
      source: releaseUrl(base, version, ''),
      verifiedAt: (opts.now?.() ?? new Date()).toISOString(),
      keyFingerprint: key.fingerprint,
      files: Object.fromEntries(staged.map((s) => [s.file, s.entry])),
    };
    writeManifest(dir, manifest);
    emit({ kind: 'installed', dir });
    const currentUpdated = wantCurrent ? swingCurrent(opts.assetsDir, channel, arch, version, emit) : false;
    return { channel, arch, version, dir, transferred, alreadyVerified: false, keyFingerprint: key.fingerprint, currentUpdated };
  } finally {
    unlock();
    removeIfEmpty(dir);
  }
}

/** A failed first fetch of a release leaves no empty directory behind (status would list it as incomplete). */
function removeIfEmpty(dir: string): void {
  for (const d of [dir, dirname(dir)]) {
    try {
      if (readdirSync(d).length > 0) return;
      rmdirSync(d);
    } catch {
      return;
    }
  }
}

function swingCurrent(assetsDir: string, channel: FlatcarChannel, arch: FlatcarArch, version: string, emit: (e: FetchEvent) => void): boolean {
  const previous = readCurrent(assetsDir, channel, arch);
  if (previous === version) return false;
  setCurrent(assetsDir, channel, arch, version);
  emit({ kind: 'current', link: `flatcar/${channel}/current/${arch}`, version, previous });
  return true;
}

async function stageFile(
  base: string,
  version: string,
  file: string,
  dir: string,
  key: SigningKey,
  http: { fetch?: FetchLike; idleTimeoutMs?: number },
  emit: (e: FetchEvent) => void,
): Promise<{ staged: Staged; transferred: number }> {
  const url = releaseUrl(base, version, file);
  let sig: Buffer;
  try {
    sig = await fetchSmall(`${url}.sig`, { ...http, maxBytes: 64 * 1024 });
  } catch (err) {
    if (!(err instanceof AssetError) || err.code !== 'E_ASSET_NOT_FOUND') throw err;
    // Which is missing, the file or only its signature? They need different fixes.
    if (!(await exists(url, http))) {
      throw new AssetError('E_ASSET_NOT_FOUND', `Flatcar ${version} has no ${file} at ${url} (HTTP 404): this release has no PXE files for this arch, or the version does not exist`);
    }
    throw new AssetError('E_ASSET_SIGNATURE_MISSING', `${url}.sig is missing (HTTP 404): refusing an unsigned ${file}`);
  }
  let digests: Buffer;
  try {
    digests = await fetchSmall(`${url}.DIGESTS`, { ...http, maxBytes: 64 * 1024 });
  } catch (err) {
    if (err instanceof AssetError && err.code === 'E_ASSET_NOT_FOUND') throw new AssetError('E_ASSET_DIGEST_MISSING', `${url}.DIGESTS is missing (HTTP 404)`);
    throw err;
  }
  const want = sha512FromDigests(digests.toString('utf8'), file);
  if (want === null) throw new AssetError('E_ASSET_DIGEST_MISSING', `${url}.DIGESTS has no SHA512 line for ${file}`);

  // A file already in place (a crash after its rename, before the manifest) is reused if it still proves out.
  const installed = join(dir, file);
  if (existsSync(installed)) {
    try {
      const entry = await check(installed, sig, want, key, `${file} (installed)`);
      emit({ kind: 'reused', file, why: 'already in place and verified' });
      emit({ kind: 'verified', file, signer: entry.signer });
      return { staged: { file, sig, digests, path: installed, entry }, transferred: 0 };
    } catch (err) {
      if (!(err instanceof AssetError)) throw err;
      // Not the file this release says: download it (the installed one stays until the new one is verified).
    }
  }

  const part = join(dir, partName(file));
  const result = await downloadResumable(url, part, {
    ...http,
    onStart: (from, total) => emit({ kind: 'download-start', file, from, total }),
    onProgress: (done, total) => emit({ kind: 'download-progress', file, done, total }),
  });
  emit({ kind: 'download-done', file, transferred: result.transferred, size: result.size });
  try {
    const entry = await check(part, sig, want, key, file);
    emit({ kind: 'verified', file, signer: entry.signer });
    return { staged: { file, sig, digests, path: part, entry }, transferred: result.transferred };
  } catch (err) {
    // A complete but wrong file cannot be resumed into a right one.
    rmSync(part, { force: true });
    throw err;
  }
}

/** Signature first (authenticity, and a tampered file fails here), then the SHA-512 from DIGESTS. */
async function check(path: string, sig: Buffer, sha512: string, key: SigningKey, what: string): Promise<ManifestFile> {
  const signed = await verifyDetached(path, sig, key, what);
  const actual = await sha512File(path);
  if (actual !== sha512) throw new AssetError('E_ASSET_DIGEST', `${what}: SHA-512 ${actual.slice(0, 16)}... does not match DIGESTS (${sha512.slice(0, 16)}...)`);
  return { size: statSync(path).size, sha512: actual, signer: signed.signer, signedAt: signed.created?.toISOString() ?? null };
}
