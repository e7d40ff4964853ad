/**
 * GET|HEAD /assets/<path>: kernels, initrds and iPXE binaries from the assets
 * directory (also the TFTP root). These are the big transfers of a boot
 * storm (a Flatcar initrd is hundreds of MB, times every blade), so files
 * are streamed in large chunks through pooled buffers (pump.ts), and every
 * fs call is async so one slow disk read does not stall the other blades'
 * requests. Files a storm repeats are kept whole in memory by the asset
 * cache (asset-cache.ts) once loaded, and sent from there.
 *
 * Path safety in layers: checkAssetPath refuses bad names; realpath must
 * stay inside the (real) root, so a symlink out is refused; the opened
 * descriptor is checked again (regular file, and /proc/self/fd still inside
 * the root) so a path swapped between the check and the open cannot lead out.
 */
import express, { type Request, type Response, type Router } from 'express';
import { open, realpath, stat, readlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { BadRequestError, ForbiddenError } from '../errors.js';
import type { MachineStates, TrailStep } from '../state/machines.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { FLATCAR_KERNEL } from '../boot/layout.js';
import { checkAssetPath } from './asset-path.js';
import { evaluatePreconditions, ifRangeAllows, parseRange, type RangeVerdict, type Validators } from './conditional.js';
import { MethodNotAllowedError, NotFoundError, PreconditionFailedError, RangeNotSatisfiableError } from './errors.js';
import { addBytes, remoteIp, setRoute } from './request.js';
import { BufferPool, TurnBudget, pumpBuffer, pumpFile } from './pump.js';
import type { AssetCache, CacheSource } from './asset-cache.js';

/**
 * Bytes per read. Large reads mean few syscalls and event-loop turns per
 * file; 1 MiB measured several times faster than the 64 KiB default, and
 * 4 MiB was no faster with 8 parallel transfers.
 */
export const CHUNK_SIZE = 1024 * 1024;
/** What all asset transfers together hand to their sockets per event-loop turn (see TurnBudget in pump.ts): a few ms of copying, then the loop polls again. */
const BYTES_PER_TURN = 8 * CHUNK_SIZE;
/** Idle buffers kept for the next transfers (two per running transfer are in use). */
const POOL_IDLE = 32;

export interface AssetDeps {
  assetsDir: string;
  machines: MachineStates;
  log: Logger;
  macOfIp?: (ip: string) => Mac | null;
  /** Whole files in memory; absent = always from disk. */
  cache?: AssetCache;
}

export interface OpenedAsset {
  readonly fh: FileHandle;
  readonly size: number;
  readonly validators: Required<Validators>;
}

function errno(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : 'EUNKNOWN';
}

/** True when `target` is `root` or below it; both real (symlink-free) absolute paths. */
export function isWithin(root: string, target: string): boolean {
  if (target === root) return true;
  return target.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Strong ETag from (inode, size, mtime in ns): changes whenever the file is
 * replaced (new inode, as the asset fetcher's rename does) or rewritten.
 */
export function assetEtag(ino: bigint, size: bigint, mtimeNs: bigint): string {
  return `"${ino.toString(16)}-${size.toString(16)}-${mtimeNs.toString(16)}"`;
}

/** Opens `rel` (through checkAssetPath) below `realRoot`, or throws the HTTP refusal. */
export async function openAsset(realRoot: string, rel: string): Promise<OpenedAsset> {
  let real: string;
  try {
    real = await realpath(join(realRoot, rel));
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`no such asset: ${rel}`);
    throw new ForbiddenError(`cannot resolve asset ${rel} (${code})`);
  }
  if (!isWithin(realRoot, real)) throw new ForbiddenError(`asset ${rel} resolves outside the assets directory`);
  // Checked before opening so a fifo or device is never opened at all.
  const pre = await stat(real).catch(() => null);
  if (pre === null || !pre.isFile()) throw new NotFoundError(pre?.isDirectory() ? `${rel} is a directory` : `no such asset: ${rel}`);
  let fh: FileHandle;
  try {
    // O_NONBLOCK: should a fifo be swapped in after the stat, open must not wait for a writer.
    fh = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT') throw new NotFoundError(`no such asset: ${rel}`);
    throw new ForbiddenError(`cannot open asset ${rel} (${code})`);
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new NotFoundError(`no such asset: ${rel}`);
    let opened: string | null = null;
    try {
      opened = await readlink(`/proc/self/fd/${fh.fd}`);
    } catch {
      // No /proc (not Linux): the realpath check above is all there is.
    }
    if (opened !== null && !isWithin(realRoot, opened)) throw new ForbiddenError(`asset ${rel} changed during open and now lies outside the assets directory`);
    return {
      fh,
      size: Number(st.size),
      validators: { etag: assetEtag(st.ino, st.size, st.mtimeNs), lastModifiedMs: Number(st.mtimeMs) },
    };
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
}

/** Reads an asset whole through openAsset's checks, for the cache: the bytes and the ETag of the file they came from (re-read after the read, so a file rewritten meanwhile is not taken). */
export function wholeAsset(realRoot: () => Promise<string>, rel: string): CacheSource {
  return {
    read: async () => {
      const asset = await openAsset(await realRoot(), rel);
      try {
        const bytes = Buffer.allocUnsafeSlow(asset.size);
        for (let pos = 0; pos < asset.size; ) {
          const { bytesRead } = await asset.fh.read(bytes, pos, Math.min(8 * CHUNK_SIZE, asset.size - pos), pos);
          if (bytesRead === 0) throw new Error(`${rel} shrank while it was read`);
          pos += bytesRead;
        }
        const st = await asset.fh.stat({ bigint: true });
        return { bytes, etag: assetEtag(st.ino, st.size, st.mtimeNs) };
      } finally {
        await asset.fh.close().catch(() => undefined);
      }
    },
  };
}

const TYPES: readonly (readonly [RegExp, string])[] = [
  [/\.(ipxe|txt|asc|DIGESTS)$/, 'text/plain; charset=utf-8'],
  [/\.sig$/, 'application/pgp-signature'],
  [/\.json$/, 'application/json'],
];

/**
 * Initrds stay application/octet-stream even when gzip'd: a client that saw
 * application/gzip might decompress them, and the kernel wants the bytes.
 */
export function assetContentType(path: string): string {
  for (const [re, type] of TYPES) if (re.test(path)) return type;
  return 'application/octet-stream';
}

/** Which boot-trail step fetching this asset is, or null for files that are not a step (signatures, iPXE binaries). */
export function assetStep(path: string): TrailStep | null {
  const name = basename(path);
  if (name === FLATCAR_KERNEL) return 'kernel';
  if (name.endsWith('.cpio.gz')) return 'initrd';
  return null;
}

/** The root's realpath, resolved on first use and kept once it exists (the fetcher may create it after start-up). */
function rootResolver(dir: string): () => Promise<string> {
  let resolved: string | null = null;
  return async () => {
    if (resolved !== null) return resolved;
    try {
      resolved = await realpath(dir);
      return resolved;
    } catch (err) {
      throw new NotFoundError(`the assets directory is missing (${errno(err)}); fetch the assets first`);
    }
  };
}

export function assetsRouter(deps: AssetDeps): Router {
  const router = express.Router();
  const realRoot = rootResolver(deps.assetsDir);
  const pool = new BufferPool(CHUNK_SIZE, POOL_IDLE);
  const budget = new TurnBudget(BYTES_PER_TURN);
  const log = deps.log.child({ route: 'assets' });

  router.use(async (req: Request, res: Response) => {
    setRoute(res, 'assets');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new MethodNotAllowedError(req.method, ['GET', 'HEAD']);
    const ip = remoteIp(req);
    // req.path is the raw path below the mount point, not yet percent-decoded.
    const verdict = checkAssetPath(req.path);
    if (!verdict.ok) {
      log.info({ ip, url: req.originalUrl, reason: verdict.reason }, 'asset path refused');
      throw verdict.status === 400 ? new BadRequestError(`asset path refused: ${verdict.reason}`) : new NotFoundError(`asset path refused: ${verdict.reason}`);
    }
    const path = verdict.path;
    let asset: OpenedAsset;
    try {
      asset = await openAsset(await realRoot(), path);
    } catch (err) {
      log.info({ ip, path, reason: (err as Error).message }, 'asset not served');
      throw err;
    }
    let handedOff = false;
    try {
      await serveOpened(req, res, asset, path, ip, () => {
        handedOff = true;
      });
    } finally {
      if (!handedOff) await asset.fh.close().catch(() => undefined);
    }
  });

  async function serveOpened(req: Request, res: Response, asset: OpenedAsset, path: string, ip: string, handOff: () => void): Promise<void> {
    const { size, validators } = asset;
    res.setHeader('ETag', validators.etag);
    res.setHeader('Last-Modified', new Date(validators.lastModifiedMs).toUTCString());
    res.setHeader('Accept-Ranges', 'bytes');
    // 'current' release paths can move to a new version: caches revalidate (cheap, a 304).
    res.setHeader('Cache-Control', 'no-cache');
    const pre = evaluatePreconditions(
      req.method,
      { ifMatch: req.get('if-match'), ifNoneMatch: req.get('if-none-match'), ifModifiedSince: req.get('if-modified-since'), ifUnmodifiedSince: req.get('if-unmodified-since') },
      validators,
    );
    if (pre === 'failed') throw new PreconditionFailedError(`precondition failed for ${path}`);
    if (pre === 'not-modified') {
      res.status(304).end();
      log.debug({ ip, path, status: 304 }, 'asset not modified');
      return;
    }
    // Range is defined for GET only (RFC 9110 14.2): HEAD describes the whole file.
    const range: RangeVerdict = req.method === 'GET' && ifRangeAllows(req.get('if-range'), validators) ? parseRange(req.get('range'), size) : { kind: 'full' };
    if (range.kind === 'unsatisfiable') {
      log.info({ ip, path, range: req.get('range'), size }, 'range not satisfiable');
      throw new RangeNotSatisfiableError(size);
    }
    const start = range.kind === 'partial' ? range.start : 0;
    const end = range.kind === 'partial' ? range.end : size - 1;
    const length = end - start + 1;
    const status = range.kind === 'partial' ? 206 : 200;
    res.status(status);
    res.setHeader('Content-Type', assetContentType(path));
    res.setHeader('Content-Length', length);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (status === 206) res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }

    const step = assetStep(path);
    const mac = step !== null ? (deps.macOfIp?.(ip) ?? null) : null;
    // Only a fetch from the first byte starts a step: a resumed download is the same step.
    if (mac !== null && step !== null && start === 0) deps.machines.record(mac, step, { ip, detail: path });

    const began = process.hrtime.bigint();
    handOff();
    const inMemory = deps.cache?.lookup(validators.etag, size, wholeAsset(realRoot, path)) ?? null;
    let result;
    if (inMemory !== null) {
      await asset.fh.close().catch(() => undefined);
      result = await pumpBuffer(inMemory, start, end, res, CHUNK_SIZE, (n) => addBytes(res, n), budget);
    } else {
      result = await pumpFile(asset.fh, start, end, res, pool, (n) => addBytes(res, n), budget);
    }
    const ms = Number((process.hrtime.bigint() - began) / 1_000_000n);
    const fields = { ip, path, status, bytes: result.bytes, length, ms, from: inMemory !== null ? 'memory' : 'disk', ...(mac !== null ? { mac } : {}) };
    if (result.ok) log.info(fields, 'asset served');
    else if (result.aborted) log.info({ ...fields, aborted: true }, 'asset download aborted by the client');
    else log.warn({ ...fields, err: result.err }, 'asset transfer failed; connection closed');
  }

  return router;
}
