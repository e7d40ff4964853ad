/**
 * DHCP/BOOTP wire codec: bytes in, typed message out, and back. Pure.
 *
 * The `dhcp` package's own parser is not used on the wire: it throws
 * RangeErrors on truncated packets, console.error()s every option it does not
 * know (one stderr line per packet for ordinary PXE traffic), mis-steps on
 * pad bytes, rejects non-Ethernet hardware, never checks the magic cookie,
 * and turns binary options into lossy strings. decodeDhcp validates every
 * length itself, throws only DecodeError, and keeps option values raw (in
 * arrival order) so encode(decode(x)) gives x back for real client packets;
 * names and types come from the package's table (./options.ts) for dumps.
 *
 * Not interpreted: option overload (52; sname/file are kept as text) and the
 * position of pad bytes between options (dropped). Repeated options are
 * concatenated (RFC 3396) and long values split again on encode.
 */
import { DecodeError, SwarmbootError } from '../errors.js';
import {
  Opt,
  formatOptionValue,
  ipAt,
  messageTypeName,
  optionName,
  parseIpv4,
  readIp,
  readSubOptions,
  readText,
  readU16,
  readU8,
  readUserClass,
} from './options.js';

export const DHCP_MAGIC_COOKIE = 0x63825363;
/** op..file: the fixed BOOTP part. */
const BOOTP_FIXED_LEN = 236;
/** Fixed part plus magic cookie: where options start. */
export const DHCP_HEADER_LEN = 240;
/** RFC 1542: BOOTP relays and old clients drop anything shorter. */
export const BOOTP_MIN_LEN = 300;

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
/** flags bit: the client cannot receive unicast before it is configured. */
export const FLAG_BROADCAST = 0x8000;

export interface DhcpFields {
  readonly op: number;
  readonly htype: number;
  readonly hlen: number;
  readonly hops: number;
  readonly xid: number;
  readonly secs: number;
  readonly flags: number;
  readonly ciaddr: string;
  readonly yiaddr: string;
  readonly siaddr: string;
  readonly giaddr: string;
  /** All 16 bytes of the field; the hardware address is the first hlen. */
  readonly chaddr: Buffer;
  /** Text up to the first NUL, one char per byte (latin1). */
  readonly sname: string;
  readonly file: string;
  /** Raw option values by code, in wire order. Never holds 0 (pad) or 255 (end). */
  readonly options: ReadonlyMap<number, Buffer>;
}

/**
 * A decoded (or to-be-encoded) DHCP message. Immutable: replies are built
 * with `with()`. The getters read options defensively and give undefined
 * for an absent or malformed value; they never throw.
 */
export class DhcpMessage implements DhcpFields {
  readonly op: number;
  readonly htype: number;
  readonly hlen: number;
  readonly hops: number;
  readonly xid: number;
  readonly secs: number;
  readonly flags: number;
  readonly ciaddr: string;
  readonly yiaddr: string;
  readonly siaddr: string;
  readonly giaddr: string;
  readonly chaddr: Buffer;
  readonly sname: string;
  readonly file: string;
  readonly options: ReadonlyMap<number, Buffer>;

  constructor(f: DhcpFields) {
    this.op = f.op;
    this.htype = f.htype;
    this.hlen = f.hlen;
    this.hops = f.hops;
    this.xid = f.xid;
    this.secs = f.secs;
    this.flags = f.flags;
    this.ciaddr = f.ciaddr;
    this.yiaddr = f.yiaddr;
    this.siaddr = f.siaddr;
    this.giaddr = f.giaddr;
    this.chaddr = f.chaddr;
    this.sname = f.sname;
    this.file = f.file;
    this.options = f.options;
  }

