/**
 * The TFTP server against a tiny client written here over dgram, all on
 * 127.0.0.1 with ephemeral ports. Every test closes its server, sockets
 * and temp root in teardown.
 */
import t, { type Test } from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, writeFileSync, mkdirSync, symlinkSync, readdirSync, readlinkSync, rmSync, realpathSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createTftpServer, type TftpServer, type TftpServerOptions, type TftpTransferEvent } from '../../../server/tftp/server.js';
import { decodePacket, encodePacket, dumpPacket, type TftpPacket } from '../../../server/tftp/packet.js';
import { silentLogger } from '../../../server/log.js';
import { ForbiddenError, NoMatchError } from '../../../server/errors.js';
import { matchGolden } from '../../helpers/golden.js';



interface Received {
  p: TftpPacket;
  port: number;
  raw: Buffer;
}

/** A client socket with an inbox: enough TFTP to drive the server step by step. */
class Peer {
  private inbox: Received[] = [];
  private waiter: (() => void) | null = null;
  private constructor(readonly sock: Socket) {
    sock.on('message', (raw, rinfo) => {
      this.inbox.push({ p: decodePacket(raw), port: rinfo.port, raw: Buffer.from(raw) });
      this.waiter?.();
    });
  }

  static async open(t: Test): Promise<Peer> {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const peer = new Peer(sock);
    t.teardown(() => peer.close());
    return peer;
  }

  get port(): number {
    return this.sock.address().port;
  }

  send(p: TftpPacket | Buffer, port: number): void {
    this.sock.send(Buffer.isBuffer(p) ? p : encodePacket(p), port, '127.0.0.1');
  }

  async recv(ms = 3000): Promise<Received> {
    const deadline = Date.now() + ms;
    while (this.inbox.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no packet within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    return this.inbox.shift()!;
  }

  /** True when nothing arrives within `ms`. */
  async quiet(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.inbox.length === 0;
  }

  close(): void {
    try {
      this.sock.close();
    } catch {
      // closed already
    }
  }
}

interface Setup {
  server: TftpServer;
  port: number;
  root: string;
  events: TftpTransferEvent[];
  /** Resolves with the next onTransfer event. */
  nextEvent(): Promise<TftpTransferEvent>;
}

async function setup(t: Test, files: Record<string, Buffer | string>, opts: Partial<TftpServerOptions> = {}): Promise<Setup> {
  const root = mkdtempSync(join(tmpdir(), 'swarmboot-tftp-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), data);
  }
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const events: TftpTransferEvent[] = [];
  const waiting: Array<(e: TftpTransferEvent) => void> = [];
  const server = await createTftpServer({
    socket,
    root,
    log: silentLogger(),
    onTransfer: (e) => {
      const w = waiting.shift();
      if (w) w(e);
      else events.push(e);
    },
    ...opts,
  });
  t.teardown(async () => {
    await server.close();
    socket.close();
  });
  const nextEvent = (): Promise<TftpTransferEvent> => {
    const e = events.shift();
    return e ? Promise.resolve(e) : new Promise((resolve) => waiting.push(resolve));
  };
  return { server, port: socket.address().port, root, events, nextEvent };
}

interface Fetched {
  data: Buffer;
  oack: TftpPacket | null;
  first: TftpPacket;
  /** Wire block numbers where the sequence went down (65535 -> 0). */
  rollovers: Array<[number, number]>;
  packets: number;
}

/** A well-behaved client: acks the OACK, then every windowsize-th block and the last one. */
async function fetch(peer: Peer, port: number, file: string, options: Record<string, string> = {}): Promise<Fetched> {
  peer.send({ op: 'RRQ', filename: file, mode: 'octet', options: Object.entries(options).map(([name, value]) => ({ name, value })) }, port);
  let r = await peer.recv();
  const first = r.p;
  const tid = r.port;
  let blksize = 512;
  let window = 1;
  let oack: TftpPacket | null = null;
  if (r.p.op === 'OACK') {
    oack = r.p;
    for (const o of r.p.options) {
      if (o.name === 'blksize') blksize = Number(o.value);
      if (o.name === 'windowsize') window = Number(o.value);
    }
    peer.send({ op: 'ACK', block: 0 }, tid);
    r = await peer.recv();
  }
  const chunks: Buffer[] = [];
  const rollovers: Array<[number, number]> = [];
  let expected = 1; // wire number
  let inWindow = 0;
  let packets = 0;
  for (;;) {
    if (r.p.op !== 'DATA') throw new Error(`expected DATA, got ${dumpPacket(r.p)}`);
    if (r.port !== tid) throw new Error('DATA from another port');
    packets++;
    if (r.p.block === expected) {
      chunks.push(Buffer.from(r.p.data));
      if (expected === 0) rollovers.push([65535, 0]);
      const last = r.p.data.length < blksize;
      inWindow++;
      if (last || inWindow === window) {
        peer.send({ op: 'ACK', block: r.p.block }, tid);
        inWindow = 0;
      }
      if (last) break;
      expected = (expected + 1) & 0xffff;
    }
    r = await peer.recv();
  }
  return { data: Buffer.concat(chunks), oack, first, rollovers, packets };
}

const openFdsTo = (path: string): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  }).length;

