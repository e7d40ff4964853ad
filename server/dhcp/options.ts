/**
 * DHCP option codes, names and value formats.
 *
 * Names and value types come from the `dhcp` package's option table, so the
 * two cannot disagree; the PXE options it lacks are registered into that
 * table here, once, when this module loads. Only the table is reused: its
 * SeqBuffer readers throw on short input and console.error() unknown codes,
 * so values are decoded by the small total functions below instead (they
 * return undefined or a hex fallback, never throw).
 */
import dhcpOptions from 'dhcp/lib/options.js';
import type { OptionSpec, OptionType } from 'dhcp/lib/options.js';

export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  IPXE_ENCAP: 175,
  END: 255,
} as const;

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/**
 * What we add to the package's table. Types are the package's own, so its
 * encoder could write them too; the binary ones are UInt8s because their
 * inner structure (sub-options, RFC 3004 lists) is ours to interpret.
 */
const PXE_OPTIONS: ReadonlyArray<readonly [number, OptionSpec]> = [
  [Opt.VENDOR_SPECIFIC, { name: 'Vendor Specific Information', type: 'UInt8s', config: 'vendor' }],
  [Opt.USER_CLASS, { name: 'User Class', type: 'UInt8s', attr: 'userClass' }], // RFC 3004
  [Opt.CLIENT_ARCH, { name: 'Client System Architecture', type: 'UInt16s', attr: 'clientArch' }], // RFC 4578
  [Opt.CLIENT_NDI, { name: 'Client Network Device Interface', type: 'UInt8s', attr: 'clientNdi' }], // RFC 4578
  [Opt.CLIENT_UUID, { name: 'Client Machine Identifier', type: 'UInt8s', attr: 'clientUuid' }], // RFC 4578
  [Opt.IPXE_ENCAP, { name: 'iPXE Encapsulated Options', type: 'UInt8s', attr: 'ipxeEncap' }],
];

/** Idempotent: the table is module-level state in the package, shared by every importer. */
export function registerPxeOptions(): void {
  for (const [code, spec] of PXE_OPTIONS) {
    if (dhcpOptions.opts[code] === undefined) dhcpOptions.addOption(code, spec);
  }
}
registerPxeOptions();

/** The package's spec for a real option code (1..254), if it knows one. */
export function optionSpec(code: number): Readonly<OptionSpec> | undefined {
  if (!Number.isInteger(code) || code < 1 || code > 254) return undefined;
  return Object.hasOwn(dhcpOptions.opts, code) ? dhcpOptions.opts[code] : undefined;
}

export function optionName(code: number): string {
  return optionSpec(code)?.name ?? 'Unknown';
}

export function messageTypeName(code: number): string {
  const names = optionSpec(Opt.MESSAGE_TYPE)?.enum;
  return (names && Object.hasOwn(names, code) ? names[code] : undefined) ?? `TYPE${code}`;
}

// ---- value readers: total functions over raw option bytes ----

/** Most address fields of a request are empty; one shared string saves building it per field. */
const UNSPECIFIED = '0.0.0.0';

export function ipAt(buf: Uint8Array, offset: number): string {
  const a = buf[offset] ?? 0;
  const b = buf[offset + 1] ?? 0;
  const c = buf[offset + 2] ?? 0;
  const d = buf[offset + 3] ?? 0;
  return (a | b | c | d) === 0 ? UNSPECIFIED : `${a}.${b}.${c}.${d}`;
}

/**
 * A canonical dotted quad (four decimal octets 0..255, no leading zeros,
 * nothing else) as an unsigned 32-bit number, or -1. Hand-rolled rather
 * than a regular expression: every reply's address fields and every
 * address the lease code looks at go through it.
 */
export function parseIpv4(ip: string): number {
  const len = ip.length;
  if (len < 7 || len > 15) return -1;
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // A leading zero is allowed only as the whole octet.
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else {
      return -1;
    }
  }
  if (digits === 0 || dots !== 3) return -1;
  return n * 256 + octet;
}

export function readIp(value: Buffer | undefined): string | undefined {
  return value?.length === 4 ? ipAt(value, 0) : undefined;
}

export function readU8(value: Buffer | undefined): number | undefined {
  return value?.length === 1 ? value[0] : undefined;
}

export function readU16(value: Buffer | undefined): number | undefined {
  return value?.length === 2 ? value.readUInt16BE(0) : undefined;
}

/** Text options are octets; latin1 maps each byte to one char so nothing is lost. */
export function readText(value: Buffer | undefined): string | undefined {
  return value === undefined ? undefined : value.toString('latin1');
}

/**
 * RFC 3004 user class: a list of length-prefixed class names. Clients that
 * predate it (iPXE among them) send one bare string; we read the value as
 * the RFC form only when it parses exactly, else as one plain name.
 */
