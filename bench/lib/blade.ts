/**
 * A simulated blade's network stack, for the boot storm: a DHCP client
 * (many blades share one port-68 socket, told apart by xid), a lock-step
 * TFTP client like PXE firmware's, and HTTP GETs like iPXE's. Each blade
 * speaks from the address it was leased (the client namespace owns the
 * whole storm pool in advance), so the server's per-address checks (the
 * Ignition secret gate) see what they would see from real blades.
 * Packets are built with the project's own DHCP encoder.
 */
import { createSocket, type Socket } from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { decodeDhcp, type DhcpMessage } from '../../server/dhcp/codec.js';
import { clientPacket, MessageType, FLAG_BROADCAST, pxeVendorClass } from '../../test/helpers/dhcp-packets.js';

export interface Lease {
  ip: string;
  serverId: string;
  siaddr: string;
  file: string;
  tries: number;
}

/** One port-68 socket for every blade in the process; replies are routed by xid. */
export class DhcpMux {
  private readonly waiting = new Map<number, (m: DhcpMessage) => void>();
  private constructor(private readonly sock: Socket) {
    sock.on('message', (buf) => {
      let m: DhcpMessage;
      try {
        m = decodeDhcp(buf);
      } catch {
        return;
      }
      if (m.op !== 2) return;
      this.waiting.get(m.xid)?.(m);
    });
  }

  static open(): Promise<DhcpMux> {
    return new Promise((resolve, reject) => {
      const sock = createSocket({ type: 'udp4', reuseAddr: true });
      sock.once('error', reject);
      sock.bind(68, '0.0.0.0', () => {
        sock.setBroadcast(true);
        sock.setRecvBufferSize(4 << 20);
        resolve(new DhcpMux(sock));
      });
    });
  }

  close(): void {
    this.sock.close();
  }

  /** Sends `pkt` to 255.255.255.255:67 until a reply of `want` type arrives (firmware-like 4 s, 8 s, ... back-off). */
  private exchange(xid: number, pkt: Buffer, want: number, timeoutsMs: readonly number[]): Promise<{ m: DhcpMessage; tries: number }> {
    return new Promise((resolve, reject) => {
      let tries = 0;
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.waiting.delete(xid);
      };
      this.waiting.set(xid, (m) => {
        if (m.messageType === MessageType.NAK) {
          done();
          reject(new Error(`DHCPNAK: ${m.options.get(56)?.toString('latin1') ?? ''}`));
        } else if (m.messageType === want) {
          done();
          resolve({ m, tries });
        }
      });
      const send = (): void => {
        if (tries >= timeoutsMs.length) {
          done();
          reject(new Error(`no ${want === MessageType.OFFER ? 'OFFER' : 'ACK'} after ${tries} tries`));
          return;
        }
        this.sock.send(pkt, 67, '255.255.255.255');
        timer = setTimeout(send, timeoutsMs[tries]);
        tries++;
      };
      send();
    });
  }

  /** DISCOVER/OFFER/REQUEST/ACK as PXE firmware (arch 0, BIOS) or, with `ipxe`, as iPXE (user class "iPXE"). */
  async dora(mac: string, ipxe: boolean): Promise<Lease> {
    const base = { mac, flags: FLAG_BROADCAST, vendorClass: pxeVendorClass(0), arch: 0, maxSize: 1472, ...(ipxe ? { userClass: 'iPXE' } : {}) };
    const backoff = [4000, 8000, 16000];
    const xid = randomInt(1, 0x7fffffff);
    const offer = await this.exchange(xid, clientPacket({ ...base, type: MessageType.DISCOVER, xid }), MessageType.OFFER, backoff);
    const serverId = offer.m.serverId ?? offer.m.siaddr;
    const ack = await this.exchange(xid, clientPacket({ ...base, type: MessageType.REQUEST, xid, requestedIp: offer.m.yiaddr, serverId }), MessageType.ACK, backoff);
    return { ip: ack.m.yiaddr, serverId, siaddr: ack.m.siaddr, file: ack.m.file || (ack.m.options.get(67)?.toString('latin1') ?? ''), tries: offer.tries + ack.tries };
  }
}

function rrq(name: string, blksize: number): Buffer {
  const fields = [name, 'octet', 'blksize', String(blksize), 'tsize', '0'];
  return Buffer.concat([Buffer.from([0, 1]), Buffer.from(fields.map((f) => `${f}\x00`).join(''), 'latin1')]);
}

function ack(block: number): Buffer {
  return Buffer.from([0, 4, (block >> 8) & 255, block & 255]);
}

export interface TftpGot {
  bytes: number;
  /** Kept only when asked for (configs); big files are counted and dropped. */
  data?: Buffer;
  retransmits: number;
}

/**
 * A lock-step RRQ from `local` to `server`:69, as PXE firmware and pxelinux
 * do it: blksize asked, one ACK per block, the last ACK resent after 1 s
 * of silence (up to 5 times), block numbers wrapping at 65536.
 */