t.test('RRQ without options: no OACK, 512-byte lock-step', async (t) => {
  const data = randomBytes(512 * 3 + 17);
  const s = await setup(t, { 'pxelinux.0': data });
  const peer = await Peer.open(t);
  const got = await fetch(peer, s.port, 'pxelinux.0');
  t.equal(got.first.op, 'DATA', 'first reply is DATA 1, not OACK');
  t.equal(got.first.op === 'DATA' && got.first.block, 1);
  t.ok(got.data.equals(data), 'bytes match');
  t.equal(got.packets, 4);
  const e = await s.nextEvent();
  t.match(e, { path: 'pxelinux.0', ok: true, bytes: data.length, source: 'file', blksize: 512, windowsize: 1, remote: { address: '127.0.0.1', port: peer.port } });
  t.equal(s.server.stats().completed, 1);
});

t.test('leading slash, size a multiple of blksize (empty last block), empty file', async (t) => {
  const even = randomBytes(1024);
  const s = await setup(t, { 'dir/even.bin': even, 'empty.bin': Buffer.alloc(0) });
  const peer = await Peer.open(t);
  const a = await fetch(peer, s.port, '/dir/even.bin');
  t.ok(a.data.equals(even));
  t.equal(a.packets, 3, 'two full blocks and an empty one');
  const b = await fetch(peer, s.port, 'empty.bin', { tsize: '0' });
  t.equal(b.data.length, 0);
  t.same(b.oack, { op: 'OACK', options: [{ name: 'tsize', value: '0' }] });
});

t.test('OACK contents: blksize capped, tsize, timeout, windowsize; unknown options left out', async (t) => {
  const data = randomBytes(100_000);
  const s = await setup(t, { 'ipxe.efi': data }, { blksizeCap: 1468 });
  const peer = await Peer.open(t);
  const got = await fetch(peer, s.port, 'ipxe.efi', { blksize: '2000', tsize: '0', timeout: '3', windowsize: '8', foo: 'bar' });
  t.ok(got.oack, 'OACK sent');
  matchGolden(t, 'tftp/oack.txt', `${dumpPacket(got.oack!)}\n`);
  t.ok(got.data.equals(data), 'bytes match at blksize 1468, window 8');
  const e = await s.nextEvent();
  t.match(e, { ok: true, blksize: 1468, windowsize: 8, size: data.length });
});

t.test('windowsize 4: sends 4 blocks per ACK, resends from a partial ACK', async (t) => {
  const data = randomBytes(512 * 10 + 100); // blocks 1..11
  const s = await setup(t, { 'f.bin': data }, { timeoutMs: 5000 });
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'f.bin', mode: 'octet', options: [{ name: 'windowsize', value: '4' }] }, s.port);
  const oack = await peer.recv();
  t.same(oack.p, { op: 'OACK', options: [{ name: 'windowsize', value: '4' }] });
  const tid = oack.port;
  const burst = async (): Promise<number[]> => {
    const blocks: number[] = [];
    for (;;) {
      const r = await peer.recv(1000).catch(() => null);
      if (r === null) break;
      if (r.p.op === 'DATA') blocks.push(r.p.block);
      if (await peer.quiet(60)) break;
    }
    return blocks;
  };
  peer.send({ op: 'ACK', block: 0 }, tid);
  t.same(await burst(), [1, 2, 3, 4], 'first window, then silence until an ACK');
  peer.send({ op: 'ACK', block: 2 }, tid);
  t.same(await burst(), [3, 4, 5, 6], 'partial ACK of 2: resend from 3');
  peer.send({ op: 'ACK', block: 6 }, tid);
  t.same(await burst(), [7, 8, 9, 10]);
  peer.send({ op: 'ACK', block: 10 }, tid);
  t.same(await burst(), [11], 'short final block');
  peer.send({ op: 'ACK', block: 11 }, tid);
  const e = await s.nextEvent();
  t.match(e, { ok: true, bytes: data.length, windowsize: 4 });
});