  with(c: Partial<DhcpFields>): DhcpMessage {
    // Field by field: a reply is rebuilt by several handlers per request, and spreading a class instance is slow.
    return new DhcpMessage({
      op: c.op ?? this.op,
      htype: c.htype ?? this.htype,
      hlen: c.hlen ?? this.hlen,
      hops: c.hops ?? this.hops,
      xid: c.xid ?? this.xid,
      secs: c.secs ?? this.secs,
      flags: c.flags ?? this.flags,
      ciaddr: c.ciaddr ?? this.ciaddr,
      yiaddr: c.yiaddr ?? this.yiaddr,
      siaddr: c.siaddr ?? this.siaddr,
      giaddr: c.giaddr ?? this.giaddr,
      chaddr: c.chaddr ?? this.chaddr,
      sname: c.sname ?? this.sname,
      file: c.file ?? this.file,
      options: c.options ?? this.options,
    });
  }

  fields(): DhcpFields {
    const { op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file, options } = this;
    return { op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file, options };
  }

  /** The client's hardware address: the first hlen (at most 16) bytes of chaddr. */
  get hardwareAddress(): Buffer {
    return this.chaddr.subarray(0, Math.min(this.hlen, 16));
  }

  get messageType(): number | undefined {
    return readU8(this.options.get(Opt.MESSAGE_TYPE));
  }

  get requestedIp(): string | undefined {
    return readIp(this.options.get(Opt.REQUESTED_IP));
  }

  get serverId(): string | undefined {
    return readIp(this.options.get(Opt.SERVER_ID));
  }

  get parameterRequestList(): number[] | undefined {
    const v = this.options.get(Opt.PARAMETER_REQUEST_LIST);
    return v === undefined ? undefined : Array.from(v);
  }

  /** Option 93's first entry (RFC 4578 allows a list; firmware sends one). */
  get clientArch(): number | undefined {
    const v = this.options.get(Opt.CLIENT_ARCH);
    return v !== undefined && v.length >= 2 && v.length % 2 === 0 ? v.readUInt16BE(0) : undefined;
  }

  /** Class names, from either the RFC 3004 list form or a bare string (iPXE). */
  get userClass(): string[] | undefined {
    return readUserClass(this.options.get(Opt.USER_CLASS));
  }

  get vendorClass(): string | undefined {
    return readText(this.options.get(Opt.VENDOR_CLASS));
  }

  /** The 16 UUID bytes of option 97 (type 0 only; the value is 17 bytes with the type). */
  get clientUuid(): Buffer | undefined {
    const v = this.options.get(Opt.CLIENT_UUID);
    return v !== undefined && v.length === 17 && v[0] === 0 ? v.subarray(1) : undefined;
  }

  /** Option 175's sub-options; undefined when absent or malformed. */
  get ipxeEncap(): Map<number, Buffer> | undefined {
    return readSubOptions(this.options.get(Opt.IPXE_ENCAP));
  }

  get maxMessageSize(): number | undefined {
    return readU16(this.options.get(Opt.MAX_MESSAGE_SIZE));
  }

  get clientId(): Buffer | undefined {
    return this.options.get(Opt.CLIENT_ID);
  }

  get hostname(): string | undefined {
    return readText(this.options.get(Opt.HOSTNAME));
  }
}

/**
 * A mutable copy of a message's options, for building the next reply.
 * `new Map(options)` would go through the iterator protocol, one entry
 * array per option; replies are copied this way several times each.
 */
export function copyOptions(options: ReadonlyMap<number, Buffer>): Map<number, Buffer> {
  const copy = new Map<number, Buffer>();
  options.forEach((value, code) => copy.set(code, value));
  return copy;
}

function cString(buf: Buffer, start: number, len: number): string {
  if (buf[start] === 0) return '';
  const end = buf.indexOf(0, start);
  return buf.toString('latin1', start, end === -1 || end > start + len ? start + len : end);
}

/**
 * Throws DecodeError (and nothing else) for anything that is not a
 * well-formed BOOTP/DHCP message; writes nothing anywhere.
 */
