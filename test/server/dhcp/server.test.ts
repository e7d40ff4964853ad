/**
 * The DHCP engine driven with encoded packets: captured client packets
 * (test/fixtures/dhcp/) and built ones, through the send seam or fake
 * sockets, with a real LeaseStore in a temp dir and a hand-moved clock.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BootService } from '../../../server/boot/service.js';
import { decodeDhcp, dumpDhcp, FLAG_BROADCAST, type DhcpMessage } from '../../../server/dhcp/codec.js';
import { LeaseStore } from '../../../server/dhcp/leases.js';
import { compilePools, type PoolConfig } from '../../../server/dhcp/pool.js';
import { DhcpServer, type DatagramSocket, type DhcpServerOptions, type Timers } from '../../../server/dhcp/server.js';
import { createLogger } from '../../../server/log.js';
import { requireMac, type Mac } from '../../../server/mac.js';
import { Metrics } from '../../../server/metrics.js';
import { loadProfiles } from '../../../server/profiles/load.js';
import type { ProfileSet } from '../../../server/profiles/types.js';
import type { TrailStep } from '../../../server/state/machines.js';
import { nodeJournalIo, type JournalIo } from '../../../server/store/journal.js';
import { clientPacket, MessageType, Opt, pxeVendorClass, type ClientPacket } from '../../helpers/dhcp-packets.js';
import { matchGolden } from '../../helpers/golden.js';

type Test = Pick<typeof t, 'teardown'>;

const FIXTURES = fileURLToPath(new URL('../../fixtures/dhcp/', import.meta.url));
const fixture = (name: string): Buffer => readFileSync(join(FIXTURES, `${name}.bin`));

const SERVER = '10.213.0.1';
const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);
const HOUR = 3_600_000;
/** The MAC in every capture. */
const CAPTURED = '02:5b:00:00:00:01';
const RESERVED = '02:5b:00:00:00:07';
const OTHER = '02:5b:00:00:00:02';
const THIRD = '02:5b:00:00:00:03';
const UNKNOWN = '02:5b:00:00:00:99';
const CLIENT = { address: '0.0.0.0', port: 68 };

const cluster = (unknown: string) => `cluster:
  name: lab
  server_url: http://${SERVER}:8080
  unknown_machines: ${unknown}
`;
const profilesYaml = `profiles:
  worker:
    role: worker
    machines:
      - { mac: "${CAPTURED}", hostname: blade1 }
      - { mac: "${OTHER}", hostname: blade2 }
      - { mac: "${THIRD}", hostname: blade3 }
      - { mac: "${RESERVED}", hostname: fixed, ip: 10.213.0.200 }
  legacy:
    role: worker
    boot: pxelinux
    machines:
      - { mac: "02:5b:00:00:00:21", hostname: old1 }
`;

function profileSet(unknown = 'ignore'): ProfileSet {
  return loadProfiles([
    { file: 'cluster.yaml', text: cluster(unknown) },
    { file: 'profiles.yaml', text: profilesYaml },
  ]);
}

const POOLS: PoolConfig[] = [
  { subnet: '10.213.0.0/24', range: { start: '10.213.0.50', end: '10.213.0.99' }, router: SERVER, dns: ['10.213.0.2'], domain: 'lab.example', leaseTime: 3600 },
  { subnet: '10.214.5.0/24', range: { start: '10.214.5.100', end: '10.214.5.110' }, router: '10.214.5.1', leaseTime: 600 },
];

