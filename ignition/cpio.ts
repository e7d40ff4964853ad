/**
 * cpio "newc" (SVR4, magic 070701): the only archive format the Linux kernel
 * unpacks as an initramfs. Pure: entries in, bytes out (and back, for tests
 * and for inspecting what we serve). No fs, no clock: the mtime is fixed so
 * the same entries always give the same bytes, which lets the HTTP/TFTP side
 * cache by content and hand out a stable ETag.
 */
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { DecodeError, SwarmbootError } from '../server/errors.js';

export interface CpioEntry {
  /** Relative path inside the archive, e.g. "usr/share/oem/config.ign". */
  readonly name: string;
  /** Full st_mode including the type bits: 0o040755 (directory), 0o100644 (file), 0o120777 (symlink). */
  readonly mode: number;
  /** File contents, or a symlink's target. Directories have none. */
  readonly data?: Buffer;
  readonly uid?: number;
  readonly gid?: number;
}

/** An entry as read back, with the header fields the writer chose. */
export interface CpioRecord extends CpioEntry {
  readonly data: Buffer;
  readonly uid: number;
  readonly gid: number;
  readonly ino: number;
  readonly nlink: number;
  readonly mtime: number;
  /** Byte offset of the entry's header in the buffer. */
  readonly offset: number;
}

export interface NewcOptions {
  /** Seconds since the epoch stamped on every entry; 0 by default so output is reproducible. */
  readonly mtime?: number;
}

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

const MAGIC = '070701';
const HEADER_LEN = 110;
const TRAILER = 'TRAILER!!!';
// The kernel skips names longer than PATH_MAX (namesize counts the NUL).
const PATH_MAX = 4096;
const U32_MAX = 0xffffffff;
// GNU cpio and the kernel's own gen_init_cpio both pad the archive to 512
// bytes; the kernel skips zero padding between concatenated archives.
const BLOCK = 512;

function align4(n: number): number {
  return (n + 3) & ~3;
}

function entryError(name: string, why: string): SwarmbootError {
  return new SwarmbootError('E_CPIO_ENTRY', 500, `cpio entry ${JSON.stringify(name)}: ${why}`);
}

function checkU32(name: string, field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw entryError(name, `${field} ${v} is not a 32-bit unsigned integer`);
}

function checkEntry(e: CpioEntry): void {
  const { name } = e;
  if (typeof name !== 'string' || name.length === 0) throw entryError(String(name), 'empty name');
  if (name.startsWith('/')) throw entryError(name, 'absolute name (the kernel and `cpio -i` would write outside the target root)');
  if (name.includes('\0')) throw entryError(name, 'name contains NUL');
  // One spelling per path: no "", "." or ".." components (this also refuses "a/", "a//b", "./a").
  for (const part of name.split('/')) {
    if (part === '' || part === '.' || part === '..') throw entryError(name, `path component ${JSON.stringify(part)} not allowed`);
  }
  if (name === TRAILER) throw entryError(name, 'name is reserved for the end-of-archive marker');
  if (Buffer.byteLength(name, 'utf8') + 1 > PATH_MAX) throw entryError(name, `name longer than ${PATH_MAX - 1} bytes`);
  checkU32(name, 'mode', e.mode);
  if (e.mode > 0o177777) throw entryError(name, `mode 0o${e.mode.toString(8)} has bits outside st_mode`);
  const type = e.mode & S_IFMT;
  const size = e.data?.length ?? 0;
  if (type === S_IFDIR) {
    if (size !== 0) throw entryError(name, 'a directory cannot carry data');
  } else if (type === S_IFLNK) {
    if (size === 0) throw entryError(name, 'a symlink needs its target as data');
  } else if (type !== S_IFREG) {
    throw entryError(name, `mode 0o${e.mode.toString(8)} is not a directory, regular file or symlink`);
  }
  checkU32(name, 'uid', e.uid ?? 0);
  checkU32(name, 'gid', e.gid ?? 0);
  checkU32(name, 'size', size);
}

