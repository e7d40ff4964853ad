/**
 * An embedded, crash-safe key -> value store: the state lives in memory, and
 * every change is appended to a journal file before the caller is told it
 * happened. Lease state uses it; anything else that must survive kill -9
 * (swarm state) can too.
 *
 * Files, in `dir`:
 *   <name>.snapshot  the whole state as of one compaction (generation G); its
 *                    header may name a `base`: the journal (generation, last
 *                    sequence number) it holds everything up to
 *   <name>.journal   the changes made since that snapshot: generation G or,
 *                    between a compaction's snapshot rename and its journal
 *                    rename (or after it failed between the two), the base's
 *   <name>.lock      pid and start time of the process that has the store open
 *
 * Every line is `<crc32 as 8 hex digits> <JSON>\n`. The checksum tells a
 * torn tail (a crash cut the last write short) from damage in the middle:
 *   - bad lines with no good line after them are a torn tail: only writes
 *     nobody was told about can be there, so they are dropped (logged) and
 *     the file is truncated back to the last good line;
 *   - a bad line followed by good ones, a gap in the sequence numbers, or any
 *     bad line in a snapshot (snapshots are renamed into place whole) is
 *     corruption: open() fails with a JournalCorruptError naming file, line
 *     and byte offset. Losing leases without a word is worse than not
 *     starting. With `onCorrupt: 'quarantine'` (an operator's explicit
 *     choice, e.g. a --repair flag) the damaged file is copied aside
 *     (`<file>.corrupt-<ms>`), each bad line is logged at error level with
 *     its location, the rest is loaded, and a fresh snapshot is written.
 *
 * Compaction runs beside the writer: serialising and syncing every key takes
 * tens of ms for tens of thousands of leases, and DHCPACKs held back that
 * long leave in one burst that overflows clients' socket buffers.
 *   1. The cut, in the writer between two write batches: S = the journal's
 *      last sequence number, B = its generation, and a shallow copy of the
 *      entries. put() sets a value before its record is written, so the copy
 *      may hold values whose records are still queued; those records get
 *      sequence numbers above S and replay on top, so the result converges.
 *      From here on the writer also keeps, in memory, each record it appends
 *      (the tail).
 *   2. In the background, yielding to the event loop after every slice (about
 *      a millisecond of work): `<name>.snapshot.tmp` of generation G+1 with
 *      `base: {gen: B, seq: S}`, fdatasync, rename to `<name>.snapshot`,
 *      fsync the directory. The writer goes on appending to journal B.
 *   3. In the background: `<name>.journal.tmp`, a G+1 header and the tail so
 *      far, renumbered from 1 (every journal counts from 1 and reads as it
 *      always has), fdatasync.
 *   4. A writer step, the only time appends wait: the rest of the tail,
 *      fdatasync, rename over `<name>.journal`, fsync the directory.
 * Recovery of a snapshot of generation X with base {B, S}, next to
 *   - a journal of generation X: replay all of it;
 *   - a journal of generation B: replay only the records after S (the others
 *     are in the snapshot), then finish the compaction: those records become
 *     journal X (tmp, fdatasync, rename, fsync the directory);
 *   - an older journal of another generation: stale, ignored (a snapshot
 *     without base, from before this scheme, was followed by a journal
 *     holding nothing; a crash between the two renames left the older one);
 *   - a newer journal: corruption.
 * Snapshots without base (version 1) load as they always did. Those with one
 * are version 2, so that an older swarmboot refuses them rather than take a
 * journal B for stale and drop acknowledged records.
 * A crash at any point leaves one of three consistent pairs: the old snapshot
 * and journal B (before the snapshot rename; leftover .tmp files are removed
 * on open), the new snapshot and journal B (from that rename until the
 * journal's), the new snapshot and the new journal. The snapshot's rename is
 * made durable before the journal is renamed, so a power cut never shows the
 * new journal next to the old snapshot.
 * Failures: anything that fails before the journal rename (typically a full
 * disk, for the snapshot or for the tail file) is logged, the writer carries
 * on in journal B, and the next compaction comes after another `compactEvery`
 * records; whichever snapshot is on disk reads correctly next to journal B.
 * That includes a failed directory fsync after the snapshot rename: the
 * journal is then not renamed, so it cannot overtake a snapshot rename that
 * was lost. A failed journal rename, or directory fsync after it, is fatal:
 * after a power cut the name may point at either file, and the writer can
 * append to only one. Any journal write failure is fatal as always; one
 * during a compaction also keeps its snapshot from being renamed into place.
 * One compaction runs at a time; compact() resolves once its snapshot and
 * journal are in place, and close() waits for a running one. A change queued
 * but not acknowledged at the cut is in the snapshot: after a crash it may
 * survive although its promise never resolved (as any unacknowledged change
 * may), and of two such changes to one key the older can win; acknowledged
 * changes always survive.
 * Automatic compaction waits for `compactEvery` records and for at least
 * half as many records as there are keys, counted since the last cut: a
 * snapshot writes every key, so the second condition keeps its cost within
 * two lines per journalled record however large the store grows (a boot
 * storm of new leases would otherwise rewrite the whole, growing state every
 * `compactEvery` binds).
 *
 * Write batches: at most WRITE_BATCH_RECORDS records (and WRITE_BATCH_CHARS
 * of JSON) are encoded and written at a time, and the event loop gets a turn
 * between batches, so thousands of queued changes (a flush of machine
 * observations) do not hold up DHCP packets for tens of ms. Under 'batch' one
 * fdatasync covers the write batches of a backlog (up to GROUP_RECORDS
 * records); no promise resolves before it.
 *
 * Durability (`fsync`):
 *   'always' one fdatasync per change, the change's promise resolves after it;
 *   'batch'  group commit: changes queued while a write+fdatasync is in flight
 *            share the next one; each promise still resolves only once its
 *            line is on disk (survives power loss, like 'always'). With
 *            `syncIntervalMs`, fdatasyncs are at least that far apart, so
 *            that under load more changes share each (a commit delay: each
 *            costs a disk flush and two thread switches, and a boot storm
 *            would otherwise sync every millisecond or so); a change then
 *            waits up to that much longer;
 *   'never'  resolves once write() returned: survives kill -9 of this process
 *            (the kernel has the bytes), not a power cut. flush()/close() sync.
 *
 * Reads (get/state) see a change as soon as put()/delete() is called; its
 * promise says when it is durable. A caller that promises something to the
 * outside world (a DHCPACK) awaits it first. After any write or fsync error
 * the journal refuses all further changes (E_JOURNAL_IO): memory may then
 * hold changes the disk does not, and retrying an fsync after a failure is
 * not safe on Linux; restart and recover from disk.
 */