interface Sent {
  msg: DhcpMessage;
  port: number;
  address: string;
  via: number;
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface RigOptions {
  mode?: 'full' | 'proxy';
  unknown?: string;
  replyDelayMs?: number;
  timers?: Timers;
  io?: JournalIo;
  server?: Partial<DhcpServerOptions>;
}

async function rig(t: Test, o: RigOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-dhcp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clock = { now: T0 };
  const logs: LogLine[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) } });
  const mode = o.mode ?? 'full';
  const leases = mode === 'full' ? await LeaseStore.open(dir, { log, now: () => clock.now, ...(o.io ? { io: o.io } : {}) }) : undefined;
  const state = { set: profileSet(o.unknown) };
  const boot = new BootService({ profiles: () => state.set, serverKey: Buffer.alloc(32, 1) });
  const trail: { mac: Mac; step: TrailStep; ip?: string; detail?: string }[] = [];
  const metrics = new Metrics();
  const sent: Sent[] = [];
  let compiles = 0;
  const server = new DhcpServer({
    mode,
    socket: new FakeSocket(),
    serverIp: SERVER,
    pools: () => {
      compiles++;
      const reservations = new Map<Mac, string>();
      for (const m of state.set.machines.values()) if (m.ip) reservations.set(m.mac, m.ip);
      return compilePools(POOLS, { reservations, serverAddresses: [SERVER] });
    },
    ...(leases ? { leases } : {}),
    boot,
    hasAsset: () => false,
    machines: { record: (mac, step, extra = {}) => void trail.push({ mac, step, ...extra }) },
    metrics,
    log,
    replyDelayMs: o.replyDelayMs ?? 0,
    send: (buf, port, address, via) => void sent.push({ msg: decodeDhcp(buf), port, address, via }),
    ...(o.timers ? { timers: o.timers } : {}),
    ...o.server,
  });
  t.teardown(async () => {
    await server.close();
    await leases?.close();
  });

  /** Sends one packet and returns what the server sent in answer (empty when silent). */
  const exchange = async (pkt: Buffer | ClientPacket, from = CLIENT, port = 67): Promise<Sent[]> => {
    const before = sent.length;
    await server.receive(Buffer.isBuffer(pkt) ? pkt : clientPacket(pkt), from, port);
    return sent.slice(before);
  };
  const one = async (pkt: Buffer | ClientPacket, from = CLIENT, port = 67): Promise<Sent> => {
    const out = await exchange(pkt, from, port);
    if (out.length !== 1) throw new Error(`expected one reply, got ${out.length}`);
    return out[0]!;
  };
  /** A full DORA for `mac`; returns the ACKed address. */
  const dora = async (mac: string, extra: Partial<ClientPacket> = {}): Promise<string> => {
    const offer = await one({ type: MessageType.DISCOVER, mac, ...extra });
    const ack = await one({ type: MessageType.REQUEST, mac, serverId: SERVER, requestedIp: offer.msg.yiaddr, ...extra });
    if (ack.msg.messageType !== MessageType.ACK) throw new Error(`DORA for ${mac} ended in type ${ack.msg.messageType}`);
    return ack.msg.yiaddr;
  };
  const ignored = (reason: string): number => metrics.counter('swarmboot_dhcp_ignored_total', '').get({ reason });
  return { server, leases: leases!, clock, logs, sent, trail, metrics, state, exchange, one, dora, ignored, compiles: () => compiles };
}

class FakeSocket extends EventEmitter implements DatagramSocket {
  readonly sent: { msg: Buffer; port: number; address: string }[] = [];
  override on(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number; family: 'IPv4'; size: number }) => void): this {
    return super.on(event, listener);
  }
  override off(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number; family: 'IPv4'; size: number }) => void): this {
    return super.off(event, listener);
  }
  send(msg: Uint8Array, port: number, address: string, callback?: (error: Error | null) => void): void {
    this.sent.push({ msg: Buffer.from(msg), port, address });
    callback?.(null);
  }
  deliver(msg: Buffer, address = '0.0.0.0', port = 68): void {
    this.emit('message', msg, { address, port, family: 'IPv4', size: msg.length });
  }
}

/** Timers that fire only when the test says so. */
class FakeTimers implements Timers {
  private next = 1;
  readonly pending = new Map<number, { fn: () => void; ms: number; every: boolean }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { fn, ms, every: false });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  setInterval(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { fn, ms, every: true });
    return id;
  }
  clearInterval(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** Fires every one-shot timer (and each interval once). */
  fire(): number {
    let n = 0;
    for (const [id, tm] of [...this.pending]) {
      if (!tm.every) this.pending.delete(id);
      tm.fn();
      n++;
    }
    return n;
  }
  oneShots(): number[] {
    return [...this.pending.values()].filter((x) => !x.every).map((x) => x.ms);
  }
}

const opt = (m: DhcpMessage, code: number): Buffer | undefined => m.options.get(code);
const text = (m: DhcpMessage, code: number): string | undefined => opt(m, code)?.toString('latin1');
const settle = () => new Promise((r) => setImmediate(r));

