import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dhcpOptions from 'dhcp/lib/options.js';
import dhcpProtocol from 'dhcp/lib/protocol.js';
import { DecodeError } from '../../../server/errors.js';
import {
  BOOTP_MIN_LEN,
  DhcpMessage,
  EncodeError,
  decodeDhcp,
  dumpDhcp,
  encodeDhcp,
} from '../../../server/dhcp/codec.js';
import { Opt } from '../../../server/dhcp/options.js';
import { classifyClient } from '../../../server/dhcp/classify.js';
import { matchGolden } from '../../helpers/golden.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/dhcp/', import.meta.url));
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .sort()
  .map((f) => ({ name: f.slice(0, -4), bytes: readFileSync(join(FIXTURES, f)) }));

function fixture(name: string): Buffer {
  const f = fixtures.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no fixture ${name}`);
  return Buffer.from(f.bytes);
}

/** Seeded PRNG (mulberry32): the fuzz cases are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs fn with stdout/stderr/console captured; tap must not assert inside. */
function silenced<T>(fn: () => T): { result: T; output: string[] } {
  const output: string[] = [];
  const saved = {
    out: process.stdout.write,
    err: process.stderr.write,
    log: console.log,
    error: console.error,
    warn: console.warn,
  };
  const grab = (chunk: unknown): boolean => {
    output.push(String(chunk));
    return true;
  };
  process.stdout.write = grab as typeof process.stdout.write;
  process.stderr.write = grab as typeof process.stderr.write;
  console.log = console.error = console.warn = (...args: unknown[]) => void output.push(args.join(' '));
  try {
    return { result: fn(), output };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    console.log = saved.log;
    console.error = saved.error;
    console.warn = saved.warn;
  }
}

t.test('fixtures were captured', async (t) => {
  t.ok(fixtures.length >= 10, `${fixtures.length} fixtures in test/fixtures/dhcp`);
});

t.test('each captured packet decodes to its golden dump and re-encodes byte for byte', async (t) => {
  for (const { name, bytes } of fixtures) {
    const msg = decodeDhcp(bytes);
    matchGolden(t, `dhcp/${name}.txt`, dumpDhcp(msg));
    // udhcpc pads to exactly 300 bytes, dhclient sends no padding past 300:
    // both match encodeDhcp's "end option, then zeros up to 300", so no slack is needed.
    t.same(encodeDhcp(msg), bytes, `${name}: encode(decode(x)) === x`);
  }
});

t.test('typed getters on real packets', async (t) => {
  const bios = decodeDhcp(fixture('udhcpc-bios-discover'));
  t.equal(bios.messageType, 1);
  t.equal(bios.vendorClass, 'PXEClient:Arch:00000:UNDI:002001');
  t.equal(bios.clientArch, 0);
  t.equal(bios.clientUuid?.toString('hex'), '00112233445566778899aabbccddeeff');
  t.equal(bios.maxMessageSize, 576);
  t.same(bios.clientId, Buffer.from('01025b00000001', 'hex'));
  t.same(bios.hardwareAddress, Buffer.from('025b00000001', 'hex'));
  t.ok(bios.parameterRequestList?.includes(1));
  t.equal(bios.userClass, undefined);
  t.equal(bios.ipxeEncap, undefined);

  const ipxe = decodeDhcp(fixture('udhcpc-ipxe-discover'));
  t.same(ipxe.userClass, ['iPXE'], 'plain (non-RFC 3004) user class');
  t.equal(ipxe.hostname, 'blade1');
  t.same(
    [...(ipxe.ipxeEncap ?? new Map<number, Buffer>())].map(([c, v]) => [c, v.toString('hex')]),
    [[0x11, '01'], [0x13, '01'], [0x15, '01']],
  );

  t.same(decodeDhcp(fixture('udhcpc-rfc3004-discover')).userClass, ['iPXE', 'rack1'], 'RFC 3004 list');
  t.same(decodeDhcp(fixture('dhclient-efi-x64-discover')).userClass, ['iPXE']);
  t.equal(decodeDhcp(fixture('udhcpc-arm64-discover')).clientArch, 11);

  const req = decodeDhcp(fixture('udhcpc-efi-x64-request'));
  t.equal(req.messageType, 3);
  t.equal(req.requestedIp, '10.213.0.50');
  t.equal(req.serverId, '10.213.0.1');

  const plain = decodeDhcp(fixture('udhcpc-plain-discover'));
  t.equal(plain.clientArch, undefined);
  t.equal(plain.clientUuid, undefined);
});

t.test('getters give undefined for malformed option values instead of throwing', async (t) => {
  const base = decodeDhcp(fixture('udhcpc-bios-discover'));
  const bad = base.with({
    options: new Map([
      [Opt.MESSAGE_TYPE, Buffer.from([1, 2])],
      [Opt.REQUESTED_IP, Buffer.from([10, 0, 0])],
      [Opt.CLIENT_ARCH, Buffer.from([0])],
      [Opt.CLIENT_UUID, Buffer.alloc(16)],
      [Opt.IPXE_ENCAP, Buffer.from([1, 9, 0])],
      [Opt.MAX_MESSAGE_SIZE, Buffer.from([2])],
      [Opt.USER_CLASS, Buffer.alloc(0)],
    ]),
  });
  t.equal(bad.messageType, undefined);
  t.equal(bad.requestedIp, undefined);
  t.equal(bad.clientArch, undefined);
  t.equal(bad.clientUuid, undefined);
  t.equal(bad.ipxeEncap, undefined);
  t.equal(bad.maxMessageSize, undefined);
  t.equal(bad.userClass, undefined);
  t.match(dumpDhcp(bad), /\(malformed\)/);
});

t.test('malformed packets throw DecodeError naming the problem', async (t) => {
  const good = fixture('udhcpc-bios-discover');
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['empty', () => Buffer.alloc(0), /too short: 0 bytes/],
    ['fixed part only', (b) => b.subarray(0, 236), /too short/],
    ['bad op', (b) => (b.writeUInt8(7, 0), b), /bad BOOTP op 7/],
    ['hlen 17', (b) => (b.writeUInt8(17, 2), b), /hardware address length 17/],
    ['bad cookie', (b) => (b.writeUInt32BE(0x63825364, 236), b), /magic cookie 0x63825364/],
    ['option overruns', (b) => (b.writeUInt8(200, 241), b), /option 53 at offset 240 claims 200 bytes/],
    ['no length byte', (b) => Buffer.concat([b.subarray(0, 240), Buffer.from([53])]), /has no length byte/],
  ];
  for (const [name, mutate, message] of cases) {
    t.throws(() => decodeDhcp(mutate(Buffer.from(good))), { name: 'DecodeError', code: 'E_DECODE', message }, name);
  }
});

t.test('decoding is lenient where real clients are', async (t) => {
  const good = fixture('dhclient-plain-discover');
  // Pad bytes between options, and no end option at all.
  const padded = Buffer.concat([good.subarray(0, 240), Buffer.from([0, 0]), good.subarray(240)]);
  t.same(dumpDhcp(decodeDhcp(padded)), dumpDhcp(decodeDhcp(good)), 'pads are skipped');
  const noEnd = Buffer.concat([good.subarray(0, 240), Buffer.from([53, 1, 1])]);
  t.equal(decodeDhcp(noEnd).messageType, 1, 'missing end option tolerated');
  // RFC 3396: a repeated option is one value, concatenated; encode splits long values again.
  const split = Buffer.concat([good.subarray(0, 240), Buffer.from([60, 2, 0x41, 0x42, 53, 1, 1, 60, 1, 0x43, 255])]);
  t.equal(decodeDhcp(split).vendorClass, 'ABC');
  const long = decodeDhcp(good).with({ options: new Map([[Opt.VENDOR_CLASS, Buffer.alloc(300, 0x61)]]) });
  const wire = encodeDhcp(long);
  t.same([wire[240], wire[241], wire[240 + 257], wire[240 + 258]], [60, 255, 60, 45], 'split into 255 + 45');
  t.equal(decodeDhcp(wire).vendorClass, 'a'.repeat(300));
});

t.test('truncation at every length gives a message or a DecodeError, nothing else', async (t) => {
  const bytes = fixture('udhcpc-ipxe-discover');
  const unexpected: string[] = [];
  let decoded = 0;
  const { output } = silenced(() => {
    for (let len = 0; len <= bytes.length; len++) {
      try {
        decodeDhcp(bytes.subarray(0, len));
        decoded++;
        if (len < 240) unexpected.push(`length ${len} decoded`);
      } catch (e) {
        if (!(e instanceof DecodeError)) unexpected.push(`length ${len}: ${String(e)}`);
      }
    }
  });
  t.same(unexpected, []);
  t.same(output, [], 'nothing written to stdout/stderr');
  t.ok(decoded > 0 && decoded < bytes.length - 239, `${decoded} truncations decode (cut at an option boundary)`);
});

t.test('random mutations: decode returns or throws DecodeError; a decoded message survives the pipeline', async (t) => {
  const rand = prng(0x5eed);
  const pick = (n: number): number => Math.floor(rand() * n);
  const unexpected: string[] = [];
  let decoded = 0;
  const ITERATIONS = 4000;
  const { output } = silenced(() => {
    for (let i = 0; i < ITERATIONS; i++) {
      const src = fixtures[pick(fixtures.length)]?.bytes ?? Buffer.alloc(0);
      let buf = Buffer.from(src);
      const edits = 1 + pick(8);
      for (let k = 0; k < edits; k++) {
        // Options are where parsers go wrong: aim most edits there.
        const at = rand() < 0.8 ? 236 + pick(Math.max(1, buf.length - 236)) : pick(buf.length);
        if (at < buf.length) buf[at] = pick(256);
      }
      const shape = rand();
      if (shape < 0.15) buf = buf.subarray(0, pick(buf.length + 1));
      else if (shape < 0.25) buf = Buffer.concat([buf, Buffer.from(Array.from({ length: pick(64) }, () => pick(256)))]);
      let msg: DhcpMessage;
      try {
        msg = decodeDhcp(buf);
      } catch (e) {
        if (!(e instanceof DecodeError)) unexpected.push(`iteration ${i}: ${String(e)}`);
        continue;
      }
      decoded++;
      try {
        const dump = dumpDhcp(msg);
        void [msg.messageType, msg.clientArch, msg.userClass, msg.clientUuid, msg.ipxeEncap, msg.hostname];
        if (dumpDhcp(decodeDhcp(encodeDhcp(msg))) !== dump) unexpected.push(`iteration ${i}: round trip changed the dump`);
        try {
          classifyClient(msg);
        } catch (e) {
          if (!(e instanceof DecodeError)) unexpected.push(`iteration ${i}: classify: ${String(e)}`);
        }
      } catch (e) {
        unexpected.push(`iteration ${i}: after decode: ${String(e)}`);
      }
    }
  });
  t.same(unexpected.slice(0, 5), [], 'no other exceptions');
  t.same(output, [], 'nothing written to stdout/stderr');
  t.ok(decoded > ITERATIONS / 10, `${decoded}/${ITERATIONS} mutated packets decoded`);
});

t.test('encodeDhcp pads to 300 bytes and refuses what no client could read', async (t) => {
  const msg = decodeDhcp(fixture('dhclient-plain-discover')).with({ options: new Map([[53, Buffer.from([1])]]) });
  const wire = encodeDhcp(msg);
  t.equal(wire.length, BOOTP_MIN_LEN);
  t.same([...wire.subarray(240, 244)], [53, 1, 1, 255]);
  const bad: Array<[string, Partial<DhcpMessage>]> = [
    ['yiaddr', { yiaddr: '10.0.0.256' }],
    ['siaddr', { siaddr: 'server' }],
    ['file', { file: 'x'.repeat(129) }],
    ['sname', { sname: 'é€' }],
    ['chaddr', { chaddr: Buffer.alloc(17) }],
    ['xid', { xid: -1 }],
    ['option code 255', { options: new Map([[255, Buffer.alloc(0)]]) }],
  ];
  for (const [name, change] of bad) {
    t.throws(() => encodeDhcp(msg.with(change)), EncodeError, name);
  }
});

t.test('the dhcp package registers our PXE options in its table', async (t) => {
  for (const [code, name] of [
    [43, 'Vendor Specific Information'],
    [60, 'Vendor Class-Identifier'],
    [77, 'User Class'],
    [93, 'Client System Architecture'],
    [94, 'Client Network Device Interface'],
    [97, 'Client Machine Identifier'],
    [175, 'iPXE Encapsulated Options'],
  ] as const) {
    t.equal(dhcpOptions.opts[code]?.name, name, `option ${code}`);
  }
});

// The package's own parser, on the same inputs: why decodeDhcp does not use it.
t.test('weaknesses of the dhcp package parser', async (t) => {
  const good = fixture('udhcpc-bios-discover');

  t.test('a truncated packet: RangeError from the package, DecodeError from us', async (t) => {
    const cut = good.subarray(0, 238);
    t.throws(() => dhcpProtocol.parse(cut), RangeError);
    t.throws(() => decodeDhcp(cut), DecodeError);
  });

  t.test('an option overrunning the packet: the package silently truncates it', async (t) => {
    const overrun = Buffer.concat([good.subarray(0, 240), Buffer.from([12, 50, 0x62, 0x6c])]);
    t.equal(dhcpProtocol.parse(overrun).options[12], 'bl', 'package returns a 2-byte "hostname" claimed as 50');
    t.throws(() => decodeDhcp(overrun), { name: 'DecodeError', message: /claims 50 bytes, only 2 left/ });
  });

  t.test('an unknown option: the package writes to stderr on every packet', async (t) => {
    const withPrivate = Buffer.concat([good.subarray(0, 240), Buffer.from([53, 1, 1, 224, 2, 1, 2, 255])]);
    const theirs = silenced(() => dhcpProtocol.parse(withPrivate));
    t.same(theirs.output, ['Option 224 not known']);
    t.notOk(224 in theirs.result.options, 'and drops the value');
    const ours = silenced(() => decodeDhcp(withPrivate));
    t.same(ours.output, []);
    t.same(ours.result.options.get(224), Buffer.from([1, 2]), 'kept raw');
  });

  t.test('a pad byte: the package skips the byte after it too', async (t) => {
    const padded = Buffer.concat([good.subarray(0, 240), Buffer.from([0, 53, 1, 1, 255])]);
    // It skips "53", reads "1, 1" as option 1 (an IP) of length 1, and runs off the end.
    t.throws(() => dhcpProtocol.parse(padded), RangeError, 'package misparses a valid packet');
    t.equal(decodeDhcp(padded).messageType, 1);
  });

  t.test('a non-Ethernet client (InfiniBand, hlen 0): the package throws a plain Error', async (t) => {
    const ib = Buffer.from(good);
    ib.writeUInt8(32, 1);
    ib.writeUInt8(0, 2);
    t.throws(() => dhcpProtocol.parse(ib), { message: /Invalid hardware address/ });
    const msg = decodeDhcp(ib);
    t.equal(msg.htype, 32);
    t.throws(() => classifyClient(msg), DecodeError, 'classify refuses it with a DecodeError');
  });

  t.test('a wrong magic cookie: the package accepts it', async (t) => {
    const bad = Buffer.from(good);
    bad.writeUInt32BE(0xdeadbeef, 236);
    t.equal(dhcpProtocol.parse(bad).magicCookie, 0xdeadbeef);
    t.throws(() => decodeDhcp(bad), DecodeError);
  });

  t.test('a binary client id: the package turns it into a lossy string', async (t) => {
    const theirs = dhcpProtocol.parse(good).options[61];
    t.type(theirs, 'string');
    t.same(decodeDhcp(good).clientId, Buffer.from('01025b00000001', 'hex'));
  });
});
