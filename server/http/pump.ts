/**
 * Copies a byte range of an open file into an HTTP response, for the big
 * asset transfers. Node has no sendfile, so the bytes pass through user
 * space; what this does instead of fs.createReadStream().pipe(res):
 *
 *   - reuses its buffers. createReadStream allocates a fresh 1 MiB Buffer per
 *     read; in a process with a real heap (express, ajv, profiles) the
 *     external-memory pressure made V8 collect constantly (13% of CPU in a
 *     profile, half the throughput of a bare stream). Two pooled buffers
 *     per transfer, handed back when the socket is done with them, cost no
 *     garbage at all;
 *   - overlaps disk and socket: while one buffer is being written, the next
 *     is read, and a buffer is reused only once its write has completed, so
 *     at most two chunks per transfer are in flight (that is the
 *     backpressure);
 *   - owns the file handle and closes it on every path, so a client that
 *     goes away mid-download cannot leak a descriptor.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

/** Free buffers of one size, shared by all transfers of one app; bounded so an idle server gives memory back. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    private readonly maxFree: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(buf: Buffer): void {
    if (this.free.length < this.maxFree && buf.length === this.size) this.free.push(buf);
  }

  get idle(): number {
    return this.free.length;
  }
}

/**
 * Bytes all transfers of an app may hand to their sockets in one turn of
 * the event loop. Without it, a turn in which 200 downloads' sockets all
 * became writable wrote a megabyte to each (on a veth each write also
 * carries the receiver's processing): the loop stood still for 0.5-1 s at
 * a time in a 200-blade storm, and every small request, DHCP reply and
 * TFTP round trip waited behind it. A pump over its budget waits for the
 * next turn, after the loop has polled for I/O again.
 */
export class TurnBudget {
  private used = 0;
  private armed = false;
  /** Pumps waiting for a turn, first come first served, with the bytes each wants. */
  private waiters: { n: number; grant: () => void }[] = [];
  constructor(readonly bytesPerTurn: number) {}

  /** null: go ahead now (the bytes are counted); else a promise that resolves when a later turn grants them. */
  take(n: number): Promise<void> | null {
    this.arm();
    // Queued pumps go first, so one busy transfer cannot starve the others; the first write of a turn
    // always fits, so a chunk larger than the budget cannot wait forever.
    if (this.waiters.length === 0 && (this.used === 0 || this.used + n <= this.bytesPerTurn)) {
      this.used += n;
      return null;
    }
    return new Promise<void>((grant) => this.waiters.push({ n, grant }));
  }

  /** Runs once per turn (setImmediate: after the loop has polled for I/O): a fresh budget, granted to the waiters in order. */
  private nextTurn(): void {
    this.armed = false;
    this.used = 0;
    let granted = 0;
    for (const w of this.waiters) {
      if (this.used > 0 && this.used + w.n > this.bytesPerTurn) break;
      this.used += w.n;
      granted++;
    }
    const go = this.waiters.splice(0, granted);
    if (this.used > 0 || this.waiters.length > 0) this.arm();
    for (const w of go) w.grant();
  }

  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    setImmediate(() => this.nextTurn());
  }
}

/** No limit: for callers (tests) that do not share a budget. */
export const UNLIMITED = new TurnBudget(Number.MAX_SAFE_INTEGER);

/** Waits until `budget` lets `n` more bytes go (they are counted when it returns). */
async function spend(budget: TurnBudget, n: number): Promise<void> {
  const wait = budget.take(n);
  if (wait !== null) await wait;
}

export interface PumpResult {
  /** Every byte was handed to the socket and the response ended. */
  ok: boolean;
  /** Body bytes handed to the socket. */
  bytes: number;
  /** The client closed the connection first. */
  aborted: boolean;
  err?: Error;
}

const DEPTH = 2;

/**
 * Sends bytes start..end (inclusive) of `fh`, then ends the response. The
 * response's headers (with Content-Length = end - start + 1) are set by the
 * caller. Never rejects; the result says how it went. On a read error or a
 * file that shrank, the connection is destroyed: a short body behind an
 * honest Content-Length would leave a keep-alive client waiting forever.
 */