export function decodeDhcp(buf: Buffer): DhcpMessage {
  if (!Buffer.isBuffer(buf)) throw new DecodeError('DHCP packet is not a Buffer');
  if (buf.length < DHCP_HEADER_LEN) {
    throw new DecodeError(`DHCP packet too short: ${buf.length} bytes, need at least ${DHCP_HEADER_LEN}`);
  }
  const op = buf.readUInt8(0);
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DecodeError(`bad BOOTP op ${op}`);
  const hlen = buf.readUInt8(2);
  if (hlen > 16) throw new DecodeError(`bad hardware address length ${hlen} (max 16)`);
  const cookie = buf.readUInt32BE(BOOTP_FIXED_LEN);
  if (cookie !== DHCP_MAGIC_COOKIE) {
    throw new DecodeError(`bad DHCP magic cookie 0x${cookie.toString(16).padStart(8, '0')}`);
  }

  // One private copy, which the option values and chaddr are views into: the
  // message never aliases (or pins) the caller's buffer, and a packet costs
  // one allocation instead of one per option.
  const own = Buffer.from(buf);
  const options = new Map<number, Buffer>();
  let i = DHCP_HEADER_LEN;
  const end = own.length;
  // A missing end option is tolerated (the value lengths were all in bounds).
  while (i < end) {
    const code = own[i]!;
    if (code === Opt.END) break;
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    if (i + 1 >= end) throw new DecodeError(`option ${code} at offset ${i} has no length byte`);
    const len = own[i + 1]!;
    const start = i + 2;
    if (start + len > end) {
      throw new DecodeError(`option ${code} at offset ${i} claims ${len} bytes, only ${end - start} left`);
    }
    const value = own.subarray(start, start + len);
    const prev = options.get(code);
    options.set(code, prev === undefined ? value : Buffer.concat([prev, value]));
    i = start + len;
  }

  return new DhcpMessage({
    op,
    htype: own[1]!,
    hlen,
    hops: own[3]!,
    xid: own.readUInt32BE(4),
    secs: own.readUInt16BE(8),
    flags: own.readUInt16BE(10),
    ciaddr: ipAt(own, 12),
    yiaddr: ipAt(own, 16),
    siaddr: ipAt(own, 20),
    giaddr: ipAt(own, 24),
    chaddr: own.subarray(28, 44),
    sname: cString(own, 44, 64),
    file: cString(own, 108, 128),
    options,
  });
}

/** Our own bad input (a reply builder's bug), not the network's: a 500-class error. */
export class EncodeError extends SwarmbootError {
  constructor(message: string) {
    super('E_DHCP_ENCODE', 500, message);
  }
}

function writeIp(out: Buffer, offset: number, field: string, ip: string): void {
  // The buffer is zeroed: an unspecified address needs no writing.
  if (ip === '0.0.0.0') return;
  const n = parseIpv4(ip);
  if (n < 0) throw new EncodeError(`${field} is not a dotted IPv4 address: ${JSON.stringify(ip)}`);
  out.writeUInt32BE(n, offset);
}

/** One byte per char, none of them NUL (or a decoder would stop there). */
function isLatin1NoNul(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0xff) return false;
  }
  return true;
}

function writeText(out: Buffer, offset: number, field: string, text: string, size: number): void {
  if (text.length === 0) return;
  // One byte per char. A full field has no NUL; decode reads it back the same.
  if (!isLatin1NoNul(text)) throw new EncodeError(`${field} has a character outside 0x01..0xff`);
  if (text.length > size) throw new EncodeError(`${field} is ${text.length} bytes, the field holds ${size}`);
  out.write(text, offset, 'latin1');
}

function checkByte(field: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new EncodeError(`${field} out of range: ${v}`);
}

/**
 * Fixed fields, options in map order (values over 255 bytes split into
 * consecutive chunks, RFC 3396), end option, zero padding to 300 bytes.
 * Throws EncodeError for a message no client could read.
 */
