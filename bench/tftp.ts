/**
 * TFTP: a 64 MiB file fetched with curl (blksize 512 and 1468, lock-step)
 * and atftp (blksize 1468, windowsize 16) from swarmboot, tftpd-hpa
 * (in.tftpd) and dnsmasq's TFTP; then 20 clients at once each fetching an
 * undionly.kpxe-sized file (the real one, 74 KB), as a rack's firmware does.
 *
 * The three servers run side by side in the server namespace on different
 * ports (swarmboot 6970, tftpd-hpa 6969, dnsmasq 69; dnsmasq cannot move
 * its TFTP port), so the trials can alternate server by server with no
 * restarts. Idle servers cost nothing. Each (client, server) pair runs
 * REPS times in rotating order; the table shows medians.
 */
import { existsSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NET } from './lib/lab.js';
import { scratch, cpuProfDir, writeProfiles, type BenchContext, type Section } from './lib/context.js';
import { startSwarmboot, startTftpdHpa, startDnsmasq, type Running } from './lib/servers.js';
import { payload, place, MiB } from './lib/files.js';
import { median, fmt, type Row } from './lib/report.js';

const BIG = 'big.bin';
const SMALL = 'undionly.kpxe';
const UNDIONLY = '/usr/lib/ipxe/undionly.kpxe';
const COMMAND = 'npm run bench -- tftp';

type ServerName = 'swarmboot' | 'tftpd-hpa' | 'dnsmasq';
const PORT: Record<ServerName, number> = { swarmboot: 6970, 'tftpd-hpa': 6969, dnsmasq: 69 };

interface Client {
  id: string;
  label: string;
  args: (port: number, out: string) => [string, string[]];
}

const CLIENTS: Client[] = [
  { id: 'curl512', label: 'curl blksize 512', args: (p, out) => ['curl', ['-sS', '--max-time', '120', '--tftp-blksize', '512', '-o', out, `tftp://${NET.server}:${p}/${BIG}`]] },
  { id: 'curl1468', label: 'curl blksize 1468', args: (p, out) => ['curl', ['-sS', '--max-time', '120', '--tftp-blksize', '1468', '-o', out, `tftp://${NET.server}:${p}/${BIG}`]] },
  { id: 'atftp16', label: 'atftp blksize 1468 windowsize 16', args: (p, out) => ['atftp', ['--option', 'blksize 1468', '--option', 'windowsize 16', '-g', '-r', BIG, '-l', out, NET.server, String(p)]] },
];

/** 20 curls at once inside the client namespace; prints the wall time in ms and how many failed. */
function concurrentScript(port: number, n: number, outDir: string): string {
  return `start=$(date +%s%N); fails=0
for i in $(seq ${n}); do curl -sS --max-time 30 --tftp-blksize 1468 -o ${outDir}/u$i tftp://${NET.server}:${port}/${SMALL} & done
for j in $(jobs -p); do wait $j || fails=$((fails+1)); done
echo "ms=$(( ($(date +%s%N) - start) / 1000000 )) fails=$fails"`;
}

