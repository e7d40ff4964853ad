/**
 * One read transfer on its own UDP socket (its TID, RFC 1350), sending
 * with RFC 7440 windows (windowsize 1 is the RFC 1350 lock-step).
 *
 * Blocks are counted internally with an unwrapped sequence number `seq`
 * (1, 2, ... up to `last`); on the wire the block number is seq mod 65536,
 * so block 65535 is followed by block 0, which is what tftp-hpa, curl,
 * atftp and iPXE expect for files larger than 65535 blocks.
 *
 * Each sent DATA packet stays in a slot (seq mod windowsize) until it is
 * acknowledged, so a retransmission resends the same bytes without going
 * back to the file, and steady state allocates nothing per block.
 */
import type { Socket, RemoteInfo } from 'node:dgram';
import type { Logger } from '../log.js';
import type { BlockReader } from './source.js';
import { OPCODE, ERROR_CODE, errorPacket } from './packet.js';

export interface Remote {
  readonly address: string;
  readonly port: number;
}

export interface TransferCounters {
  malformed: number;
  wrongTid: number;
  stray: number;
  retransmits: number;
}

export interface TransferResult {
  readonly ok: boolean;
  /** File bytes the client acknowledged. */
  readonly bytes: number;
  readonly error?: string;
}

export interface TransferParams {
  readonly socket: Socket;
  readonly remote: Remote;
  readonly reader: BlockReader;
  readonly blksize: number;
  readonly windowsize: number;
  readonly timeoutMs: number;
  readonly retries: number;
  /** Encoded OACK to send first, or null for a plain RFC 1350 transfer. */
  readonly oack: Buffer | null;
  readonly counters: TransferCounters;
  readonly log: Logger;
  readonly onDone: (result: TransferResult) => void;
}

interface Slot {
  buf: Buffer;
  len: number;
  /** Sends handed to the socket whose callback has not run; the buffer is not rewritten while > 0. */
  pending: number;
  readonly sent: () => void;
}

function newSlot(blksize: number): Slot {
  const slot: Slot = {
    buf: Buffer.allocUnsafe(4 + blksize),
    len: 0,
    pending: 0,
    sent: () => {
      slot.pending--;
    },
  };
  return slot;
}

type Phase = 'oack' | 'data' | 'done';

export class Transfer {
  private phase: Phase = 'data';
  /** First unacknowledged block. */
  private base = 1;
  /** Next block to send (rewinds to `base` on loss). */
  private next = 1;
  /** Highest block whose packet sits in its slot. */
  private filled = 0;
  private readonly last: number;
  private readonly slots: (Slot | undefined)[];
  private tries = 0;
  private filling = false;
  private heard = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly p: TransferParams;

  constructor(params: TransferParams) {
    this.p = params;
    // A final block shorter than blksize ends the transfer, so a size that is a multiple of blksize gets an empty last block.
    this.last = Math.floor(params.reader.size / params.blksize) + 1;
    this.slots = new Array<Slot | undefined>(params.windowsize);
  }

  start(): void {
    this.p.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.p.socket.on('error', (err) => this.finish(false, `socket error: ${err.message}`));
    this.timer = setTimeout(() => this.onTimeout(), this.p.timeoutMs);
    if (this.p.oack !== null) {
      this.phase = 'oack';
      this.sendRaw(this.p.oack);
    } else {
      this.pump();
    }
  }

  /**
   * True until the client answers on this TID. A repeated RRQ from the same
   * port while this holds is a retransmission of the one we are serving; after
   * it, the same port asking again is a new request (PXE ROMs reuse one port,
   * and a firmware size probe re-requests the file at once).
   */
  awaitingClient(): boolean {
    return !this.heard && this.phase !== 'done';
  }