t.test('DORA with captured udhcpc packets (BIOS PXE): OFFER and ACK, golden dumps', async (t) => {
  const r = await rig(t);
  const offer = await r.one(fixture('udhcpc-bios-discover'));
  t.equal(offer.msg.messageType, MessageType.OFFER);
  t.same([offer.address, offer.port, offer.via], ['255.255.255.255', 68, 67], 'broadcast to the client port');
  t.equal(offer.msg.yiaddr, '10.213.0.50', 'lowest free address of the range');
  t.equal(r.leases.get(requireMac(CAPTURED))?.state, 'offered');
  matchGolden(t, 'dhcp/server/bios-offer.txt', dumpDhcp(offer.msg));

  const ack = await r.one(fixture('udhcpc-bios-request'));
  t.equal(ack.msg.messageType, MessageType.ACK);
  t.equal(ack.msg.yiaddr, '10.213.0.50');
  t.equal(ack.address, '255.255.255.255');
  matchGolden(t, 'dhcp/server/bios-ack.txt', dumpDhcp(ack.msg));
  for (const code of [1, 3, 6, 12, 15, 51, 54, 58, 59]) t.ok(ack.msg.options.has(code), `ACK carries option ${code}`);
  t.same([...opt(ack.msg, Opt.LEASE_TIME)!], [0, 0, 0x0e, 0x10], 'lease 3600 s');
  t.equal(opt(ack.msg, Opt.RENEWAL_TIME)!.readUInt32BE(0), 1800);
  t.equal(opt(ack.msg, Opt.REBINDING_TIME)!.readUInt32BE(0), 3150);
  t.equal(text(ack.msg, Opt.HOSTNAME), 'blade1');
  t.equal(text(ack.msg, Opt.DOMAIN_NAME), 'lab.example');

  const lease = r.leases.get(requireMac(CAPTURED));
  t.match(lease, { ip: '10.213.0.50', state: 'bound', expiresAt: T0 + HOUR, hostname: 'blade1' });
  t.same(
    r.trail.map((e) => [e.step, e.ip]),
    [
      ['dhcp-discover', undefined],
      ['dhcp-offer', '10.213.0.50'],
      ['dhcp-request', '10.213.0.50'],
      ['dhcp-ack', '10.213.0.50'],
    ],
    'boot trail',
  );
  const c = r.metrics.counter('swarmboot_dhcp_messages_total', '');
  t.same([c.get({ type: 'discover', direction: 'in' }), c.get({ type: 'offer', direction: 'out' }), c.get({ type: 'request', direction: 'in' }), c.get({ type: 'ack', direction: 'out' })], [1, 1, 1, 1]);
  t.match(r.metrics.render(), /swarmboot_dhcp_leases_in_use 1\n/);

  const decisions = r.logs.filter((l) => l.level === 30 && l.mac === CAPTURED && /->/.test(l.msg));
  t.equal(decisions.length, 2, 'one info line per decision');
  t.match(decisions[0], { msg: 'DISCOVER -> OFFER', profile: 'worker', hostname: 'blade1', bootFile: 'undionly.kpxe', ip: '10.213.0.50', boot: /BIOS/ });
});

t.test('the ACK leaves only after the lease is durable', async (t) => {
  let release: () => void = () => {};
  let holding = false;
  const io: JournalIo = {
    ...nodeJournalIo,
    async openAppend(path, o) {
      const f = await nodeJournalIo.openAppend(path, o);
      return {
        append: (d) => f.append(d),
        close: () => f.close(),
        datasync: async () => {
          if (holding) await new Promise<void>((res) => (release = res));
          return f.datasync();
        },
      };
    },
  };
  const r = await rig(t, { io });
  await r.one({ type: MessageType.DISCOVER, mac: CAPTURED });
  holding = true;
  const pending = r.server.receive(clientPacket({ type: MessageType.REQUEST, mac: CAPTURED, serverId: SERVER, requestedIp: '10.213.0.50' }), CLIENT);
  for (let i = 0; i < 20; i++) await settle();
  t.equal(r.sent.length, 1, 'no ACK while the fsync is pending');
  holding = false;
  release();
  await pending;
  t.equal(r.sent.length, 2);
  t.equal(r.sent[1]?.msg.messageType, MessageType.ACK, 'ACK after the fsync');
});

t.test('NAKs: foreign subnet, held by another MAC, not offered; broadcast with option 56', async (t) => {
  const r = await rig(t);
  const held = await r.dora(OTHER);
  t.equal(held, '10.213.0.50');

  const foreign = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, requestedIp: '192.168.7.9' });
  t.equal(foreign.msg.messageType, MessageType.NAK, 'INIT-REBOOT into another network');
  t.same([foreign.address, foreign.port], ['255.255.255.255', 68]);
  t.equal(foreign.msg.yiaddr, '0.0.0.0');
  t.equal(foreign.msg.ciaddr, '0.0.0.0');
  t.notOk(foreign.msg.options.has(Opt.LEASE_TIME), 'no lease options on a NAK');
  t.notOk(foreign.msg.options.has(Opt.BOOTFILE), 'no boot file on a NAK');
  t.match(text(foreign.msg, Opt.MESSAGE), /192\.168\.7\.9 is not in this network/);

  const taken = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, requestedIp: held });
  t.equal(taken.msg.messageType, MessageType.NAK, 'address leased to another MAC');
  t.match(text(taken.msg, Opt.MESSAGE), /leased to 02:5b:00:00:00:02/);

  await r.one({ type: MessageType.DISCOVER, mac: CAPTURED });
  const notOffered = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, serverId: SERVER, requestedIp: '10.213.0.77' });
  t.equal(notOffered.msg.messageType, MessageType.NAK, 'SELECTING an address we did not offer');
  t.match(text(notOffered.msg, Opt.MESSAGE), /not offered/);

  const outOfRange = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, requestedIp: '10.213.0.150' });
  t.equal(outOfRange.msg.messageType, MessageType.NAK, 'in the subnet, outside the range');
  t.ok(r.trail.some((e) => e.step === 'dhcp-nak' && e.ip === '192.168.7.9'), 'NAK in the boot trail');
  t.equal(r.leases.get(requireMac(OTHER))?.state, 'bound', 'the holder keeps its lease');
});

