/**
 * Boot storm: BLADES simulated blades (distinct MACs, all listed in the
 * profiles) start within one second against `swarmboot serve --dhcp full`
 * (leases persisted, secret gate on) and walk the whole boot: DHCP, TFTP
 * loader, DHCP again as iPXE, iPXE scripts, kernel, initrd, Ignition (see
 * storm-client.ts). Then the same storm down the TFTP-only pxelinux path.
 *
 * The yardstick is the bytes-over-bandwidth bound: the storm's bytes
 * divided by the bandwidth this veth carried in bulk probes just before and
 * just after the storm, averaged (32 GETs of the kernel at once from nginx
 * with sendfile, through the same client code): no server can finish
 * sooner than the wire allows.
 *
 * The pxelinux storm moves every byte by lock-step TFTP; at full size it
 * would run for many minutes, so its kernel and initrd are scaled down
 * (BENCH_STORM_TFTP_SCALE, default 1/16) and the report says so.
 */
import { join } from 'node:path';
import { NET, ownAddresses } from './lib/lab.js';
import { scratch, cpuProfDir, writeProfiles, benchMac, type BenchContext, type Section, type MachineEntry } from './lib/context.js';
import { startSwarmboot, startNginx, REPO, HTTP_PORT, type Running, type Usage } from './lib/servers.js';
import { payload, place, MiB } from './lib/files.js';
import { percentile, fmt, type Row } from './lib/report.js';
import type { StormPlan, StormOutcome, Step, BootPath } from './storm-client.js';

const COMMAND = 'npm run bench -- storm';
const DIR = 'flatcar/stable/current/amd64';
const NGINX_PORT = 8081;
const STEPS: Step[] = ['dhcp', 'tftp-loader', 'dhcp-ipxe', 'script', 'kernel', 'initrd', 'ignition'];

function envNum(name: string, dflt: number): number {
  const v = process.env[name];
  return v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : dflt;
}

