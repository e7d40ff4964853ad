import t from 'tap';
import { testProfile } from '../../helpers/profile.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decideBoot, type BootDecision, type BootEnv } from '../../../server/boot/decide.js';
import { classifyClient } from '../../../server/dhcp/classify.js';
import { decodeDhcp, dumpDhcp, encodeDhcp, type DhcpMessage } from '../../../server/dhcp/codec.js';
import { MessageType, Opt } from '../../../server/dhcp/options.js';
import {
  buildProxyOffer,
  fitReply,
  makeReply,
  replyTypeFor,
  withBootFields,
} from '../../../server/dhcp/pxe-reply.js';
import type { Profile } from '../../../server/profiles/types.js';
import { matchGolden } from '../../helpers/golden.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/dhcp/', import.meta.url));
const names = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .sort()
  .map((f) => f.slice(0, -4));
const load = (name: string): DhcpMessage => decodeDhcp(readFileSync(join(FIXTURES, `${name}.bin`)));

const SERVER_IP = '10.213.0.1';
const PROFILE: Profile = testProfile();
// arm64 is provisioned, i386 is not: the ia32 capture shows a "none" decision.
const ENV: BootEnv = { serverUrl: 'http://10.213.0.1:8080', serverIp: SERVER_IP, hasAsset: (n) => n === 'arm64/ipxe.efi' };

/** What the full-DHCP server's lease handler would have added before the boot step. */
function withLease(reply: DhcpMessage): DhcpMessage {
  const options = new Map(reply.options);
  options.set(Opt.LEASE_TIME, Buffer.from([0, 0, 0x0e, 0x10]));
  options.set(Opt.SUBNET_MASK, Buffer.from([255, 255, 255, 0]));
  options.set(Opt.ROUTER, Buffer.from([10, 213, 0, 1]));
  return reply.with({ yiaddr: '10.213.0.50', options });
}

function describe(d: BootDecision): string {
  return d.kind === 'none'
    ? `none: ${d.reason}`
    : `${d.kind} ${d.file}${d.vendorClass ? ` [${d.vendorClass}]` : ''}: ${d.reason}`;
}

t.test('replies built for each captured packet match their golden dumps and round-trip', async (t) => {
  for (const name of names) {
    const req = load(name);
    const client = classifyClient(req);
    const decision = decideBoot(client, PROFILE, ENV);
    const proxy = buildProxyOffer(req, client, decision, SERVER_IP);
    const type = replyTypeFor(req);
    const full =
      type === null ? null : fitReply(withBootFields(withLease(makeReply(req, type, SERVER_IP)), req, client, decision, SERVER_IP), req);
    const parts = [
      `# request: test/fixtures/dhcp/${name}.bin`,
      `# decision: ${describe(decision)}`,
      '',
      '## proxyDHCP reply',
      proxy === null ? '(none)\n' : dumpDhcp(proxy),
      '## full DHCP reply',
      full === null ? '(none)\n' : dumpDhcp(full),
    ];
    matchGolden(t, `dhcp/replies/${name}.txt`, parts.join('\n'));
    for (const reply of [proxy, full]) {
      if (reply === null) continue;
      const wire = encodeDhcp(reply);
      t.equal(dumpDhcp(decodeDhcp(wire)), dumpDhcp(reply), `${name}: reply survives encode/decode`);
      t.ok(wire.length <= 548, `${name}: reply fits a 576-byte datagram`);
    }
  }
});

t.test('boot fields', async (t) => {
  const bios = load('udhcpc-bios-discover');
  const biosClient = classifyClient(bios);
  const tftp: BootDecision = { kind: 'tftp', file: 'undionly.kpxe', vendorClass: 'PXEClient', reason: 'test' };
  const r = withBootFields(makeReply(bios, MessageType.OFFER, SERVER_IP), bios, biosClient, tftp, SERVER_IP);
  t.equal(r.siaddr, SERVER_IP, 'BOOTP siaddr');
  t.equal(r.file, 'undionly.kpxe', 'BOOTP file');
  t.equal(r.options.get(Opt.TFTP_SERVER)?.toString(), SERVER_IP, 'option 66');
  t.equal(r.options.get(Opt.BOOTFILE)?.toString(), 'undionly.kpxe', 'option 67');
  t.equal(r.options.get(Opt.VENDOR_CLASS)?.toString(), 'PXEClient', 'option 60');
  t.same(r.options.get(Opt.CLIENT_UUID), bios.options.get(Opt.CLIENT_UUID), 'option 97 echoed');
  t.same(r.options.get(Opt.VENDOR_SPECIFIC), Buffer.from([6, 1, 8, 255]), 'option 43: discovery control 8');

  const efi = load('udhcpc-efi-bc-discover');
  const efiReply = withBootFields(
    makeReply(efi, MessageType.OFFER, SERVER_IP), efi, classifyClient(efi),
    { kind: 'tftp', file: 'ipxe.efi', vendorClass: 'PXEClient', reason: 'test' }, SERVER_IP,
  );
  // OVMF rejects a PXEClient offer without discovery control ("PXE-E16: No valid offer received"), so UEFI gets it too.
  t.ok(efiReply.options.has(Opt.VENDOR_SPECIFIC), 'option 43 (discovery control) for UEFI too');
  t.notOk(efiReply.options.has(Opt.CLIENT_UUID), 'no option 97 when the client sent none');

  const plain = load('udhcpc-plain-discover');
  const plainReply = withBootFields(
    makeReply(plain, MessageType.OFFER, SERVER_IP), plain, classifyClient(plain),
    { kind: 'tftp', file: 'undionly.kpxe', reason: 'test' }, SERVER_IP,
  );
  t.notOk(plainReply.options.has(Opt.VENDOR_CLASS), 'no option 60 for a client that sent none');

  const longUrl = `http://10.213.0.1:8080/${'x'.repeat(120)}`;
  const long = withBootFields(makeReply(bios, MessageType.OFFER, SERVER_IP), bios, biosClient,
    { kind: 'http', file: longUrl, reason: 'test' }, SERVER_IP);
  t.equal(long.file, '', 'a URL too long for the BOOTP field is left out of it');
  t.equal(long.options.get(Opt.BOOTFILE)?.toString(), longUrl, 'and still sent as option 67');

  const none = makeReply(bios, MessageType.OFFER, SERVER_IP);
  t.equal(withBootFields(none, bios, biosClient, { kind: 'none', reason: 'test' }, SERVER_IP), none, "'none' changes nothing");
});

