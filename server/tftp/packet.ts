/**
 * TFTP packet codec (RFC 1350, with RFC 2347 options and OACK). Pure:
 * bytes in, typed packet out, and back; no sockets. `decodePacket` throws
 * DecodeError for anything malformed so the server can count and drop it.
 *
 * The opcode and error-code numbers come from the `tftp` package's tables
 * (the part of that package that is sound); the codec is ours because the
 * package's parser rewrites file names (path.normalize) before any policy
 * sees them, throws plain objects, and its server reads the opcode of
 * packets too short to have one (see test/server/tftp/package-audit.test.ts).
 */
import opcodes from 'tftp/lib/protocol/opcodes.js';
import tftpErrors from 'tftp/lib/protocol/errors.js';
import { DecodeError } from '../errors.js';

export const OPCODE = {
  RRQ: opcodes.RRQ,
  WRQ: opcodes.WRQ,
  DATA: opcodes.DATA,
  ACK: opcodes.ACK,
  ERROR: opcodes.ERROR,
  OACK: opcodes.OACK,
} as const;

export type Opcode = keyof typeof OPCODE;

/** RFC 1350 error codes (0 = "not defined, see message"). */
export const ERROR_CODE = {
  UNDEFINED: 0,
  NOT_FOUND: tftpErrors.ENOENT.code,
  ACCESS: tftpErrors.EACCESS.code,
  ILLEGAL_OP: tftpErrors.EBADOP.code,
  UNKNOWN_TID: tftpErrors.ETID.code,
  OPTION_REFUSED: tftpErrors.EDENY.code,
} as const;

/** The RFC's wording for each code, for error packets we send. */
export const ERROR_TEXT: Readonly<Record<number, string>> = {
  [ERROR_CODE.NOT_FOUND]: tftpErrors.ENOENT.message,
  [ERROR_CODE.ACCESS]: tftpErrors.EACCESS.message,
  [ERROR_CODE.ILLEGAL_OP]: tftpErrors.EBADOP.message,
  [ERROR_CODE.UNKNOWN_TID]: tftpErrors.ETID.message,
  [ERROR_CODE.OPTION_REFUSED]: tftpErrors.EDENY.message,
};

export type TftpMode = 'octet' | 'netascii' | 'mail';

/** One RFC 2347 option as sent: the name keeps the sender's spelling (names are case-insensitive). */
export interface TftpOption {
  readonly name: string;
  readonly value: string;
}

export type TftpPacket =
  | { readonly op: 'RRQ' | 'WRQ'; readonly filename: string; readonly mode: TftpMode; readonly options: readonly TftpOption[] }
  | { readonly op: 'DATA'; readonly block: number; readonly data: Uint8Array }
  | { readonly op: 'ACK'; readonly block: number }
  | { readonly op: 'ERROR'; readonly code: number; readonly message: string }
  | { readonly op: 'OACK'; readonly options: readonly TftpOption[] };

export type TftpRequest = Extract<TftpPacket, { op: 'RRQ' | 'WRQ' }>;

const OP_NAME = new Map<number, Opcode>(Object.entries(OPCODE).map(([name, num]) => [num, name as Opcode]));
const MODES: ReadonlySet<string> = new Set<TftpMode>(['octet', 'netascii', 'mail']);

/** Reads a NUL-terminated string at `at`; null when no NUL follows. latin1 keeps every byte (the path check rejects non-ASCII). */
function cstring(buf: Uint8Array, at: number): { text: string; next: number } | null {
  const end = buf.indexOf(0, at);
  if (end < 0) return null;
  return { text: Buffer.from(buf.buffer, buf.byteOffset + at, end - at).toString('latin1'), next: end + 1 };
}

/**
 * Option pairs up to the end of the packet. A trailing half pair (a name
 * with no value, or bytes without a NUL) is ignored rather than fatal:
 * tftp-hpa does the same, and some firmware pads requests.
 */
function decodeOptions(buf: Uint8Array, at: number): TftpOption[] {
  const options: TftpOption[] = [];
  let pos = at;
  while (pos < buf.length) {
    const name = cstring(buf, pos);
    if (name === null) break;
    const value = cstring(buf, name.next);
    if (value === null) break;
    if (name.text !== '') options.push({ name: name.text, value: value.text });
    pos = value.next;
  }
  return options;
}