t.test('block numbers roll over 65535 -> 0 (blksize 8)', async (t) => {
  const data = randomBytes(8 * 65536 + 100); // 65549 blocks
  const s = await setup(t, { 'big.bin': data });
  const peer = await Peer.open(t);
  t.test('lock-step', async (t) => {
    const got = await fetch(peer, s.port, 'big.bin', { blksize: '8' });
    t.ok(got.data.equals(data), 'bytes match across the rollover');
    t.same(got.rollovers, [[65535, 0]], 'one rollover, to 0');
  });
  t.test('windowsize 64', async (t) => {
    const got = await fetch(peer, s.port, 'big.bin', { blksize: '8', windowsize: '64' });
    t.ok(got.data.equals(data), 'bytes match across the rollover');
    t.same(got.rollovers, [[65535, 0]]);
  });
});

t.test('WRQ is refused with access violation and nothing is written', async (t) => {
  const s = await setup(t, { 'existing.bin': 'keep me' });
  const peer = await Peer.open(t);
  peer.send({ op: 'WRQ', filename: 'new.bin', mode: 'octet', options: [] }, s.port);
  const r = await peer.recv();
  t.match(r.p, { op: 'ERROR', code: 2 });
  peer.send({ op: 'WRQ', filename: 'existing.bin', mode: 'octet', options: [{ name: 'tsize', value: '3' }] }, s.port);
  t.match((await peer.recv()).p, { op: 'ERROR', code: 2 });
  // A DATA packet as if the WRQ had been accepted: must be dropped.
  peer.send({ op: 'DATA', block: 1, data: Buffer.from('new') }, s.port);
  t.ok(await peer.quiet(100));
  t.same(readdirSync(s.root), ['existing.bin'], 'no file created');
  t.equal(execFileSync('cat', [join(s.root, 'existing.bin')]).toString(), 'keep me', 'existing file untouched');
  t.equal(s.server.stats().refused, 2);
  t.match(await s.nextEvent(), { path: 'new.bin', ok: false, error: /read-only/ });
});

t.test('beyond maxTransfers: "server busy"', async (t) => {
  const s = await setup(t, { 'a.bin': randomBytes(2000) }, { maxTransfers: 2, timeoutMs: 5000 });
  const stalled = [await Peer.open(t), await Peer.open(t)];
  for (const p of stalled) {
    p.send({ op: 'RRQ', filename: 'a.bin', mode: 'octet', options: [] }, s.port);
    t.match((await p.recv()).p, { op: 'DATA', block: 1 }, 'first two get data (and never ack)');
  }
  const third = await Peer.open(t);
  third.send({ op: 'RRQ', filename: 'a.bin', mode: 'octet', options: [] }, s.port);
  const r = await third.recv();
  t.match(r.p, { op: 'ERROR', code: 0, message: /busy/i });
  t.equal(r.port, s.port, 'busy answer comes from the request port (no socket spent on it)');
  t.equal(s.server.stats().busy, 1);
  t.equal(s.server.stats().active, 2);
});

