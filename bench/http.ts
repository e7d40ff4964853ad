/**
 * HTTP: (1) bulk: a 256 MiB initrd fetched by 8 and by 32 curls at once,
 * swarmboot's /assets/ against nginx (sendfile on, one worker per core),
 * both running side by side in the server namespace (swarmboot on 8080,
 * nginx on 8081) and taking turns; aggregate throughput = bytes / wall
 * time until the last curl exits. (2) render: Ignition and iPXE script
 * requests for 1,000 distinct known MACs with wrk (2 threads, 32
 * connections), after a warm-up pass so every machine's render is cached:
 * requests/s and p99 latency. Nothing renders these for nginx; the target
 * (10,000 Ignition requests/s) stands in for a baseline.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Netns } from '../test/helpers/netns.js';
import { NET } from './lib/lab.js';
import { scratch, cpuProfDir, writeProfiles, benchMac, type BenchContext, type Section } from './lib/context.js';
import { startSwarmboot, startNginx, type Running } from './lib/servers.js';
import { payload, place, MiB } from './lib/files.js';
import { median, fmt, type Row } from './lib/report.js';

const COMMAND = 'npm run bench -- http';
export const BULK_PATH = 'flatcar/stable/current/amd64/flatcar_production_pxe_image.cpio.gz';
const SB_PORT = 8080;
const NGINX_PORT = 8081;

export interface BulkResult {
  ok: boolean;
  ms: number;
  /** Aggregate MiB/s. */
  mibs: number;
  failures: number;
}

/** `n` curls at once from `cli`, each fetching `url` (expected `size` bytes) to /dev/null. */
export async function bulkFetch(cli: Netns, url: string, n: number, size: number): Promise<BulkResult> {
  const script = `start=$(date +%s%N)
for i in $(seq ${n}); do curl -sS --max-time 300 -o /dev/null -w '%{http_code} %{size_download}\\n' ${url} & done
wait
echo "ms=$(( ($(date +%s%N) - start) / 1000000 ))"`;
  const r = await cli.exec('bash', ['-c', script], { timeoutMs: 330_000 });
  const ms = Number(/ms=(\d+)/.exec(r.stdout)?.[1] ?? NaN);
  const good = r.stdout.split('\n').filter((l) => l === `200 ${size}`).length;
  const failures = n - good;
  return { ok: failures === 0, ms, mibs: failures === 0 ? (n * size) / MiB / (ms / 1000) : 0, failures };
}