export function decodePacket(buf: Uint8Array): TftpPacket {
  if (buf.length < 2) throw new DecodeError(`tftp: packet of ${buf.length} byte(s) is shorter than an opcode`);
  const code = (buf[0]! << 8) | buf[1]!;
  const op = OP_NAME.get(code);
  if (op === undefined) throw new DecodeError(`tftp: unknown opcode ${code}`);
  switch (op) {
    case 'RRQ':
    case 'WRQ': {
      const filename = cstring(buf, 2);
      if (filename === null) throw new DecodeError(`tftp: ${op} file name is not NUL-terminated`);
      const mode = cstring(buf, filename.next);
      if (mode === null) throw new DecodeError(`tftp: ${op} mode is not NUL-terminated`);
      const lower = mode.text.toLowerCase();
      if (!MODES.has(lower)) throw new DecodeError(`tftp: ${op} has unknown mode ${JSON.stringify(mode.text)}`);
      return { op, filename: filename.text, mode: lower as TftpMode, options: decodeOptions(buf, mode.next) };
    }
    case 'DATA':
      if (buf.length < 4) throw new DecodeError('tftp: DATA shorter than 4 bytes');
      return { op, block: (buf[2]! << 8) | buf[3]!, data: buf.subarray(4) };
    case 'ACK':
      // Longer ACKs are accepted (extra bytes ignored), as tftp-hpa does.
      if (buf.length < 4) throw new DecodeError('tftp: ACK shorter than 4 bytes');
      return { op, block: (buf[2]! << 8) | buf[3]! };
    case 'ERROR': {
      if (buf.length < 4) throw new DecodeError('tftp: ERROR shorter than 4 bytes');
      // A missing NUL only costs the peer its message text; keep what is there.
      const message = cstring(buf, 4)?.text ?? Buffer.from(buf.subarray(4)).toString('latin1');
      return { op, code: (buf[2]! << 8) | buf[3]!, message };
    }
    case 'OACK':
      return { op, options: decodeOptions(buf, 2) };
  }
}

function header(op: number, word: number, extra: number): Buffer {
  const buf = Buffer.allocUnsafe(4 + extra);
  buf.writeUInt16BE(op, 0);
  buf.writeUInt16BE(word & 0xffff, 2);
  return buf;
}

function strings(op: number, parts: readonly string[]): Buffer {
  const bodies = parts.map((s) => Buffer.from(s, 'latin1'));
  const buf = Buffer.alloc(2 + bodies.reduce((n, b) => n + b.length + 1, 0));
  buf.writeUInt16BE(op, 0);
  let pos = 2;
  for (const b of bodies) {
    pos += b.copy(buf, pos) + 1; // the +1 leaves the NUL Buffer.alloc put there
  }
  return buf;
}

const flatten = (options: readonly TftpOption[]): string[] => options.flatMap((o) => [o.name, o.value]);

export function encodePacket(p: TftpPacket): Buffer {
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return strings(OPCODE[p.op], [p.filename, p.mode, ...flatten(p.options)]);
    case 'DATA': {
      const buf = header(OPCODE.DATA, p.block, p.data.length);
      buf.set(p.data, 4);
      return buf;
    }
    case 'ACK':
      return header(OPCODE.ACK, p.block, 0);
    case 'ERROR': {
      const text = Buffer.from(p.message, 'latin1');
      const buf = header(OPCODE.ERROR, p.code, text.length + 1);
      text.copy(buf, 4);
      buf[buf.length - 1] = 0;
      return buf;
    }
    case 'OACK':
      return strings(OPCODE.OACK, flatten(p.options));
  }
}

/** An ERROR packet with the RFC text for `code` unless a message is given. */
export function errorPacket(code: number, message?: string): Buffer {
  return encodePacket({ op: 'ERROR', code, message: message ?? ERROR_TEXT[code] ?? 'Error' });
}

/** One readable line per packet, for golden files and logs. */
export function dumpPacket(p: TftpPacket): string {
  const opts = (options: readonly TftpOption[]): string => options.map((o) => ` ${o.name}=${JSON.stringify(o.value)}`).join('');
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return `${p.op} file=${JSON.stringify(p.filename)} mode=${p.mode}${opts(p.options)}`;
    case 'DATA':
      return `DATA block=${p.block} bytes=${p.data.length}`;
    case 'ACK':
      return `ACK block=${p.block}`;
    case 'ERROR':
      return `ERROR code=${p.code} message=${JSON.stringify(p.message)}`;
    case 'OACK':
      return `OACK${opts(p.options)}`;
  }
}
