/**
 * The Flatcar part of the assets directory, on disk:
 *
 *   flatcar/<channel>/<version>/<arch>/flatcar_production_pxe.vmlinuz (+ .sig, .DIGESTS)
 *   flatcar/<channel>/<version>/<arch>/flatcar_production_pxe_image.cpio.gz (+ .sig, .DIGESTS)
 *   flatcar/<channel>/<version>/<arch>/.swarmboot-verified.json   what was checked, with which key
 *   flatcar/<channel>/current/<arch> -> ../<version>/<arch>         relative symlink
 *
 * This is layout.ts's flatcarDir() for both pinned and `current` profiles:
 * `flatcar/stable/current/amd64/...` resolves through the link. The link is
 * per arch (not `current -> <version>`) because amd64 and arm64 may be on
 * different versions. It stays inside the root, which the TFTP server and
 * the HTTP asset route both accept (they refuse only links leading out).
 *
 * Everything that appears under a final name got there by rename after an
 * fsync, so a reader never sees a half-written file or link.
 */
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FlatcarArch, FlatcarChannel, FlatcarImage } from '../profiles/types.js';
import { flatcarDir } from '../boot/layout.js';
import { AssetError } from './errors.js';
import { lockOwnerAlive, ownLockLine, parseLockOwner } from '../pid.js';
import { ARCHES, CHANNELS, PXE_FILES, compareVersions, isVersion } from './release.js';

export const MANIFEST = '.swarmboot-verified.json';
export const CURRENT = 'current';
const LOCK = '.swarmboot-fetch.lock';

/** `.<file>.part`: a dot-name, so the HTTP asset route never serves an unverified download. */
export function partName(file: string): string {
  return `.${file}.part`;
}

export interface ManifestFile {
  readonly size: number;
  readonly sha512: string;
  /** Key id of the (sub)key that signed it. */
  readonly signer: string;
  readonly signedAt: string | null;
}

export interface Manifest {
  readonly format: 1;
  readonly channel: FlatcarChannel;
  readonly version: string;
  readonly arch: FlatcarArch;
  readonly source: string;
  readonly verifiedAt: string;
  /** Primary fingerprint of the key the signatures were checked against. */
  readonly keyFingerprint: string;
  readonly files: Readonly<Record<string, ManifestFile>>;
}

export function releaseDir(assetsDir: string, img: FlatcarImage): string {
  return join(assetsDir, flatcarDir(img));
}