  /** Ends the transfer from outside (server shutdown), telling the client why. */
  abort(reason: string): void {
    this.finish(false, reason, errorPacket(ERROR_CODE.UNDEFINED, reason));
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.phase === 'done') return;
    if (rinfo.port !== this.p.remote.port || rinfo.address !== this.p.remote.address) {
      // RFC 1350: answer the stranger, leave the transfer alone.
      this.p.counters.wrongTid++;
      this.p.socket.send(errorPacket(ERROR_CODE.UNKNOWN_TID), rinfo.port, rinfo.address);
      return;
    }
    this.heard = true;
    if (msg.length < 4) {
      this.p.counters.malformed++;
      return;
    }
    // Hot path: read the two words directly instead of decoding into an object per ACK.
    const op = msg.readUInt16BE(0);
    if (op === OPCODE.ACK) {
      this.onAck(msg.readUInt16BE(2));
    } else if (op === OPCODE.ERROR) {
      const end = msg.indexOf(0, 4);
      const text = msg.toString('latin1', 4, end < 0 ? msg.length : end);
      const code = msg.readUInt16BE(2);
      // Firmware often reads the OACK's tsize and then aborts to re-request with other options.
      const probe = this.phase === 'oack' ? ' after OACK (size probe?)' : '';
      this.finish(false, `client sent error ${code}${probe}: ${JSON.stringify(text)}`);
    } else {
      this.p.counters.stray++;
    }
  }

  private onAck(wire: number): void {
    if (this.phase === 'oack') {
      if (wire !== 0) return;
      this.phase = 'data';
      this.tries = 0;
      this.pump();
      return;
    }
    if (this.phase !== 'data') return;
    // The newest seq <= next-1 whose wire number is `wire`; the window is far below 65536 blocks, so this is unambiguous.
    const hi = this.next - 1;
    const seq = hi - (((hi - wire) % 65536) + 65536) % 65536;
    if (seq < this.base - 1) return; // stale ACK from before a rewind
    if (seq === this.last) {
      this.finish(true);
      return;
    }
    if (seq >= this.base) {
      this.base = seq + 1;
      this.tries = 0;
      // RFC 7440: an ACK short of the window's end means the rest was lost; resend from there.
      if (seq < hi) this.next = this.base;
      this.pump();
    } else if (this.p.windowsize > 1) {
      // A repeated ACK of the block before the window is how a windowed client asks for it again.
      this.next = this.base;
      this.pump();
    }
    // Lock-step duplicate ACK: ignored (RFC 1123 4.2.3.1, the Sorcerer's Apprentice bug).
  }

  /** Sends blocks base..base+windowsize-1 that are not yet sent, filling slots from the reader as needed. */
  private pump(): void {
    if (this.filling || this.phase !== 'data') return;
    const end = Math.min(this.base + this.p.windowsize - 1, this.last);
    while (this.next <= end) {
      if (this.next > this.filled) {
        const pending = this.fill(this.next);
        if (pending !== null) {
          this.filling = true;
          pending.then(
            () => {
              this.filling = false;
              this.pump();
            },
            (err: unknown) => {
              this.filling = false;
              const reason = `read error: ${err instanceof Error ? err.message : String(err)}`;
              this.finish(false, reason, errorPacket(ERROR_CODE.UNDEFINED, 'read error'));
            },
          );
          return;
        }
      }
      this.sendSlot(this.next);
      this.next++;
    }
    this.timer?.refresh();
  }

  /** Puts block `seq` in its slot; returns null when done synchronously, else a promise for the disk read. */
  private fill(seq: number): Promise<void> | null {
    const index = seq % this.p.windowsize;
    let slot = this.slots[index];
    if (slot === undefined || slot.pending > 0) {
      slot = newSlot(this.p.blksize);
      this.slots[index] = slot;
    }
    const target = slot;
    target.buf.writeUInt16BE(OPCODE.DATA, 0);
    target.buf.writeUInt16BE(seq & 0xffff, 2);
    const n = this.p.reader.copyBlock(seq, target.buf, 4);
    if (typeof n === 'number') {
      target.len = 4 + n;
      this.filled = seq;
      return null;
    }
    return n.then((len) => {
      target.len = 4 + len;
      this.filled = seq;
    });
  }

  private sendSlot(seq: number): void {
    const slot = this.slots[seq % this.p.windowsize];
    if (slot === undefined) return;
    slot.pending++;
    this.p.socket.send(slot.buf, 0, slot.len, this.p.remote.port, this.p.remote.address, slot.sent);
  }

  private sendRaw(buf: Buffer): void {
    this.p.socket.send(buf, this.p.remote.port, this.p.remote.address);
  }

  private onTimeout(): void {
    if (this.phase === 'done') return;
    if (this.tries >= this.p.retries) {
      this.finish(false, `timed out after ${this.p.retries} retransmissions`);
      return;
    }
    this.tries++;
    this.p.counters.retransmits++;
    this.timer?.refresh();
    if (this.phase === 'oack') {
      if (this.p.oack !== null) this.sendRaw(this.p.oack);
      return;
    }
    this.next = this.base;
    this.pump();
  }

  /** Ends the transfer once; `farewell` (an ERROR packet) is sent before the socket closes. */
  private finish(ok: boolean, error?: string, farewell?: Buffer): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const close = (): void => {
      try {
        this.p.socket.close();
      } catch {
        // already closed after a socket error
      }
    };
    // dgram resolves the address before sending and drops the send if the socket closed meanwhile: close from the callback.
    if (farewell === undefined) close();
    else this.p.socket.send(farewell, this.p.remote.port, this.p.remote.address, close);
    const bytes = ok ? this.p.reader.size : Math.min(this.p.reader.size, (this.base - 1) * this.p.blksize);
    const done = (): void => this.p.onDone(error === undefined ? { ok, bytes } : { ok, bytes, error });
    this.p.reader.close().then(done, (err: unknown) => {
      this.p.log.warn({ err }, 'tftp: closing the source failed');
      done();
    });
  }
}
