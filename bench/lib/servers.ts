/**
 * Starts each server under test inside the server namespace, by hand, with
 * its own config in a scratch directory: swarmboot (`swarmboot serve`
 * from dist/, which bench/run.ts builds first, as `npm start` runs it), Kea, dnsmasq,
 * tftpd-hpa and nginx from the Debian packages bench/setup.sh unpacked.
 * Every server is told to log warnings only, so no one pays for a log line
 * per request. Each Running server can report its CPU time and peak RSS
 * (from /proc, summed over its worker processes).
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns, Proc } from '../../test/helpers/netns.js';
import { waitFor } from '../../test/helpers/netns.js';
import { NET } from './lab.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CACHE = process.env.SWARMBOOT_BENCH_CACHE ?? '/var/tmp/swarmboot-bench';
export const DEB_ROOT = join(CACHE, 'root');
const LIBS = join(DEB_ROOT, 'usr/lib/x86_64-linux-gnu');

export interface Usage {
  /** User + system CPU seconds of the process tree so far. */
  cpuSeconds: number;
  /** Peak resident set (VmHWM), MiB, summed over the tree. */
  peakRssMiB: number;
}

export interface Running {
  readonly name: string;
  readonly proc: Proc;
  usage(): Usage;
  stop(): Promise<void>;
}

const TICK = 100; // USER_HZ on Linux

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

function tree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i] as number));
  return all;
}

/** CPU and peak RSS of `pid` and its descendants. */
export function usageOf(pid: number): Usage {
  let ticks = 0;
  let hwmKiB = 0;
  for (const p of tree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      hwmKiB += Number(m?.[1] ?? 0);
    } catch {
      // exited meanwhile
    }
  }
  return { cpuSeconds: ticks / TICK, peakRssMiB: hwmKiB / 1024 };
}

function running(name: string, proc: Proc, pidOf: () => number = () => proc.pid): Running {
  return {
    name,
    proc,
    usage: () => usageOf(pidOf()),
    stop: async () => {
      await proc.kill('SIGTERM', 5000);
    },
  };
}

async function listening(ns: Netns, proto: 'tcp' | 'udp', port: number, what: string): Promise<void> {
  await waitFor(
    async () => {
      const r = await ns.exec('ss', [proto === 'tcp' ? '-ltnH' : '-lunH', `sport = :${port}`], { timeoutMs: 5000 });
      return r.stdout.trim() !== '';
    },
    { timeoutMs: 30_000, intervalMs: 100, what: `${what} listening on ${proto}/${port}` },
  );
}

// ---------------------------------------------------------------- swarmboot

export interface SwarmbootOptions {
  dir: string;
  dhcp: 'full' | 'off';
  pool?: { start: string; end: string };
  /** Extra YAML appended to the config file. */
  config?: string;
  tftpPort?: number;
  httpPort?: number;
  /** Write a V8 CPU profile into this directory on exit (node --cpu-prof). */
  cpuProfDir?: string;
}

export const HTTP_PORT = 8080;

export async function startSwarmboot(ns: Netns, o: SwarmbootOptions): Promise<Running> {
  const cfgFile = join(o.dir, 'swarmboot.yaml');
  // BENCH_SWARMBOOT_CONFIG: YAML appended to every swarmboot config (A/B of a setting; top-level keys must not repeat the benchmark's own).
  writeFileSync(cfgFile, (o.config ?? '') + (process.env.BENCH_SWARMBOOT_CONFIG ? `${process.env.BENCH_SWARMBOOT_CONFIG}\n` : ''));
  const args: string[] = [];
  // BENCH_NODE_ARGS: extra node flags for swarmboot (--trace-gc, --max-semi-space-size=..., ...).
  if (process.env.BENCH_NODE_ARGS) args.push(...process.env.BENCH_NODE_ARGS.split(/\s+/).filter(Boolean));
  if (o.cpuProfDir !== undefined) args.push('--cpu-prof', '--cpu-prof-dir', o.cpuProfDir);
  args.push(join(REPO, 'dist/server/main.js'), 'serve', '--config', cfgFile, '--interface', 'eth0', '--address', NET.server, '--dhcp', o.dhcp);
  if (o.pool) args.push('--pool', `${o.pool.start}-${o.pool.end}`);
  args.push('--http-port', String(o.httpPort ?? HTTP_PORT), '--tftp-port', String(o.tftpPort ?? 69));
  args.push('--profiles', join(o.dir, 'profiles'), '--assets', join(o.dir, 'assets'), '--state', join(o.dir, 'state'), '--log-level', 'warn');
  const proc = ns.spawn(process.execPath, args, { cwd: REPO, env: { ...process.env, NODE_ENV: 'production' } });
  await proc.waitFor(/swarmboot: serving on/, 60_000);
  return running('swarmboot', proc);
}