t.test('a vanished client: retransmits, gives up, closes the file', async (t) => {
  const s = await setup(t, { 'k.bin': randomBytes(5000) }, { timeoutMs: 40, retries: 3 });
  const path = join(realpathSync(s.root), 'k.bin');
  const before = openFdsTo(path);
  t.equal(before, 0);
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'k.bin', mode: 'octet', options: [] }, s.port);
  const first = await peer.recv();
  t.match(first.p, { op: 'DATA', block: 1 });
  t.equal(openFdsTo(path), 1, 'file open during the transfer');
  const e = await s.nextEvent(); // the client never acks
  t.match(e, { ok: false, bytes: 0, error: /timed out after 3 retransmissions/ });
  let copies = 0;
  while (!(await peer.quiet(0))) {
    const r = await peer.recv();
    t.ok(r.raw.equals(first.raw), 'a retransmission is the same DATA 1');
    copies++;
  }
  t.equal(copies, 3, 'exactly `retries` retransmissions');
  t.equal(openFdsTo(path), 0, 'file handle closed');
  t.equal(s.server.stats().active, 0);
  t.equal(s.server.stats().failed, 1);
});

t.test('a lost ACK: the block is sent again and the transfer completes', async (t) => {
  const data = randomBytes(1500);
  const s = await setup(t, { 'r.bin': data }, { timeoutMs: 50 });
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'r.bin', mode: 'octet', options: [] }, s.port);
  const d1 = await peer.recv();
  const again = await peer.recv(); // we "lost" our ACK: wait for the retransmission
  t.ok(again.raw.equals(d1.raw), 'DATA 1 retransmitted');
  peer.send({ op: 'ACK', block: 1 }, d1.port);
  peer.send({ op: 'ACK', block: 1 }, d1.port); // a duplicate ACK in lock-step must not trigger a resend
  const d2 = await peer.recv();
  t.match(d2.p, { op: 'DATA', block: 2 });
  t.ok(await peer.quiet(20), 'duplicate ACK ignored (no Sorcerer\'s Apprentice)');
  peer.send({ op: 'ACK', block: 2 }, d1.port);
  t.match((await peer.recv()).p, { op: 'DATA', block: 3 });
  peer.send({ op: 'ACK', block: 3 }, d1.port);
  t.match(await s.nextEvent(), { ok: true, bytes: 1500 });
});

t.test('malformed packets are dropped and counted; the server still answers', async (t) => {
  const data = randomBytes(700);
  const s = await setup(t, { 'm.bin': data });
  const peer = await Peer.open(t);
  const junk = [
    Buffer.from([1]),
    Buffer.from([0, 9, 0, 0]),
    Buffer.from('\x00\x01no-terminator', 'latin1'),
    Buffer.from('\x00\x01m.bin\x00', 'latin1'),
    Buffer.from('\x00\x01m.bin\x00bogus\x00', 'latin1'),
    randomBytes(600),
  ];
  for (const j of junk) peer.send(j, s.port);
  t.ok(await peer.quiet(100), 'no reply to junk');
  // Junk on a transfer socket, from the right TID, mid-transfer.
  peer.send({ op: 'RRQ', filename: 'm.bin', mode: 'octet', options: [] }, s.port);
  const d1 = await peer.recv();
  peer.send(Buffer.from([0]), d1.port);
  peer.send(Buffer.from([0, 4, 0]), d1.port);
  peer.send({ op: 'DATA', block: 1, data: Buffer.from('x') }, d1.port);
  peer.send({ op: 'ACK', block: 1 }, d1.port);
  const d2 = await peer.recv();
  t.match(d2.p, { op: 'DATA', block: 2 }, 'transfer carries on');
  peer.send({ op: 'ACK', block: 2 }, d1.port);
  t.match(await s.nextEvent(), { ok: true });
  const st = s.server.stats();
  t.equal(st.malformed, 6 + 2, 'six on the request port, two on the transfer socket');
  t.equal(st.stray, 1, 'a DATA packet sent to a read transfer');
});