t.test('REQUEST naming another server: silent, and our offer is dropped', async (t) => {
  const r = await rig(t);
  const offer = await r.one({ type: MessageType.DISCOVER, mac: CAPTURED });
  t.equal(r.leases.byIp(offer.msg.yiaddr)?.state, 'offered');
  const out = await r.exchange({ type: MessageType.REQUEST, mac: CAPTURED, serverId: '10.213.0.254', requestedIp: '10.213.0.200' });
  t.same(out, [], 'no reply');
  t.equal(r.leases.byIp(offer.msg.yiaddr), undefined, 'offer withdrawn');
  t.equal(r.ignored('other-server'), 1);
  // The address is free for someone else at once.
  const next = await r.one({ type: MessageType.DISCOVER, mac: OTHER, requestedIp: offer.msg.yiaddr });
  t.equal(next.msg.yiaddr, offer.msg.yiaddr);
  t.equal(r.leases.byIp(offer.msg.yiaddr)?.mac, OTHER);
});

t.test('INIT-REBOOT with a good address, RENEWING by unicast, REBINDING by broadcast', async (t) => {
  const r = await rig(t);
  const ip = await r.dora(CAPTURED);
  r.clock.now += HOUR / 2;
  const reboot = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, requestedIp: ip });
  t.equal(reboot.msg.messageType, MessageType.ACK, 'INIT-REBOOT ACKed');
  t.equal(reboot.msg.yiaddr, ip);
  t.equal(reboot.address, '255.255.255.255');
  t.equal(r.leases.get(requireMac(CAPTURED))?.expiresAt, r.clock.now + HOUR, 'lease extended');

  r.clock.now += HOUR / 2;
  const renew = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, ciaddr: ip }, { address: ip, port: 68 });
  t.equal(renew.msg.messageType, MessageType.ACK);
  t.same([renew.address, renew.port], [ip, 68], 'unicast to ciaddr');
  t.equal(renew.msg.ciaddr, ip, 'ciaddr echoed');
  t.equal(renew.msg.yiaddr, ip);
  t.equal(r.leases.get(requireMac(CAPTURED))?.expiresAt, r.clock.now + HOUR);

  const rebind = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, ciaddr: ip, flags: FLAG_BROADCAST }, { address: ip, port: 68 });
  t.equal(rebind.msg.messageType, MessageType.ACK, 'REBINDING ACKed');
  t.equal(rebind.address, ip);

  // A renewal from an address that is not this client's: NAK.
  await r.dora(OTHER);
  const stolen = await r.one({ type: MessageType.REQUEST, mac: OTHER, ciaddr: ip }, { address: ip, port: 68 });
  t.equal(stolen.msg.messageType, MessageType.NAK);
  t.same([stolen.address, stolen.port], ['255.255.255.255', 68], 'NAKs are broadcast');
});

t.test('RELEASE frees the address; the next DISCOVER gets it back', async (t) => {
  const r = await rig(t);
  const ip = await r.dora(CAPTURED);
  t.same(await r.exchange({ type: MessageType.RELEASE, mac: CAPTURED, ciaddr: ip, serverId: SERVER }, { address: ip, port: 68 }), [], 'no reply to RELEASE');
  t.equal(r.leases.get(requireMac(CAPTURED))?.state, 'released');
  t.equal(r.leases.inUse(), 0);
  t.ok(r.trail.some((e) => e.step === 'dhcp-release' && e.ip === ip));
  const again = await r.one({ type: MessageType.DISCOVER, mac: CAPTURED });
  t.equal(again.msg.yiaddr, ip, 'same address again');
  // A RELEASE of someone else's address changes nothing.
  await r.dora(OTHER);
  const otherIp = r.leases.get(requireMac(OTHER))!.ip;
  await r.exchange({ type: MessageType.RELEASE, mac: THIRD, ciaddr: otherIp, serverId: SERVER });
  t.equal(r.leases.get(requireMac(OTHER))?.state, 'bound');
  t.equal(r.ignored('not-leased'), 1);
});

