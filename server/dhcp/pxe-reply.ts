/**
 * The boot part of DHCP replies, as small pure steps the DHCP server chains:
 * makeReply (stub) -> lease options (not here) -> withBootFields -> fitReply.
 * buildProxyOffer is the whole proxyDHCP answer (no address handed out).
 */
import type { BootDecision } from '../boot/decide.js';
import type { ClientInfo } from './classify.js';
import { BOOTREPLY, copyOptions, DhcpMessage, EncodeError, encodeDhcp } from './codec.js';
import { MessageType, Opt, encodeSubOptions } from './options.js';

/** PXE spec vendor sub-option 6, PXE_DISCOVERY_CONTROL. */
const PXE_DISCOVERY_CONTROL = 6;
/** Bit 3: skip boot server discovery and use the boot file from this reply. */
const DISCOVERY_USE_BOOTFILE = 0x08;
/** IPv4 (20) + UDP (8) headers, counted in option 57's maximum. */
const IP_UDP_HEADERS = 28;
/** RFC 2132 9.10: the smallest maximum a client may announce. */
const MIN_MAX_MESSAGE_SIZE = 576;
/** The BOOTP file field holds 127 bytes plus the NUL firmware looks for. */
const BOOTP_FILE_MAX = 127;

/** Option values that are the same in every reply (never written to once in a message). */
const VENDOR_CLASS_BYTES = { PXEClient: Buffer.from('PXEClient', 'latin1'), HTTPClient: Buffer.from('HTTPClient', 'latin1') } as const;
const USE_BOOTFILE = encodeSubOptions(new Map([[PXE_DISCOVERY_CONTROL, Uint8Array.of(DISCOVERY_USE_BOOTFILE)]]));

/** DISCOVER -> OFFER, REQUEST/INFORM -> ACK; anything else gets no reply. */
export function replyTypeFor(req: DhcpMessage): number | null {
  switch (req.messageType) {
    case MessageType.DISCOVER:
      return MessageType.OFFER;
    case MessageType.REQUEST:
    case MessageType.INFORM:
      return MessageType.ACK;
    default:
      return null;
  }
}

/**
 * A reply stub for `req`: same transaction, client hardware address, flags
 * and relay; options 53 and 54 only. ciaddr is echoed in ACKs (RFC 2131
 * table 3), which is what the port-4011 exchange needs.
 */
export function makeReply(req: DhcpMessage, type: number, serverIp: string): DhcpMessage {
  const options = new Map<number, Buffer>();
  options.set(Opt.MESSAGE_TYPE, typeByte(type));
  options.set(Opt.SERVER_ID, serverIdBytes(serverIp));
  return new DhcpMessage({
    op: BOOTREPLY,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr: type === MessageType.ACK ? req.ciaddr : '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: req.giaddr,
    // Messages are immutable, so the reply may share the request's bytes.
    chaddr: req.chaddr,
    sname: '',
    file: '',
    options,
  });
}

/**
 * Option values every reply carries, made once rather than per reply
 * (option values are never written to once in a message). Memos, not
 * state: the bytes depend only on the key.
 */
const TYPE_BYTES = new Map<number, Buffer>();
let lastServerId: { ip: string; bytes: Buffer } | null = null;
let lastServerName: { ip: string; bytes: Buffer } | null = null;

function typeByte(type: number): Buffer {
  let b = TYPE_BYTES.get(type);
  if (b === undefined) {
    b = Buffer.from([type]);
    TYPE_BYTES.set(type, b);
  }
  return b;
}

/** Option 54: the address as four bytes. */
function serverIdBytes(ip: string): Buffer {
  if (lastServerId?.ip === ip) return lastServerId.bytes;
  const octets = ip.split('.').map((o) => (/^\d{1,3}$/.test(o) ? Number(o) : NaN));
  if (octets.length !== 4 || octets.some((o) => !(o <= 255))) {
    throw new EncodeError(`server id is not a dotted IPv4 address: ${JSON.stringify(ip)}`);
  }
  lastServerId = { ip, bytes: Buffer.from(octets) };
  return lastServerId.bytes;
}

/** Option 66 is text: the address as a string. */
function serverNameBytes(ip: string): Buffer {
  if (lastServerName?.ip !== ip) lastServerName = { ip, bytes: Buffer.from(ip, 'latin1') };
  return lastServerName.bytes;
}

/** Option 60 for the reply, or undefined when the client is neither kind and the decision asks for none. */
function replyVendorClass(client: ClientInfo, decision: BootDecision): 'PXEClient' | 'HTTPClient' | undefined {
  if (decision.kind !== 'none' && decision.vendorClass !== undefined) return decision.vendorClass;
  if (client.isHttpClient) return 'HTTPClient';
  if (client.isPxe) return 'PXEClient';
  return undefined;
}

