/**
 * Whole asset files kept in memory for the transfers a boot storm repeats:
 * every blade of a rack fetches the same kernel and the same initrd.
 *
 * Why: Node has no sendfile for sockets, so a file streamed from disk is
 * copied twice in this process (page cache -> buffer by pread, buffer ->
 * socket by write) where nginx copies nothing. Serving a file that is
 * already in memory drops the pread copy and the thread-pool round trip
 * per megabyte, which matters once the transfers are CPU-bound (a veth or
 * a 25 GbE link; a 1-10 GbE link is full either way).
 *
 * How:
 *   - keyed by the asset's strong ETag (inode, size, mtime), so a replaced
 *     or rewritten file is a new entry and a stale one is never served;
 *   - a request never waits for the cache: the first request for a file
 *     streams it from disk as before and starts a background load; later
 *     requests get the bytes from memory once the load has finished;
 *   - the load reads from a descriptor of its own, opened and checked by
 *     the caller's `open` (the same path checks as a request), and keeps
 *     the bytes only if the file still has the same ETag afterwards;
 *   - bounded by a byte budget, least recently used first out; entries
 *     idle longer than `idleMs` are dropped, so a server that stopped
 *     booting blades gives its memory back. A buffer evicted while a
 *     response still sends from it lives until that response ends.
 * Files larger than half the budget are never cached.
 */
import type { Logger } from '../log.js';

export interface CacheSource {
  /** The file's bytes, read whole, and the ETag of what was read. */
  read(): Promise<{ bytes: Buffer; etag: string }>;
}

interface Entry {
  readonly etag: string;
  readonly size: number;
  bytes: Buffer | null;
  lastUsed: number;
}

export interface AssetCacheStats {
  readonly entries: number;
  readonly bytes: number;
  readonly hits: number;
  readonly misses: number;
  readonly loads: number;
  readonly loadFailures: number;
  readonly evictions: number;
}

export interface AssetCacheOptions {
  /** Bytes the cache may hold (loading entries included); 0 disables it. */
  readonly budgetBytes: number;
  /** Entries unused this long are dropped (default 10 minutes). */
  readonly idleMs?: number;
  readonly log: Logger;
  readonly now?: () => number;
}

export class AssetCache {
  private readonly entries = new Map<string, Entry>();
  private readonly budget: number;
  private readonly idleMs: number;
  private readonly log: Logger;
  private readonly now: () => number;
  private held = 0;
  private counts = { hits: 0, misses: 0, loads: 0, loadFailures: 0, evictions: 0 };
  private sweeper: NodeJS.Timeout | null = null;

  constructor(opts: AssetCacheOptions) {
    this.budget = Math.max(0, opts.budgetBytes);
    this.idleMs = opts.idleMs ?? 10 * 60_000;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.budget > 0;
  }

  /**
   * The bytes of the file with this ETag if they are in memory; otherwise
   * null, and (when the file may be cached and is not loading already) a
   * background load from `source` begins.
   */
  lookup(etag: string, size: number, source: CacheSource): Buffer | null {
    if (!this.enabled || size === 0 || size > this.budget / 2) return null;
    const hit = this.entries.get(etag);
    if (hit !== undefined) {
      hit.lastUsed = this.now();
      // Map order is the LRU order: re-insert at the young end.
      this.entries.delete(etag);
      this.entries.set(etag, hit);
      if (hit.bytes !== null) {
        this.counts.hits++;
        return hit.bytes;
      }
      this.counts.misses++;
      return null;
    }
    this.counts.misses++;
    if (!this.makeRoom(size)) return null;
    const entry: Entry = { etag, size, bytes: null, lastUsed: this.now() };
    this.entries.set(etag, entry);
    this.held += size;
    this.counts.loads++;
    void this.load(entry, source);
    this.startSweeper();
    return null;
  }

  stats(): AssetCacheStats {
    let bytes = 0;
    for (const e of this.entries.values()) if (e.bytes !== null) bytes += e.size;
    return { entries: this.entries.size, bytes, ...this.counts };
  }

  /** Drops everything (shutdown). */
  clear(): void {
    this.entries.clear();
    this.held = 0;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  private async load(entry: Entry, source: CacheSource): Promise<void> {
    try {
      const { bytes, etag } = await source.read();
      if (etag !== entry.etag || bytes.length !== entry.size) throw new Error(`the file changed while it was read (ETag ${entry.etag} -> ${etag})`);
      // Evicted or cleared while loading: keep nothing.
      if (this.entries.get(entry.etag) !== entry) return;
      entry.bytes = bytes;
    } catch (err) {
      this.counts.loadFailures++;
      this.log.warn({ err, etag: entry.etag, size: entry.size }, 'asset cache: load failed; the file is served from disk');
      this.drop(entry);
    }
  }

  /** Evicts least recently used entries until `size` more bytes fit; false if they cannot. */
  private makeRoom(size: number): boolean {
    for (const e of this.entries.values()) {
      if (this.held + size <= this.budget) break;
      // Loading entries are evicted too: their load finds itself gone and keeps nothing.
      this.drop(e);
      this.counts.evictions++;
    }
    return this.held + size <= this.budget;
  }

  private drop(entry: Entry): void {
    if (this.entries.get(entry.etag) !== entry) return;
    this.entries.delete(entry.etag);
    this.held -= entry.size;
  }

  private startSweeper(): void {
    if (this.sweeper !== null) return;
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.floor(this.idleMs / 4)));
    this.sweeper.unref();
  }

  /** Drops entries idle longer than idleMs; stops the timer when nothing is left. */
  sweep(): void {
    const cutoff = this.now() - this.idleMs;
    for (const e of [...this.entries.values()]) if (e.lastUsed < cutoff && e.bytes !== null) this.drop(e);
    if (this.entries.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }
}
