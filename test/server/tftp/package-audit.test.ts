/**
 * Why swarmboot does not serve TFTP with the `tftp` npm package's server
 * (gagle/node-tftp 0.1.2) and uses only its opcode/error tables. Each test
 * pins one defect of the package as installed, so if an upgrade fixes it
 * the test fails and the decision can be revisited.
 *
 * The package server runs in a child process (some defects kill the
 * process), on 127.0.0.1 only, and is killed in teardown.
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync, symlinkSync, existsSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePacket, encodePacket, type TftpPacket } from '../../../server/tftp/packet.js';


const require = createRequire(import.meta.url);
const packageDir = join(require.resolve('tftp'), '..', '..');

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(resolve));
  return port;
}

interface PackageServer {
  port: number;
  child: ChildProcess;
  exit: Promise<number | null>;
  stderr: () => string;
}

/** Starts the package's own server with its default request handler over `root`. */
async function startPackageServer(t: Test, root: string): Promise<PackageServer> {
  const port = await freePort();
  const script = `
    const tftp = require(${JSON.stringify(packageDir)});
    const s = tftp.createServer({ host: '127.0.0.1', port: ${port}, root: ${JSON.stringify(root)} });
    s.on('listening', () => console.log('listening'));
    s.listen();`;
  const child = spawn(process.execPath, ['--no-deprecation', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`package server did not start: ${err}`)), 5000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { port, child, exit, stderr: () => err };
}

class Peer {
  private inbox: Array<{ p: TftpPacket; port: number }> = [];
  private constructor(readonly sock: Socket) {
    sock.on('message', (raw, rinfo) => this.inbox.push({ p: decodePacket(raw), port: rinfo.port }));
  }
  static async open(t: Test): Promise<Peer> {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    t.teardown(() => sock.close());
    return new Peer(sock);
  }
  send(p: TftpPacket | Buffer, port: number): void {
    this.sock.send(Buffer.isBuffer(p) ? p : encodePacket(p), port, '127.0.0.1');
  }
  async recv(ms = 2000): Promise<{ p: TftpPacket; port: number }> {
    const deadline = Date.now() + ms;
    while (this.inbox.length === 0) {
      if (Date.now() > deadline) throw new Error(`no packet within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.inbox.shift()!;
  }
  /** Everything that arrives within `ms`. */
  async drain(ms: number): Promise<TftpPacket[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.inbox.splice(0).map((x) => x.p);
  }
}

function tempRoot(t: Test): string {
  const root = mkdtempSync(join(tmpdir(), 'swarmboot-tftp-pkg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

const rrq = (filename: string, options: Record<string, string> = {}): TftpPacket => ({
  op: 'RRQ',
  filename,
  mode: 'octet',
  options: Object.entries(options).map(([name, value]) => ({ name, value })),
});

t.test('cannot bind an ephemeral port: port 0 silently becomes 69', async (t) => {
  const tftp = require('tftp') as { createServer(o: object): { port: number; close(): void } };
  const s = tftp.createServer({ host: '127.0.0.1', port: 0, root: tmpdir() });
  t.equal(s.port, 69, 'no way to hand it port 0 (nor an injected socket)');
  s.close();
});

t.test('a request for a missing file kills the process (unhandled error event)', async (t) => {
  const root = tempRoot(t);
  const srv = await startPackageServer(t, root);
  const peer = await Peer.open(t);
  // pxelinux asks for several missing pxelinux.cfg/* names on every boot.
  peer.send(rrq('pxelinux.cfg/01-aa-bb-cc-dd-ee-ff'), srv.port);
  t.not(await srv.exit, 0, 'server process exited');
  t.match(srv.stderr(), /Unhandled 'error' event/);
});

t.test('a 1-byte packet on a transfer socket kills the process', async (t) => {
  const root = tempRoot(t);
  writeFileSync(join(root, 'f.bin'), Buffer.alloc(2000, 1));
  const srv = await startPackageServer(t, root);
  const peer = await Peer.open(t);
  peer.send(rrq('f.bin'), srv.port);
  const d1 = await peer.recv();
  t.match(d1.p, { op: 'DATA', block: 1 });
  peer.send(Buffer.from([4]), d1.port);
  t.not(await srv.exit, 0, 'server process exited');
  t.match(srv.stderr(), /RangeError|ERR_OUT_OF_RANGE|out of range/i);
});

t.test('no TID check: an ACK from another port advances the transfer', async (t) => {
  const root = tempRoot(t);
  writeFileSync(join(root, 'f.bin'), Buffer.alloc(2000, 1));
  const srv = await startPackageServer(t, root);
  const client = await Peer.open(t);
  const stranger = await Peer.open(t);
  client.send(rrq('f.bin'), srv.port);
  const d1 = await client.recv();
  stranger.send({ op: 'ACK', block: 1 }, d1.port);
  const next = await client.recv();
  t.match(next.p, { op: 'DATA', block: 2 }, 'the client got block 2 without acknowledging block 1');
  t.same(await stranger.drain(100), [], 'and the stranger got no error 5');
});

t.test('windowsize: after a partial ACK the window grows past the negotiated size', async (t) => {
  const root = tempRoot(t);
  writeFileSync(join(root, 'f.bin'), Buffer.alloc(512 * 20, 1));
  const srv = await startPackageServer(t, root);
  const peer = await Peer.open(t);
  peer.send(rrq('f.bin', { windowsize: '4' }), srv.port);
  const oack = await peer.recv();
  t.match(oack.p, { op: 'OACK' });
  peer.send({ op: 'ACK', block: 0 }, oack.port);
  const first = (await peer.drain(150)).map((p) => (p.op === 'DATA' ? p.block : -1));
  t.same(first, [1, 2, 3, 4]);
  peer.send({ op: 'ACK', block: 2 }, oack.port);
  const burst = (await peer.drain(150)).map((p) => (p.op === 'DATA' ? p.block : -1));
  t.ok(burst.length > 4, `sent ${burst.length} blocks (${burst.join(',')}) with windowsize 4 (RFC 7440 allows 4)`);
});

t.test('WRQ writes into the root unless denyPUT is set', async (t) => {
  const root = tempRoot(t);
  const srv = await startPackageServer(t, root);
  const peer = await Peer.open(t);
  peer.send({ op: 'WRQ', filename: 'planted.bin', mode: 'octet', options: [] }, srv.port);
  const ack = await peer.recv();
  t.match(ack.p, { op: 'ACK', block: 0 });
  peer.send({ op: 'DATA', block: 1, data: Buffer.from('owned') }, ack.port);
  t.match((await peer.recv()).p, { op: 'ACK', block: 1 });
  await new Promise((r) => setTimeout(r, 100));
  t.ok(existsSync(join(root, 'planted.bin')), 'file written');
});

t.test('symlinks out of the root are followed', async (t) => {
  const root = tempRoot(t);
  const outside = tempRoot(t);
  writeFileSync(join(outside, 'secret'), 'secret');
  symlinkSync(join(outside, 'secret'), join(root, 'link'));
  const srv = await startPackageServer(t, root);
  const peer = await Peer.open(t);
  peer.send(rrq('link'), srv.port);
  const d = await peer.recv();
  t.ok(d.p.op === 'DATA' && Buffer.from(d.p.data).toString() === readFileSync(join(outside, 'secret'), 'utf8'), 'served the file outside the root');
  peer.send({ op: 'ACK', block: 1 }, d.port);
});