function macsLua(macs: readonly string[], route: string): string {
  return `local macs = { ${macs.map((m) => `"${m.replace(/:/g, '-')}"`).join(', ')} }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "${route}?mac=" .. macs[(i % #macs) + 1])
end
`;
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  /** Server CPU time per request, microseconds (set by the caller). */
  cpuUsPerReq?: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

/** Reads wrk --latency output. Pure. */
export function parseWrk(text: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    return m ? toMs(m[1] as string, m[2] as string) : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return { rps, p50Ms: pct('50'), p99Ms: pct('99'), non2xx };
}

async function wrk(cli: Netns, script: string, url: string, seconds: number): Promise<WrkResult> {
  const r = await cli.run('wrk', ['-t2', '-c32', `-d${seconds}s`, '--latency', '-s', script, url], { timeoutMs: (seconds + 30) * 1000 });
  if (process.env.BENCH_SHOW_WRK) process.stdout.write(r.stdout);
  return parseWrk(r.stdout);
}

export async function runHttp(ctx: BenchContext): Promise<Section> {
  const reps = ctx.quick ? 1 : 3;
  const size = ctx.quick ? 32 * MiB : 256 * MiB;
  const dir = scratch(ctx, 'http');
  const assets = join(dir, 'assets');
  place(payload(size), join(assets, BULK_PATH));
  const macs = [...Array(1000).keys()].map((i) => benchMac(0x10, i));
  writeProfiles(join(dir, 'profiles'), macs.map((mac, i) => ({ mac, hostname: `blade${i}`, profile: 'worker' as const })));
  const prof = cpuProfDir(ctx, 'http');
  const servers: Running[] = [];
  const bulk = new Map<string, number[]>();
  const add = (k: string, v: number) => bulk.set(k, [...(bulk.get(k) ?? []), v]);
  const render = new Map<string, WrkResult[]>();
  let sb: Running | undefined;
  let nginxUsage = { cpuSeconds: 0, peakRssMiB: 0 };
  try {
    sb = await startSwarmboot(ctx.lab.srv, { dir, dhcp: 'off', httpPort: SB_PORT, config: 'tftp:\n  enabled: false\n', ...(prof ? { cpuProfDir: prof } : {}) });
    servers.push(sb);
    const nginx = await startNginx(ctx.lab.srv, join(dir, 'nginx'), assets, NGINX_PORT);
    servers.push(nginx);
    const url = (port: number) => `http://${NET.server}:${port}/assets/${BULK_PATH}`;
    // BENCH_HTTP_ONLY=bulk|render runs half of it (for profiling one path at a time).
    const only = process.env.BENCH_HTTP_ONLY;
    for (let rep = 0; rep < (only === 'render' ? 0 : reps); rep++) {
      for (const n of [8, 32]) {
        const order: [string, number][] = rep % 2 === 0 ? [['swarmboot', SB_PORT], ['nginx', NGINX_PORT]] : [['nginx', NGINX_PORT], ['swarmboot', SB_PORT]];
        for (const [name, port] of order) {
          const r = await bulkFetch(ctx.lab.cli, url(port), n, size);
          add(`${n}:${name}`, r.ok ? r.mibs : NaN);
          ctx.log(`http bulk ${size / MiB} MiB x ${String(n).padStart(2)} ${name.padEnd(9)}: ${r.ok ? `${(r.ms / 1000).toFixed(2)} s, ${fmt(r.mibs)} MiB/s` : `${r.failures} FAILED`}`);
        }
      }
    }
    nginxUsage = nginx.usage();

    const seconds = ctx.quick ? 2 : 5;
    for (const route of only === 'bulk' ? [] : ['/ignition', '/ipxe']) {
      const script = join(dir, `wrk${route.replace('/', '-')}.lua`);
      writeFileSync(script, macsLua(macs, route));
      // Warm-up: every MAC rendered at least once (the cache the target speaks of).
      await wrk(ctx.lab.cli, script, `http://${NET.server}:${SB_PORT}`, 2);
      for (let rep = 0; rep < reps; rep++) {
        const before = sb.usage().cpuSeconds;
        const r = await wrk(ctx.lab.cli, script, `http://${NET.server}:${SB_PORT}`, seconds);
        // Server CPU per request: what the rate would be on a core of its own (wrk shares these cores).
        r.cpuUsPerReq = ((sb.usage().cpuSeconds - before) * 1e6) / (r.rps * seconds);
        render.set(route, [...(render.get(route) ?? []), r]);
        ctx.log(`http render ${route.padEnd(9)}: ${fmt(r.rps)} req/s, p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, server ${fmt(r.cpuUsPerReq)} CPU us/request${r.non2xx > 0 ? `, ${r.non2xx} non-2xx` : ''}`);
      }
    }
  } finally {
    for (const s of servers.reverse()) await s.stop();
  }
  const med = (k: string) => {
    const xs = bulk.get(k) ?? [];
    return xs.some((x) => !Number.isFinite(x)) ? NaN : median(xs);
  };
  const rows: Row[] = [];
  for (const n of [8, 32]) {
    const s = med(`${n}:swarmboot`);
    const b = med(`${n}:nginx`);
    rows.push({ group: 'http', metric: `HTTP ${size / MiB} MiB initrd, ${n} clients at once, aggregate`, unit: 'MiB/s', swarmboot: s, baseline: b, baselineName: 'nginx', higherIsBetter: true, target: '>= 0.8x', met: s / b >= 0.8, command: COMMAND });
  }
  for (const route of ['/ignition', '/ipxe']) {
    const rs = render.get(route) ?? [];
    const bad = rs.some((r) => r.non2xx > 0);
    const rps = bad ? NaN : median(rs.map((r) => r.rps));
    rows.push({
      group: 'http',
      metric: `${route === '/ignition' ? 'Ignition' : 'iPXE script'} render, 1,000 cached MACs (wrk -t2 -c32)`,
      unit: 'req/s',
      swarmboot: rps,
      baseline: NaN,
      baselineName: 'no baseline',
      higherIsBetter: true,
      ...(route === '/ignition' ? { target: '>= 10,000/s', met: rps >= 10_000 } : {}),
      command: COMMAND,
    });
    rows.push({ group: 'http', metric: `${route === '/ignition' ? 'Ignition' : 'iPXE script'} render p99 latency`, unit: 'ms', swarmboot: median(rs.map((r) => r.p99Ms)), baseline: NaN, baselineName: 'no baseline', higherIsBetter: false, command: COMMAND });
  }
  const lines = [...bulk].map(([k, v]) => `| ${k.split(':')[1]} | ${k.split(':')[0]} | ${v.map((x) => fmt(x)).join(', ')} |`);
  const details = [
    `Bulk: ${reps} trials per (clients, server), alternating which server goes first; medians of aggregate MiB/s (N x ${size / MiB} MiB / wall time). Both servers were up for the whole benchmark. nginx used ${nginxUsage.cpuSeconds.toFixed(1)} CPU s in total, peak RSS ${fmt(nginxUsage.peakRssMiB)} MiB over its processes.`,
    'Render: wrk -t2 -c32 with a Lua script cycling over 1,000 MACs listed in the profiles; one 2 s warm-up pass, then the measured runs. Swarmboot logs at warn level (nginx: access_log off).',
    '',
    '| server | clients | MiB/s per trial |',
    '| --- | --- | --- |',
    ...lines,
    '',
    '| route | req/s per trial | p50 ms | p99 ms | server CPU us/request | req/s one free core would give |',
    '| --- | --- | --- | --- | --- | --- |',
    ...[...render].map(([route, rs]) => {
      const us = median(rs.map((r) => r.cpuUsPerReq ?? NaN));
      return `| ${route} | ${rs.map((r) => fmt(r.rps)).join(', ')} | ${rs.map((r) => fmt(r.p50Ms)).join(', ')} | ${rs.map((r) => fmt(r.p99Ms)).join(', ')} | ${fmt(us)} | ${fmt(1e6 / us)} |`;
    }),
  ].join('\n');
  return { name: 'http', rows, details };
}