export function currentLink(assetsDir: string, channel: FlatcarChannel, arch: FlatcarArch): string {
  return join(assetsDir, 'flatcar', channel, CURRENT, arch);
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` under a temp name, fsyncs it, renames it over `path`, fsyncs the directory. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** Moves a verified download into place: fsync the data, rename, fsync the directory. */
export function installFile(from: string, to: string): void {
  const fd = openSync(from, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(from, to);
  fsyncDir(dirname(to));
}

function isManifest(v: unknown): v is Manifest {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  if (m.format !== 1 || typeof m.version !== 'string' || typeof m.keyFingerprint !== 'string' || typeof m.files !== 'object' || m.files === null) return false;
  return Object.values(m.files as Record<string, unknown>).every((f) => {
    const r = f as Record<string, unknown>;
    return typeof f === 'object' && f !== null && typeof r.size === 'number' && typeof r.sha512 === 'string';
  });
}

/** The manifest of a release dir, or null when absent or unreadable (treated as "unverified"). */
export function readManifest(dir: string): Manifest | null {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8'));
    return isManifest(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

export function writeManifest(dir: string, m: Manifest): void {
  writeFileAtomic(join(dir, MANIFEST), JSON.stringify(m, null, 2) + '\n');
}

/** Removing it first makes a crash between file swaps read as "unverified", never as falsely verified. */
export function removeManifest(dir: string): void {
  rmSync(join(dir, MANIFEST), { force: true });
}

export type ReleaseState = 'verified' | 'unverified' | 'incomplete';

export interface ReleaseCheck {
  readonly state: ReleaseState;
  readonly manifest: Manifest | null;
  /** Present payloads and their sizes. */
  readonly files: Readonly<Record<string, number>>;
  readonly missing: readonly string[];
  /** Why it is not "verified", for status. */
  readonly problems: readonly string[];
  /** `.part` files left by an interrupted fetch. */
  readonly partial: readonly string[];
}

function fileSize(path: string): number | null {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/**
 * Cheap check (no hashing): both payloads present, and the manifest lists
 * exactly these sizes. A file replaced behind our back by one of another
 * size shows as unverified; same-size tampering needs a re-fetch to detect.
 */
export function checkRelease(dir: string): ReleaseCheck {
  const manifest = readManifest(dir);
  const files: Record<string, number> = {};
  const missing: string[] = [];
  const problems: string[] = [];
  for (const f of PXE_FILES) {
    const size = fileSize(join(dir, f));
    if (size === null) missing.push(f);
    else files[f] = size;
  }
  let partial: string[] = [];
  try {
    partial = readdirSync(dir).filter((n) => n.startsWith('.') && n.endsWith('.part'));
  } catch {
    // No dir: everything is missing, reported above.
  }
  if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
  if (manifest === null) problems.push(`no ${MANIFEST} (not verified by swarmboot)`);
  else {
    for (const [name, size] of Object.entries(files)) {
      const m = manifest.files[name];
      if (m === undefined) problems.push(`${name} is not in the manifest`);
      else if (m.size !== size) problems.push(`${name} is ${size} bytes, verified as ${m.size}`);
    }
  }
  const state: ReleaseState = missing.length > 0 ? 'incomplete' : problems.length > 0 ? 'unverified' : 'verified';
  return { state, manifest, files, missing, problems, partial };
}

/** The version `flatcar/<channel>/current/<arch>` points at, or null (no link, or not one of ours). */
export function readCurrent(assetsDir: string, channel: FlatcarChannel, arch: FlatcarArch): string | null {
  try {
    const target = readlinkSync(currentLink(assetsDir, channel, arch));
    const m = /^\.\.\/([^/]+)\/([^/]+)\/?$/.exec(target);
    return m && m[2] === arch && isVersion(m[1] ?? '') ? (m[1] ?? null) : null;
  } catch {
    return null;
  }
}

/**
 * Points `flatcar/<channel>/current/<arch>` at `<version>`: a new symlink
 * under a temp name renamed over the old one, so a blade fetching through
 * the link gets the old release or the new one, never a missing file.
 */
export function setCurrent(assetsDir: string, channel: FlatcarChannel, arch: FlatcarArch, version: string): void {
  if (!isVersion(version)) throw new AssetError('E_ASSET_VERSION', `not a version: ${version}`);
  const link = currentLink(assetsDir, channel, arch);
  const dir = dirname(link);
  let st: ReturnType<typeof lstatSync> | null = null;
  try {
    st = lstatSync(dir);
  } catch {
    mkdirSync(dir, { recursive: true });
  }
  // A `current` that is itself a link would put our link inside a release directory.
  if (st !== null && !st.isDirectory()) throw new AssetError('E_ASSET_VERSION', `${dir} is not a directory (a link or file from an older layout?); move it away`);
  try {
    if (!lstatSync(link).isSymbolicLink()) throw new AssetError('E_ASSET_VERSION', `${link} exists and is not a symlink; move it away so swarmboot can manage it`);
  } catch (err) {
    if (err instanceof AssetError) throw err;
  }
  const tmp = join(dir, `.${arch}.${process.pid}.tmp`);
  rmSync(tmp, { force: true });
  symlinkSync(`../${version}/${arch}`, tmp);
  renameSync(tmp, link);
  fsyncDir(dir);
}

export interface InstalledRelease {
  readonly channel: FlatcarChannel;
  readonly version: string;
  readonly arch: FlatcarArch;
  readonly dir: string;
  readonly check: ReleaseCheck;
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return [];
  }
}

/** Every release dir under flatcar/, oldest version first per channel/arch. */
export function listReleases(assetsDir: string): InstalledRelease[] {
  const out: InstalledRelease[] = [];
  for (const channel of CHANNELS) {
    const chDir = join(assetsDir, 'flatcar', channel);
    const versions = subdirs(chDir).filter(isVersion).sort(compareVersions);
    for (const arch of ARCHES) {
      for (const version of versions) {
        const dir = join(chDir, version, arch);
        if (!subdirs(join(chDir, version)).includes(arch)) continue;
        out.push({ channel, version, arch, dir, check: checkRelease(dir) });
      }
    }
  }
  return out;
}

/**
 * An exclusive lock on one release dir for one fetch, so two fetches do not
 * write the same `.part`. A lock whose process is gone is taken over.
 */
export function lockRelease(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const me = ownLockLine();
      writeFileSync(path, `${me}\n`, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === me) unlinkSync(path);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A pid and start time, as the state journal's lock: a container restart reuses pids.
      const owner = parseLockOwner(readFileSync(path, 'utf8'));
      if (owner.pid !== process.pid && lockOwnerAlive(owner)) {
        throw new AssetError('E_ASSET_BUSY', `another fetch (pid ${owner.pid}) is writing ${dir}; wait for it or remove ${path} if it is stale`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new AssetError('E_ASSET_BUSY', `cannot lock ${dir}`);
}


/**
 * Removes a release dir so that it never appears half-deleted under its real
 * name: renamed to a dot-name first, then deleted; the version dir goes too
 * once no arch is left in it.
 */
export function removeRelease(dir: string): void {
  const doomed = join(dirname(dir), `.deleting.${process.pid}.${Date.now()}`);
  renameSync(dir, doomed);
  fsyncDir(dirname(dir));
  rmSync(doomed, { recursive: true, force: true });
  const versionDir = dirname(dir);
  try {
    if (readdirSync(versionDir).length === 0) rmSync(versionDir, { recursive: true });
  } catch {
    // Someone else emptied or removed it.
  }
}