t.test('DECLINE quarantines the address', async (t) => {
  const r = await rig(t);
  const ip = await r.dora(CAPTURED);
  t.same(await r.exchange({ type: MessageType.DECLINE, mac: CAPTURED, requestedIp: ip, serverId: SERVER }), []);
  t.equal(r.leases.byIp(ip)?.state, 'declined');
  t.ok(r.trail.some((e) => e.step === 'dhcp-decline' && e.ip === ip));
  const again = await r.one({ type: MessageType.DISCOVER, mac: CAPTURED });
  t.not(again.msg.yiaddr, ip, 'a different address');
  const other = await r.one({ type: MessageType.DISCOVER, mac: OTHER });
  t.not(other.msg.yiaddr, ip, 'nobody gets the quarantined one');
  const ask = await r.one({ type: MessageType.REQUEST, mac: OTHER, requestedIp: ip });
  t.equal(ask.msg.messageType, MessageType.NAK);
  // Another MAC cannot decline an address it does not hold.
  const held = await r.dora(THIRD);
  await r.exchange({ type: MessageType.DECLINE, mac: OTHER, requestedIp: held, serverId: SERVER });
  t.equal(r.leases.byIp(held)?.state, 'bound');
});

t.test('INFORM: options by unicast to ciaddr, no address, no lease time', async (t) => {
  const r = await rig(t);
  const ack = await r.one({ type: MessageType.INFORM, mac: CAPTURED, ciaddr: '10.213.0.160' }, { address: '10.213.0.160', port: 68 });
  t.equal(ack.msg.messageType, MessageType.ACK);
  t.same([ack.address, ack.port], ['10.213.0.160', 68]);
  t.equal(ack.msg.yiaddr, '0.0.0.0');
  t.equal(ack.msg.ciaddr, '10.213.0.160');
  t.ok(ack.msg.options.has(Opt.SUBNET_MASK));
  t.ok(ack.msg.options.has(Opt.ROUTER));
  for (const code of [Opt.LEASE_TIME, Opt.RENEWAL_TIME, Opt.REBINDING_TIME]) t.notOk(ack.msg.options.has(code), `no option ${code}`);
  t.equal(r.leases.inUse(), 0, 'no lease made');
  t.same(await r.exchange({ type: MessageType.INFORM, mac: CAPTURED, ciaddr: '192.0.2.7' }, { address: '192.0.2.7', port: 68 }), [], 'INFORM from outside our networks: silent');
  const forged = await r.one({ type: MessageType.INFORM, mac: CAPTURED, ciaddr: '10.213.0.161' }, { address: '10.213.0.9', port: 68 });
  t.same([forged.address, forged.port], ['255.255.255.255', 68], 'a ciaddr that is not the sender is not unicast to');
});

t.test('a full send queue drops replies instead of queueing them without bound', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-dhcp-queue-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = createLogger({ level: 'silent' });
  const leases = await LeaseStore.open(dir, { log });
  t.teardown(() => leases.close());
  const set = profileSet();
  const sock = new FakeSocket();
  let queued = 0;
  const stuck = Object.assign(sock, { getSendQueueCount: () => queued });
  const metrics = new Metrics();
  const server = new DhcpServer({ mode: 'full', socket: stuck, serverIp: SERVER, pools: compilePools(POOLS, { serverAddresses: [SERVER] }), leases, boot: new BootService({ profiles: () => set, serverKey: Buffer.alloc(32, 1) }), hasAsset: () => false, machines: { record: () => {} }, metrics, log, maxSendQueue: 10 });
  t.teardown(() => server.close());
  await server.receive(clientPacket({ type: MessageType.DISCOVER, mac: CAPTURED }), CLIENT);
  t.equal(sock.sent.length, 1);
  queued = 10;
  await server.receive(clientPacket({ type: MessageType.DISCOVER, mac: OTHER }), CLIENT);
  t.equal(sock.sent.length, 1, 'dropped');
  t.equal(metrics.counter('swarmboot_dhcp_ignored_total', '').get({ reason: 'send-backlog' }), 1);
});

t.test('relayed requests: pool by giaddr, replies to the relay on port 67', async (t) => {
  const r = await rig(t);
  const relay = { giaddr: '10.214.5.1' };
  const offer = await r.one({ type: MessageType.DISCOVER, mac: CAPTURED, ...relay }, { address: '10.214.5.1', port: 67 });
  t.same([offer.address, offer.port], ['10.214.5.1', 67]);
  t.equal(offer.msg.yiaddr, '10.214.5.100', 'from the relay subnet pool');
  t.equal(offer.msg.giaddr, '10.214.5.1');
  t.equal(opt(offer.msg, Opt.LEASE_TIME)!.readUInt32BE(0), 600);
  t.equal(opt(offer.msg, Opt.ROUTER)!.join('.'), '10.214.5.1');
  const ack = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, serverId: SERVER, requestedIp: '10.214.5.100', ...relay });
  t.equal(ack.msg.messageType, MessageType.ACK);
  t.same([ack.address, ack.port], ['10.214.5.1', 67]);
  const nak = await r.one({ type: MessageType.REQUEST, mac: OTHER, requestedIp: '10.213.0.60', ...relay });
  t.equal(nak.msg.messageType, MessageType.NAK, 'an address of the wrong subnet for this relay');
  t.same([nak.address, nak.port], ['10.214.5.1', 67]);
  t.ok(nak.msg.flags & FLAG_BROADCAST, 'broadcast bit set so the relay broadcasts it');
  const nowhere = await r.exchange({ type: MessageType.DISCOVER, mac: THIRD, giaddr: '172.16.0.1' });
  t.same(nowhere, [], 'no pool for that relay: silent');
  t.equal(r.ignored('no-pool'), 1);
});