export async function runTftp(ctx: BenchContext): Promise<Section> {
  const reps = ctx.quick ? 1 : 3;
  const size = ctx.quick ? 8 * MiB : 64 * MiB;
  const dir = scratch(ctx, 'tftp');
  const root = join(dir, 'assets');
  place(payload(size), join(root, BIG));
  place(UNDIONLY, join(root, SMALL));
  const out = join(dir, 'out');
  writeProfiles(join(dir, 'profiles'), []);
  const prof = cpuProfDir(ctx, 'tftp');
  const servers: Running[] = [];
  const results = new Map<string, number[]>();
  const add = (k: string, v: number) => results.set(k, [...(results.get(k) ?? []), v]);
  const names: ServerName[] = ['swarmboot', 'tftpd-hpa', 'dnsmasq'];
  try {
    servers.push(await startSwarmboot(ctx.lab.srv, { dir, dhcp: 'off', tftpPort: PORT.swarmboot, config: 'tftp:\n  max_transfers: 256\n', ...(prof ? { cpuProfDir: prof } : {}) }));
    servers.push(await startTftpdHpa(ctx.lab.srv, root, PORT['tftpd-hpa']));
    servers.push(await startDnsmasq(ctx.lab.srv, { dir: join(dir, 'dnsmasq'), tftpRoot: root }));
    await ctx.lab.cli.run('mkdir', ['-p', out]);
    for (let rep = 0; rep < reps; rep++) {
      for (const client of CLIENTS) {
        for (let k = 0; k < names.length; k++) {
          const server = names[(k + rep) % names.length] as ServerName;
          const file = join(out, `${client.id}-${server}`);
          const [cmd, args] = client.args(PORT[server], file);
          const r = await ctx.lab.cli.exec(cmd, args, { timeoutMs: 150_000 });
          const got = existsSync(file) ? statSync(file).size : -1;
          rmSync(file, { force: true });
          const ok = r.code === 0 && got === size;
          const mibs = ok ? size / MiB / (r.ms / 1000) : 0;
          add(`${client.id}:${server}`, mibs);
          ctx.log(`tftp ${client.label.padEnd(34)} ${server.padEnd(9)}: ${ok ? `${(r.ms / 1000).toFixed(2)} s, ${fmt(mibs)} MiB/s` : `FAILED (exit ${r.code}, ${got} bytes) ${r.stderr.trim().slice(0, 200)}`}`);
        }
      }
      for (let k = 0; k < names.length; k++) {
        const server = names[(k + rep) % names.length] as ServerName;
        const r = await ctx.lab.cli.exec('bash', ['-c', concurrentScript(PORT[server], 20, out)], { timeoutMs: 120_000 });
        const m = /ms=(\d+) fails=(\d+)/.exec(r.stdout);
        const ms = Number(m?.[1] ?? NaN);
        const fails = Number(m?.[2] ?? 20);
        const sizes = [...Array(20).keys()].map((i) => (existsSync(join(out, `u${i + 1}`)) ? statSync(join(out, `u${i + 1}`)).size : -1));
        const bad = fails + sizes.filter((s) => s !== statSync(UNDIONLY).size).length;
        for (let i = 1; i <= 20; i++) rmSync(join(out, `u${i}`), { force: true });
        add(`c20:${server}`, bad === 0 ? ms : NaN);
        ctx.log(`tftp 20 concurrent ${SMALL.padEnd(18)} ${server.padEnd(9)}: ${ms} ms${bad > 0 ? `, ${bad} failed` : ''}`);
      }
    }
  } finally {
    for (const s of servers.reverse()) await s.stop();
  }
  const med = (k: string) => {
    const xs = results.get(k) ?? [];
    return xs.some((x) => !Number.isFinite(x) || x === 0) ? NaN : median(xs);
  };
  const rows: Row[] = [];
  for (const client of CLIENTS) {
    for (const base of ['tftpd-hpa', 'dnsmasq'] as const) {
      const sb = med(`${client.id}:swarmboot`);
      const b = med(`${client.id}:${base}`);
      const target = base === 'tftpd-hpa' && client.id === 'curl1468' ? 1 : base === 'tftpd-hpa' && client.id === 'atftp16' ? 2 : undefined;
      rows.push({
        group: 'tftp',
        metric: `TFTP ${size / MiB} MiB, ${client.label}`,
        unit: 'MiB/s',
        swarmboot: sb,
        baseline: b,
        baselineName: base,
        higherIsBetter: true,
        ...(target !== undefined ? { target: `>= ${target.toFixed(1)}x`, met: Number.isFinite(sb / b) ? sb / b >= target : false } : {}),
        command: COMMAND,
      });
    }
  }
  for (const base of ['tftpd-hpa', 'dnsmasq'] as const) {
    rows.push({ group: 'tftp', metric: `TFTP 20 clients at once, ${SMALL} (${statSync(UNDIONLY).size} B) each, wall time`, unit: 'ms', swarmboot: med('c20:swarmboot'), baseline: med(`c20:${base}`), baselineName: base, higherIsBetter: false, command: COMMAND });
  }
  const raw = [...results].map(([k, v]) => `| ${k.replace(':', ' | ')} | ${v.map((x) => fmt(x)).join(', ')} |`);
  const details = [
    `${reps} trials per (client, server), rotating order; medians. MiB/s = file size / client wall time (process start to exit). 20-client rows: wall time until all 20 curls exited (lower is better).`,
    'tftpd-hpa 5.2 and dnsmasq 2.90 do not implement RFC 7440 windowsize, so atftp falls back to lock-step with them; the target (2x tftpd-hpa) is about exactly that difference.',
    'swarmboot runs with tftp.max_transfers 256 (default 64) so concurrent runs never meet "server busy"; everything else is the default config (blksize cap 1468, windowsize cap 64).',
    '',
    '| client | server | MiB/s or ms per trial |',
    '| --- | --- | --- |',
    ...raw,
  ].join('\n');
  return { name: 'tftp', rows, details };
}
