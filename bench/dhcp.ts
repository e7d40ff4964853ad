/**
 * DHCP: perfdhcp (Kea's load generator) from the client namespace, 60,000
 * distinct client MACs (-R), broadcast flag (-B), at rising rates (-r),
 * against swarmboot `full` mode (leases journalled to disk), Kea
 * (kea-dhcp4, memfile lease file) and dnsmasq (lease file). Each server
 * starts fresh (empty lease state) for every trial, and at every rate the
 * servers take turns, so background load hits all of them alike.
 *
 * A server "holds" a rate when perfdhcp reached it (>= 95% of the asked
 * rate) with at most 0.1% of DISCOVERs and REQUESTs dropped. After a
 * failed trial the rate is tried twice more and judged by the median; a
 * server that does not hold a rate is not asked for higher ones, and its
 * highest held rate is measured twice more, so the reported rate and
 * latency are medians of three.
 */
import { join } from 'node:path';
import { NET } from './lib/lab.js';
import { scratch, cpuProfDir, writeProfiles, type BenchContext, type Section } from './lib/context.js';
import { startSwarmboot, startKea, startDnsmasq, HTTP_PORT, type Running } from './lib/servers.js';
import { median, fmt, type Row } from './lib/report.js';

/** swarmboot-write: swarmboot with dhcp.lease_sync: write (leases written, not fdatasync'd: the durability of Kea's memfile). */
type ServerName = 'swarmboot' | 'swarmboot-write' | 'kea' | 'dnsmasq';

export interface PerfdhcpResult {
  rate: number;
  /** Datagrams the server namespace's kernel dropped for a full socket receive buffer (Udp RcvbufErrors) during the trial. */
  rcvbufErrors?: number;
  /** The same in the client namespace: replies perfdhcp's own socket had no room for (counted by perfdhcp as drops). */
  clientRcvbufErrors?: number;
  /** swarmboot only: its swarmboot_dhcp_ignored_total samples after the trial. */
  ignored?: string;
  /** Dropped DISCOVER+REQUEST / sent, percent. */
  dropPct: number;
  /** Average DISCOVER-OFFER + REQUEST-ACK delay, ms (the 4-way exchange). */
  latencyMs: number;
  sent: number;
  ok: boolean;
}

/** Reads perfdhcp's report. Pure: text in, numbers out. */
export function parsePerfdhcp(text: string, asked: number, periodS: number): PerfdhcpResult {
  // perfdhcp's own "Rate:" divides by the run time including the -W wait; count completed exchanges instead.
  let acks = 0;
  const sections = text.split(/\*\*\*Statistics for: /).slice(1);
  let sent = 0;
  let drops = 0;
  let latency = 0;
  for (const s of sections) {
    if (!/^(DISCOVER-OFFER|REQUEST-ACK)/.test(s)) continue;
    sent += Number(/sent packets: (\d+)/.exec(s)?.[1] ?? 0);
    if (s.startsWith('REQUEST-ACK')) acks = Number(/received packets: (\d+)/.exec(s)?.[1] ?? 0);
    drops += Number(/drops: (\d+)/.exec(s)?.[1] ?? 0);
    const avg = Number(/avg delay: ([\d.]+) ms/.exec(s)?.[1] ?? NaN);
    latency += avg;
  }
  const rate = acks / periodS;
  const dropPct = sent === 0 ? 100 : (100 * drops) / sent;
  return { rate, dropPct, latencyMs: latency, sent, ok: sent > 0 && dropPct <= 0.1 && rate >= 0.95 * asked };
}

const PERIOD_S = 5;

function perfdhcpArgs(rate: number, period = PERIOD_S): string[] {
  // -W: after the period, wait 1 s for answers still on their way instead of counting them as drops.
  return ['-4', '-l', 'eth0', '-r', String(rate), '-R', '60000', '-p', String(period), '-B', '-W', '1000000'];
}

export const COMMAND = 'npm run bench -- dhcp';

/** Udp RcvbufErrors of a namespace (each has its own counters): the server's by default. */
async function rcvbufErrors(ctx: BenchContext, ns = ctx.lab.srv): Promise<number> {
  const r = await ns.exec('cat', ['/proc/net/snmp'], { timeoutMs: 5000 });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = (lines[0] ?? '').split(/\s+/);
  const values = (lines[1] ?? '').split(/\s+/);
  return Number(values[names.indexOf('RcvbufErrors')] ?? 0);
}

