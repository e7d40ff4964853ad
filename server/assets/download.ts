/**
 * HTTP for the fetcher, on Node's fetch. Small files (version.txt, .sig,
 * DIGESTS, the key) are read into memory with a size cap. Payloads go to a
 * `.part` file that survives a cut connection: the next run asks for the
 * rest with `Range: bytes=N-`, and starts over when the server ignores it.
 * The byte count is checked against Content-Length / Content-Range, so a
 * short body is an error here and never reaches verification as "done".
 */
import { open, stat, truncate } from 'node:fs/promises';
import { AssetError } from './errors.js';

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export interface HttpOptions {
  /** Injected in tests; Node's global fetch otherwise. */
  readonly fetch?: FetchLike;
  /** Abort when no byte arrives for this long (default 60 s). */
  readonly idleTimeoutMs?: number;
}

export interface DownloadOptions extends HttpOptions {
  /** Called as bytes arrive: bytes on disk so far, total size when known. */
  readonly onProgress?: (done: number, total: number | null) => void;
  /** Called once the response says where the download starts and how big the file is. */
  readonly onStart?: (from: number, total: number | null) => void;
}

export interface DownloadResult {
  /** Final size of the `.part` file. */
  readonly size: number;
  /** Bytes received over the network this run (0 when the part was already complete). */
  readonly transferred: number;
  /** Offset the download resumed from (0 for a fresh one). */
  readonly resumedFrom: number;
}

const DEFAULT_IDLE_MS = 60_000;