t.test('proxyDHCP', async (t) => {
  const discover = load('udhcpc-bios-discover');
  const client = classifyClient(discover);
  const decision = decideBoot(client, PROFILE, ENV);
  const offer = buildProxyOffer(discover, client, decision, SERVER_IP);
  t.equal(offer?.messageType, MessageType.OFFER);
  t.equal(offer?.yiaddr, '0.0.0.0', 'hands out no address');
  t.equal(offer?.serverId, SERVER_IP, 'option 54');
  t.equal(offer?.vendorClass, 'PXEClient');
  t.equal(offer?.xid, discover.xid);

  // Port 4011: the client, now configured, unicasts a REQUEST from its address.
  const request = load('udhcpc-bios-request').with({ ciaddr: '10.213.0.50' });
  const ack = buildProxyOffer(request, classifyClient(request), decision, SERVER_IP);
  t.equal(ack?.messageType, MessageType.ACK);
  t.equal(ack?.ciaddr, '10.213.0.50', 'ciaddr echoed in the ACK');
  t.equal(ack?.file, 'undionly.kpxe');

  const plain = load('udhcpc-plain-discover');
  const plainClient = classifyClient(plain);
  t.equal(buildProxyOffer(plain, plainClient, decideBoot(plainClient, PROFILE, ENV), SERVER_IP), null, 'silent to non-PXE clients');
  t.equal(buildProxyOffer(discover, client, { kind: 'none', reason: 'test' }, SERVER_IP), null, "silent on 'none'");
  const release = discover.with({ options: new Map([[Opt.MESSAGE_TYPE, Buffer.from([MessageType.RELEASE])]]) });
  t.equal(buildProxyOffer(release, client, decision, SERVER_IP), null, 'silent to RELEASE');

  const http = load('udhcpc-http-discover');
  const httpClient = classifyClient(http);
  const httpOffer = buildProxyOffer(http, httpClient, decideBoot(httpClient, PROFILE, ENV), SERVER_IP);
  t.equal(httpOffer?.vendorClass, 'HTTPClient');
  t.equal(httpOffer?.options.get(Opt.BOOTFILE)?.toString(), 'http://10.213.0.1:8080/assets/ipxe.efi');
});

t.test('fitReply drops what the client did not ask for, never the boot options', async (t) => {
  const req = load('udhcpc-bios-discover'); // max message size 576, asks for 1 3 6 12 15 28 42
  const client = classifyClient(req);
  const decision = decideBoot(client, PROFILE, ENV);
  const options = new Map(withLease(makeReply(req, MessageType.OFFER, SERVER_IP)).options);
  options.set(Opt.DOMAIN_NAME, Buffer.alloc(120, 0x64)); // requested (15)
  options.set(119, Buffer.alloc(200, 0x73)); // not requested
  options.set(Opt.DNS, Buffer.alloc(40, 8)); // requested (6)
  options.set(252, Buffer.alloc(30, 0x77)); // not requested
  const big = withBootFields(withLease(makeReply(req, MessageType.OFFER, SERVER_IP)).with({ options }), req, client, decision, SERVER_IP);
  t.ok(encodeDhcp(big).length > 548, 'too big to start with');
  const fitted = fitReply(big, req);
  t.ok(encodeDhcp(fitted).length <= 548, 'fits after');
  t.notOk(fitted.options.has(119), 'unrequested 119 dropped');
  t.notOk(fitted.options.has(252), 'unrequested 252 dropped');
  t.ok(fitted.options.has(Opt.DOMAIN_NAME) && fitted.options.has(Opt.DNS), 'requested ones kept');
  for (const code of [53, 54, 1, 3, 51, 60, 66, 67, 43, 97]) t.ok(fitted.options.has(code), `option ${code} kept`);
  const bigger = req.with({ options: new Map([...req.options, [Opt.MAX_MESSAGE_SIZE, Buffer.from([0x05, 0xdc])]]) });
  t.equal(fitReply(big, bigger), big, 'untouched when the client takes 1500 bytes');
});
