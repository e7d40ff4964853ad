/**
 * Where a transfer's bytes come from: a file under the root, or a Buffer a
 * callback generated. Blocks are asked for in increasing order only (the
 * transfer keeps sent-but-unacknowledged blocks itself), so a file is read
 * ahead in large chunks, double-buffered, instead of one read per block.
 */
import { open, realpath, stat, readlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODE } from './packet.js';
import { isWithin } from './paths.js';

export interface BlockReader {
  readonly size: number;
  /**
   * Copies block `seq` (1-based, not wrapped) into `dst` at `offset` and
   * returns its length; a promise only when a read from disk is needed.
   */
  copyBlock(seq: number, dst: Buffer, offset: number): number | Promise<number>;
  /** Releases the file handle; safe to call more than once. */
  close(): Promise<void>;
}

export class BufferReader implements BlockReader {
  readonly size: number;
  constructor(
    private readonly data: Buffer,
    private readonly blksize: number,
  ) {
    this.size = data.length;
  }

  copyBlock(seq: number, dst: Buffer, offset: number): number {
    const start = (seq - 1) * this.blksize;
    return this.data.copy(dst, offset, start, Math.min(start + this.blksize, this.size));
  }

  async close(): Promise<void> {}
}

/** Read-ahead size: a whole number of blocks, about 256 KiB, so no block straddles two chunks. */
export function chunkSizeFor(blksize: number): number {
  return Math.max(1, Math.floor((256 * 1024) / blksize)) * blksize;
}

interface Chunk {
  buf: Buffer;
  start: number; // file offset of buf[0]
  length: number; // valid bytes
}

export class FileReader implements BlockReader {
  private current: Chunk | null = null;
  private ahead: Promise<Chunk> | null = null;
  private spare: Buffer | null = null;
  private closed: Promise<void> | null = null;
  private readonly chunkSize: number;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    private readonly blksize: number,
  ) {
    this.chunkSize = Math.min(chunkSizeFor(blksize), Math.max(blksize, size));
  }

  copyBlock(seq: number, dst: Buffer, offset: number): number | Promise<number> {
    const start = (seq - 1) * this.blksize;
    const length = Math.max(0, Math.min(this.blksize, this.size - start));
    if (length === 0) return 0;
    const cur = this.current;
    if (cur !== null && start >= cur.start && start + length <= cur.start + cur.length) {
      cur.buf.copy(dst, offset, start - cur.start, start - cur.start + length);
      return length;
    }
    return this.advance(start).then((chunk) => {
      chunk.buf.copy(dst, offset, start - chunk.start, start - chunk.start + length);
      return length;
    });
  }

  /** Moves to the chunk holding `start` (normally the read-ahead one), then starts reading the next. */
  private async advance(start: number): Promise<Chunk> {
    const chunkStart = start - (start % this.chunkSize);
    let next: Chunk | null = null;
    if (this.ahead !== null) {
      const ahead = await this.ahead;
      this.ahead = null;
      if (ahead.start === chunkStart) next = ahead;
      else this.spare = ahead.buf;
    }
    if (next === null) next = await this.read(chunkStart, this.takeBuffer());
    if (this.current !== null) this.spare = this.current.buf;
    this.current = next;
    const following = chunkStart + this.chunkSize;
    if (following < this.size && this.closed === null) this.ahead = this.read(following, this.takeBuffer());
    return next;
  }

  private takeBuffer(): Buffer {
    const buf = this.spare ?? Buffer.allocUnsafe(this.chunkSize);
    this.spare = null;
    return buf;
  }

  private async read(start: number, buf: Buffer): Promise<Chunk> {
    const want = Math.min(this.chunkSize, this.size - start);
    let length = 0;
    while (length < want) {
      const { bytesRead } = await this.fh.read(buf, length, want - length, start + length);
      if (bytesRead === 0) throw new Error(`file shrank while being served (ended at ${start + length} of ${this.size} bytes)`);
      length += bytesRead;
    }
    return { buf, start, length };
  }

  close(): Promise<void> {
    if (this.closed === null) {
      const pending = this.ahead;
      this.ahead = null;
      // Let an in-flight read-ahead settle first so the handle is not closed under it.
      this.closed = (pending === null ? Promise.resolve() : pending.then(() => undefined, () => undefined)).then(() => this.fh.close());
    }
    return this.closed;
  }
}

export type OpenResult =
  | { readonly ok: true; readonly fh: FileHandle; readonly size: number }
  | { readonly ok: false; readonly code: number; readonly reason: string };

function errno(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : 'EUNKNOWN';
}

/**
 * Opens `rel` (already through checkTftpPath) under `realRoot` (a realpath),
 * refusing anything that is not a regular file inside the root. The checks
 * run before the open (so a fifo or device is never opened) and again on the
 * opened descriptor (so a symlink swapped in between cannot lead out).
 */
export async function openUnderRoot(realRoot: string, rel: string): Promise<OpenResult> {
  const full = join(realRoot, rel);
  let real: string;
  try {
    real = await realpath(full);
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, code: ERROR_CODE.NOT_FOUND, reason: 'no such file' };
    return { ok: false, code: ERROR_CODE.ACCESS, reason: `cannot resolve path (${code})` };
  }
  if (!isWithin(realRoot, real)) return { ok: false, code: ERROR_CODE.ACCESS, reason: 'symlink resolves outside the root' };
  try {
    const st = await stat(real);
    if (!st.isFile()) return { ok: false, code: ERROR_CODE.NOT_FOUND, reason: st.isDirectory() ? 'is a directory' : 'not a regular file' };
  } catch (err) {
    return { ok: false, code: ERROR_CODE.NOT_FOUND, reason: `cannot stat (${errno(err)})` };
  }
  let fh: FileHandle;
  try {
    // O_NONBLOCK: should a fifo be swapped in after the stat, open must not wait for a writer.
    fh = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = errno(err);
    return { ok: false, code: code === 'ENOENT' ? ERROR_CODE.NOT_FOUND : ERROR_CODE.ACCESS, reason: `cannot open (${code})` };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Refusal(ERROR_CODE.NOT_FOUND, 'not a regular file');
    let opened: string | null = null;
    try {
      opened = await readlink(`/proc/self/fd/${fh.fd}`);
    } catch {
      // No /proc (not Linux): the realpath check above is all we have.
    }
    if (opened !== null && !isWithin(realRoot, opened)) throw new Refusal(ERROR_CODE.ACCESS, 'opened file lies outside the root (path changed during open)');
    return { ok: true, fh, size: st.size };
  } catch (err) {
    await fh.close().catch(() => undefined);
    if (err instanceof Refusal) return { ok: false, code: err.tftpCode, reason: err.message };
    return { ok: false, code: ERROR_CODE.ACCESS, reason: `cannot stat opened file (${errno(err)})` };
  }
}

class Refusal extends Error {
  constructor(
    readonly tftpCode: number,
    message: string,
  ) {
    super(message);
  }
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