export async function pumpFile(fh: FileHandle, start: number, end: number, res: ServerResponse, pool: BufferPool, onBytes: (n: number) => void = () => undefined, budget: TurnBudget = UNLIMITED): Promise<PumpResult> {
  const watch = watchClose(res);
  const closedSignal = watch.signal;
  const buffers: Buffer[] = [];
  // Per slot: resolves once the socket no longer needs that buffer (true) or failed (false).
  const writing: (Promise<boolean> | null)[] = new Array<Promise<boolean> | null>(DEPTH).fill(null);
  const reusable = new Set<Buffer>();
  let bytes = 0;
  let finished = false;
  let err: Error | undefined;
  let pos = start;
  const stop = end + 1;
  try {
    for (let slot = 0; pos < stop && !watch.closed; slot = (slot + 1) % DEPTH) {
      const pending = writing[slot];
      if (pending) {
        const done = await Promise.race([pending, closedSignal.then(() => false)]);
        if (!done || watch.closed) break;
      }
      let buf = buffers[slot];
      if (buf === undefined) {
        buf = pool.take();
        buffers[slot] = buf;
        reusable.add(buf);
      }
      const want = Math.min(buf.length, stop - pos);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) throw new Error(`file shrank while being served (ended at byte ${pos + got}, expected ${stop})`);
        got += bytesRead;
      }
      if (watch.closed) break;
      pos += got;
      const chunk = got === buf.length ? buf : buf.subarray(0, got);
      const owned = buf;
      await spend(budget, got);
      if (watch.closed) break;
      writing[slot] = new Promise<boolean>((resolve) => {
        res.write(chunk, (e) => {
          if (e) reusable.delete(owned);
          resolve(!e);
        });
      });
      bytes += got;
      onBytes(got);
    }
    if (!watch.closed && pos >= stop) finished = await endResponse(res, closedSignal);
  } catch (e) {
    err = e instanceof Error ? e : new Error(String(e));
    res.destroy(err);
  } finally {
    watch.dispose();
    // A buffer goes back to the pool only once its write completed: a dead socket may still hold the others.
    // (Racing against an already-resolved `false` reads a settled promise's value without waiting on a pending one.)
    const settled = await Promise.all(writing.map((w) => (w === null ? true : Promise.race([w, Promise.resolve(false)]))));
    buffers.forEach((b, i) => {
      if (settled[i] && reusable.has(b)) pool.give(b);
    });
    await fh.close().catch(() => undefined);
  }
  return { ok: finished, bytes, aborted: !finished && err === undefined, ...(err ? { err } : {}) };
}

interface CloseWatch {
  /** The connection closed (client gone, or destroyed). */
  readonly closed: boolean;
  /** Resolves when it closes. */
  readonly signal: Promise<void>;
  dispose(): void;
}

function watchClose(res: ServerResponse): CloseWatch {
  let wake: () => void = () => undefined;
  const signal = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const watch = {
    closed: res.destroyed,
    signal,
    dispose: () => res.off('close', onClose),
  };
  const onClose = (): void => {
    watch.closed = true;
    wake();
  };
  res.on('close', onClose);
  return watch;
}

/** Ends the response; true once the last byte was handed to the socket, false if the connection closed first. */
function endResponse(res: ServerResponse, closed: Promise<void>): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    res.end(() => resolve(true));
    void closed.then(() => resolve(false));
  });
}

/**
 * pumpFile for a file already in memory (./asset-cache.ts): sends bytes
 * start..end (inclusive) of `buf` as slices of `chunk` bytes (views, not
 * copies), waiting for the socket to drain whenever it asks to, then ends
 * the response. Same contract and result as pumpFile.
 */
export async function pumpBuffer(buf: Buffer, start: number, end: number, res: ServerResponse, chunk: number, onBytes: (n: number) => void = () => undefined, budget: TurnBudget = UNLIMITED): Promise<PumpResult> {
  const watch = watchClose(res);
  let bytes = 0;
  let finished = false;
  let err: Error | undefined;
  try {
    for (let pos = start; pos <= end && !watch.closed; ) {
      const n = Math.min(chunk, end + 1 - pos);
      await spend(budget, n);
      if (watch.closed) break;
      const more = res.write(buf.subarray(pos, pos + n));
      pos += n;
      bytes += n;
      onBytes(n);
      if (!more && !watch.closed) {
        await new Promise<void>((resolve) => {
          res.once('drain', resolve);
          void watch.signal.then(resolve);
        });
      }
      if (pos > end && !watch.closed) finished = await endResponse(res, watch.signal);
    }
  } catch (e) {
    err = e instanceof Error ? e : new Error(String(e));
    res.destroy(err);
  } finally {
    watch.dispose();
  }
  return { ok: finished, bytes, aborted: !finished && err === undefined, ...(err ? { err } : {}) };
}