t.test('a reservation from the profiles (Machine.ip) is honoured', async (t) => {
  const r = await rig(t);
  const offer = await r.one({ type: MessageType.DISCOVER, mac: RESERVED, requestedIp: '10.213.0.55' });
  t.equal(offer.msg.yiaddr, '10.213.0.200', 'the reserved address, outside the dynamic range');
  const nak = await r.one({ type: MessageType.REQUEST, mac: RESERVED, requestedIp: '10.213.0.55' });
  t.equal(nak.msg.messageType, MessageType.NAK, 'another address is refused');
  t.match(text(nak.msg, Opt.MESSAGE), /reservation 10\.213\.0\.200/);
  const ack = await r.one({ type: MessageType.REQUEST, mac: RESERVED, serverId: SERVER, requestedIp: '10.213.0.200' });
  t.equal(ack.msg.messageType, MessageType.ACK);
  const other = await r.one({ type: MessageType.REQUEST, mac: OTHER, requestedIp: '10.213.0.200' });
  t.equal(other.msg.messageType, MessageType.NAK, 'nobody else gets it');
  t.equal(r.compiles(), 1, 'pools compiled once for the profile set');
  r.state.set = profileSet();
  await r.one({ type: MessageType.DISCOVER, mac: OTHER });
  t.equal(r.compiles(), 2, 'and again when the profiles change');
});

t.test('unknown MACs: silent under "ignore", answered under a default profile', async (t) => {
  const r = await rig(t);
  t.same(await r.exchange({ type: MessageType.DISCOVER, mac: UNKNOWN, vendorClass: pxeVendorClass(0), arch: 0 }), []);
  t.same(await r.exchange({ type: MessageType.REQUEST, mac: UNKNOWN, requestedIp: '10.213.0.50' }), []);
  t.equal(r.ignored('unknown-mac'), 2);
  t.equal(r.leases.inUse(), 0, 'nothing offered');
  t.equal(r.trail.length, 0, 'no boot trail for strangers');
  const line = r.logs.find((l) => l.ignored === 'unknown-mac');
  t.match(line, { level: 20, mac: UNKNOWN, reason: /unknown_machines is ignore/ }, 'logged at debug with the reason');

  const d = await rig(t, { unknown: 'worker' });
  const ip = await d.dora(UNKNOWN, { vendorClass: pxeVendorClass(0), arch: 0 });
  t.equal(ip, '10.213.0.50');
  const ack = d.sent.at(-1)!.msg;
  t.equal(text(ack, Opt.HOSTNAME), 'worker-000099', 'synthesised hostname');
  t.equal(ack.file, 'undionly.kpxe');
});

t.test('boot files by client kind: BIOS, EFI x64, iPXE, HTTP boot, pxelinux, plain OS client', async (t) => {
  const r = await rig(t);
  const cases: [string, Partial<ClientPacket>, string, string | undefined][] = [
    ['BIOS PXE', { vendorClass: pxeVendorClass(0), arch: 0 }, 'undionly.kpxe', 'PXEClient'],
    ['EFI x64 PXE', { vendorClass: pxeVendorClass(7), arch: 7 }, 'ipxe.efi', 'PXEClient'],
    ['EFI BC', { vendorClass: pxeVendorClass(9), arch: 9 }, 'ipxe.efi', 'PXEClient'],
    ['iPXE', { vendorClass: pxeVendorClass(7), arch: 7, userClass: 'iPXE' }, `http://${SERVER}:8080/ipxe?mac=02-5b-00-00-00-01`, 'PXEClient'],
    ['UEFI HTTP boot', { vendorClass: 'HTTPClient:Arch:00016:UNDI:003001', arch: 16 }, `http://${SERVER}:8080/assets/ipxe.efi`, 'HTTPClient'],
  ];
  for (const [name, extra, file, vendor] of cases) {
    const offer = await r.one({ type: MessageType.DISCOVER, mac: CAPTURED, ...extra });
    t.equal(offer.msg.file, file, `${name}: file field`);
    t.equal(text(offer.msg, Opt.BOOTFILE), file, `${name}: option 67`);
    t.equal(offer.msg.siaddr, SERVER, `${name}: siaddr`);
    t.equal(text(offer.msg, Opt.TFTP_SERVER), SERVER, `${name}: option 66`);
    t.equal(text(offer.msg, Opt.VENDOR_CLASS), vendor, `${name}: option 60`);
  }
  const legacy = await r.one({ type: MessageType.DISCOVER, mac: '02:5b:00:00:00:21', vendorClass: pxeVendorClass(0), arch: 0 });
  t.equal(legacy.msg.file, 'pxelinux.0', 'pxelinux profile');
  const captured = await r.one(fixture('udhcpc-efi-x64-discover'));
  t.equal(captured.msg.file, 'ipxe.efi', 'captured EFI x64 udhcpc packet');
  const plain = await r.one(fixture('udhcpc-plain-discover'));
  t.equal(plain.msg.file, '', 'the booted OS gets an address but no boot file');
  t.equal(plain.msg.siaddr, '0.0.0.0');
  t.notOk(plain.msg.options.has(Opt.BOOTFILE));
});