/**
 * Fills the boot fields of `reply` for `decision`: BOOTP siaddr and file,
 * options 66 and 67 (legacy ROMs read the former, others the latter, so
 * both), option 60 echoed as PXEClient/HTTPClient, option 97 echoed, and
 * for PXEClient replies option 43 telling the ROM to skip boot server discovery.
 * A 'none' decision leaves the reply as it is.
 */
export function withBootFields(
  reply: DhcpMessage,
  req: DhcpMessage,
  client: ClientInfo,
  decision: BootDecision,
  serverIp: string,
): DhcpMessage {
  if (decision.kind === 'none') return reply;
  const options = copyOptions(reply.options);
  const vendorClass = replyVendorClass(client, decision);
  if (vendorClass !== undefined) options.set(Opt.VENDOR_CLASS, VENDOR_CLASS_BYTES[vendorClass]);
  options.set(Opt.TFTP_SERVER, serverNameBytes(serverIp));
  options.set(Opt.BOOTFILE, Buffer.from(decision.file, 'latin1'));
  // Messages are immutable: the reply may share the request's bytes.
  const uuid = req.options.get(Opt.CLIENT_UUID);
  if (uuid !== undefined) options.set(Opt.CLIENT_UUID, uuid);
  // Discovery control 0x08 ("use the boot file, no PXE discovery") for every PXEClient reply, UEFI included:
  // OVMF treats a PXEClient offer without option 43 as one needing a port-4011 boot-server exchange,
  // rejects it ("PXE-E16: No valid offer received") in full mode, and falls back to HTTP boot ~80 s later.
  if (vendorClass === 'PXEClient') options.set(Opt.VENDOR_SPECIFIC, USE_BOOTFILE);
  // A URL longer than the BOOTP field still reaches the client via option 67.
  const fitsFile = decision.file.length <= BOOTP_FILE_MAX && /^[\x01-\xff]*$/.test(decision.file);
  return reply.with({ siaddr: serverIp, file: fitsFile ? decision.file : '', options });
}

/**
 * The proxyDHCP answer (a DISCOVER on port 67 gets an OFFER, a REQUEST on
 * port 4011 an ACK): no yiaddr, option 54, option 60, the boot fields.
 * Null when there is nothing to say: a client that is not PXE/HTTP boot (a
 * proxy must stay silent to them), a 'none' decision, or another message type.
 */
export function buildProxyOffer(
  req: DhcpMessage,
  client: ClientInfo,
  decision: BootDecision,
  serverIp: string,
): DhcpMessage | null {
  if (decision.kind === 'none' || !(client.isPxe || client.isHttpClient)) return null;
  const type = replyTypeFor(req);
  if (type !== MessageType.OFFER && type !== MessageType.ACK) return null;
  const stub = makeReply(req, type, serverIp);
  return fitReply(withBootFields(stub, req, client, decision, serverIp), req);
}

/** Never dropped to fit: the message type, server id, lease basics and the boot options. */
const ESSENTIAL = new Set<number>([
  Opt.MESSAGE_TYPE,
  Opt.SERVER_ID,
  Opt.SUBNET_MASK,
  Opt.ROUTER,
  Opt.LEASE_TIME,
  Opt.VENDOR_CLASS,
  Opt.TFTP_SERVER,
  Opt.BOOTFILE,
  Opt.VENDOR_SPECIFIC,
  Opt.CLIENT_UUID,
]);

/**
 * Keeps the reply within the client's maximum message size (option 57,
 * 576 when absent): drops options the client did not request, then ones it
 * did, last first, never the essential ones. Most replies fit untouched.
 */
export function fitReply(reply: DhcpMessage, req: DhcpMessage): DhcpMessage {
  const limit = Math.max(req.maxMessageSize ?? MIN_MAX_MESSAGE_SIZE, MIN_MAX_MESSAGE_SIZE) - IP_UDP_HEADERS;
  if (encodeDhcp(reply).length <= limit) return reply;
  const requested = new Set(req.parameterRequestList ?? []);
  const options = new Map(reply.options);
  const droppable = [...options.keys()].filter((c) => !ESSENTIAL.has(c));
  const order = [
    ...droppable.filter((c) => !requested.has(c)).reverse(),
    ...droppable.filter((c) => requested.has(c)).reverse(),
  ];
  let fitted = reply;
  for (const code of order) {
    options.delete(code);
    fitted = reply.with({ options: new Map(options) });
    if (encodeDhcp(fitted).length <= limit) break;
  }
  return fitted;
}
