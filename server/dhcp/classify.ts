/**
 * Who is asking: firmware PXE, UEFI HTTP boot, or iPXE, and on what CPU.
 * Pure; the boot decision (server/boot/decide.ts) works from this summary.
 */
import { DecodeError } from '../errors.js';
import { macFromBytes, type Mac } from '../mac.js';
import type { DhcpMessage } from './codec.js';
import { Opt } from './options.js';

export type ClientArch = 'bios' | 'efi-ia32' | 'efi-x64' | 'efi-arm32' | 'efi-arm64' | 'efi-x64-http' | 'unknown';

export interface ClientInfo {
  readonly mac: Mac;
  readonly arch: ClientArch;
  /** Option 93 as sent; absent when the client sent none (legacy PXE ROMs). */
  readonly archCode?: number;
  /** Option 60 starts with "PXEClient" (firmware PXE and iPXE alike). */
  readonly isPxe: boolean;
  /** Option 60 starts with "HTTPClient" (UEFI HTTP boot). */
  readonly isHttpClient: boolean;
  /** User class "iPXE" or an option 175 block: the client is iPXE already. */
  readonly isIpxe: boolean;
  /** Option 97's 16 UUID bytes. */
  readonly uuid?: Buffer;
  /** Option 77's class names joined with ",". */
  readonly userClass?: string;
  readonly vendorClass?: string;
}

/** RFC 4578 / IANA processor architecture types (option 93). */
export const ARCH_CODES: Readonly<Record<number, ClientArch>> = {
  0: 'bios',
  6: 'efi-ia32',
  7: 'efi-x64',
  // "EFI BC": in practice x86-64 firmware (an old IANA registry mix-up).
  9: 'efi-x64',
  10: 'efi-arm32',
  11: 'efi-arm64',
  16: 'efi-x64-http',
};

export function archFromCode(code: number | undefined): ClientArch {
  return (code !== undefined && Object.hasOwn(ARCH_CODES, code) ? ARCH_CODES[code] : undefined) ?? 'unknown';
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** macFromBytes's result for a 6-byte hardware address, built without an array and a closure per byte: it runs per packet. */
function macOf(chaddr: Buffer): Mac {
  if (chaddr.length < 6) return macFromBytes(chaddr);
  return `${HEX[chaddr[0]!]}:${HEX[chaddr[1]!]}:${HEX[chaddr[2]!]}:${HEX[chaddr[3]!]}:${HEX[chaddr[4]!]}:${HEX[chaddr[5]!]}` as Mac;
}

/**
 * Throws DecodeError for a client that has no Ethernet MAC (htype != 1 or
 * hlen != 6, e.g. InfiniBand): swarmboot keys everything on the MAC.
 */
export function classifyClient(msg: DhcpMessage): ClientInfo {
  if (msg.htype !== 1 || msg.hlen !== 6) {
    throw new DecodeError(`not an Ethernet client (htype ${msg.htype}, hlen ${msg.hlen})`);
  }
  const mac = macOf(msg.chaddr);
  const vendorClass = msg.vendorClass;
  const classes = msg.userClass;
  const archCode = msg.clientArch;
  const uuid = msg.clientUuid;
  // Assignments rather than conditional spreads (this runs per packet); every ClientInfo starts with the same five fields.
  const info: { -readonly [K in keyof ClientInfo]: ClientInfo[K] } = { mac, arch: archFromCode(archCode), isPxe: false, isHttpClient: false, isIpxe: false };
  if (archCode !== undefined) info.archCode = archCode;
  info.isPxe = vendorClass?.startsWith('PXEClient') ?? false;
  info.isHttpClient = vendorClass?.startsWith('HTTPClient') ?? false;
  info.isIpxe = (classes?.includes('iPXE') ?? false) || msg.options.has(Opt.IPXE_ENCAP);
  if (uuid !== undefined) info.uuid = Buffer.from(uuid);
  if (classes !== undefined) info.userClass = classes.join(',');
  if (vendorClass !== undefined) info.vendorClass = vendorClass;
  return info;
}