export function readUserClass(value: Buffer | undefined): string[] | undefined {
  if (value === undefined || value.length === 0) return undefined;
  const classes: string[] = [];
  let i = 0;
  while (i < value.length) {
    const len = value[i] ?? 0;
    if (len === 0 || i + 1 + len > value.length) return [value.toString('latin1')];
    classes.push(value.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  return classes;
}

/**
 * Encapsulated options (43, 175): code/length/value triples ending at 255
 * or the end of the value. Undefined when a length overruns.
 */
export function readSubOptions(value: Buffer | undefined): Map<number, Buffer> | undefined {
  if (value === undefined) return undefined;
  const out = new Map<number, Buffer>();
  let i = 0;
  while (i < value.length) {
    const code = value[i] ?? 0;
    if (code === Opt.END) break;
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    const len = value[i + 1];
    if (len === undefined || i + 2 + len > value.length) return undefined;
    out.set(code, Buffer.from(value.subarray(i + 2, i + 2 + len)));
    i += 2 + len;
  }
  return out;
}

export function encodeSubOptions(subs: ReadonlyMap<number, Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (const [code, v] of subs) parts.push(Buffer.from([code, v.length]), Buffer.from(v));
  parts.push(Buffer.from([Opt.END]));
  return Buffer.concat(parts);
}

function hex(value: Buffer): string {
  return value.length === 0 ? '(empty)' : value.toString('hex').replace(/(..)(?!$)/g, '$1 ');
}

function quoted(text: string): string {
  return JSON.stringify(text);
}

function formatByType(type: OptionType | undefined, v: Buffer): string | undefined {
  switch (type) {
    case 'IP':
      return readIp(v);
    case 'IPs':
      return v.length > 0 && v.length % 4 === 0
        ? Array.from({ length: v.length / 4 }, (_, k) => ipAt(v, k * 4)).join(', ')
        : undefined;
    case 'UInt8':
      return v.length === 1 ? String(v[0]) : undefined;
    case 'Int8':
      return v.length === 1 ? String(v.readInt8(0)) : undefined;
    case 'UInt16':
      return v.length === 2 ? String(v.readUInt16BE(0)) : undefined;
    case 'Int16':
      return v.length === 2 ? String(v.readInt16BE(0)) : undefined;
    case 'UInt32':
      return v.length === 4 ? String(v.readUInt32BE(0)) : undefined;
    case 'Int32':
      return v.length === 4 ? String(v.readInt32BE(0)) : undefined;
    case 'ASCII':
    case 'UTF8':
      return quoted(v.toString('latin1'));
    case 'Bool':
      return v.length === 0 ? 'true' : undefined;
    case 'UInt16s':
      return v.length > 0 && v.length % 2 === 0
        ? Array.from({ length: v.length / 2 }, (_, k) => v.readUInt16BE(k * 2)).join(', ')
        : undefined;
    default:
      return undefined;
  }
}

function formatSubOptions(v: Buffer): string | undefined {
  const subs = readSubOptions(v);
  if (subs === undefined) return undefined;
  return [...subs].map(([c, s]) => `{${c}: ${hex(s)}}`).join(' ') || '(none)';
}

/**
 * One option value in readable form, for dumps and logs. Options whose
 * bytes do not fit their declared type fall back to hex with a marker, so a
 * dump of a malformed packet still shows what arrived.
 */
export function formatOptionValue(code: number, v: Buffer): string {
  let text: string | undefined;
  switch (code) {
    case Opt.MESSAGE_TYPE:
      text = v.length === 1 ? `${v[0]} ${messageTypeName(v[0] ?? 0)}` : undefined;
      break;
    case Opt.PARAMETER_REQUEST_LIST:
      text = Array.from(v).join(', ') || '(none)';
      break;
    case Opt.CLIENT_ID:
      text = hex(v);
      break;
    case Opt.USER_CLASS: {
      const classes = readUserClass(v);
      text = classes === undefined ? undefined : classes.map(quoted).join(', ');
      break;
    }
    case Opt.CLIENT_NDI:
      text = v.length === 3 && v[0] === 1 ? `UNDI ${v[1]}.${v[2]}` : undefined;
      break;
    case Opt.CLIENT_UUID:
      text = v.length === 17 && v[0] === 0 ? `type 0, ${v.subarray(1).toString('hex')}` : undefined;
      break;
    case Opt.VENDOR_SPECIFIC:
    case Opt.IPXE_ENCAP:
      text = formatSubOptions(v);
      break;
    default: {
      const type = optionSpec(code)?.type;
      text = type === 'UInt8s' ? hex(v) : formatByType(type, v);
    }
  }
  return text ?? `${hex(v)} (malformed)`;
}