t.test('proxy mode: only PXE clients, never an address, port 4011 ACK to the sender', async (t) => {
  const r = await rig(t, { mode: 'proxy' });
  const offer = await r.one(fixture('udhcpc-bios-discover'));
  t.equal(offer.msg.messageType, MessageType.OFFER);
  t.equal(offer.msg.yiaddr, '0.0.0.0', 'no address');
  t.same([offer.address, offer.port], ['255.255.255.255', 68]);
  t.equal(text(offer.msg, Opt.VENDOR_CLASS), 'PXEClient');
  t.equal(offer.msg.file, 'undionly.kpxe');
  t.ok(offer.msg.options.has(Opt.VENDOR_SPECIFIC), 'option 43 for BIOS');
  t.notOk(offer.msg.options.has(Opt.LEASE_TIME));
  matchGolden(t, 'dhcp/server/proxy-offer.txt', dumpDhcp(offer.msg));

  t.same(await r.exchange(fixture('udhcpc-plain-discover')), [], 'plain DHCP client: silent');
  t.equal(r.ignored('not-pxe'), 1);
  t.same(await r.exchange(fixture('udhcpc-bios-request')), [], "REQUEST on 67 is the site server's");

  const from = { address: '10.213.0.123', port: 4011 };
  const ack = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, ciaddr: '10.213.0.123', vendorClass: pxeVendorClass(7), arch: 7 }, from, 4011);
  t.equal(ack.msg.messageType, MessageType.ACK);
  t.same([ack.address, ack.port, ack.via], ['10.213.0.123', 4011, 4011], 'unicast back to the sender from port 4011');
  t.equal(ack.msg.yiaddr, '0.0.0.0');
  t.equal(ack.msg.file, 'ipxe.efi');
  t.same(await r.exchange({ type: MessageType.DISCOVER, mac: CAPTURED, vendorClass: pxeVendorClass(0) }, from, 4011), [], 'DISCOVER on 4011 ignored');
  t.same(await r.exchange({ type: MessageType.DISCOVER, mac: UNKNOWN, vendorClass: pxeVendorClass(0) }), [], 'unknown MAC silent in proxy mode too');
  t.same(
    r.trail.filter((e) => e.step === 'proxy-offer').map((e) => e.detail),
    ['undionly.kpxe', 'ipxe.efi'],
    'proxy offers in the boot trail',
  );
});

t.test('reply delay: OFFERs wait, ACKs do not', async (t) => {
  const timers = new FakeTimers();
  const r = await rig(t, { replyDelayMs: 250, timers });
  const pending = r.server.receive(clientPacket({ type: MessageType.DISCOVER, mac: CAPTURED }), CLIENT);
  for (let i = 0; i < 10; i++) await settle();
  t.equal(r.sent.length, 0, 'nothing sent before the delay');
  t.same(timers.oneShots(), [250]);
  timers.fire();
  await pending;
  t.equal(r.sent.length, 1);
  t.equal(r.sent[0]?.msg.messageType, MessageType.OFFER);
  const ack = await r.one({ type: MessageType.REQUEST, mac: CAPTURED, serverId: SERVER, requestedIp: r.sent[0]!.msg.yiaddr });
  t.equal(ack.msg.messageType, MessageType.ACK, 'ACK without waiting');

  // A real short delay, end to end.
  const real = await rig(t, { replyDelayMs: 40 });
  const started = Date.now();
  await real.one({ type: MessageType.DISCOVER, mac: OTHER });
  t.ok(Date.now() - started >= 35, 'waited about 40 ms');
});

t.test('close() cancels delayed replies and stops listening', async (t) => {
  const timers = new FakeTimers();
  const r = await rig(t, { replyDelayMs: 1000, timers });
  const pending = r.server.receive(clientPacket({ type: MessageType.DISCOVER, mac: CAPTURED }), CLIENT);
  for (let i = 0; i < 10; i++) await settle();
  await r.server.close();
  await pending;
  t.equal(r.sent.length, 0, 'the delayed OFFER was not sent');
  t.equal(timers.pending.size, 0, 'no timer left (delay and sweep)');
});

