/**
 * Results: medians, percentiles, the printed table and BENCHMARKS.md.
 * A Row compares swarmboot with one baseline on one metric; `higherIsBetter`
 * decides how the ratio reads (it is always swarmboot / baseline, as the
 * issue asks, so for times a ratio below 1 is the good side).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { execFileSync } from 'node:child_process';

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile; NaN for no samples. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(s.length, rank) - 1] as number;
}

export interface Row {
  /** Which benchmark: dhcp, tftp, http, storm. */
  group: string;
  metric: string;
  unit: string;
  swarmboot: number;
  /** NaN when there is no baseline for this metric (then `target` says what it is held to). */
  baseline: number;
  baselineName: string;
  higherIsBetter: boolean;
  /** What the issue asks for, in words, e.g. ">= 1.0x kea". */
  target?: string;
  /** Met, missed, or null when there is no target to judge. */
  met?: boolean | null;
  command: string;
  note?: string;
}

export function ratio(r: Row): number {
  return Number.isFinite(r.baseline) && r.baseline !== 0 ? r.swarmboot / r.baseline : NaN;
}

export function fmt(n: number, unit = ''): string {
  if (!Number.isFinite(n)) return '-';
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return `${n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })}${unit ? ` ${unit}` : ''}`;
}

function cells(r: Row): string[] {
  const q = ratio(r);
  const verdict = r.met === true ? 'met' : r.met === false ? 'MISSED' : '';
  return [r.metric, fmt(r.swarmboot, r.unit), Number.isFinite(r.baseline) ? `${fmt(r.baseline, r.unit)} (${r.baselineName})` : r.baselineName, Number.isFinite(q) ? `${q.toFixed(2)}x` : '-', [r.target ?? '', verdict].filter(Boolean).join(' '), r.command];
}

const HEAD = ['metric', 'swarmboot', 'baseline', 'ratio', 'target', 'command to reproduce'];

/** Plain-text table for the terminal. */
export function textTable(rows: readonly Row[]): string {
  const body = rows.map((r) => cells(r).slice(0, 5));
  const head = HEAD.slice(0, 5);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i] ?? 0)).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** The BENCHMARKS.md table: the terminal's columns plus the date and machine of the run, as the issue asks. */
export function markdownTable(rows: readonly Row[], m: Machine): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const head = [...HEAD, 'date', 'machine'];
  const where = `${m.nproc} x ${m.cpu}, Linux ${m.kernel}`;
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const r of rows) {
    const c = cells(r);
    c[5] = `\`${c[5] ?? ''}\``;
    lines.push(`| ${[...c, m.date.slice(0, 10), where].map(esc).join(' | ')} |`);
  }
  return lines.join('\n');
}

export interface Machine {
  date: string;
  cpu: string;
  nproc: number;
  kernel: string;
  node: string;
  loadavg: string;
}

export function machine(): Machine {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: model.trim(),
    nproc: cpus().length,
    kernel,
    node: process.version,
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}

export function machineLine(m: Machine): string {
  return `${m.date}; ${m.nproc} x ${m.cpu}; Linux ${m.kernel}; Node ${m.node}; load average at start ${m.loadavg}`;
}
