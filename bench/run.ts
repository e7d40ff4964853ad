/**
 * npm run bench [-- dhcp|tftp|http|storm ...] [--quick] [--cpu-prof] [--no-setup]
 *
 * Runs the benchmarks in two network namespaces joined by one veth pair
 * (servers in one, clients in the other), prints a table per benchmark,
 * and, for a full run (no names given, not --quick), rewrites the results
 * block of BENCHMARKS.md. Never part of npm test. Needs root.
 *
 * The whole run is bounded (BENCH_TIMEOUT_MIN, default 30 minutes); on
 * timeout, SIGINT or an error the namespaces and every process in them go.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createBenchLab, benchUnavailable, type BenchLab } from './lib/lab.js';
import { REPO, CACHE } from './lib/servers.js';
import { machine, machineLine, markdownTable, textTable, type Row } from './lib/report.js';
import type { BenchContext, Section } from './lib/context.js';
import { runDhcp } from './dhcp.js';
import { runTftp } from './tftp.js';
import { runHttp } from './http.js';
import { runStorm } from './storm.js';
import { pidAlive } from '../server/pid.js';

const BENCHES: Record<string, (ctx: BenchContext) => Promise<Section>> = { dhcp: runDhcp, tftp: runTftp, http: runHttp, storm: runStorm };
const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

function usage(): never {
  process.stderr.write('usage: npm run bench [-- dhcp|tftp|http|storm ...] [--quick] [--cpu-prof] [--no-setup] [--write]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const flags = new Set(argv.filter((a) => a.startsWith('--')));
const names = argv.filter((a) => !a.startsWith('--'));
for (const f of flags) if (!['--quick', '--cpu-prof', '--no-setup', '--write'].includes(f)) usage();
for (const n of names) if (!(n in BENCHES)) usage();
const selected = names.length > 0 ? names : Object.keys(BENCHES);
const full = names.length === 0 && !flags.has('--quick');
const quick = flags.has('--quick');

const why = benchUnavailable('perfdhcp', 'kea-dhcp4', 'dnsmasq', 'atftp', 'wrk', 'ss');
if (!flags.has('--no-setup')) {
  const r = spawnSync('bash', [join(REPO, 'bench/setup.sh')], { stdio: 'inherit', timeout: 600_000 });
  if (r.status !== 0) {
    process.stderr.write('bench: bench/setup.sh failed\n');
    process.exit(1);
  }
}
// swarmboot runs as `npm start` runs it: the compiled dist/ (tsx's loader costs ~1.5 CPU s at start and wraps
// functions in its __name helper, which showed on the DHCP hot path).
{
  const r = spawnSync('npx', ['tsc', '-p', join(REPO, 'tsconfig.json')], { cwd: REPO, stdio: 'inherit', timeout: 300_000 });
  if (r.status !== 0) {
    process.stderr.write('bench: the build (tsc) failed\n');
    process.exit(1);
  }
}
const stillMissing = benchUnavailable('perfdhcp', 'kea-dhcp4', 'dnsmasq', 'atftp', 'wrk', 'ss');
if (stillMissing !== null) {
  process.stderr.write(`bench: cannot run here: ${stillMissing}${why !== null && why !== stillMissing ? ` (before setup: ${why})` : ''}\n`);
  process.exit(1);
}

const mach = machine();
// Work directories of runs that died (SIGKILL, or Ctrl-C, which skips the removal at the end).
for (const d of existsSync(CACHE) ? readdirSync(CACHE) : []) {
  const pid = Number(/^run-(\d+)$/.exec(d)?.[1] ?? NaN);
  // Kept: the CPU profiles of a --cpu-prof run.
  if (Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid) && !existsSync(join(CACHE, d, 'profiles'))) rmSync(join(CACHE, d), { recursive: true, force: true });
}
const work = join(CACHE, `run-${process.pid}`);
mkdirSync(work, { recursive: true });
const started = Date.now();
const say = (msg: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

let lab: BenchLab | null = null;
const limitMin = Number(process.env.BENCH_TIMEOUT_MIN ?? 30);
const deadline = setTimeout(() => {
  process.stderr.write(`bench: still running after ${limitMin} minutes; stopping\n`);
  lab?.lab.cleanupSync();
  process.exit(3);
}, limitMin * 60_000);
deadline.unref();

const sections: Section[] = [];
let failed = false;
try {
  say(`machine: ${machineLine(mach)}`);
  lab = await createBenchLab();
  const ctx: BenchContext = { lab, work, cpuProfile: flags.has('--cpu-prof'), quick, log: say };
  for (const name of selected) {
    say(`--- ${name}`);
    try {
      const section = await BENCHES[name]!(ctx);
      sections.push(section);
      process.stdout.write(`\n${textTable(section.rows)}\n\n${section.details}\n\n`);
    } catch (err) {
      failed = true;
      say(`${name} failed: ${(err as Error).stack ?? String(err)}`);
    }
  }
} finally {
  await lab?.close();
  clearTimeout(deadline);
}

const rows: Row[] = sections.flatMap((s) => s.rows);
const resultsFile = join(CACHE, `results-${selected.join('-')}${quick ? '-quick' : ''}.json`);
writeFileSync(resultsFile, JSON.stringify({ machine: mach, sections }, null, 2));
say(`results: ${resultsFile}${flags.has('--cpu-prof') ? `; CPU profiles under ${join(work, 'profiles')}` : ''}`);

if ((full || flags.has('--write')) && !failed && !quick) {
  const file = join(REPO, 'BENCHMARKS.md');
  const block = [
    START,
    `Generated by \`npm run bench\` on ${machineLine(mach)}. Whole run: ${((Date.now() - started) / 60_000).toFixed(1)} min.`,
    '',
    markdownTable(rows, mach),
    '',
    ...sections.flatMap((s) => [`### ${s.name}`, '', s.details, '']),
    END,
  ].join('\n');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : `# Benchmarks\n\n${START}\n${END}\n`;
  const next = old.includes(START) && old.includes(END) ? old.slice(0, old.indexOf(START)) + block + old.slice(old.indexOf(END) + END.length) : `${old.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
  say(`wrote ${file}`);
}
if (!flags.has('--cpu-prof')) rmSync(work, { recursive: true, force: true });
process.exitCode = failed ? 1 : 0;