t.test('malformed packets are counted and dropped; the server keeps serving', async (t) => {
  const r = await rig(t);
  const good = clientPacket({ type: MessageType.DISCOVER, mac: CAPTURED });
  const bad = [Buffer.alloc(0), Buffer.from('hello'), good.subarray(0, 239), Buffer.concat([good.subarray(0, 240), Buffer.from([53, 9, 1])])];
  const cookie = Buffer.from(good);
  cookie.writeUInt32BE(0xdeadbeef, 236);
  bad.push(cookie);
  for (const b of bad) t.same(await r.exchange(b), []);
  t.equal(r.metrics.counter('swarmboot_dhcp_decode_errors_total', '').get(), bad.length);
  const reply = Buffer.from(good);
  reply[0] = 2;
  t.same(await r.exchange(reply), [], 'a BOOTREPLY is not a request');
  const ib = Buffer.from(good);
  ib[1] = 32;
  ib[2] = 16;
  t.same(await r.exchange(ib), [], 'non-Ethernet client');
  t.equal(r.ignored('not-ethernet'), 1);
  const offer = await r.one(good);
  t.equal(offer.msg.messageType, MessageType.OFFER, 'the next good packet is answered');
});

t.test('an exception inside one request is logged and counted; the next is served', async (t) => {
  const r = await rig(t);
  const real = r.state.set;
  let boom = true;
  Object.defineProperty(r.state, 'set', {
    get: () => {
      if (boom) {
        boom = false;
        throw new Error('profile store exploded');
      }
      return real;
    },
  });
  t.same(await r.exchange({ type: MessageType.DISCOVER, mac: CAPTURED }), []);
  t.equal(r.ignored('internal-error'), 1);
  t.ok(r.logs.some((l) => l.level === 50 && l.msg.includes('failed')), 'logged at error');
  t.equal((await r.one({ type: MessageType.DISCOVER, mac: CAPTURED })).msg.messageType, MessageType.OFFER);
});

t.test('sockets: listens on 67 (and the send socket), replies through the send socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-dhcp-sock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = createLogger({ level: 'silent' });
  const leases = await LeaseStore.open(dir, { log });
  t.teardown(() => leases.close());
  const set = profileSet();
  const main = new FakeSocket();
  const sendSocket = new FakeSocket();
  const server = new DhcpServer({
    mode: 'full',
    socket: main,
    sendSocket,
    serverIp: SERVER,
    pools: compilePools(POOLS, { serverAddresses: [SERVER] }),
    leases,
    boot: new BootService({ profiles: () => set, serverKey: Buffer.alloc(32, 1) }),
    hasAsset: () => true,
    machines: { record: () => {} },
    metrics: new Metrics(),
    log,
  });
  main.deliver(clientPacket({ type: MessageType.DISCOVER, mac: CAPTURED }));
  await server.settled();
  t.equal(main.sent.length, 0);
  t.equal(sendSocket.sent.length, 1, 'broadcast left through the send socket');
  t.same([sendSocket.sent[0]?.address, sendSocket.sent[0]?.port], ['255.255.255.255', 68]);
  const ip = decodeDhcp(sendSocket.sent[0]!.msg).yiaddr;
  sendSocket.deliver(clientPacket({ type: MessageType.REQUEST, mac: CAPTURED, serverId: SERVER, requestedIp: ip }));
  await server.settled();
  t.equal(decodeDhcp(sendSocket.sent[1]!.msg).messageType, MessageType.ACK, 'unicast to serverIp:67 is heard on the send socket');
  await server.close();
  t.equal(main.listenerCount('message'), 0, 'listeners removed on close');
  t.equal(sendSocket.listenerCount('message'), 0);
});

t.test('expiry sweep: expired leases are released and the gauge follows', async (t) => {
  const timers = new FakeTimers();
  const r = await rig(t, { timers, server: { sweepIntervalMs: 1234 } });
  t.same([...timers.pending.values()].map((x) => [x.ms, x.every]), [[1234, true]], 'sweep timer armed');
  await r.dora(CAPTURED);
  t.match(r.metrics.render(), /swarmboot_dhcp_leases_in_use 1\n/);
  r.clock.now += 2 * HOUR;
  timers.fire();
  await r.server.sweep();
  t.equal(r.leases.get(requireMac(CAPTURED))?.state, 'released');
  t.match(r.metrics.render(), /swarmboot_dhcp_leases_in_use 0\n/);
});

t.test('a full mode server needs a lease store', async (t) => {
  t.throws(
    () =>
      new DhcpServer({
        mode: 'full',
        socket: new FakeSocket(),
        serverIp: SERVER,
        boot: new BootService({ profiles: () => profileSet(), serverKey: Buffer.alloc(32) }),
        hasAsset: () => false,
        machines: { record: () => {} },
        metrics: new Metrics(),
        log: createLogger({ level: 'silent' }),
      }),
    { code: 'E_DHCP_SETUP' },
  );
});
