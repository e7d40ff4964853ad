/**
 * In-process DHCP micro-benchmark: the DHCP engine's hot path without the
 * kernel, namespaces or a load generator in the way.
 *
 *   node --import tsx bench/dhcp-inproc.ts [--n 20000] [--window 256 | --rate 8000]
 *        [--kind plain|pxe-bios|pxe-efi|ipxe] [--log-level warn] [--rounds 3]
 *   node --import tsx bench/dhcp-inproc.ts --profile /tmp/dhcp.cpuprofile
 *
 * DhcpServer is built as server/serve.ts builds it: a LeaseStore in a temp
 * directory with fsync 'batch' (every ACK waits for its fdatasync),
 * MachineStates, Metrics, a BootService over a ProfileStore whose
 * `unknown_machines: worker` answers any MAC, pools from compilePools.
 * Datagrams come in through a fake socket (so the intake and its pump are
 * measured too) and replies leave through the `send` seam.
 *
 * Load is closed-loop by default: `window` MACs are in an exchange at
 * once, an ACK starts the next MAC's DISCOVER, which measures the most the
 * engine can do. With `--rate R` it is open-loop like perfdhcp -r: R
 * DISCOVERs a second whether or not the server keeps up, which measures
 * the CPU an exchange costs at that rate and the latency. Either way an
 * OFFER triggers that MAC's REQUEST. Every packet is encoded before the
 * clock starts; the REQUEST's option 50 is patched in place with the
 * offered address, so the client side costs next to nothing. Each round
 * uses fresh state, and ends with the machine observations written.
 *
 * Prints exchanges/s (wall) and CPU µs per exchange (process.cpuUsage:
 * user + system, the journal's fdatasync threads included). `--profile`
 * writes a V8 CPU profile of the measured part of the last round only
 * (node --cpu-prof would mix in the packet building and module loading).
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Session } from 'node:inspector/promises';
import type { RemoteInfo } from 'node:dgram';
import { BootService } from '../server/boot/service.js';
import { peekMessageType } from '../server/dhcp/intake.js';
import { LeaseStore } from '../server/dhcp/leases.js';
import { compilePools } from '../server/dhcp/pool.js';
import { DhcpServer } from '../server/dhcp/server.js';
import { createLogger } from '../server/log.js';
import type { Mac } from '../server/mac.js';
import { Metrics } from '../server/metrics.js';
import { ProfileStore } from '../server/profiles/store.js';
import { MachineStates } from '../server/state/machines.js';
import { clientPacket, FLAG_BROADCAST, MessageType, Opt, pxeVendorClass, type ClientPacket } from '../test/helpers/dhcp-packets.js';

const SERVER_IP = '10.88.0.1';
const POOL = { subnet: '10.88.0.0/16', range: { start: '10.88.2.0', end: '10.88.249.255' }, router: SERVER_IP, dns: [SERVER_IP], domain: 'bench.example', leaseTime: 3600 };
const CLIENT = { address: '0.0.0.0', port: 68 };

type Kind = 'plain' | 'pxe-bios' | 'pxe-efi' | 'ipxe';

function mac(i: number): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `52:54:01:${h((i >> 16) & 255)}:${h((i >> 8) & 255)}:${h(i & 255)}`;
}

/** What the client of `kind` adds to both of its packets. */
function flavour(kind: Kind): Partial<ClientPacket> {
  switch (kind) {
    case 'plain':
      return { hostname: 'client' };
    case 'pxe-bios':
      return { vendorClass: pxeVendorClass(0), arch: 0, uuid: Buffer.alloc(16, 7) };
    case 'pxe-efi':
      return { vendorClass: pxeVendorClass(7), arch: 7, uuid: Buffer.alloc(16, 7) };
    case 'ipxe':
      return { vendorClass: pxeVendorClass(0), arch: 0, userClass: 'iPXE' };
  }
}

/** Offset of option `code`'s value in an encoded packet (it must be there). */
function optionOffset(buf: Buffer, code: number): number {
  let i = 240;
  while (i < buf.length && buf[i] !== Opt.END) {
    if (buf[i] === Opt.PAD) {
      i++;
      continue;
    }
    if (buf[i] === code) return i + 2;
    i += 2 + buf[i + 1]!;
  }
  throw new Error(`option ${code} not found`);
}

