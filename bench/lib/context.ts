/** What every benchmark gets from bench/run.ts, and what it gives back. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchLab } from './lab.js';
import type { Row } from './report.js';

export interface BenchContext {
  lab: BenchLab;
  /** Scratch directory of this run (big files live in the cache, not here). */
  work: string;
  /** Write V8 CPU profiles of swarmboot into work/profiles. */
  cpuProfile: boolean;
  /** Fewer repetitions and smaller sizes: a check that the harness works, not a measurement. */
  quick: boolean;
  log(msg: string): void;
}

export interface Section {
  name: string;
  rows: Row[];
  /** Markdown: per-step tables, notes, raw medians. */
  details: string;
}

export function scratch(ctx: BenchContext, label: string): string {
  mkdirSync(ctx.work, { recursive: true });
  return mkdtempSync(join(ctx.work, `${label}-`));
}

export function cpuProfDir(ctx: BenchContext, label: string): string | undefined {
  if (!ctx.cpuProfile) return undefined;
  const dir = join(ctx.work, 'profiles', label);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface MachineEntry {
  mac: string;
  hostname: string;
  profile: 'worker' | 'legacy';
}

/**
 * Profiles for the benchmarks: "worker" boots through iPXE with Ignition
 * over HTTP, "legacy" is the TFTP-only pxelinux path with Ignition in an
 * oem initrd. Swarm mode is automatic, as in the example profiles, so each
 * Ignition config carries the swarm units and script (about 10 KB, the size
 * a real blade gets); no blade here runs them, so no dockerd is needed.
 */
export function writeProfiles(dir: string, machines: readonly MachineEntry[], unknown: 'worker' | 'ignore' = 'ignore'): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cluster.yaml'), `cluster:\n  name: bench\n  swarm: { mode: automatic }\n  unknown_machines: ${unknown}\n`);
  const entry = (m: MachineEntry) => `      - { mac: "${m.mac}", hostname: ${m.hostname} }\n`;
  const of = (p: string) => machines.filter((m) => m.profile === p);
  let text = 'profiles:\n  worker:\n    role: worker\n';
  if (of('worker').length > 0) text += `    machines:\n${of('worker').map(entry).join('')}`;
  text += '  legacy:\n    role: worker\n    boot: pxelinux\n    ignition: oem\n';
  if (of('legacy').length > 0) text += `    machines:\n${of('legacy').map(entry).join('')}`;
  writeFileSync(join(dir, 'profiles.yaml'), text);
  return dir;
}

/** MAC number i (0-based) of a benchmark series: 52:54:00:SS:HH:LL. */
export function benchMac(series: number, i: number): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `52:54:00:${h(series)}:${h((i >> 8) & 255)}:${h(i & 255)}`;
}
