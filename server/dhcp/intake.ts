/**
 * Between the sockets and the handler chain: two bounded queues, so a
 * boot storm larger than the server can answer degrades gracefully
 * instead of collapsing.
 *
 * Datagrams are only peeked at (option 53) on arrival, which is cheap, so
 * the kernel's receive buffer is emptied quickly; the work happens in
 * batches between socket reads. Messages that finish an exchange already
 * started (REQUEST, DECLINE, RELEASE, INFORM, the port-4011 exchange) go
 * first: answering them completes a boot, while a DISCOVER only starts
 * one. When the DISCOVER queue is full its oldest entries are dropped, as
 * they are the likeliest to have been retransmitted or given up on by now.
 * Pure bookkeeping: no sockets, no clock.
 */
import { DHCP_HEADER_LEN, DHCP_MAGIC_COOKIE } from './codec.js';
import { SERVER_PORT } from './handlers.js';
import { MessageType, Opt } from './options.js';

/** Option 53 of a raw packet without decoding it; undefined when it cannot be found. */
export function peekMessageType(buf: Buffer): number | undefined {
  if (buf.length < DHCP_HEADER_LEN || buf.readUInt32BE(DHCP_HEADER_LEN - 4) !== DHCP_MAGIC_COOKIE) return undefined;
  let i = DHCP_HEADER_LEN;
  while (i + 1 < buf.length) {
    const code = buf[i]!;
    if (code === Opt.END) return undefined;
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    const len = buf[i + 1]!;
    if (code === Opt.MESSAGE_TYPE) return len === 1 && i + 2 < buf.length ? buf[i + 2] : undefined;
    i += 2 + len;
  }
  return undefined;
}

/** A FIFO with O(1) shift (Array#shift is O(n) on long arrays). */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export interface Arrival {
  readonly buf: Buffer;
  readonly from: { readonly address: string; readonly port: number };
  readonly port: number;
}

export interface IntakeLimits {
  /** DISCOVERs (and anything unreadable) waiting; the oldest are dropped beyond it. */
  readonly maxFresh: number;
  /** Exchange-finishing messages waiting; the oldest are dropped beyond it. */
  readonly maxUrgent: number;
}

export const DEFAULT_INTAKE_LIMITS: IntakeLimits = { maxFresh: 2048, maxUrgent: 8192 };

export class Intake {
  private readonly urgent = new Fifo<Arrival>();
  private readonly fresh = new Fifo<Arrival>();
  private readonly limits: IntakeLimits;

  constructor(limits: IntakeLimits = DEFAULT_INTAKE_LIMITS) {
    this.limits = limits;
  }

  get length(): number {
    return this.urgent.length + this.fresh.length;
  }

  /** Queues one datagram; returns how many older ones were dropped to make room (0 or 1). */
  push(a: Arrival): number {
    // Port 4011 carries only the PXE exchange's second half.
    const type = a.port === SERVER_PORT ? peekMessageType(a.buf) : MessageType.REQUEST;
    const urgent = type !== undefined && type !== MessageType.DISCOVER;
    const q = urgent ? this.urgent : this.fresh;
    q.push(a);
    if (q.length > (urgent ? this.limits.maxUrgent : this.limits.maxFresh)) {
      q.shift();
      return 1;
    }
    return 0;
  }

  /** The next datagram to handle: exchange-finishing ones first. */
  next(): Arrival | undefined {
    return this.urgent.shift() ?? this.fresh.shift();
  }

  clear(): void {
    this.urgent.clear();
    this.fresh.clear();
  }
}