function hex8(v: number): string {
  // Upper case, as GNU cpio and gen_init_cpio write it.
  return v.toString(16).toUpperCase().padStart(8, '0');
}

interface Header {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  namesize: number;
}

function writeHeader(out: Buffer, at: number, h: Header): void {
  const fields = [h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.filesize, 0, 0, 0, 0, h.namesize, 0];
  out.write(MAGIC + fields.map(hex8).join(''), at, HEADER_LEN, 'latin1');
}

/**
 * Serialises entries, in the order given, as one newc archive ending in
 * TRAILER!!!. The kernel does not create missing parent directories, so
 * list each directory before anything inside it. Inodes count from 1 and
 * only the trailer carries 0 (GNU cpio 2.13's --renumber-inodes hands 0 to
 * the first entry; gen_init_cpio starts at 721): unpackers detect hard links
 * by inode, so every entry gets its own, and none shares the trailer's.
 */
export function writeNewc(entries: readonly CpioEntry[], opts: NewcOptions = {}): Buffer {
  const mtime = opts.mtime ?? 0;
  checkU32('(archive)', 'mtime', mtime);
  const seen = new Set<string>();
  let total = 0;
  for (const e of entries) {
    checkEntry(e);
    if (seen.has(e.name)) throw entryError(e.name, 'duplicate name');
    seen.add(e.name);
    total += align4(HEADER_LEN + Buffer.byteLength(e.name, 'utf8') + 1) + align4(e.data?.length ?? 0);
  }
  total += align4(HEADER_LEN + TRAILER.length + 1);
  const out = Buffer.alloc(Math.ceil(total / BLOCK) * BLOCK); // zero-filled: padding is free

  let at = 0;
  const put = (name: string, h: Omit<Header, 'namesize'>, data: Buffer | undefined): void => {
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    writeHeader(out, at, { ...h, namesize: nameBytes.length });
    nameBytes.copy(out, at + HEADER_LEN);
    at = align4(at + HEADER_LEN + nameBytes.length);
    if (data !== undefined) data.copy(out, at);
    at = align4(at + h.filesize);
  };
  entries.forEach((e, i) => {
    const isDir = (e.mode & S_IFMT) === S_IFDIR;
    put(e.name, { ino: i + 1, mode: e.mode, uid: e.uid ?? 0, gid: e.gid ?? 0, nlink: isDir ? 2 : 1, mtime, filesize: e.data?.length ?? 0 }, e.data);
  });
  put(TRAILER, { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0 }, undefined);
  return out;
}

function readHex(buf: Buffer, at: number, field: string): number {
  const text = buf.toString('latin1', at, at + 8);
  if (!/^[0-9A-Fa-f]{8}$/.test(text)) throw new DecodeError(`cpio header at ${at}: field ${field} is not 8 hex digits: ${JSON.stringify(text)}`);
  return parseInt(text, 16);
}

/**
 * Reads newc archives back into records (trailers dropped). Like the kernel,
 * it accepts several archives one after another with zero padding between
 * them. Anything malformed raises a DecodeError naming the offset.
 */