t.test('packets from the wrong TID get error 5 and do not disturb the transfer', async (t) => {
  const data = randomBytes(1200);
  const s = await setup(t, { 'w.bin': data }, { timeoutMs: 2000 });
  const peer = await Peer.open(t);
  const stranger = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'w.bin', mode: 'octet', options: [] }, s.port);
  const d1 = await peer.recv();
  stranger.send({ op: 'ACK', block: 1 }, d1.port);
  const r = await stranger.recv();
  t.match(r.p, { op: 'ERROR', code: 5 });
  t.ok(await peer.quiet(100), 'the stranger\'s ACK did not advance the transfer');
  stranger.send({ op: 'ERROR', code: 0, message: 'go away' }, d1.port);
  t.match((await stranger.recv()).p, { op: 'ERROR', code: 5 }, 'nor does its ERROR end it');
  peer.send({ op: 'ACK', block: 1 }, d1.port);
  t.match((await peer.recv()).p, { op: 'DATA', block: 2 });
  peer.send({ op: 'ACK', block: 2 }, d1.port);
  const d3 = await peer.recv();
  t.match(d3.p, { op: 'DATA', block: 3 });
  peer.send({ op: 'ACK', block: 3 }, d1.port);
  t.match(await s.nextEvent(), { ok: true, bytes: 1200 });
  t.equal(s.server.stats().wrongTid, 2);
});

