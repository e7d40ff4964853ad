/**
 * Each handler of the DHCP chain alone, with a hand-made Exchange: no
 * server, no sockets. The lease handler gets a real LeaseStore in a temp dir.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BootService } from '../../../server/boot/service.js';
import { classifyClient } from '../../../server/dhcp/classify.js';
import { decodeDhcp, FLAG_BROADCAST, type DhcpMessage } from '../../../server/dhcp/codec.js';
import {
  bootFields,
  buildNak,
  fit,
  ignore,
  lease,
  policy,
  proxyBoot,
  replyDestination,
  requestState,
  runChain,
  standardOptions,
  wantsBoot,
  type DhcpEnv,
  type Exchange,
  type Handler,
} from '../../../server/dhcp/handlers.js';
import { LeaseStore } from '../../../server/dhcp/leases.js';
import { compilePools } from '../../../server/dhcp/pool.js';
import { makeReply, replyTypeFor } from '../../../server/dhcp/pxe-reply.js';
import { silentLogger } from '../../../server/log.js';
import { requireMac } from '../../../server/mac.js';
import { loadProfiles } from '../../../server/profiles/load.js';
import { clientMessage, MessageType, Opt, pxeVendorClass, type ClientPacket } from '../../helpers/dhcp-packets.js';

const SERVER = '10.0.0.1';
const KNOWN = '52:54:00:00:00:01';
const set = loadProfiles([
  { file: 'c.yaml', text: `cluster:\n  name: lab\n  server_url: http://${SERVER}:8080\n` },
  {
    file: 'p.yaml',
    text: `profiles:\n  w:\n    role: worker\n    machines: [{ mac: "${KNOWN}", hostname: w1 }]\n  f:\n    role: worker\n    force_ipxe: true\n    machines: [{ mac: "52:54:00:00:00:02", hostname: f1 }]\n`,
  },
]);
const boot = new BootService({ profiles: () => set, serverKey: Buffer.alloc(32, 3) });
const pools = compilePools([{ subnet: '10.0.0.0/24', range: { start: '10.0.0.10', end: '10.0.0.20' }, router: SERVER, leaseTime: 100 }], { serverAddresses: [SERVER] });

function env(over: Partial<DhcpEnv> = {}): DhcpEnv {
  return { mode: 'full', serverIp: SERVER, boot, leases: null, pools: () => pools, hasAsset: () => false, offerTtlMs: 1000, declineQuarantineMs: 5000, ...over };
}

function exchange(req: DhcpMessage, over: Partial<Exchange> = {}, e: DhcpEnv = env()): Exchange {
  return { env: e, type: req.messageType ?? 0, client: classifyClient(req), port: 67, from: { address: '0.0.0.0', port: 68 }, log: silentLogger(), fields: {}, ...over };
}

const msg = (p: Partial<ClientPacket> & { type: number }): DhcpMessage => clientMessage({ mac: KNOWN, ...p });
const stubFor = (req: DhcpMessage): DhcpMessage => makeReply(req, replyTypeFor(req) ?? MessageType.ACK, SERVER);
const run = async (h: Handler, req: DhcpMessage, ctx: Exchange): Promise<DhcpMessage | null> => h(req, ctx, stubFor(req));

t.test('policy: known machine fills the exchange, unknown is ignored with a reason', async (t) => {
  const req = msg({ type: MessageType.DISCOVER });
  const ctx = exchange(req);
  t.ok(await run(policy(), req, ctx));
  t.match(ctx, { machine: { hostname: 'w1' }, profile: { name: 'w' }, fields: { profile: 'w', hostname: 'w1' } });
  const stranger = msg({ type: MessageType.DISCOVER, mac: '52:54:00:00:00:99' });
  const sctx = exchange(stranger);
  t.equal(await run(policy(), stranger, sctx), null);
  t.match(sctx.ignored, { reason: 'unknown-mac', level: 'debug' });
});

t.test('requestState tells the four REQUEST situations apart', async (t) => {
  t.same(requestState(msg({ type: MessageType.REQUEST, serverId: SERVER, requestedIp: '10.0.0.10' })), { state: 'selecting', serverId: SERVER, ip: '10.0.0.10' });
  t.same(requestState(msg({ type: MessageType.REQUEST, requestedIp: '10.0.0.10' })), { state: 'init-reboot', ip: '10.0.0.10' });
  t.same(requestState(msg({ type: MessageType.REQUEST, ciaddr: '10.0.0.10' })), { state: 'renewing', ip: '10.0.0.10' });
  t.same(requestState(msg({ type: MessageType.REQUEST, ciaddr: '10.0.0.10', flags: FLAG_BROADCAST })), { state: 'renewing', ip: '10.0.0.10' }, 'rebinding looks the same');
  t.same(requestState(msg({ type: MessageType.REQUEST })), { state: 'malformed' });
});

t.test('buildNak: 53/54/56 only, no addresses, broadcast bit when relayed', async (t) => {
  const direct = buildNak(msg({ type: MessageType.REQUEST, requestedIp: '1.2.3.4' }), SERVER, 'nope');
  t.equal(direct.messageType, MessageType.NAK);
  t.same([...direct.options.keys()], [Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.MESSAGE]);
  t.same([direct.yiaddr, direct.ciaddr, direct.siaddr, direct.flags], ['0.0.0.0', '0.0.0.0', '0.0.0.0', 0]);
  const relayed = buildNak(msg({ type: MessageType.REQUEST, giaddr: '10.9.9.1', requestedIp: '1.2.3.4' }), SERVER, 'x'.repeat(400));
  t.equal(relayed.flags & FLAG_BROADCAST, FLAG_BROADCAST);
  t.equal(relayed.giaddr, '10.9.9.1');
  t.equal(relayed.options.get(Opt.MESSAGE)?.length, 250, 'message kept short');
});

t.test('lease handler alone: offer, bind, NAK as final, other server silent', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-handlers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const leases = await LeaseStore.open(dir, { log: silentLogger(), now: () => 1_000_000 });
  t.teardown(() => leases.close());
  const e = env({ leases });
  const h = lease();

  const d = msg({ type: MessageType.DISCOVER });
  const dctx = exchange(d, { machine: boot.machine(requireMac(KNOWN))! }, e);
  const offer = await run(h, d, dctx);
  t.equal(offer?.yiaddr, '10.0.0.10');
  t.match(dctx, { outcome: 'offer', ip: '10.0.0.10', fields: { source: 'free' } });

  const r = msg({ type: MessageType.REQUEST, serverId: SERVER, requestedIp: '10.0.0.10' });
  const rctx = exchange(r, {}, e);
  const ack = await run(h, r, rctx);
  t.equal(ack?.yiaddr, '10.0.0.10');
  t.equal(rctx.outcome, 'ack');
  t.equal(leases.get(requireMac(KNOWN))?.state, 'bound', 'bound before the handler returned');
  t.equal(leases.get(requireMac(KNOWN))?.expiresAt, 1_000_000 + 100_000, 'pool lease time');

  const bad = msg({ type: MessageType.REQUEST, requestedIp: '10.1.0.5' });
  const bctx = exchange(bad, {}, e);
  const nak = await run(h, bad, bctx);
  t.equal(nak?.messageType, MessageType.NAK);
  t.equal(bctx.final, true, 'ends the chain');

  const other = msg({ type: MessageType.REQUEST, serverId: '10.0.0.2', requestedIp: '10.0.0.10' });
  const octx = exchange(other, {}, e);
  t.equal(await run(h, other, octx), null);
  t.match(octx.ignored, { reason: 'other-server' });

  const none = exchange(d, {}, env({ leases, pools: () => [] }));
  t.equal(await run(h, d, none), null);
  t.match(none.ignored, { reason: 'no-pool', level: 'warn' });
});

t.test('lease handler: fresh addresses are handed out next-fit, returning clients keep theirs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-handlers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clock = { now: 1_000_000 };
  const leases = await LeaseStore.open(dir, { log: silentLogger(), now: () => clock.now });
  t.teardown(() => leases.close());
  const e = env({ leases, offerTtlMs: 1000 });
  const h = lease();
  const offerFor = async (mac: string): Promise<string | undefined> => {
    const d = msg({ type: MessageType.DISCOVER, mac });
    return (await run(h, d, exchange(d, {}, e)))?.yiaddr;
  };
  t.equal(await offerFor('52:54:00:00:01:01'), '10.0.0.10');
  t.equal(await offerFor('52:54:00:00:01:02'), '10.0.0.11');
  clock.now += 2000; // both offers expire unanswered
  t.equal(await offerFor('52:54:00:00:01:03'), '10.0.0.12', 'no rescan from the start of the range');
  t.equal(await offerFor('52:54:00:00:01:01'), '10.0.0.13', 'an expired offer is not remembered (offers are not stored)');
});

t.test('standardOptions: from the pool; INFORM gets no lease times; no pool, no change', async (t) => {
  const req = msg({ type: MessageType.DISCOVER });
  const ctx = exchange(req, { pool: pools[0]!, machine: boot.machine(requireMac(KNOWN))!, outcome: 'offer' });
  const h = standardOptions();
  const out = (await run(h, req, ctx))!;
  t.same([...out.options.keys()], [53, 54, 1, 3, 12, 51, 58, 59]);
  t.equal(out.options.get(Opt.RENEWAL_TIME)?.readUInt32BE(0), 50);
  t.equal(out.options.get(Opt.REBINDING_TIME)?.readUInt32BE(0), 87);
  const again = (await run(h, req, ctx))!;
  t.equal(again.options.get(Opt.SUBNET_MASK), out.options.get(Opt.SUBNET_MASK), 'option bytes built once per pool');
  const inform = msg({ type: MessageType.INFORM, ciaddr: '10.0.0.99' });
  const ictx = exchange(inform, { pool: pools[0]!, outcome: 'inform' });
  t.same([...(await run(h, inform, ictx))!.options.keys()], [53, 54, 1, 3]);
  const stub = stubFor(req);
  t.equal(h(req, exchange(req), stub), stub, 'proxy-like exchange without a pool: untouched');
});

t.test('bootFields: boot clients get a file, the OS client none; force_ipxe counts as boot client', async (t) => {
  const h = bootFields();
  const pxe = msg({ type: MessageType.DISCOVER, vendorClass: pxeVendorClass(7), arch: 7 });
  const ctx = exchange(pxe, { set, profile: set.profiles.get('w')! });
  t.equal((await run(h, pxe, ctx))!.file, 'ipxe.efi');
  t.match(ctx.fields, { bootFile: 'ipxe.efi', boot: /chainload iPXE/ });

  const plain = msg({ type: MessageType.DISCOVER });
  const pctx = exchange(plain, { set, profile: set.profiles.get('w')! });
  t.equal((await run(h, plain, pctx))!.file, '');
  t.match(pctx.fields.boot, /not a network-boot client/);

  t.notOk(wantsBoot(classifyClient(plain), set.profiles.get('w')));
  t.ok(wantsBoot(classifyClient(plain), set.profiles.get('f')), 'force_ipxe');

  const bare = loadProfiles([{ file: 'c.yaml', text: 'cluster: { name: x }\n' }]);
  const noUrl = new BootService({ profiles: () => bare, serverKey: Buffer.alloc(32) });
  const nctx = exchange(pxe, { set: bare, profile: set.profiles.get('w')! }, env({ boot: noUrl }));
  const r = (await run(h, pxe, nctx))!;
  t.equal(r.file, '', 'no server URL: no boot file');
  t.match(nctx.fields.boot, /no server URL/);
});

t.test('fit trims a reply that exceeds the client maximum', async (t) => {
  const req = msg({ type: MessageType.DISCOVER });
  const stub = stubFor(req);
  const big = stub.with({ options: new Map([...stub.options, [Opt.DOMAIN_NAME, Buffer.alloc(600, 0x61)]]) });
  const out = fit()(req, exchange(req), big) as DhcpMessage;
  t.notOk(out.options.has(Opt.DOMAIN_NAME));
});

t.test('proxyBoot: port rules and PXE-only', async (t) => {
  const h = proxyBoot();
  const base = { set, profile: set.profiles.get('w')! };
  const disc = msg({ type: MessageType.DISCOVER, vendorClass: pxeVendorClass(0), arch: 0 });
  const dctx = exchange(disc, base, env({ mode: 'proxy' }));
  const offer = (await run(h, disc, dctx))!;
  t.equal(offer.messageType, MessageType.OFFER);
  t.equal(offer.yiaddr, '0.0.0.0');
  t.equal(dctx.outcome, 'proxy-offer');

  const req = msg({ type: MessageType.REQUEST, ciaddr: '10.5.5.5', vendorClass: pxeVendorClass(0), arch: 0 });
  const on67 = exchange(req, base);
  t.equal(await run(h, req, on67), null);
  t.match(on67.ignored, { reason: 'wrong-port' });
  const on4011 = exchange(req, { ...base, port: 4011 });
  t.equal((await run(h, req, on4011))?.messageType, MessageType.ACK);
  t.match(on4011, { outcome: 'proxy-ack', ip: '10.5.5.5' });
  const d4011 = exchange(disc, { ...base, port: 4011 });
  t.equal(await run(h, disc, d4011), null);

  const plain = msg({ type: MessageType.DISCOVER });
  const pctx = exchange(plain, base);
  t.equal(await run(h, plain, pctx), null);
  t.match(pctx.ignored, { reason: 'not-pxe', level: 'debug' });
});

t.test('runChain: null drops, final stops, async handlers awaited', async (t) => {
  const req = msg({ type: MessageType.DISCOVER });
  const seen: string[] = [];
  const mark = (name: string): Handler => (_r, _c, reply) => {
    seen.push(name);
    return reply;
  };
  const asyncMark: Handler = async (_r, _c, reply) => {
    await new Promise((res) => setImmediate(res));
    seen.push('async');
    return reply.with({ yiaddr: '10.0.0.42' });
  };
  const ctx = exchange(req);
  const out = await runChain([mark('a'), asyncMark, mark('b')], req, ctx, stubFor(req));
  t.same(seen, ['a', 'async', 'b']);
  t.equal(out?.yiaddr, '10.0.0.42');

  seen.length = 0;
  const finalH: Handler = (_r, c, reply) => {
    c.final = true;
    return reply;
  };
  await runChain([mark('a'), finalH, mark('never')], req, exchange(req), stubFor(req));
  t.same(seen, ['a']);

  seen.length = 0;
  const dctx = exchange(req);
  const dropped = await runChain([(_r, c) => ignore(c, 'malformed', 'test'), mark('never')], req, dctx, stubFor(req));
  t.equal(dropped, null);
  t.same(seen, []);
  t.match(dctx.ignored, { reason: 'malformed', detail: 'test', level: 'info' });
});

t.test('replyDestination follows RFC 2131 4.1', async (t) => {
  const from = { address: '0.0.0.0', port: 68 };
  const offer = (req: DhcpMessage) => makeReply(req, MessageType.OFFER, SERVER);
  const nakOf = (req: DhcpMessage) => buildNak(req, SERVER, 'x');
  const cases: [string, DhcpMessage, (r: DhcpMessage) => DhcpMessage, { port: number; from: typeof from }, string, number][] = [
    ['plain DISCOVER', msg({ type: MessageType.DISCOVER }), offer, { port: 67, from }, '255.255.255.255', 68],
    ['broadcast flag', msg({ type: MessageType.DISCOVER, flags: FLAG_BROADCAST }), offer, { port: 67, from }, '255.255.255.255', 68],
    ['relayed', msg({ type: MessageType.DISCOVER, giaddr: '10.7.0.1' }), offer, { port: 67, from }, '10.7.0.1', 67],
    ['relayed NAK', msg({ type: MessageType.REQUEST, giaddr: '10.7.0.1' }), nakOf, { port: 67, from }, '10.7.0.1', 67],
    ['renewing', msg({ type: MessageType.REQUEST, ciaddr: '10.0.0.12' }), offer, { port: 67, from: { address: '10.0.0.12', port: 68 } }, '10.0.0.12', 68],
    ['ciaddr not the sender (forged): broadcast', msg({ type: MessageType.REQUEST, ciaddr: '203.0.113.9' }), offer, { port: 67, from: { address: '10.0.0.12', port: 68 } }, '255.255.255.255', 68],
    ['NAK to a renewing client', msg({ type: MessageType.REQUEST, ciaddr: '10.0.0.12' }), nakOf, { port: 67, from }, '255.255.255.255', 68],
    ['port 4011', msg({ type: MessageType.REQUEST, ciaddr: '10.0.0.12' }), offer, { port: 4011, from: { address: '10.0.0.12', port: 4011 } }, '10.0.0.12', 4011],
  ];
  for (const [name, req, build, arrival, address, port] of cases) {
    t.same(replyDestination(req, build(req), arrival), { address, port }, name);
  }
});

t.test('decoding what the handlers built round-trips', async (t) => {
  const req = msg({ type: MessageType.DISCOVER, vendorClass: pxeVendorClass(0), arch: 0 });
  const ctx = exchange(req, { set, profile: set.profiles.get('w')!, pool: pools[0]!, outcome: 'offer' });
  const out = await runChain([standardOptions(), bootFields(), fit()], req, ctx, stubFor(req).with({ yiaddr: '10.0.0.10' }));
  const { encodeDhcp } = await import('../../../server/dhcp/codec.js');
  const back = decodeDhcp(encodeDhcp(out!));
  t.same(back.fields(), out!.fields());
});