function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message} (${cause})` : e.message;
}

/** An AbortSignal that fires after `ms` without a call to `touch()`. */
function idleGuard(ms: number): { signal: AbortSignal; touch(): void; done(): void; fired(): boolean } {
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | null = null;
  let fired = false;
  const arm = () => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      fired = true;
      ctl.abort(new Error(`no data for ${Math.round(ms / 1000)} s`));
    }, ms);
  };
  arm();
  return {
    signal: ctl.signal,
    touch: arm,
    done: () => {
      if (timer !== null) clearTimeout(timer);
    },
    fired: () => fired,
  };
}

async function request(url: string, init: RequestInit, opts: HttpOptions, signal: AbortSignal): Promise<Response> {
  const doFetch = opts.fetch ?? fetch;
  try {
    return await doFetch(url, { ...init, signal, redirect: 'follow' });
  } catch (err) {
    throw new AssetError('E_ASSET_HTTP', `cannot fetch ${url}: ${describe(err)}`);
  }
}

function statusError(url: string, res: Response): AssetError {
  if (res.status === 404 || res.status === 410) return new AssetError('E_ASSET_NOT_FOUND', `${url}: HTTP ${res.status} (not on the release server)`);
  return new AssetError('E_ASSET_HTTP', `${url}: HTTP ${res.status} ${res.statusText}`.trimEnd());
}

/** GETs a small file into memory; HTTP 404 throws E_ASSET_NOT_FOUND (callers reword it). */
export async function fetchSmall(url: string, opts: HttpOptions & { maxBytes?: number } = {}): Promise<Buffer> {
  const max = opts.maxBytes ?? 1024 * 1024;
  const guard = idleGuard(opts.idleTimeoutMs ?? DEFAULT_IDLE_MS);
  try {
    const res = await request(url, {}, opts, guard.signal);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw statusError(url, res);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body ?? []) {
        guard.touch();
        size += chunk.length;
        if (size > max) throw new AssetError('E_ASSET_HTTP', `${url}: larger than ${max} bytes; refusing`);
        chunks.push(Buffer.from(chunk));
      }
    } catch (err) {
      if (err instanceof AssetError) throw err;
      throw new AssetError('E_ASSET_TRUNCATED', `${url}: connection lost after ${size} bytes: ${describe(err)}`);
    }
    const length = res.headers.get('content-length');
    if (length !== null && Number(length) !== size) throw new AssetError('E_ASSET_TRUNCATED', `${url}: got ${size} of ${length} bytes`);
    return Buffer.concat(chunks);
  } finally {
    guard.done();
  }
}

/** True when the URL answers a HEAD with 2xx; used to tell "no such file" from "no signature". */
export async function exists(url: string, opts: HttpOptions = {}): Promise<boolean> {
  const guard = idleGuard(opts.idleTimeoutMs ?? DEFAULT_IDLE_MS);
  try {
    const res = await request(url, { method: 'HEAD' }, opts, guard.signal);
    await res.body?.cancel().catch(() => undefined);
    return res.ok;
  } catch {
    return false;
  } finally {
    guard.done();
  }
}

/** Content-Range `bytes S-E/T`, or `bytes *` + `/T` (416) -> its numbers; null when absent or malformed. */
export function parseContentRange(value: string | null): { start: number | null; total: number | null } | null {
  if (value === null) return null;
  const full = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value.trim());
  if (full) return { start: Number(full[1]), total: full[3] === '*' ? null : Number(full[3]) };
  const unsat = /^bytes\s+\*\/(\d+)$/i.exec(value.trim());
  if (unsat) return { start: null, total: Number(unsat[1]) };
  return null;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * Downloads `url` into `partPath`, resuming from the bytes already there.
 * On a cut connection or stall the part is fsync'd and kept, and
 * E_ASSET_TRUNCATED says how far it got; rerunning continues from there.
 */
export async function downloadResumable(url: string, partPath: string, opts: DownloadOptions = {}, restarted = false): Promise<DownloadResult> {
  const have = await sizeOf(partPath);
  const guard = idleGuard(opts.idleTimeoutMs ?? DEFAULT_IDLE_MS);
  let res: Response;
  try {
    res = await request(url, have > 0 ? { headers: { range: `bytes=${have}-` } } : {}, opts, guard.signal);
  } catch (err) {
    guard.done();
    throw err;
  }
  const restart = async (): Promise<DownloadResult> => {
    guard.done();
    await res.body?.cancel().catch(() => undefined);
    await truncate(partPath, 0);
    if (restarted) throw new AssetError('E_ASSET_HTTP', `${url}: the server's ranges are inconsistent; giving up`);
    return downloadResumable(url, partPath, opts, true);
  };

  let from: number;
  let total: number | null;
  if (res.status === 416 && have > 0) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr?.total === have) {
      guard.done();
      await res.body?.cancel().catch(() => undefined);
      opts.onStart?.(have, have);
      return { size: have, transferred: 0, resumedFrom: have };
    }
    // The part is longer than the file now is (it changed upstream): start over.
    return restart();
  } else if (res.status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr === null || cr.start !== have) return restart();
    from = have;
    total = cr.total;
  } else if (res.status === 200) {
    // No Range sent, or the server ignored it: the body is the whole file.
    from = 0;
    const length = res.headers.get('content-length');
    total = length !== null && /^\d+$/.test(length) ? Number(length) : null;
  } else {
    guard.done();
    await res.body?.cancel().catch(() => undefined);
    throw statusError(url, res);
  }

  opts.onStart?.(from, total);
  const fh = await open(partPath, from === 0 ? 'w' : 'a');
  let done = from;
  try {
    try {
      for await (const chunk of res.body ?? []) {
        guard.touch();
        await fh.write(chunk);
        done += chunk.length;
        opts.onProgress?.(done, total);
      }
    } catch (err) {
      const why = guard.fired() ? 'the server stalled' : `connection lost: ${describe(err)}`;
      throw new AssetError('E_ASSET_TRUNCATED', `${url}: ${why} after ${done}${total !== null ? ` of ${total}` : ''} bytes; the partial file is kept and the next run resumes it`);
    }
    if (total !== null && done !== total) {
      throw new AssetError('E_ASSET_TRUNCATED', `${url}: body ended after ${done} of ${total} bytes; the partial file is kept and the next run resumes it`);
    }
  } finally {
    guard.done();
    // Whatever arrived is made durable, so a resume after a crash starts from real bytes.
    await fh.sync().catch(() => undefined);
    await fh.close();
  }
  return { size: done, transferred: done - from, resumedFrom: from };
}