class FakeSocket extends EventEmitter {
  send(): void {
    throw new Error('replies go through the send seam');
  }
}

let profiled: unknown = null;

interface Result {
  exchanges: number;
  wallMs: number;
  cpuUs: number;
  /** The part of cpuUs spent in the kernel (the journal's writes and fdatasyncs, mostly). */
  sysUs: number;
  /** Replies that were not the expected OFFER/ACK. */
  unexpected: number;
  /** DISCOVER sent to ACK received, ms. */
  latencyAvgMs: number;
  latencyP99Ms: number;
}

interface Load {
  /** Exchanges in flight at once (closed loop), when rate is 0. */
  window: number;
  /** DISCOVERs started per second (open loop, like perfdhcp -r); 0 for the closed loop. */
  rate: number;
}

async function round(n: number, load: Load, kind: Kind, logLevel: string, profile: Session | null): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-inproc-'));
  const profilesDir = join(dir, 'profiles');
  const stateDir = join(dir, 'state');
  const assetsDir = join(dir, 'assets');
  mkdirSync(profilesDir);
  mkdirSync(assetsDir);
  writeFileSync(join(profilesDir, 'cluster.yaml'), 'cluster:\n  name: bench\n  swarm: { mode: off }\n  unknown_machines: worker\n');
  writeFileSync(join(profilesDir, 'profiles.yaml'), 'profiles:\n  worker:\n    role: worker\n');
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) writeFileSync(join(assetsDir, f), 'x');

  // Log lines (warn and up at the default level, as the perfdhcp bench runs serve) go nowhere.
  const log = createLogger({ level: logLevel, destination: { write: () => undefined } });
  const profiles = new ProfileStore(profilesDir, log);
  profiles.open();
  const machines = await MachineStates.open(stateDir, { log });
  const leases = await LeaseStore.open(stateDir, { log, fsync: 'batch' });
  const metrics = new Metrics();
  const boot = new BootService({ profiles: () => profiles.current(), serverKey: Buffer.alloc(32, 1), serverUrlFallback: () => `http://${SERVER_IP}:8080` });
  const reservations = new Map<Mac, string>();
  for (const m of profiles.current().machines.values()) if (m.ip) reservations.set(m.mac, m.ip);

  const extra = flavour(kind);
  const discovers: Buffer[] = [];
  const requests: Buffer[] = [];
  const reqIpAt: number[] = [];
  for (let i = 0; i < n; i++) {
    const common = { mac: mac(i), xid: i + 1, flags: FLAG_BROADCAST, maxSize: 1500, ...extra };
    discovers.push(clientPacket({ ...common, type: MessageType.DISCOVER }));
    const req = clientPacket({ ...common, type: MessageType.REQUEST, serverId: SERVER_IP, requestedIp: '0.0.0.0' });
    requests.push(req);
    reqIpAt.push(optionOffset(req, Opt.REQUESTED_IP));
  }

  const socket = new FakeSocket();
  const rinfo: RemoteInfo = { address: CLIENT.address, port: CLIENT.port, family: 'IPv4', size: 0 };
  let next = 0;
  let acked = 0;
  let unexpected = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const startedAt = new Float64Array(n);
  const latency = new Float64Array(n);
  const start = (): void => {
    if (next >= n) return;
    startedAt[next] = performance.now();
    socket.emit('message', discovers[next++], rinfo);
  };

  const server = new DhcpServer({
    mode: 'full',
    socket,
    serverIp: SERVER_IP,
    pools: () => compilePools([POOL], { reservations, serverAddresses: [SERVER_IP] }),
    leases,
    boot,
    hasAsset: (name: string) => existsSync(join(assetsDir, name)),
    machines,
    metrics,
    log,
    send: (buf) => {
      const i = buf.readUInt32BE(4) - 1;
      const type = peekMessageType(buf);
      if (type === MessageType.OFFER) {
        const req = requests[i]!;
        buf.copy(req, reqIpAt[i]!, 16, 20);
        socket.emit('message', req, rinfo);
      } else {
        if (type === MessageType.ACK) latency[acked++] = performance.now() - startedAt[i]!;
        else unexpected++;
        if (acked + unexpected === n) finish();
        else if (load.rate === 0) start();
      }
    },
  });

  if (profile !== null) await profile.post('Profiler.start');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (load.rate === 0) {
    for (let k = 0; k < load.window; k++) start();
  } else {
    // Open loop: whatever is due by now, every millisecond, whether or not the server keeps up.
    const tick = (): void => {
      const due = Math.min(n, Math.floor(((performance.now() - t0) * load.rate) / 1000) + 1);
      while (next < due) start();
      if (next < n) setTimeout(tick, 1);
    };
    tick();
  }
  await done;
  // Observations of this round's machines are written on a timer; that work belongs to the round too.
  await machines.flush();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (profile !== null) profiled = (await profile.post('Profiler.stop')).profile;

  await server.close();
  await machines.close();
  await leases.close();
  rmSync(dir, { recursive: true, force: true });
  const per = Math.max(acked, 1);
  const lat = latency.subarray(0, acked).sort();
  const latencyAvgMs = lat.reduce((a, b) => a + b, 0) / per;
  return { exchanges: acked, wallMs, cpuUs: (cpu.user + cpu.system) / per, sysUs: cpu.system / per, unexpected, latencyAvgMs, latencyP99Ms: lat[Math.floor(acked * 0.99)] ?? 0 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '20000' },
      window: { type: 'string', default: '256' },
      rate: { type: 'string', default: '0' },
      kind: { type: 'string', default: 'plain' },
      'log-level': { type: 'string', default: 'warn' },
      rounds: { type: 'string', default: '3' },
      profile: { type: 'string' },
    },
  });
  const n = Number(values.n);
  const load: Load = { window: Number(values.window), rate: Number(values.rate) };
  const rounds = Number(values.rounds);
  const kind = values.kind as Kind;
  if (!['plain', 'pxe-bios', 'pxe-efi', 'ipxe'].includes(kind)) throw new Error(`--kind: plain, pxe-bios, pxe-efi or ipxe, not ${kind}`);
  const shape = load.rate > 0 ? `rate=${load.rate}/s` : `window=${load.window}`;
  console.log(`dhcp-inproc: n=${n} ${shape} kind=${kind} log-level=${values['log-level']} (node ${process.version})`);
  const rates: number[] = [];
  const cpus: number[] = [];
  let session: Session | null = null;
  if (values.profile !== undefined) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
  }
  for (let r = 0; r < rounds; r++) {
    const res = await round(n, load, kind, values['log-level'], r === rounds - 1 ? session : null);
    const rate = (res.exchanges / res.wallMs) * 1000;
    rates.push(rate);
    cpus.push(res.cpuUs);
    console.log(
      `round ${r + 1}: ${res.exchanges} exchanges in ${res.wallMs.toFixed(0)} ms: ${rate.toFixed(0)} exchanges/s, ${res.cpuUs.toFixed(1)} CPU µs/exchange (${res.sysUs.toFixed(1)} system), ` +
        `latency avg ${res.latencyAvgMs.toFixed(1)} ms, p99 ${res.latencyP99Ms.toFixed(1)} ms` +
        (res.unexpected > 0 ? `, ${res.unexpected} unexpected replies` : ''),
    );
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  // Best of the rounds too: on a shared machine, other load only ever adds.
  console.log(`median: ${med(rates).toFixed(0)} exchanges/s, ${med(cpus).toFixed(1)} CPU µs/exchange; best: ${Math.max(...rates).toFixed(0)} exchanges/s, ${Math.min(...cpus).toFixed(1)} CPU µs/exchange`);
  if (session !== null && values.profile !== undefined) {
    writeFileSync(values.profile, JSON.stringify(profiled));
    session.disconnect();
    console.log(`CPU profile of the last round's measured part: ${values.profile}`);
  }
}

await main();