export function tftpGet(local: string, server: string, name: string, blksize: number, keep = false): Promise<TftpGot> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const parts: Buffer[] = [];
    let bytes = 0;
    let expect = 1; // wrapped block number expected next
    let size = blksize; // 512 until an OACK grants more
    let peer: { address: string; port: number } | null = null;
    let last: Buffer = rrq(name, blksize);
    let silent = 0;
    let retransmits = 0;
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const finish = (err: Error | null, lastPacket?: Buffer): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      // dgram drops a send whose socket closes before the address is resolved: close from the send callback.
      if (lastPacket !== undefined && peer !== null) sock.send(lastPacket, peer.port, peer.address, () => sock.close());
      else sock.close();
      if (err) reject(err);
      else resolve({ bytes, retransmits, ...(keep ? { data: Buffer.concat(parts) } : {}) });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (++silent > 5) return finish(new Error(`tftp ${name}: timed out after ${bytes} bytes`));
        retransmits++;
        sock.send(last, peer?.port ?? 69, peer?.address ?? server);
        arm();
      }, 1000);
    };
    sock.on('error', (e) => finish(e));
    sock.on('message', (msg, rinfo) => {
      if (peer === null) peer = { address: rinfo.address, port: rinfo.port };
      else if (rinfo.port !== peer.port) return;
      const op = msg.readUInt16BE(0);
      if (op === 5) return finish(new Error(`tftp ${name}: error ${msg.readUInt16BE(2)} ${msg.toString('latin1', 4, msg.length - 1)}`));
      if (op === 6) {
        const m = /blksize\x00(\d+)\x00/i.exec(msg.toString('latin1', 2));
        size = m ? Number(m[1]) : 512;
        last = ack(0);
      } else if (op === 3) {
        const block = msg.readUInt16BE(2);
        // A duplicate (our ACK was late): ignore it; re-ACKing duplicates is how the Sorcerer's Apprentice starts.
        if (block !== expect) return;
        const n = msg.length - 4;
        bytes += n;
        if (keep) parts.push(Buffer.from(msg.subarray(4)));
        last = ack(block);
        expect = (expect + 1) & 0xffff;
        if (n < size) return finish(null, last);
      } else return;
      silent = 0;
      sock.send(last, peer.port, peer.address);
      arm();
    });
    sock.bind(0, local, () => {
      sock.send(last, 69, server);
      arm();
    });
  });
}

export interface HttpGot {
  status: number;
  bytes: number;
  text?: string;
}

/** GET `url` from `local`, reading the body (kept as text when `keep`), over the blade's own keep-alive agent. */
export function httpGet(agent: http.Agent, local: string, url: string, keep = false, timeoutMs = 600_000): Promise<HttpGot> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, localAddress: local, timeout: timeoutMs }, (res) => {
      let bytes = 0;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (keep) parts.push(c);
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const got: HttpGot = { status, bytes, ...(keep ? { text: Buffer.concat(parts).toString('utf8') } : {}) };
        if (status !== 200) reject(new Error(`GET ${url}: HTTP ${status}${keep ? ` ${got.text?.slice(0, 200)}` : ''}`));
        else resolve(got);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

/**
 * GET `url` and count the body without keeping it: the big kernel and
 * initrd downloads. A bare HTTP/1.1 client on a net.Socket reading into
 * one reused buffer (the `onread` option), because at hundreds of MiB/s
 * Node's http client (a fresh Buffer and several JS callbacks per chunk)
 * made the *client* the bottleneck of the storm. One request per
 * connection; Content-Length must be present (swarmboot and nginx send it).
 */
export function httpSink(local: string, url: string, timeoutMs = 600_000): Promise<HttpGot> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const buffer = Buffer.allocUnsafe(1 << 20);
    let head = '';
    let status = 0;
    let length = -1;
    let body = 0;
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      sock.destroy();
      if (err) reject(err);
      else resolve({ status, bytes: body });
    };
    const sock = net.connect({
      host: u.hostname,
      port: Number(u.port || 80),
      localAddress: local,
      onread: {
        buffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          let off = 0;
          if (length < 0) {
            head += Buffer.from(buf.buffer, buf.byteOffset, n).toString('latin1');
            const end = head.indexOf('\r\n\r\n');
            if (end < 0) return true;
            status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
            length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? -1);
            if (status !== 200 || length < 0) {
              finish(new Error(`GET ${url}: HTTP ${status}${length < 0 ? ' without Content-Length' : ''}`));
              return false;
            }
            // Bytes of this read past the header block are body.
            off = n - (Buffer.byteLength(head, 'latin1') - (end + 4));
          }
          body += n - off;
          if (body >= length) finish(body === length ? null : new Error(`GET ${url}: ${body} bytes, Content-Length ${length}`));
          return true;
        },
      },
    });
    sock.setTimeout(timeoutMs, () => finish(new Error(`GET ${url}: timed out`)));
    sock.on('connect', () => sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUser-Agent: swarmboot-bench\r\nConnection: close\r\n\r\n`));
    sock.on('error', (e) => finish(e));
    sock.on('end', () => finish(length >= 0 && body === length ? null : new Error(`GET ${url}: connection closed after ${body} of ${length} bytes`)));
  });
}