// ---------------------------------------------------------------- Kea

export async function startKea(ns: Netns, dir: string, pool: { start: string; end: string }): Promise<Running> {
  mkdirSync(dir, { recursive: true });
  const conf = {
    Dhcp4: {
      'interfaces-config': { interfaces: ['eth0'], 'dhcp-socket-type': 'raw' },
      'lease-database': { type: 'memfile', persist: true, name: join(dir, 'leases4.csv'), 'lfc-interval': 0 },
      'valid-lifetime': 3600,
      'renew-timer': 1800,
      'rebind-timer': 3150,
      subnet4: [{ id: 1, subnet: `10.88.0.0/${NET.prefix}`, pools: [{ pool: `${pool.start} - ${pool.end}` }], 'option-data': [{ name: 'routers', data: NET.server }] }],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'WARN' }],
    },
  };
  const file = join(dir, 'kea-dhcp4.conf');
  writeFileSync(file, JSON.stringify(conf, null, 2));
  const env = { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir, KEA_LOGGER_DESTINATION: 'stdout' };
  const proc = ns.spawn('kea-dhcp4', ['-c', file], { env });
  await listening(ns, 'udp', 67, 'kea-dhcp4');
  return running('kea', proc);
}

// ---------------------------------------------------------------- dnsmasq

export interface DnsmasqOptions {
  dir: string;
  dhcpPool?: { start: string; end: string };
  tftpRoot?: string;
}

export async function startDnsmasq(ns: Netns, o: DnsmasqOptions): Promise<Running> {
  mkdirSync(o.dir, { recursive: true });
  const args = ['--keep-in-foreground', '--conf-file=/dev/null', '--port=0', '--user=root', '--group=root', '--interface=eth0', '--bind-interfaces', '--log-facility=-', `--pid-file=${join(o.dir, 'dnsmasq.pid')}`];
  if (o.dhcpPool) {
    args.push(`--dhcp-range=${o.dhcpPool.start},${o.dhcpPool.end},255.255.0.0,1h`, '--dhcp-authoritative', '--dhcp-lease-max=100000', `--dhcp-leasefile=${join(o.dir, 'dnsmasq.leases')}`, '--quiet-dhcp', '--no-ping');
  }
  if (o.tftpRoot !== undefined) args.push('--enable-tftp', `--tftp-root=${o.tftpRoot}`, '--tftp-max=1000');
  const proc = ns.spawn('dnsmasq', args);
  if (o.dhcpPool) await listening(ns, 'udp', 67, 'dnsmasq');
  if (o.tftpRoot !== undefined) await listening(ns, 'udp', 69, 'dnsmasq');
  return running('dnsmasq', proc);
}

// ---------------------------------------------------------------- tftpd-hpa

export async function startTftpdHpa(ns: Netns, root: string, port = 69): Promise<Running> {
  const bin = join(DEB_ROOT, 'usr/sbin/in.tftpd');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run bench/setup.sh`);
  // -L: stay in the foreground (standalone, one process, forks per transfer as it always does).
  const proc = ns.spawn(bin, ['-L', '-u', 'root', '-s', root, '-a', `${NET.server}:${port}`], { env: { ...process.env, LD_LIBRARY_PATH: LIBS } });
  await listening(ns, 'udp', port, 'in.tftpd');
  return running('tftpd-hpa', proc);
}

// ---------------------------------------------------------------- nginx

/**
 * nginx as Debian ships it would be set up for static files: sendfile on,
 * tcp_nopush, worker_processes auto (one per core), no access log.
 */
export async function startNginx(ns: Netns, dir: string, assetsDir: string, port = HTTP_PORT): Promise<Running> {
  const bin = join(DEB_ROOT, 'usr/sbin/nginx');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run bench/setup.sh`);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const conf = `daemon off;
master_process on;
worker_processes auto;
user root;
pid ${join(dir, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 4096; }
http {
  include ${join(DEB_ROOT, 'etc/nginx/mime.types')};
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  access_log off;
  client_body_temp_path ${join(dir, 'tmp')};
  proxy_temp_path ${join(dir, 'tmp')};
  fastcgi_temp_path ${join(dir, 'tmp')};
  uwsgi_temp_path ${join(dir, 'tmp')};
  scgi_temp_path ${join(dir, 'tmp')};
  server {
    listen ${NET.server}:${port};
    location /assets/ { alias ${assetsDir}/; }
  }
}
`;
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const proc = ns.spawn(bin, ['-p', dir, '-c', file, '-e', 'stderr']);
  await listening(ns, 'tcp', port, 'nginx');
  return running('nginx', proc);
}
