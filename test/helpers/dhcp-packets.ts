/**
 * DHCP client packets for tests: what udhcpc, dhclient or PXE firmware
 * would send, built with the project's own encoder. Used by the fast DHCP
 * engine tests and by the net tests' small scripted clients (the PXE port
 * 4011 exchange, the fuzzer's seed packets).
 */
import { BOOTREQUEST, FLAG_BROADCAST, DhcpMessage, encodeDhcp } from '../../server/dhcp/codec.js';
import { MessageType, Opt } from '../../server/dhcp/options.js';

export { MessageType, Opt, FLAG_BROADCAST };

export interface ClientPacket {
  type: number;
  /** Colon form. */
  mac: string;
  xid?: number;
  flags?: number;
  ciaddr?: string;
  giaddr?: string;
  requestedIp?: string;
  serverId?: string;
  /** Option 60, e.g. "PXEClient:Arch:00000:UNDI:002001". */
  vendorClass?: string;
  /** Option 93. */
  arch?: number;
  /** Option 77 as iPXE sends it (a bare string). */
  userClass?: string;
  hostname?: string;
  maxSize?: number;
  /** Option 97: 16 bytes. */
  uuid?: Buffer;
  extra?: ReadonlyArray<readonly [number, Buffer]>;
}

function ip(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.replace(/[:-]/g, ''), 'hex');
}

export function clientMessage(p: ClientPacket): DhcpMessage {
  const options = new Map<number, Buffer>([[Opt.MESSAGE_TYPE, Buffer.from([p.type])]]);
  if (p.requestedIp !== undefined) options.set(Opt.REQUESTED_IP, ip(p.requestedIp));
  if (p.serverId !== undefined) options.set(Opt.SERVER_ID, ip(p.serverId));
  if (p.maxSize !== undefined) options.set(Opt.MAX_MESSAGE_SIZE, Buffer.from([p.maxSize >> 8, p.maxSize & 255]));
  options.set(Opt.PARAMETER_REQUEST_LIST, Buffer.from([1, 3, 6, 12, 15, 28, 42, 43, 60, 66, 67]));
  if (p.hostname !== undefined) options.set(Opt.HOSTNAME, Buffer.from(p.hostname, 'latin1'));
  if (p.vendorClass !== undefined) options.set(Opt.VENDOR_CLASS, Buffer.from(p.vendorClass, 'latin1'));
  if (p.arch !== undefined) options.set(Opt.CLIENT_ARCH, Buffer.from([p.arch >> 8, p.arch & 255]));
  if (p.userClass !== undefined) options.set(Opt.USER_CLASS, Buffer.from(p.userClass, 'latin1'));
  if (p.uuid !== undefined) options.set(Opt.CLIENT_UUID, Buffer.concat([Buffer.from([0]), p.uuid]));
  for (const [code, value] of p.extra ?? []) options.set(code, value);
  const chaddr = Buffer.alloc(16);
  macBytes(p.mac).copy(chaddr);
  return new DhcpMessage({
    op: BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: p.xid ?? 0x12345678,
    secs: 0,
    flags: p.flags ?? 0,
    ciaddr: p.ciaddr ?? '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: p.giaddr ?? '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    options,
  });
}

export function clientPacket(p: ClientPacket): Buffer {
  return encodeDhcp(clientMessage(p));
}

/** Option 60 as PXE firmware of `arch` sends it. */
export function pxeVendorClass(arch: number): string {
  return `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`;
}
