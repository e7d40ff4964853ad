/**
 * Download progress: one bar redrawn with \r on a terminal, a few plain
 * lines otherwise (a log file or CI output must not fill with redraws).
 * The formatting is a pure function of numbers so it is tested exactly.
 */

export interface ProgressState {
  readonly name: string;
  /** Bytes on disk now, including any resumed part. */
  readonly done: number;
  readonly total: number | null;
  /** Bytes on disk when this run started (a resume does not count toward the rate). */
  readonly start: number;
  readonly elapsedMs: number;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Bytes per second over this run, or null before there is anything to measure. */
export function rateOf(p: ProgressState): number | null {
  if (p.elapsedMs <= 0 || p.done <= p.start) return null;
  return ((p.done - p.start) * 1000) / p.elapsedMs;
}

/** `name  [#####.....]  45%  26.1 MiB / 58.0 MiB  12.3 MiB/s  ETA 0:03` (width: the bar's cells; 0 for no bar). */
export function formatProgress(p: ProgressState, width = 20): string {
  const rate = rateOf(p);
  const rateText = rate === null ? '-- B/s' : `${formatBytes(Math.round(rate))}/s`;
  if (p.total === null || p.total <= 0) return `${p.name}  ${formatBytes(p.done)}  ${rateText}`;
  const frac = Math.min(1, p.done / p.total);
  const filled = Math.round(frac * width);
  const bar = width > 0 ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
  const eta = rate === null ? '--:--' : formatDuration((p.total - p.done) / rate);
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  return `${p.name}  ${bar}${pct}  ${formatBytes(p.done)} / ${formatBytes(p.total)}  ${rateText}  ETA ${eta}`;
}

export interface ProgressSink {
  start(name: string, from: number, total: number | null): void;
  update(done: number, total: number | null): void;
  finish(): void;
}

/** The terminal bar: redrawn at most every `intervalMs`, cleared line by line with \r and an erase. */
export function barProgress(write: (s: string) => void, now: () => number = Date.now, intervalMs = 100): ProgressSink {
  let state: { name: string; start: number; began: number; last: number; done: number; total: number | null } | null = null;
  const draw = () => {
    if (state === null) return;
    write(`\r\x1b[2K${formatProgress({ name: state.name, done: state.done, total: state.total, start: state.start, elapsedMs: now() - state.began })}`);
  };
  return {
    start(name, from, total) {
      state = { name, start: from, began: now(), last: 0, done: from, total };
      draw();
    },
    update(done, total) {
      if (state === null) return;
      state.done = done;
      state.total = total;
      const t = now();
      if (t - state.last >= intervalMs) {
        state.last = t;
        draw();
      }
    },
    finish() {
      draw();
      if (state !== null) write('\n');
      state = null;
    },
  };
}

/** Plain lines: at start, at every quarter, and at the end. */
export function lineProgress(write: (s: string) => void, now: () => number = Date.now): ProgressSink {
  let state: { name: string; start: number; began: number; done: number; total: number | null; quarter: number } | null = null;
  const line = () => {
    if (state === null) return;
    write(formatProgress({ name: state.name, done: state.done, total: state.total, start: state.start, elapsedMs: now() - state.began }, 0) + '\n');
  };
  return {
    start(name, from, total) {
      state = { name, start: from, began: now(), done: from, total, quarter: total ? Math.floor((4 * from) / total) : 0 };
      line();
    },
    update(done, total) {
      if (state === null) return;
      state.done = done;
      state.total = total;
      const q = total ? Math.floor((4 * done) / total) : 0;
      if (q > state.quarter && q < 4) {
        state.quarter = q;
        line();
      }
    },
    finish() {
      line();
      state = null;
    },
  };
}

export const noProgress: ProgressSink = { start() {}, update() {}, finish() {} };