import { open, readFile, rename, mkdir, unlink, truncate, copyFile, readdir } from 'node:fs/promises';
// zlib.crc32 needs Node 20.15+ (package.json says >=20; 20.20 is installed).
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { SwarmbootError } from '../errors.js';
import { lockOwnerAlive, ownLockLine, parseLockOwner, type LockOwner } from '../pid.js';
import type { Logger } from '../log.js';

export type FsyncPolicy = 'always' | 'batch' | 'never';

/** Errors the journal raises on purpose. Codes: E_JOURNAL_IO, E_JOURNAL_LOCKED, E_JOURNAL_CLOSED, E_JOURNAL_VALUE. */
export class JournalError extends SwarmbootError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, 500, message);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The files on disk do not add up; `file`, `line` (1-based) and `offset` (bytes) say where. */
export class JournalCorruptError extends SwarmbootError {
  readonly file: string;
  readonly line: number;
  readonly offset: number;
  constructor(file: string, line: number, offset: number, why: string) {
    super(
      'E_JOURNAL_CORRUPT',
      500,
      `${file}:${line}: ${why} (byte offset ${offset}). The store was not opened so that no state is lost silently; ` +
        `inspect the file, or open with onCorrupt: 'quarantine' to keep the good records and set the damaged file aside`,
    );
    this.file = file;
    this.line = line;
    this.offset = offset;
  }
}