export function encodeDhcp(msg: DhcpFields): Buffer {
  checkByte('op', msg.op, 0xff);
  checkByte('htype', msg.htype, 0xff);
  checkByte('hlen', msg.hlen, 16);
  checkByte('hops', msg.hops, 0xff);
  checkByte('xid', msg.xid, 0xffffffff);
  checkByte('secs', msg.secs, 0xffff);
  checkByte('flags', msg.flags, 0xffff);
  if (msg.chaddr.length > 16) throw new EncodeError(`chaddr is ${msg.chaddr.length} bytes, the field holds 16`);

  // forEach rather than for-of over entries, and set() rather than copy() of a part: neither allocates per option.
  let optLen = 0;
  msg.options.forEach((value, code) => {
    if (!Number.isInteger(code) || code < 1 || code > 254) throw new EncodeError(`option code ${code} cannot be encoded`);
    optLen += value.length === 0 ? 2 : value.length + 2 * Math.ceil(value.length / 255);
  });
  // From Node's shared pool (alloc() would make a new ArrayBuffer per reply), zeroed by hand.
  const out = Buffer.allocUnsafe(Math.max(BOOTP_MIN_LEN, DHCP_HEADER_LEN + optLen + 1)).fill(0);
  out.writeUInt8(msg.op, 0);
  out.writeUInt8(msg.htype, 1);
  out.writeUInt8(msg.hlen, 2);
  out.writeUInt8(msg.hops, 3);
  out.writeUInt32BE(msg.xid, 4);
  out.writeUInt16BE(msg.secs, 8);
  out.writeUInt16BE(msg.flags, 10);
  writeIp(out, 12, 'ciaddr', msg.ciaddr);
  writeIp(out, 16, 'yiaddr', msg.yiaddr);
  writeIp(out, 20, 'siaddr', msg.siaddr);
  writeIp(out, 24, 'giaddr', msg.giaddr);
  msg.chaddr.copy(out, 28);
  writeText(out, 44, 'sname', msg.sname, 64);
  writeText(out, 108, 'file', msg.file, 128);
  out.writeUInt32BE(DHCP_MAGIC_COOKIE, BOOTP_FIXED_LEN);

  let i = DHCP_HEADER_LEN;
  msg.options.forEach((value, code) => {
    if (value.length <= 255) {
      out[i++] = code;
      out[i++] = value.length;
      out.set(value, i);
      i += value.length;
      return;
    }
    for (let off = 0; off < value.length; off += 255) {
      const len = Math.min(255, value.length - off);
      out[i++] = code;
      out[i++] = len;
      out.set(value.subarray(off, off + len), i);
      i += len;
    }
  });
  out[i] = Opt.END;
  return out;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** A stable, readable rendering for golden files and debug logs. */
export function dumpDhcp(msg: DhcpFields): string {
  const opName = msg.op === BOOTREQUEST ? 'BOOTREQUEST' : msg.op === BOOTREPLY ? 'BOOTREPLY' : '?';
  const type = readU8(msg.options.get(Opt.MESSAGE_TYPE));
  const hw = msg.chaddr.subarray(0, Math.min(msg.hlen, 16));
  const rest = msg.chaddr.subarray(hw.length);
  const lines = [
    `op: ${msg.op} ${opName}${type === undefined ? '' : ` (${messageTypeName(type)})`}`,
    `htype: ${msg.htype}  hlen: ${msg.hlen}  hops: ${msg.hops}`,
    `xid: ${hex32(msg.xid)}  secs: ${msg.secs}  flags: 0x${msg.flags.toString(16).padStart(4, '0')}${
      msg.flags & FLAG_BROADCAST ? ' (broadcast)' : ''
    }`,
    `ciaddr: ${msg.ciaddr}  yiaddr: ${msg.yiaddr}`,
    `siaddr: ${msg.siaddr}  giaddr: ${msg.giaddr}`,
    `chaddr: ${Array.from(hw, (b) => b.toString(16).padStart(2, '0')).join(':')}${
      rest.some((b) => b !== 0) ? ` (+ ${rest.toString('hex')})` : ''
    }`,
    `sname: ${JSON.stringify(msg.sname)}`,
    `file: ${JSON.stringify(msg.file)}`,
    `options:`,
  ];
  for (const [code, value] of msg.options) {
    lines.push(`  ${String(code).padStart(3)} ${optionName(code)} [${value.length}]: ${formatOptionValue(code, value)}`);
  }
  return lines.join('\n') + '\n';
}