t.test('generated files', async (t) => {
  const cfg = Buffer.from('DEFAULT flatcar\nLABEL flatcar\n  KERNEL flatcar_production_pxe.vmlinuz\n');
  const calls: Array<[string, string]> = [];
  const s = await setup(
    t,
    { 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff': 'on disk: must lose to the generator', 'disk.bin': 'from disk' },
    {
      generated: async (path, remote) => {
        calls.push([path, `${remote.address}`]);
        if (path === 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff') return cfg;
        if (path === 'oem/11-22-33-44-55-66.cpio.gz') throw new NoMatchError('no profile for 11:22:33:44:55:66');
        if (path === 'oem/aa-bb-cc-dd-ee-ff.cpio.gz') throw new ForbiddenError('not your config');
        if (path === 'oem/broken') throw new Error('boom');
        return null;
      },
    },
  );
  const peer = await Peer.open(t);
  const got = await fetch(peer, s.port, '/pxelinux.cfg/01-aa-bb-cc-dd-ee-ff', { tsize: '0' });
  t.ok(got.data.equals(cfg), 'generated bytes served');
  t.same(got.oack, { op: 'OACK', options: [{ name: 'tsize', value: String(cfg.length) }] }, 'tsize is the buffer length');
  t.match(await s.nextEvent(), { ok: true, source: 'generated', path: 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff' });
  const disk = await fetch(peer, s.port, 'disk.bin');
  t.equal(disk.data.toString(), 'from disk', 'null from the generator falls through to the root');
  for (const [file, code] of [['oem/11-22-33-44-55-66.cpio.gz', 1], ['oem/aa-bb-cc-dd-ee-ff.cpio.gz', 2], ['oem/broken', 0]] as const) {
    peer.send({ op: 'RRQ', filename: file, mode: 'octet', options: [] }, s.port);
    t.match((await peer.recv()).p, { op: 'ERROR', code }, `${file}: error ${code}`);
  }
  t.same(calls[0], ['pxelinux.cfg/01-aa-bb-cc-dd-ee-ff', '127.0.0.1'], 'generator sees the normalised path and the client');
});

t.test('path safety through the server', async (t) => {
  const outside = mkdtempSync(join(tmpdir(), 'swarmboot-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'secret'), 'secret');
  const s = await setup(t, { 'ok.bin': 'ok', 'sub/inner.bin': 'inner' });
  symlinkSync(join(outside, 'secret'), join(s.root, 'escape'));
  symlinkSync(outside, join(s.root, 'escape-dir'));
  symlinkSync('sub/inner.bin', join(s.root, 'inside-link'));
  execFileSync('mkfifo', [join(s.root, 'fifo')]);
  const peer = await Peer.open(t);
  const cases: Array<[string, number]> = [
    ['../ok.bin', 2],
    ['sub/../ok.bin', 2],
    ['%2e%2e/ok.bin', 2],
    ['sub\\inner.bin', 2],
    ['escape', 2],
    ['escape-dir/secret', 2],
    [`${outside}/secret`, 1], // absolute: looked up under the root, where it does not exist
    ['sub', 1],
    ['fifo', 1],
    ['missing.bin', 1],
  ];
  for (const [file, code] of cases) {
    peer.send({ op: 'RRQ', filename: file, mode: 'octet', options: [] }, s.port);
    const r = await peer.recv();
    t.match(r.p, { op: 'ERROR', code }, `${file} -> error ${code}`);
  }
  const inside = await fetch(peer, s.port, 'inside-link');
  t.equal(inside.data.toString(), 'inner', 'a symlink that stays inside the root is followed');
  t.equal(s.server.stats().refused, cases.length);
});

t.test('netascii is served as octet; mail is refused', async (t) => {
  const text = Buffer.from('line1\nline2\n');
  const s = await setup(t, { 'cfg.txt': text });
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'cfg.txt', mode: 'netascii', options: [] }, s.port);
  const r = await peer.recv();
  t.ok(r.p.op === 'DATA' && Buffer.from(r.p.data).equals(text), 'bytes unchanged (no CRLF conversion)');
  peer.send({ op: 'ACK', block: 1 }, r.port);
  t.match(await s.nextEvent(), { ok: true, bytes: text.length });
  peer.send({ op: 'RRQ', filename: 'cfg.txt', mode: 'mail', options: [] }, s.port);
  t.match((await peer.recv()).p, { op: 'ERROR', code: 4 });
});

t.test('client aborts after the OACK (firmware size probe): file closed at once', async (t) => {
  const s = await setup(t, { 'p.bin': randomBytes(3000) }, { timeoutMs: 5000 });
  const path = join(realpathSync(s.root), 'p.bin');
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'p.bin', mode: 'octet', options: [{ name: 'tsize', value: '0' }] }, s.port);
  const oack = await peer.recv();
  t.same(oack.p, { op: 'OACK', options: [{ name: 'tsize', value: '3000' }] });
  peer.send({ op: 'ERROR', code: 8, message: 'tsize probe' }, oack.port);
  // PXE ROMs re-request at once from the same port: that is a new request, not a retransmission.
  peer.send({ op: 'RRQ', filename: 'p.bin', mode: 'octet', options: [{ name: 'blksize', value: '1468' }] }, s.port);
  t.match(await s.nextEvent(), { ok: false, error: /after OACK/ });
  const again = await peer.recv();
  t.same(again.p, { op: 'OACK', options: [{ name: 'blksize', value: '1468' }] }, 'the re-request is served');
  t.not(again.port, oack.port, 'on a new TID');
  peer.send({ op: 'ERROR', code: 0, message: 'done testing' }, again.port);
  t.match(await s.nextEvent(), { ok: false });
  t.equal(openFdsTo(path), 0, 'both handles closed');
});

t.test('a retransmitted RRQ does not start a second transfer', async (t) => {
  const s = await setup(t, { 'd.bin': randomBytes(100) }, { timeoutMs: 5000 });
  const peer = await Peer.open(t);
  const rrq: TftpPacket = { op: 'RRQ', filename: 'd.bin', mode: 'octet', options: [] };
  peer.send(rrq, s.port);
  const d1 = await peer.recv();
  peer.send(rrq, s.port);
  t.ok(await peer.quiet(100), 'no second DATA 1');
  t.equal(s.server.stats().duplicates, 1);
  peer.send({ op: 'ACK', block: 1 }, d1.port);
  t.match(await s.nextEvent(), { ok: true });
});

t.test('close() aborts running transfers with an error and closes their files', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'swarmboot-tftp-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, 'c.bin'), randomBytes(4000));
  const events: TftpTransferEvent[] = [];
  const server = await createTftpServer({ bind: { address: '127.0.0.1', port: 0 }, root, log: silentLogger(), timeoutMs: 5000, onTransfer: (e) => events.push(e) });
  const peer = await Peer.open(t);
  peer.send({ op: 'RRQ', filename: 'c.bin', mode: 'octet', options: [] }, server.address().port);
  await peer.recv();
  await server.close();
  t.match((await peer.recv()).p, { op: 'ERROR', code: 0, message: /shutting down/ });
  t.equal(openFdsTo(join(realpathSync(root), 'c.bin')), 0);
  t.match(events, [{ ok: false }]);
  await server.close(); // idempotent
});

t.test('a root that is not a directory is a startup error', async (t) => {
  await t.rejects(createTftpServer({ bind: { address: '127.0.0.1', port: 0 }, root: '/nonexistent/swarmboot', log: silentLogger() }), { code: 'E_TFTP_ROOT' });
});