export function readNewc(buf: Buffer): CpioRecord[] {
  const out: CpioRecord[] = [];
  let at = 0;
  let sawTrailer = false;
  while (at < buf.length) {
    if (sawTrailer) {
      // Between archives: zero padding, then maybe another archive (on a 4-byte boundary, as the kernel requires).
      while (at < buf.length && buf[at] === 0) at++;
      if (at === buf.length) break;
      if (at % 4 !== 0) throw new DecodeError(`cpio data at ${at} after a trailer is not 4-byte aligned`);
      sawTrailer = false;
    }
    if (at + HEADER_LEN > buf.length) throw new DecodeError(`cpio truncated: header at ${at} needs ${HEADER_LEN} bytes, ${buf.length - at} left`);
    const magic = buf.toString('latin1', at, at + 6);
    if (magic !== MAGIC) throw new DecodeError(`cpio header at ${at}: bad magic ${JSON.stringify(magic)} (want ${MAGIC}, newc)`);
    const f = (i: number, field: string): number => readHex(buf, at + 6 + i * 8, field);
    const ino = f(0, 'ino');
    const mode = f(1, 'mode');
    const uid = f(2, 'uid');
    const gid = f(3, 'gid');
    const nlink = f(4, 'nlink');
    const mtime = f(5, 'mtime');
    const filesize = f(6, 'filesize');
    const namesize = f(11, 'namesize');
    if (namesize === 0 || namesize > PATH_MAX) throw new DecodeError(`cpio header at ${at}: namesize ${namesize} out of range`);
    const nameStart = at + HEADER_LEN;
    const dataStart = align4(nameStart + namesize);
    const end = align4(dataStart + filesize);
    if (nameStart + namesize > buf.length) throw new DecodeError(`cpio truncated: name of entry at ${at} runs past the end`);
    if (buf[nameStart + namesize - 1] !== 0) throw new DecodeError(`cpio header at ${at}: name is not NUL-terminated`);
    const name = buf.toString('utf8', nameStart, nameStart + namesize - 1);
    if (dataStart + filesize > buf.length) throw new DecodeError(`cpio truncated: data of ${JSON.stringify(name)} (${filesize} bytes at ${dataStart}) runs past the end`);
    if (name === TRAILER) {
      sawTrailer = true;
    } else {
      const data = Buffer.from(buf.subarray(dataStart, dataStart + filesize));
      out.push({ name, mode, uid, gid, ino, nlink, mtime, data, offset: at });
    }
    at = Math.min(end, buf.length);
  }
  if (!sawTrailer) throw new DecodeError('cpio truncated: no TRAILER!!! entry');
  return out;
}

/**
 * gzip with a fixed header: mtime 0 (Node never stamps one), no name, and
 * the OS byte pinned to 3 (Unix), which zlib otherwise sets from the build
 * platform. The deflate stream itself depends on the zlib Node bundles, so
 * output is stable per Node build, not across versions: compare
 * decompressed bytes in golden tests.
 */
export function gzipDeterministic(buf: Buffer): Buffer {
  const gz = gzipSync(buf, { level: 9 });
  if (gz[0] !== 0x1f || gz[1] !== 0x8b || gz[2] !== 8 || gz[3] !== 0) {
    throw new SwarmbootError('E_GZIP', 500, 'zlib produced an unexpected gzip header');
  }
  gz.writeUInt32LE(0, 4);
  gz[9] = 3;
  return gz;
}

/** gunzip for callers inspecting what we serve; bad input is a DecodeError. */
export function gunzip(buf: Buffer): Buffer {
  try {
    return gunzipSync(buf);
  } catch (err) {
    throw new DecodeError(`not valid gzip: ${(err as Error).message}`);
  }
}

function octal(mode: number): string {
  return mode.toString(8).padStart(6, '0');
}

/**
 * A readable listing of an archive for golden files and debugging: one line
 * per entry with its header fields and a digest of its data.
 */
export function dumpNewc(buf: Buffer): string {
  const records = readNewc(buf);
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const lines = [`newc archive: ${buf.length} bytes, sha256 ${sha(buf)}`];
  lines.push('offset ino mode   nlink uid gid mtime size sha256(data)[:16] name');
  for (const r of records) {
    const digest = (r.mode & S_IFMT) === S_IFDIR ? '-' : sha(r.data).slice(0, 16);
    lines.push([r.offset, r.ino, octal(r.mode), r.nlink, r.uid, r.gid, r.mtime, r.data.length, digest, r.name].join(' '));
  }
  return lines.join('\n') + '\n';
}