async function runClient(ctx: BenchContext, plan: StormPlan): Promise<StormOutcome> {
  const r = await ctx.lab.cli.exec(process.execPath, ['--import', 'tsx', join(REPO, 'bench/storm-client.ts'), JSON.stringify(plan)], { cwd: REPO, timeoutMs: plan.timeoutMs + 30_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{')) throw new Error(`storm client failed (exit ${r.code}, signal ${r.signal}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line) as StormOutcome;
}

/** Aggregate bytes/s of `n` simultaneous GETs of `url` from nginx through the storm client's HTTP code. */
async function probeBandwidth(ctx: BenchContext, url: string, n: number): Promise<number> {
  let best = 0;
  for (let i = 0; i < 2; i++) {
    const o = await runClient(ctx, { mode: 'bulk', bulk: { url, n, local: NET.client }, timeoutMs: 300_000 });
    const failed = o.blades.filter((b) => !b.ok);
    if (failed.length > 0) throw new Error(`bandwidth probe: ${failed.length} GETs failed: ${failed[0]?.error}`);
    const bps = o.bytes / (o.wallMs / 1000);
    ctx.log(`storm bandwidth probe (nginx, ${n} GETs at once): ${fmt(bps / MiB)} MiB/s`);
    best = Math.max(best, bps);
  }
  return best;
}

interface StormRun {
  path: BootPath;
  blades: number;
  kernelMiB: number;
  initrdMiB: number;
  outcome: StormOutcome;
  boundS: number;
  bandwidth: number;
  usage: Usage;
  cpuSeconds: number;
  /** swarmboot's own event-loop delay over the storm (its /metrics gauge), ms. */
  loopDelayMs: { p50: number; p99: number; max: number };
}

/** Scrapes swarmboot's event-loop delay gauges (each scrape covers the time since the previous one), in ms. */
async function loopDelay(ctx: BenchContext): Promise<{ p50: number; p99: number; max: number }> {
  const r = await ctx.lab.srv.exec('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${HTTP_PORT}/metrics`], { timeoutMs: 10_000 });
  const q = (name: string) => 1000 * Number(new RegExp(`^swarmboot_event_loop_delay_seconds\\{quantile="${name.replace('.', '\\.')}"\\} (\\S+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  return { p50: q('0.5'), p99: q('0.99'), max: q('max') };
}

async function storm(ctx: BenchContext, path: BootPath, blades: number, kernelMiB: number, initrdMiB: number): Promise<StormRun> {
  const dir = scratch(ctx, `storm-${path}`);
  const assets = join(dir, 'assets');
  place(payload(Math.round(kernelMiB * MiB)), join(assets, DIR, 'flatcar_production_pxe.vmlinuz'));
  place(payload(Math.round(initrdMiB * MiB)), join(assets, DIR, 'flatcar_production_pxe_image.cpio.gz'));
  const profile = path === 'ipxe' ? 'worker' : 'legacy';
  const machines: MachineEntry[] = [...Array(blades).keys()].map((i) => ({ mac: benchMac(path === 'ipxe' ? 0x20 : 0x21, i), hostname: `blade${i}`, profile }));
  writeProfiles(join(dir, 'profiles'), machines);
  const prof = cpuProfDir(ctx, `storm-${path}`);
  const servers: Running[] = [];
  try {
    const sb = await startSwarmboot(ctx.lab.srv, {
      dir,
      dhcp: 'full',
      pool: NET.stormPool,
      // Enough TFTP slots for every blade at once: the default 64 would answer the rest "server busy".
      config: `tftp:\n  max_transfers: ${Math.max(64, blades * 2)}\n`,
      ...(prof ? { cpuProfDir: prof } : {}),
    });
    servers.push(sb);
    const nginx = await startNginx(ctx.lab.srv, join(dir, 'nginx'), assets, NGINX_PORT);
    servers.push(nginx);
    const probeUrl = `http://${NET.server}:${NGINX_PORT}/assets/${DIR}/flatcar_production_pxe.vmlinuz`;
    const probedBefore = await probeBandwidth(ctx, probeUrl, 32);
    const before = sb.usage();
    await loopDelay(ctx); // starts the server's delay window here
    ctx.log(`storm ${path}: ${blades} blades, kernel ${kernelMiB} MiB, initrd ${initrdMiB} MiB, starting within 1 s`);
    const outcome = await runClient(ctx, { mode: 'storm', blades: machines.map((m) => ({ mac: m.mac, path })), spreadMs: 1000, blksize: 1468, timeoutMs: envNum('BENCH_STORM_TIMEOUT_S', 900) * 1000 });
    const usage = sb.usage();
    const loopDelayMs = await loopDelay(ctx);
    // Probed before and after the storm and averaged: on a shared machine one probe can land in a quiet or a busy moment.
    const bandwidth = (probedBefore + (await probeBandwidth(ctx, probeUrl, 32))) / 2;
    const boundS = outcome.bytes / bandwidth;
    const failed = outcome.blades.filter((b) => !b.ok);
    ctx.log(`storm ${path}: client loop delay p99 ${fmt(outcome.clientLoopDelayMs.p99)} ms, max ${fmt(outcome.clientLoopDelayMs.max)} ms`);
    ctx.log(`storm ${path}: ${(outcome.wallMs / 1000).toFixed(1)} s for ${fmt(outcome.bytes / MiB)} MiB (bound ${boundS.toFixed(1)} s), ${failed.length} failed${failed.length > 0 ? `: ${failed[0]?.failedStep}: ${failed[0]?.error}` : ''}; server cpu ${(usage.cpuSeconds - before.cpuSeconds).toFixed(1)} s, peak RSS ${fmt(usage.peakRssMiB)} MiB`);
    ctx.log(`storm ${path}: swarmboot event-loop delay p50/p99/max ${fmt(loopDelayMs.p50)}/${fmt(loopDelayMs.p99)}/${fmt(loopDelayMs.max)} ms`);
    return { path, blades, kernelMiB, initrdMiB, outcome, boundS, bandwidth, usage, cpuSeconds: usage.cpuSeconds - before.cpuSeconds, loopDelayMs };
  } finally {
    for (const s of servers.reverse()) await s.stop();
    if (process.env.BENCH_DEBUG) ctx.log(`swarmboot output:\n${servers[0]?.proc.output.slice(-6000) ?? ''}`);
  }
}

function stepTable(run: StormRun): string[] {
  const lines = ['| step | p50 ms | p99 ms | max ms |', '| --- | --- | --- | --- |'];
  for (const s of STEPS) {
    const xs = run.outcome.blades.map((b) => b.steps[s]).filter((x): x is number => x !== undefined);
    if (xs.length === 0) continue;
    lines.push(`| ${s} | ${fmt(percentile(xs, 50))} | ${fmt(percentile(xs, 99))} | ${fmt(percentile(xs, 100))} |`);
  }
  const tot = run.outcome.blades.map((b) => b.totalMs);
  lines.push(`| whole boot | ${fmt(percentile(tot, 50))} | ${fmt(percentile(tot, 99))} | ${fmt(percentile(tot, 100))} |`);
  return lines;
}

export async function runStorm(ctx: BenchContext): Promise<Section> {
  const blades = ctx.quick ? envNum("BENCH_STORM_BLADES", 20) : envNum('BENCH_STORM_BLADES', 200);
  const kernelMiB = ctx.quick ? 4 : envNum('BENCH_STORM_KERNEL_MIB', 48);
  const initrdMiB = ctx.quick ? 16 : envNum('BENCH_STORM_INITRD_MIB', 256);
  const scale = envNum("BENCH_STORM_TFTP_SCALE", 16);
  await ownAddresses(ctx.lab.cli, ctx.lab.ifname, NET.stormPool.start, NET.stormPool.end);
  const runs: StormRun[] = [];
  runs.push(await storm(ctx, 'ipxe', blades, kernelMiB, initrdMiB));
  runs.push(await storm(ctx, 'pxelinux', blades, kernelMiB / scale, initrdMiB / scale));

  const rows: Row[] = [];
  const details: string[] = [];
  for (const run of runs) {
    const label = run.path === 'ipxe' ? 'iPXE path' : `pxelinux TFTP-only path, sizes /${scale}`;
    const failures = run.outcome.blades.filter((b) => !b.ok).length;
    const wallS = run.outcome.wallMs / 1000;
    rows.push({ group: 'storm', metric: `Boot storm ${run.blades} blades (${label}): time until all done vs bytes/bandwidth bound`, unit: 's', swarmboot: wallS, baseline: run.boundS, baselineName: 'bound', higherIsBetter: false, ...(run.path === 'ipxe' ? { target: '<= 1.5x', met: failures === 0 && wallS <= 1.5 * run.boundS } : {}), command: COMMAND });
    rows.push({ group: 'storm', metric: `Boot storm (${label}): failed blades`, unit: '', swarmboot: failures, baseline: NaN, baselineName: 'must be 0', higherIsBetter: false, target: '0', met: failures === 0, command: COMMAND });
    rows.push({ group: 'storm', metric: `Boot storm (${label}): server peak RSS`, unit: 'MiB', swarmboot: run.usage.peakRssMiB, baseline: NaN, baselineName: '-', higherIsBetter: false, command: COMMAND });
    rows.push({ group: 'storm', metric: `Boot storm (${label}): server CPU (share of one core over the storm)`, unit: '%', swarmboot: (100 * run.cpuSeconds) / wallS, baseline: NaN, baselineName: '-', higherIsBetter: false, command: COMMAND });
    const fails = run.outcome.blades.filter((b) => !b.ok);
    const byError = new Map<string, number>();
    for (const f of fails) byError.set(`${f.failedStep}: ${f.error}`, (byError.get(`${f.failedStep}: ${f.error}`) ?? 0) + 1);
    details.push(
      `**${label}**: ${run.blades} blades, kernel ${fmt(run.kernelMiB)} MiB, initrd ${fmt(run.initrdMiB)} MiB; ${fmt(run.outcome.bytes / MiB)} MiB moved in ${wallS.toFixed(1)} s; bandwidth probes (before and after) averaged ${fmt(run.bandwidth / MiB)} MiB/s, so the bound is ${run.boundS.toFixed(1)} s (ratio ${(wallS / run.boundS).toFixed(2)}x). ` +
        `Server: ${run.cpuSeconds.toFixed(1)} CPU s, peak RSS ${fmt(run.usage.peakRssMiB)} MiB. swarmboot's event-loop delay p50/p99/max ${fmt(run.loopDelayMs.p50)}/${fmt(run.loopDelayMs.p99)}/${fmt(run.loopDelayMs.max)} ms. Storm client's own event-loop delay p50/p99/max ${fmt(run.outcome.clientLoopDelayMs.p50)}/${fmt(run.outcome.clientLoopDelayMs.p99)}/${fmt(run.outcome.clientLoopDelayMs.max)} ms (step times include it). DHCP retransmissions: ${run.outcome.blades.reduce((a, b) => a + Math.max(0, b.dhcpTries - 2 * (run.path === 'ipxe' ? 2 : 1)), 0)}; TFTP client retransmissions: ${run.outcome.blades.reduce((a, b) => a + b.tftpRetransmits, 0)}.`,
      '',
      ...stepTable(run),
      '',
      ...(fails.length > 0 ? ['Failures:', '', ...[...byError].map(([e, n]) => `- ${n} x ${e}`), ''] : []),
    );
  }
  return { name: 'storm', rows, details: details.join('\n') };
}