/** One open file, as much of it as the journal needs. */
export interface JournalFile {
  /** Writes all of `data` at the end of the file. */
  append(data: Buffer): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The file system operations the journal uses. Tests pass a wrapper to
 * count fsyncs or to make one fail; everything else uses `nodeJournalIo`.
 */
export interface JournalIo {
  /** Opens for appending, creating the file (or failing with EEXIST when `exclusive`). */
  openAppend(path: string, opts?: { exclusive?: boolean }): Promise<JournalFile>;
  /** The whole file, or null when it does not exist. */
  readFile(path: string): Promise<Buffer | null>;
  rename(from: string, to: string): Promise<void>;
  /** Removes the file; absent is fine. */
  remove(path: string): Promise<void>;
  truncate(path: string, length: number): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  mkdirp(dir: string): Promise<void>;
  /** fsync of the directory itself, so renames and creations in it are durable. */
  syncDir(dir: string): Promise<void>;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

export const nodeJournalIo: JournalIo = {
  async openAppend(path, opts) {
    const fh = await open(path, opts?.exclusive === true ? 'ax' : 'a');
    return {
      async append(data) {
        let done = 0;
        while (done < data.length) {
          const { bytesWritten } = await fh.write(data, done, data.length - done);
          done += bytesWritten;
        }
      },
      datasync: () => fh.datasync(),
      close: () => fh.close(),
    };
  },
  async readFile(path) {
    try {
      return await readFile(path);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  },
  rename: (from, to) => rename(from, to),
  async remove(path) {
    try {
      await unlink(path);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  },
  truncate: (path, length) => truncate(path, length),
  copyFile: (from, to) => copyFile(from, to),
  list: (dir) => readdir(dir),
  async mkdirp(dir) {
    await mkdir(dir, { recursive: true });
  },
  async syncDir(dir) {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

export interface JournalOptions<T> {
  log: Logger;
  /** Default 'batch'. */
  fsync?: FsyncPolicy;
  /** Compact once this many records (and half as many as there are keys; see the file comment) were appended since the last snapshot; 0 = only on compact(). Default 10,000. */
  compactEvery?: number;
  /** Under 'batch': the shortest time between two fdatasyncs (see the file comment). Default 0. */
  syncIntervalMs?: number;
  /**
   * Checks one stored value on load and returns it typed; throw to reject it
   * (reported like a damaged line). Without it values are trusted as T.
   */
  decode?: (raw: unknown, key: string) => T;
  /** Default 'fail'; see the file comment. */
  onCorrupt?: 'fail' | 'quarantine';
  /** Take `<name>.lock` so a second process cannot open the same store. Default true. */
  lock?: boolean;
  io?: JournalIo;
  /** Clock for names of quarantined copies and for stats. */
  now?: () => number;
  /** Is the lock's owner still running? Default: `lockOwnerAlive` (tests fake it). */
  isAlive?: (owner: LockOwner) => boolean;
}

export interface JournalStats {
  /** Generation of the newest snapshot, counting one being written. */
  generation: number;
  /** Records the newest snapshot (counting one being written) does not hold: what the next compaction would write out. */
  journalRecords: number;
  keys: number;
  fsyncs: number;
  writes: number;
  /** Compactions begun, less those that failed before their snapshot was in place. */
  compactions: number;
  /** When the last compaction finished (its snapshot and journal in place). */
  lastCompactionAt: number | null;
  /** A compaction is running in the background. */
  compacting: boolean;
}

/** Journal header version (unchanged since the first release). */
const JOURNAL_VERSION = 1;
/** Snapshot header version: 1 without `base`, 2 with (see the file comment). */
const SNAPSHOT_VERSION = 2;
/**
 * Records encoded and written at a time (see the file comment), and the JSON
 * characters they may add up to: a thousand machine observations with their
 * trails are 1.6 MB, whose encoding and checksums alone take 3-10 ms.
 */
export const WRITE_BATCH_RECORDS = 1024;
export const WRITE_BATCH_CHARS = 256 * 1024;
/** Records one 'batch' fdatasync covers at most: a bound on how long the first of them waits. */
const GROUP_RECORDS = 8192;
/** Background compaction work between two turns of the event loop: this long, or this many lines, whichever comes first. */
const SLICE_MS = 1;
export const SLICE_LINES = 1024;

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Deferred {
  resolve(): void;
  reject(err: Error): void;
}

type Job =
  /** `fields` is the record's JSON minus its sequence number, which is given at write time (a compaction renumbers). */
  | { kind: 'record'; fields: string; done: Deferred | null }
  | { kind: 'sync'; done: Deferred }
  /** Take a cut; resolves once that compaction is in place. */
  | { kind: 'compact'; done: Deferred }
  /** A running compaction's last step, run by the writer between batches. */
  | { kind: 'swap'; run: () => Promise<void>; done: Deferred };

/** What a compaction works from, fixed at its cut. */
interface Cut<T> {
  /** The new snapshot's and journal's generation. */
  gen: number;
  /** The journal it covers, up to which record. */
  base: { gen: number; seq: number };
  keys: string[];
  values: T[];
  /** Fields of each record appended after the cut, in order (the new journal's content); the same array as Journal.tail. */
  tail: string[];
  /** compact() calls this compaction answers. */
  waiters: Deferred[];
  /** Stats before the cut, restored when it fails before its snapshot is in place. */
  prev: { covered: number; snapshotGen: number };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** What a parsed line holds; loader-internal. */
interface LineSpan {
  /** 1-based line number. */
  line: number;
  offset: number;
  /** Bytes including the newline. */
  length: number;
  value: unknown;
  problem: string | null;
}

function crcHex(text: string | Buffer): string {
  return crc32(text).toString(16).padStart(8, '0');
}

/** `<crc32> <json>\n`, exported for tests and fixtures that build files by hand. */
export function encodeLine(record: object): string {
  return lineOf(JSON.stringify(record));
}

function lineOf(json: string): string {
  return `${crcHex(json)} ${json}\n`;
}

/**
 * lineOf() for many JSON texts, straight into one buffer: each text is
 * encoded to UTF-8 once and its checksum taken over those bytes (lineOf
 * would encode it twice, for the checksum and for the write).
 */
function linesOf(jsons: readonly string[]): Buffer {
  let size = 0;
  for (const json of jsons) size += Buffer.byteLength(json, 'utf8') + 10;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const json of jsons) {
    const start = at + 9;
    const end = start + out.write(json, start, 'utf8');
    out.write(crc32(out.subarray(start, end)).toString(16).padStart(8, '0'), at, 'latin1');
    out[start - 1] = 0x20;
    out[end] = 0x0a;
    at = end + 1;
  }
  return out;
}

/** Splits a file into checked lines; the last element is an unterminated tail when the file does not end in \n. */
function splitLines(buf: Buffer): { lines: LineSpan[]; tail: { offset: number; length: number } | null } {
  const lines: LineSpan[] = [];
  let start = 0;
  let n = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    if (nl === -1) return { lines, tail: { offset: start, length: buf.length - start } };
    n += 1;
    const body = buf.subarray(start, nl);
    lines.push({ line: n, offset: start, length: nl + 1 - start, ...checkLine(body) });
    start = nl + 1;
  }
  return { lines, tail: null };
}

function checkLine(body: Buffer): { value: unknown; problem: string | null } {
  if (body.length < 10 || body[8] !== 0x20) return { value: null, problem: 'malformed line (want "<crc32> <json>")' };
  const hex = body.toString('latin1', 0, 8);
  if (!/^[0-9a-f]{8}$/.test(hex)) return { value: null, problem: 'malformed checksum' };
  const json = body.subarray(9);
  if (crcHex(json) !== hex) return { value: null, problem: 'checksum mismatch' };
  try {
    return { value: JSON.parse(json.toString('utf8')) as unknown, problem: null };
  } catch {
    return { value: null, problem: 'checksum matches but JSON does not parse' };
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isGen(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Version 1 has no base; version 2 has one, of an older journal generation. */
function snapshotVersionOk(h: Record<string, unknown>): boolean {
  if (h.v === 1) return h.base === undefined;
  const base = h.base;
  return h.v === SNAPSHOT_VERSION && isObject(base) && isGen(base.gen) && isGen(base.seq) && isGen(h.gen) && base.gen < h.gen;
}

export class Journal<T> {
  readonly dir: string;
  readonly name: string;
  private readonly map: Map<string, T>;
  private readonly log: Logger;
  private readonly io: JournalIo;
  private readonly policy: FsyncPolicy;
  private readonly compactEvery: number;
  private readonly syncIntervalMs: number;
  /** performance.now() when the last fdatasync finished: real time, whatever clock `now` fakes. */
  private lastSyncAt = -Infinity;
  private readonly now: () => number;
  private readonly lockHeld: boolean;
  private file: JournalFile;
  /** The journal file's generation. */
  private generation: number;
  /** The newest snapshot's generation, counting one being written: ahead of `generation` while a compaction runs, or after one failed half-way. */
  private snapshotGen: number;
  /** The journal file's last sequence number. */
  private seq: number;
  /** Records of the journal file (up to this sequence number) that the newest snapshot holds: its base, when it is based on this file. */
  private covered = 0;
  private unsynced = false;
  /** `journalRecords` count that triggers the next automatic compaction. */
  private autoCompactAt: number;
  private jobs: Job[] = [];
  /** True from the moment a drain starts until its loop has seen the queue empty (cleared synchronously there). */
  private running = false;
  private draining: Promise<void> = Promise.resolve();
  /** The running compaction (its cut and its background task, which never rejects). */
  private compaction: { cut: Cut<T>; done: Promise<void> } | null = null;
  /** From a compaction's cut until its journal is in place (or it failed): the fields of each record appended since, in order. */
  private tail: string[] | null = null;
  /** compact() calls that reached the writer while a compaction ran: they get the next cut. */
  private compactWaiting: Deferred[] = [];
  private failure: Error | null = null;
  private closed = false;
  private counters = { fsyncs: 0, writes: 0, compactions: 0, lastCompactionAt: null as number | null };

  private constructor(init: {
    dir: string;
    name: string;
    log: Logger;
    io: JournalIo;
    policy: FsyncPolicy;
    compactEvery: number;
    syncIntervalMs: number;
    now: () => number;
    lockHeld: boolean;
    file: JournalFile;
    generation: number;
    seq: number;
    state: Map<string, T>;
  }) {
    this.dir = init.dir;
    this.name = init.name;
    this.log = init.log;
    this.io = init.io;
    this.policy = init.policy;
    this.compactEvery = init.compactEvery;
    this.syncIntervalMs = init.syncIntervalMs;
    this.autoCompactAt = init.compactEvery;
    this.now = init.now;
    this.lockHeld = init.lockHeld;
    this.file = init.file;
    this.generation = init.generation;
    this.snapshotGen = init.generation;
    this.seq = init.seq;
    this.map = init.state;
  }

  /**
   * Opens (creating if needed) the store `name` in `dir` and recovers its
   * state. Throws JournalCorruptError (see the file comment) or
   * JournalError E_JOURNAL_LOCKED when a live process holds the lock.
   */
  static async open<T>(dir: string, name: string, opts: JournalOptions<T>): Promise<Journal<T>> {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new JournalError('E_JOURNAL_VALUE', `bad journal name ${JSON.stringify(name)}`);
    const io = opts.io ?? nodeJournalIo;
    const log = opts.log.child({ subsystem: 'journal', journal: name });
    const now = opts.now ?? Date.now;
    const paths = journalPaths(dir, name);
    await io.mkdirp(dir);
    const lockHeld = opts.lock ?? true;
    if (lockHeld) await takeLock(io, paths.lock, opts.isAlive ?? lockOwnerAlive, log);
    try {
      const loaded = await recover<T>(io, dir, name, { ...opts, log, now });
      const j = new Journal<T>({
        dir,
        name,
        log,
        io,
        policy: opts.fsync ?? 'batch',
        compactEvery: opts.compactEvery ?? 10_000,
        syncIntervalMs: opts.syncIntervalMs ?? 0,
        now,
        lockHeld,
        file: loaded.file,
        generation: loaded.generation,
        seq: loaded.seq,
        state: loaded.state,
      });
      log.info(
        { generation: loaded.generation, keys: loaded.state.size, journalRecords: loaded.seq, fsync: j.policy },
        'journal opened',
      );
      if (loaded.mustCompact || (j.compactEvery > 0 && loaded.seq >= j.compactEvery)) {
        await j.compact().catch(async (err: unknown) => {
          await j.file.close().catch(() => undefined);
          throw err;
        });
      }
      return j;
    } catch (err) {
      if (lockHeld) await io.remove(paths.lock).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The recovered-and-current state. Values must not be mutated, except by
   * an owner that puts them again after each change (MachineStates does):
   * a snapshot serialises them some time after its cut, so it then holds
   * that newer value, and the put's record (after the cut) replays on top.
   */
  get state(): ReadonlyMap<string, T> {
    return this.map;
  }

  get(key: string): T | undefined {
    return this.map.get(key);
  }

  get size(): number {
    return this.map.size;
  }

  /**
   * Sets `key` at once (reads see it) and resolves when the change is as
   * durable as the fsync policy makes it. `value` must survive JSON.
   */
  put(key: string, value: T): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    let fields: string;
    try {
      fields = recordFields(key, value);
    } catch (err) {
      return Promise.reject(err);
    }
    this.map.set(key, value);
    return this.enqueue((done) => ({ kind: 'record', fields, done }));
  }

  /**
   * put() for many keys with one promise, which resolves once all of them
   * are as durable as the policy makes them (records are written in order,
   * so that is when the last one is). For bulk writers, such as a flush of
   * many observations, that do not need a promise per record. Nothing is
   * set when a value does not serialise. Each value is serialised here, in
   * one go: a caller with thousands should pass them a few hundred at a time.
   */
  putMany(entries: Iterable<readonly [string, T]>): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    const lines: [string, T, string][] = [];
    try {
      for (const [key, value] of entries) lines.push([key, value, recordFields(key, value)]);
    } catch (err) {
      return Promise.reject(err);
    }
    const last = lines.pop();
    if (last === undefined) return Promise.resolve();
    for (const [key, value, fields] of lines) {
      this.map.set(key, value);
      this.jobs.push({ kind: 'record', fields, done: null });
    }
    this.map.set(last[0], last[1]);
    return this.enqueue((done) => ({ kind: 'record', fields: last[2], done }));
  }

  /** Removes `key`; resolves to false (and writes nothing) when it was absent. */
  delete(key: string): Promise<boolean> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    if (!this.map.has(key)) return Promise.resolve(false);
    const fields = `"k":${JSON.stringify(key)},"d":true`;
    this.map.delete(key);
    return this.enqueue((done) => ({ kind: 'record', fields, done })).then(() => true);
  }

  /** Resolves once every change made so far is on disk (fdatasync even under 'never'). */
  flush(): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    return this.enqueue((done) => ({ kind: 'sync', done }));
  }

  /**
   * Writes a snapshot of the state as of this call (or later) and starts a
   * journal of what came after it (see the file comment); resolves once both
   * are in place. Changes made meanwhile are not held up.
   */
  compact(): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    return this.enqueue((done) => ({ kind: 'compact', done }));
  }

  /** Flushes, waits for a running compaction, closes the file and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Refuse new changes first, so nothing is queued behind the final sync.
    this.closed = true;
    let flushError: unknown = null;
    if (this.failure === null) await this.enqueue((done) => ({ kind: 'sync', done })).catch((err: unknown) => (flushError = err));
    // A compaction's last step runs in the writer, and a waiting compact() may start another.
    while (this.running || this.compaction !== null) await (this.compaction?.done ?? this.draining);
    await this.file.close().catch(() => undefined);
    if (this.lockHeld) await this.io.remove(journalPaths(this.dir, this.name).lock).catch(() => undefined);
    this.log.info({ keys: this.map.size }, 'journal closed');
    if (flushError !== null) throw flushError;
  }

  stats(): JournalStats {
    return {
      generation: this.snapshotGen,
      journalRecords: this.seq - this.covered,
      keys: this.map.size,
      fsyncs: this.counters.fsyncs,
      writes: this.counters.writes,
      compactions: this.counters.compactions,
      lastCompactionAt: this.counters.lastCompactionAt,
      compacting: this.compaction !== null,
    };
  }

  private refusal(): Error | null {
    if (this.failure) return this.failure;
    if (this.closed) return new JournalError('E_JOURNAL_CLOSED', `journal ${this.name} is closed`);
    return null;
  }

  private enqueue(make: (done: Deferred) => Job, front = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const job = make({ resolve, reject });
      if (front) this.jobs.unshift(job);
      else this.jobs.push(job);
      if (!this.running) {
        this.running = true;
        this.draining = this.drain();
      }
    });
  }

  /** The one writer: takes jobs in order, one group of writes + (per policy) one fdatasync per step. */
  private async drain(): Promise<void> {
    // `running` is cleared in this function's finally, in the same microtask
    // as the check that saw the queue empty: a job enqueued meanwhile (say by
    // the continuation of the last batch's put) is either seen by the loop or
    // starts a new drain, never stranded.
    try {
      // Let the rest of the current tick queue up behind the first change, so
      // a burst handled in one tick shares one write even under 'never'.
      await Promise.resolve();
      while (this.jobs.length > 0 && this.failure === null) {
        await this.step();
        // A storm keeps the queue full: let packets and timers in between steps.
        if (this.jobs.length > 0) await yieldToLoop();
      }
      if (this.failure) this.failAll(this.failure);
    } finally {
      this.running = false;
    }
  }

  /** Whether the job at the head of the queue can join a group of writes. */
  private writableNext(): boolean {
    const kind = this.jobs[0]?.kind;
    return kind === 'record' || kind === 'sync';
  }

  /** A compaction's cut or last step, or one group: write batches and (per policy) a single fdatasync. */
  private async step(): Promise<void> {
    const head = this.jobs[0];
    if (head?.kind === 'compact') {
      this.jobs.shift();
      this.compactWaiting.push(head.done);
      if (this.compaction === null) this.startCompaction();
      return;
    }
    if (head?.kind === 'swap') {
      this.jobs.shift();
      try {
        await head.run();
        head.done.resolve();
      } catch (err) {
        head.done.reject(asError(err));
      }
      return;
    }
    if (this.policy === 'batch' && this.syncIntervalMs > 0) {
      const wait = this.lastSyncAt + this.syncIntervalMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const group: Job[] = [];
    let records = 0;
    let wantSync = this.policy !== 'never';
    const perWrite = this.policy === 'always' ? 1 : WRITE_BATCH_RECORDS;
    try {
      for (;;) {
        // Take the batch with one splice: shift() per job is quadratic when a boot storm queues thousands.
        const jsons: string[] = [];
        let chars = 0;
        let seq = this.seq;
        let taken = 0;
        for (let job = this.jobs[0]; job !== undefined && job.kind !== 'compact' && job.kind !== 'swap'; job = this.jobs[++taken]) {
          if (job.kind === 'record') {
            if (jsons.length === perWrite || (jsons.length > 0 && chars + job.fields.length > WRITE_BATCH_CHARS)) break;
            chars += job.fields.length;
            jsons.push(`{"s":${++seq},${job.fields}}`);
          } else {
            wantSync = true;
          }
        }
        const batch = this.jobs.splice(0, taken);
        // Only a backlog keeps the group open: changes trickling in one at a time must not keep deferring its fdatasync.
        const backlog = this.writableNext();
        for (const job of batch) group.push(job);
        if (jsons.length > 0) {
          await this.file.append(linesOf(jsons));
          this.seq = seq;
          this.counters.writes += 1;
          this.unsynced = true;
          records += jsons.length;
          const tail = this.tail;
          if (tail !== null) for (const job of batch) if (job.kind === 'record') tail.push(job.fields);
        }
        // Group commit: under 'batch', the changes that queued up meanwhile share this group's fdatasync.
        if (this.policy !== 'batch' || records >= GROUP_RECORDS || !backlog) break;
        await yieldToLoop();
      }
      if (wantSync && this.unsynced) {
        await this.file.datasync();
        this.lastSyncAt = performance.now();
        this.counters.fsyncs += 1;
        this.unsynced = false;
      }
    } catch (err) {
      this.failure = new JournalError('E_JOURNAL_IO', `journal ${this.name}: write failed, refusing further changes`, { cause: err });
      this.log.error({ err }, 'journal write failed; the store is read-only until restart');
      for (const job of group) job.done?.reject(this.failure);
      return;
    }
    for (const job of group) job.done?.resolve();
    const pending = this.seq - this.covered;
    if (this.compactEvery > 0 && this.compaction === null && pending >= this.autoCompactAt && pending * 2 >= this.map.size && this.jobs[0]?.kind !== 'compact') {
      this.startCompaction();
    }
  }

  private failAll(failure: Error): void {
    const jobs = this.jobs;
    this.jobs = [];
    for (const job of jobs) job.done?.reject(failure);
    const waiting = this.compactWaiting;
    this.compactWaiting = [];
    for (const w of waiting) w.reject(failure);
  }

  /** The cut (see the file comment): runs in the writer, between two batches, and starts the rest in the background. */
  private startCompaction(): void {
    const cut: Cut<T> = {
      gen: this.snapshotGen + 1,
      base: { gen: this.generation, seq: this.seq },
      // Shallow: values are not mutated in place (see `state`), so these are the values as of now, or newer ones put since.
      keys: [...this.map.keys()],
      values: [...this.map.values()],
      tail: [],
      waiters: this.compactWaiting,
      prev: { covered: this.covered, snapshotGen: this.snapshotGen },
    };
    this.compactWaiting = [];
    this.tail = cut.tail;
    this.snapshotGen = cut.gen;
    this.covered = this.seq;
    this.counters.compactions += 1;
    this.compaction = { cut, done: this.compactInBackground(cut) };
  }

  /** Steps 2-4 of a compaction; settles its waiters, never rejects. */
  private async compactInBackground(cut: Cut<T>): Promise<void> {
    // startCompaction() must have set this.compaction before anything here can clear it.
    await Promise.resolve();
    const started = this.now();
    let renamed = false;
    let error: Error | null = null;
    try {
      await this.writeSnapshot(cut);
      renamed = true;
      await this.io.syncDir(this.dir);
      await this.replaceJournal(cut);
    } catch (err) {
      error = asError(err);
    }
    this.tail = null;
    this.compaction = null;
    if (error === null) {
      this.autoCompactAt = this.compactEvery;
      this.counters.lastCompactionAt = this.now();
      this.log.info({ generation: cut.gen, keys: cut.keys.length, carriedOver: cut.tail.length, ms: this.now() - started }, 'journal compacted');
      for (const w of cut.waiters) w.resolve();
    } else {
      if (this.failure !== null) {
        error = this.failure;
      } else if (!renamed) {
        // Nothing changed on disk: back to the state before the cut, and try again after more records.
        this.snapshotGen = cut.prev.snapshotGen;
        this.covered = cut.prev.covered;
        this.counters.compactions -= 1;
        this.autoCompactAt = cut.base.seq - cut.prev.covered + this.compactEvery;
        this.log.warn({ err: error, retryAtRecords: this.autoCompactAt }, cut.waiters.length === 0 ? 'automatic compaction failed' : 'compaction failed');
      } else {
        // The new snapshot may be on disk, next to journal B (see the file comment): keep appending to B.
        this.autoCompactAt = this.compactEvery;
        this.log.warn(
          { err: error, generation: cut.gen, journalGeneration: this.generation, retryAtRecords: this.autoCompactAt },
          'compaction failed after its snapshot was written; carrying on in the old journal',
        );
      }
      for (const w of cut.waiters) w.reject(error);
    }
    if (this.compactWaiting.length > 0) {
      if (this.failure !== null) this.failAll(this.failure);
      // compact() calls made during this compaction want a cut taken after them: the writer takes it.
      else void this.enqueue((done) => ({ kind: 'compact', done }), true).catch(() => undefined);
    }
  }

  /** Fails a background step once the journal has failed: the snapshot must then not be put in place. */
  private checkHealthy(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Step 2: the snapshot, serialised a slice at a time, renamed into place. */
  private async writeSnapshot(cut: Cut<T>): Promise<void> {
    const p = journalPaths(this.dir, this.name);
    const n = cut.keys.length;
    await this.io.remove(p.snapshotTmp);
    const snap = await this.io.openAppend(p.snapshotTmp, { exclusive: true });
    let ok = false;
    try {
      await snap.append(Buffer.from(encodeLine({ t: 'snapshot', v: SNAPSHOT_VERSION, gen: cut.gen, n, base: cut.base }), 'utf8'));
      let i = 0;
      while (i < n) {
        const jsons: string[] = [];
        const until = performance.now() + SLICE_MS;
        const end = Math.min(n, i + SLICE_LINES);
        let chars = 0;
        while (i < end && chars < WRITE_BATCH_CHARS) {
          const json = JSON.stringify({ k: cut.keys[i], v: cut.values[i] });
          jsons.push(json);
          chars += json.length;
          i += 1;
          if ((i & 63) === 0 && performance.now() >= until) break;
        }
        await snap.append(linesOf(jsons));
        await yieldToLoop();
        this.checkHealthy();
      }
      await snap.append(Buffer.from(encodeLine({ t: 'end', n }), 'utf8'));
      await snap.datasync();
      ok = true;
    } finally {
      await snap.close();
      // On a full disk, do not leave a large useless file behind.
      if (!ok) await this.io.remove(p.snapshotTmp).catch(() => undefined);
    }
    this.checkHealthy();
    await this.io.rename(p.snapshotTmp, p.snapshot);
  }

  /** Steps 3 and 4: the records appended since the cut, as the new journal. */
  private async replaceJournal(cut: Cut<T>): Promise<void> {
    const p = journalPaths(this.dir, this.name);
    await this.io.remove(p.journalTmp);
    const file = await this.io.openAppend(p.journalTmp, { exclusive: true });
    let adopted = false;
    try {
      await file.append(Buffer.from(encodeLine({ t: 'journal', v: JOURNAL_VERSION, gen: cut.gen }), 'utf8'));
      let written = 0;
      while (written < cut.tail.length) {
        written = await appendRenumbered(file, cut.tail, written, true);
        await yieldToLoop();
        this.checkHealthy();
      }
      // Most of the tail is on disk before the writer stops: its fdatasync below then has little left to do.
      await file.datasync();
      this.checkHealthy();
      await new Promise<void>((resolve, reject) => {
        const run = async (): Promise<void> => {
          // In the writer: no record is appended to journal B from here on.
          await appendRenumbered(file, cut.tail, written, false);
          await file.datasync();
          try {
            await this.io.rename(p.journalTmp, p.journal);
            await this.io.syncDir(this.dir);
          } catch (err) {
            this.failure = new JournalError('E_JOURNAL_IO', `journal ${this.name}: compaction failed while putting the new journal in place`, { cause: err });
            this.log.error({ err }, 'compaction failed renaming the new journal; the store is read-only until restart');
            throw this.failure;
          }
          adopted = true;
          this.tail = null;
          const old = this.file;
          this.file = file;
          this.generation = cut.gen;
          this.seq = cut.tail.length;
          this.covered = 0;
          this.unsynced = false;
          await old.close().catch(() => undefined);
        };
        this.enqueue((done) => ({ kind: 'swap', run, done }), true).then(resolve, reject);
      });
    } finally {
      if (!adopted) {
        await file.close().catch(() => undefined);
        await this.io.remove(p.journalTmp).catch(() => undefined);
      }
    }
  }
}

/**
 * Appends tail[from..] renumbered as journal records from + 1..., all of it
 * or (`sliced`) one write batch's worth; returns how many are written.
 */
async function appendRenumbered(file: JournalFile, tail: readonly string[], from: number, sliced: boolean): Promise<number> {
  const jsons: string[] = [];
  let chars = 0;
  let i = from;
  for (; i < tail.length; i++) {
    const fields = tail[i]!;
    if (sliced && jsons.length > 0 && (jsons.length === SLICE_LINES || chars + fields.length > WRITE_BATCH_CHARS)) break;
    chars += fields.length;
    jsons.push(`{"s":${i + 1},${fields}}`);
  }
  if (jsons.length > 0) await file.append(linesOf(jsons));
  return i;
}

function journalPaths(dir: string, name: string) {
  return {
    snapshot: join(dir, `${name}.snapshot`),
    snapshotTmp: join(dir, `${name}.snapshot.tmp`),
    journal: join(dir, `${name}.journal`),
    journalTmp: join(dir, `${name}.journal.tmp`),
    lock: join(dir, `${name}.lock`),
  };
}

/** A new journal holding its header and `records` (fields, numbered from 1), put in place atomically; returns it open for appending. */
async function createJournalFile(
  io: JournalIo,
  dir: string,
  p: ReturnType<typeof journalPaths>,
  gen: number,
  records: readonly string[] = [],
): Promise<JournalFile> {
  await io.remove(p.journalTmp);
  const file = await io.openAppend(p.journalTmp, { exclusive: true });
  try {
    await file.append(Buffer.from(encodeLine({ t: 'journal', v: JOURNAL_VERSION, gen }), 'utf8'));
    await appendRenumbered(file, records, 0, false);
    await file.datasync();
    await io.rename(p.journalTmp, p.journal);
    await io.syncDir(dir);
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
  return file;
}

/** A record's fields for `key` = `value` (without its sequence number), or a JournalError when the value is not JSON. */
function recordFields(key: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new JournalError('E_JOURNAL_VALUE', `value for ${JSON.stringify(key)} is not JSON-serialisable`, { cause: err });
  }
  // JSON.stringify gives undefined for undefined/functions; reloading would then find a record with no value.
  if (json === undefined) throw new JournalError('E_JOURNAL_VALUE', `value for ${JSON.stringify(key)} is not JSON`);
  return `"k":${JSON.stringify(key)},"v":${json}`;
}

export { lockOwnerAlive, type LockOwner } from '../pid.js';

async function takeLock(io: JournalIo, path: string, isAlive: (owner: LockOwner) => boolean, log: Logger): Promise<void> {
  const me = `${ownLockLine()}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const f = await io.openAppend(path, { exclusive: true });
      await f.append(Buffer.from(me));
      await f.close();
      return;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const text = (await io.readFile(path))?.toString('utf8').trim() ?? '';
    const owner = parseLockOwner(text);
    if (Number.isSafeInteger(owner.pid) && owner.pid > 0 && isAlive(owner)) {
      throw new JournalError(
        'E_JOURNAL_LOCKED',
        `${path} is held by running process ${owner.pid}${text === me.trim() ? ' (this process: opened twice?)' : ''}; ` +
          'two servers must not share a state directory',
      );
    }
    log.warn({ lock: path, owner: text }, 'removing stale lock (its process is gone: crash or kill?)');
    await io.remove(path);
  }
  throw new JournalError('E_JOURNAL_LOCKED', `${path}: could not take the lock`);
}

interface Recovered<T> {
  state: Map<string, T>;
  generation: number;
  seq: number;
  file: JournalFile;
  mustCompact: boolean;
}

async function recover<T>(
  io: JournalIo,
  dir: string,
  name: string,
  opts: JournalOptions<T> & { log: Logger; now: () => number },
): Promise<Recovered<T>> {
  const p = journalPaths(dir, name);
  const log = opts.log;
  const quarantine = opts.onCorrupt === 'quarantine';
  const decode = opts.decode ?? ((raw: unknown) => raw as T);
  let mustCompact = false;

  // Leftovers of a compaction that crashed before its rename: never read, the real files are intact.
  for (const f of await io.list(dir)) {
    if (f === `${name}.snapshot.tmp` || f === `${name}.journal.tmp`) {
      log.warn({ file: f }, 'removing leftover temporary file of an interrupted compaction');
      await io.remove(join(dir, f));
    }
  }

  /** Reports one damaged place: throws in 'fail' mode, logs (and copies the file aside once) in 'quarantine'. */
  const damaged = new Set<string>();
  const problem = async (file: string, line: number, offset: number, why: string): Promise<void> => {
    if (!quarantine) throw new JournalCorruptError(file, line, offset, why);
    if (!damaged.has(file)) {
      damaged.add(file);
      const copy = `${file}.corrupt-${opts.now()}`;
      await io.copyFile(file, copy);
      log.error({ file, copy }, 'damaged store file copied aside before repair');
    }
    log.error({ file, line, offset, why }, 'skipping damaged record (quarantine mode)');
    mustCompact = true;
  };
  const decodeValue = async (file: string, span: LineSpan, key: string, raw: unknown): Promise<{ ok: true; value: T } | { ok: false }> => {
    try {
      return { ok: true, value: decode(raw, key) };
    } catch (err) {
      await problem(file, span.line, span.offset, `value for ${JSON.stringify(key)} rejected: ${err instanceof Error ? err.message : String(err)}`);
      return { ok: false };
    }
  };

  const state = new Map<string, T>();
  let generation = 0;
  /** The journal generation and record the snapshot holds everything up to (version 2 snapshots). */
  let base: { gen: number; seq: number } | null = null;
  const snapBuf = await io.readFile(p.snapshot);
  if (snapBuf !== null) {
    const { lines, tail } = splitLines(snapBuf);
    const header = lines[0];
    const h = header?.value;
    if (!header || header.problem || !isObject(h) || h.t !== 'snapshot' || !isGen(h.gen) || !snapshotVersionOk(h)) {
      // Without a trustworthy generation the journal cannot be matched to it: no repair is safe.
      throw new JournalCorruptError(p.snapshot, 1, 0, header?.problem ?? 'missing or unsupported snapshot header');
    }
    generation = h.gen;
    if (isObject(h.base) && isGen(h.base.gen) && isGen(h.base.seq)) base = { gen: h.base.gen, seq: h.base.seq };
    let ended = false;
    for (const span of lines.slice(1)) {
      if (ended) {
        await problem(p.snapshot, span.line, span.offset, 'data after the end record');
        continue;
      }
      const r = span.value;
      if (span.problem || !isObject(r)) {
        await problem(p.snapshot, span.line, span.offset, span.problem ?? 'record is not an object');
        continue;
      }
      if (r.t === 'end') {
        ended = true;
        if (r.n !== h.n || state.size !== h.n) {
          await problem(p.snapshot, span.line, span.offset, `snapshot holds ${state.size} keys, its header says ${String(h.n)}`);
        }
        continue;
      }
      if (typeof r.k !== 'string' || !('v' in r)) {
        await problem(p.snapshot, span.line, span.offset, 'record lacks key or value');
        continue;
      }
      const d = await decodeValue(p.snapshot, span, r.k, r.v);
      if (d.ok) state.set(r.k, d.value);
    }
    if (tail) await problem(p.snapshot, lines.length + 1, tail.offset, 'unterminated last line');
    if (!ended) await problem(p.snapshot, lines.length + 1, snapBuf.length, 'snapshot has no end record (truncated)');
  }

  const jBuf = await io.readFile(p.journal);
  let seq = 0;
  let replay = true;
  /** Replaying the journal the snapshot is based on: records up to here are in the snapshot already. */
  let skipTo = 0;
  /** ...and the ones after it, as fields, for the journal that finishes the interrupted compaction. */
  let carried: string[] | null = null;
  if (jBuf === null) {
    if (snapBuf !== null) log.warn({ file: p.journal }, 'journal missing next to a snapshot; starting a new one');
    replay = false;
  } else {
    const { lines, tail } = splitLines(jBuf);
    const header = lines[0];
    const h = header?.value;
    if (!header || header.problem || !isObject(h) || h.t !== 'journal' || h.v !== JOURNAL_VERSION || !isGen(h.gen)) {
      // Journals are created whole (tmp + rename), so even a fresh one has its header.
      throw new JournalCorruptError(p.journal, 1, 0, header?.problem ?? 'missing or unsupported journal header');
    }
    if (base !== null && h.gen === base.gen) {
      // A crash (or a failure) between the snapshot's rename and the journal's: see the file comment.
      skipTo = base.seq;
      carried = [];
      log.warn(
        { journalGeneration: h.gen, snapshotGeneration: generation, snapshotHoldsRecords: base.seq },
        'compaction was interrupted after its snapshot was written; replaying the journal from where the snapshot ends',
      );
    } else if (h.gen < generation) {
      log.warn({ journalGeneration: h.gen, snapshotGeneration: generation }, 'journal predates the snapshot (compaction was interrupted); ignoring it');
      replay = false;
    } else if (h.gen > generation) {
      throw new JournalCorruptError(
        p.journal,
        1,
        0,
        snapBuf === null
          ? `journal is generation ${h.gen} but ${p.snapshot} is missing`
          : `journal is generation ${h.gen} but ${p.snapshot} is generation ${generation} (an older snapshot was put back?)`,
      );
    }
    if (replay) {
      const body = lines.slice(1);
      // Torn tail: the damaged lines that only have damaged lines (or nothing) after them.
      let keep = body.length;
      while (keep > 0 && body[keep - 1]!.problem !== null) keep -= 1;
      const tornFrom = keep < body.length ? body[keep]!.offset : tail?.offset ?? null;
      for (const span of body.slice(0, keep)) {
        const r = span.value;
        if (span.problem || !isObject(r)) {
          await problem(p.journal, span.line, span.offset, span.problem ?? 'record is not an object');
          continue;
        }
        if (r.s !== seq + 1) {
          await problem(p.journal, span.line, span.offset, `sequence jumps from ${seq} to ${String(r.s)} (records missing)`);
          if (!isGen(r.s)) continue;
        }
        if (typeof r.k !== 'string' || (!('v' in r) && r.d !== true)) {
          await problem(p.journal, span.line, span.offset, 'record lacks key or value');
          continue;
        }
        seq = r.s as number;
        if (seq <= skipTo) continue;
        if (r.d === true) {
          state.delete(r.k);
          carried?.push(`"k":${JSON.stringify(r.k)},"d":true`);
        } else {
          const d = await decodeValue(p.journal, span, r.k, r.v);
          if (d.ok) {
            state.set(r.k, d.value);
            carried?.push(`"k":${JSON.stringify(r.k)},"v":${JSON.stringify(r.v)}`);
          }
        }
      }
      if (tornFrom !== null) {
        log.warn(
          { file: p.journal, droppedBytes: jBuf.length - tornFrom, droppedLines: body.length - keep + (tail ? 1 : 0) },
          'dropping torn tail of journal (unacknowledged writes cut short by a crash)',
        );
        await io.truncate(p.journal, tornFrom);
      }
    }
  }

  let file: JournalFile;
  if (carried !== null) {
    // Finish the compaction: what the snapshot lacks becomes its journal.
    file = await createJournalFile(io, dir, p, generation, carried);
    seq = carried.length;
    log.info({ generation, journalRecords: seq }, 'interrupted compaction finished: journal rewritten');
  } else if (replay) {
    file = await io.openAppend(p.journal);
  } else {
    file = await createJournalFile(io, dir, p, generation);
    seq = 0;
  }
  return { state, generation, seq, file, mustCompact };
}