async function trial(ctx: BenchContext, server: ServerName, rate: number): Promise<PerfdhcpResult> {
  const dir = scratch(ctx, `dhcp-${server}`);
  let s: Running;
  if (server === 'swarmboot' || server === 'swarmboot-write') {
    writeProfiles(join(dir, 'profiles'), [], 'worker');
    const prof = cpuProfDir(ctx, `${server}-${rate}`);
    const sync = server === 'swarmboot-write' ? 'dhcp:\n  lease_sync: write\n' : '';
    s = await startSwarmboot(ctx.lab.srv, { dir, dhcp: 'full', pool: NET.bigPool, config: `tftp:\n  enabled: false\n${sync}`, ...(prof ? { cpuProfDir: prof } : {}) });
  } else if (server === 'kea') {
    s = await startKea(ctx.lab.srv, dir, NET.bigPool);
  } else {
    s = await startDnsmasq(ctx.lab.srv, { dir, dhcpPool: NET.bigPool });
  }
  try {
    const period = ctx.quick ? 2 : PERIOD_S;
    const rcvbuf0 = await rcvbufErrors(ctx);
    const clientRcvbuf0 = await rcvbufErrors(ctx, ctx.lab.cli);
    const r = await ctx.lab.cli.exec('perfdhcp', perfdhcpArgs(rate, period), { timeoutMs: (period + 30) * 1000 });
    const res = { ...parsePerfdhcp(r.stdout, rate, period), rcvbufErrors: (await rcvbufErrors(ctx)) - rcvbuf0, clientRcvbufErrors: (await rcvbufErrors(ctx, ctx.lab.cli)) - clientRcvbuf0 };
    const cpu = s.usage().cpuSeconds;
    if (server === 'swarmboot' || server === 'swarmboot-write') {
      // The server's own account of requests it answered nothing to, by reason (overload, lease conflicts, ...).
      const m = await ctx.lab.srv.exec('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${HTTP_PORT}/metrics`], { timeoutMs: 10_000 });
      res.ignored = m.stdout.split('\n').filter((l) => l.startsWith('swarmboot_dhcp_ignored_total')).map((l) => l.replace('swarmboot_dhcp_ignored_total', '')).join(' ');
    }
    ctx.log(`dhcp ${server.padEnd(15)} -r ${String(rate).padStart(5)}: ${fmt(res.rate)} ex/s, drops ${res.dropPct.toFixed(3)}%, ${res.latencyMs.toFixed(2)} ms, server cpu ${cpu.toFixed(1)} s, rcvbuf drops server ${res.rcvbufErrors} client ${res.clientRcvbufErrors}${res.ignored ? `, server ignored ${res.ignored}` : ''}${res.ok ? '' : '  (not held)'}`);
    return res;
  } finally {
    await s.stop();
  }
}

interface Held {
  rate: number;
  achieved: number;
  latencyMs: number;
  dropPct: number;
}

export async function runDhcp(ctx: BenchContext): Promise<Section> {
  const rates = (process.env.BENCH_DHCP_RATES ?? (ctx.quick ? '500,2000' : '100,250,500,1000,2000,3000,4000,5000,6000,7000,8000,9000,10000,12000,15000,20000')).split(',').map(Number);
  const servers: ServerName[] = ['swarmboot', 'swarmboot-write', 'kea', 'dnsmasq'];
  const alive = new Set<ServerName>(servers);
  const passes = new Map<ServerName, Map<number, PerfdhcpResult[]>>(servers.map((s) => [s, new Map()]));
  const lastHeld = new Map<ServerName, number>();
  const log: string[] = ['| server | asked rate | median achieved | median drops % | median latency ms | rcvbuf drops, server ns (median) | rcvbuf drops, perfdhcp ns (median) | trials |', '| --- | --- | --- | --- | --- | --- | --- | --- |'];
  const record = (s: ServerName, rate: number, r: PerfdhcpResult) => {
    const m = passes.get(s)!;
    m.set(rate, [...(m.get(rate) ?? []), r]);
  };
  const verdict = (rs: PerfdhcpResult[]) => rs.filter((r) => r.ok).length * 2 > rs.length;

  for (const [k, rate] of rates.entries()) {
    // Rotate the order at each rate: no server always goes first after a cold start.
    const order = servers.map((_, i) => servers[(i + k) % servers.length] as ServerName).filter((s) => alive.has(s));
    for (const s of order) record(s, rate, await trial(ctx, s, rate));
    for (const s of order) {
      let rs = passes.get(s)!.get(rate)!;
      if (!rs[0]!.ok) {
        // One bad trial is not a verdict on a shared machine: two more, then the median.
        for (let i = 0; i < 2; i++) record(s, rate, await trial(ctx, s, rate));
        rs = passes.get(s)!.get(rate)!;
      }
      if (verdict(rs)) lastHeld.set(s, rate);
      else alive.delete(s);
    }
    if (alive.size === 0) break;
  }
  // The highest held rate: three trials in all, for medians.
  for (const s of servers) {
    const rate = lastHeld.get(s);
    if (rate === undefined) continue;
    while ((passes.get(s)!.get(rate)?.length ?? 0) < 3) record(s, rate, await trial(ctx, s, rate));
  }

  const held = new Map<ServerName, Held>();
  for (const s of servers) {
    for (const [rate, rs] of passes.get(s)!) {
      log.push(`| ${s} | ${rate} | ${fmt(median(rs.map((r) => r.rate)))} | ${median(rs.map((r) => r.dropPct)).toFixed(3)} | ${median(rs.map((r) => r.latencyMs)).toFixed(2)} | ${fmt(median(rs.map((r) => r.rcvbufErrors ?? NaN)))} | ${fmt(median(rs.map((r) => r.clientRcvbufErrors ?? NaN)))} | ${rs.length} |`);
    }
    const rate = lastHeld.get(s);
    const rs = rate === undefined ? [] : passes.get(s)!.get(rate)!.filter((r) => r.ok);
    held.set(s, rate === undefined ? { rate: 0, achieved: 0, latencyMs: NaN, dropPct: NaN } : { rate, achieved: median(rs.map((r) => r.rate)), latencyMs: median(rs.map((r) => r.latencyMs)), dropPct: median(rs.map((r) => r.dropPct)) });
  }
  const top = rates[rates.length - 1];
  const sb = held.get('swarmboot')!;
  const rows: Row[] = [];
  for (const base of ['kea', 'dnsmasq'] as const) {
    const b = held.get(base)!;
    rows.push({
      group: 'dhcp',
      metric: `DHCP 4-way exchanges/s held (<=0.1% drops, 60k clients)`,
      unit: '/s',
      swarmboot: sb.achieved,
      baseline: b.achieved,
      baselineName: base,
      higherIsBetter: true,
      // Judged on the rate steps held (perfdhcp's achieved rate wobbles a little around the asked one).
      ...(base === 'kea' ? { target: '>= 1.0x', met: sb.rate >= b.rate } : { target: 'far above', met: sb.rate > 2 * b.rate }),
      command: COMMAND,
      ...(sb.rate === top ? { note: `swarmboot held the highest rate tried (${top}/s)` } : {}),
    });
    rows.push({
      group: 'dhcp',
      metric: `DHCP latency (avg DO+RA) at each server's held rate`,
      unit: 'ms',
      swarmboot: sb.latencyMs,
      baseline: b.latencyMs,
      baselineName: base,
      higherIsBetter: false,
      command: COMMAND,
    });
  }
  const sbw = held.get('swarmboot-write')!;
  const kea = held.get('kea')!;
  rows.push({
    group: 'dhcp',
    metric: `DHCP 4-way exchanges/s held, swarmboot with dhcp.lease_sync: write (Kea memfile's durability)`,
    unit: '/s',
    swarmboot: sbw.achieved,
    baseline: kea.achieved,
    baselineName: 'kea',
    higherIsBetter: true,
    target: '>= 1.0x',
    met: sbw.rate >= kea.rate,
    command: COMMAND,
  });
  rows.push({ group: 'dhcp', metric: `DHCP latency (avg DO+RA) at the held rate, lease_sync: write`, unit: 'ms', swarmboot: sbw.latencyMs, baseline: kea.latencyMs, baselineName: 'kea', higherIsBetter: false, command: COMMAND });
  const details = [
    `perfdhcp ${perfdhcpArgs(0).join(' ').replace('-r 0', '-r RATE')}, rates ${rates.join(', ')}; every trial on a fresh server with empty lease state.`,
    "swarmboot runs twice: as shipped (dhcp.lease_sync: fsync, every lease fdatasync'd before its ACK, ACKs of one 5 ms interval sharing an fdatasync) and as swarmboot-write (dhcp.lease_sync: write, leases written to the kernel before the ACK but not fdatasync'd, which is what Kea's memfile with persist: true does).",
    "perfdhcp counts a reply as dropped when it does not read it; the last two columns say where the kernel discarded datagrams for a full socket buffer: the server's socket, or perfdhcp's own (default 208 KiB, about 90 replies: a burst of replies, or perfdhcp's receiving thread waiting for a CPU, overflows it).",
    'dnsmasq runs with --no-ping: by default it pings every new address before offering it, which holds each first offer back for seconds and makes it drop nearly all of a perfdhcp run; swarmboot and Kea do no such check.',
    '',
    ...log,
  ].join('\n');
  return { name: 'dhcp', rows, details };
}
