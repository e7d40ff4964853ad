import t from 'tap';
import { testProfile } from '../../helpers/profile.js';
import { decideBoot, type BootDecision, type BootEnv } from '../../../server/boot/decide.js';
import type { ClientArch, ClientInfo } from '../../../server/dhcp/classify.js';
import type { Profile } from '../../../server/profiles/types.js';
import type { Mac } from '../../../server/mac.js';

const MAC = 'aa:bb:cc:dd:ee:01' as Mac;
const URL = 'http://10.0.0.1:8080';
const IPXE_URL = `${URL}/ipxe?mac=aa-bb-cc-dd-ee-01`;

const profile = testProfile;

function client(arch: ClientArch, archCode: number | undefined, over: Partial<ClientInfo> = {}): ClientInfo {
  return {
    mac: MAC,
    arch,
    ...(archCode !== undefined && { archCode }),
    isPxe: true,
    isHttpClient: false,
    isIpxe: false,
    ...over,
  };
}

function env(assets: string[] = []): BootEnv {
  // Trailing slash on purpose: decideBoot must not produce "//ipxe".
  return { serverUrl: `${URL}/`, serverIp: '10.0.0.1', hasAsset: (name) => assets.includes(name) };
}

const ipxe = { isIpxe: true };
const http = { isPxe: false, isHttpClient: true };
const ALL = ['syslinux.efi', 'arm64/ipxe.efi', 'arm64/snponly.efi', 'i386/ipxe.efi', 'arm32/ipxe.efi'];

/** Omit, applied to each member of the union. */
type Want = BootDecision extends infer D ? (D extends unknown ? Omit<D, 'reason'> : never) : never;
type Row = [string, ClientInfo, Profile, BootEnv, Want, RegExp];
const rows: Row[] = [
  ['iPXE (user class) gets the script URL', client('bios', 0, ipxe), profile(), env(), { kind: 'http', file: IPXE_URL, vendorClass: 'PXEClient' }, /client is iPXE/],
  ['iPXE on UEFI gets the script URL too', client('efi-x64', 7, ipxe), profile(), env(), { kind: 'http', file: IPXE_URL, vendorClass: 'PXEClient' }, /client is iPXE/],
  ['iPXE beats a pxelinux profile', client('bios', 0, ipxe), profile({ boot: 'pxelinux' }), env(), { kind: 'http', file: IPXE_URL, vendorClass: 'PXEClient' }, /iPXE script URL/],
  ['force_ipxe (FlexBoot ROM)', client('efi-x64', 7), profile({ forceIpxe: true }), env(), { kind: 'http', file: IPXE_URL, vendorClass: 'PXEClient' }, /force_ipxe/],
  ['BIOS firmware chainloads undionly.kpxe', client('bios', 0), profile(), env(), { kind: 'tftp', file: 'undionly.kpxe', vendorClass: 'PXEClient' }, /^BIOS: chainload iPXE/],
  ['no option 93 is a legacy BIOS ROM', client('unknown', undefined), profile(), env(), { kind: 'tftp', file: 'undionly.kpxe', vendorClass: 'PXEClient' }, /no option 93, treated as BIOS/],
  ['a non-PXE client gets no option 60', client('unknown', undefined, { isPxe: false }), profile(), env(), { kind: 'tftp', file: 'undionly.kpxe' }, /treated as BIOS/],
  ['EFI x64 gets the profile binary', client('efi-x64', 7), profile(), env(), { kind: 'tftp', file: 'ipxe.efi', vendorClass: 'PXEClient' }, /efi-x64 \(option 93 = 7\)/],
  ['EFI BC (9) is x64', client('efi-x64', 9), profile({ efiBinary: 'snponly.efi' }), env(), { kind: 'tftp', file: 'snponly.efi', vendorClass: 'PXEClient' }, /option 93 = 9/],
  ['ARM64 with the asset', client('efi-arm64', 11), profile(), env(ALL), { kind: 'tftp', file: 'arm64/ipxe.efi', vendorClass: 'PXEClient' }, /arm64\/ipxe\.efi/],
  ['ARM64 snponly preferred when the profile says so', client('efi-arm64', 11), profile({ efiBinary: 'snponly.efi' }), env(ALL), { kind: 'tftp', file: 'arm64/snponly.efi', vendorClass: 'PXEClient' }, /snponly/],
  ['ARM64 falls back to the other binary', client('efi-arm64', 11), profile({ efiBinary: 'snponly.efi' }), env(['arm64/ipxe.efi']), { kind: 'tftp', file: 'arm64/ipxe.efi', vendorClass: 'PXEClient' }, /arm64\/ipxe\.efi/],
  ['ARM64 without the asset: none', client('efi-arm64', 11), profile(), env(), { kind: 'none' }, /no ARM64 iPXE build \(arm64\/ipxe\.efi\)/],
  ['EFI IA32 with the asset', client('efi-ia32', 6), profile(), env(ALL), { kind: 'tftp', file: 'i386/ipxe.efi', vendorClass: 'PXEClient' }, /i386/],
  ['EFI IA32 without the asset: none', client('efi-ia32', 6), profile(), env(), { kind: 'none' }, /no 32-bit x86 iPXE build/],
  ['ARM32 without the asset: none', client('efi-arm32', 10), profile(), env(), { kind: 'none' }, /no ARM32/],
  ['unknown option 93 code: none', client('unknown', 42), profile(), env(ALL), { kind: 'none' }, /unsupported client architecture: option 93 = 42/],
  ['UEFI HTTP boot gets ipxe.efi by URL', client('efi-x64-http', 16, http), profile(), env(), { kind: 'http', file: `${URL}/assets/ipxe.efi`, vendorClass: 'HTTPClient' }, /UEFI HTTP boot/],
  ['HTTPClient with an x64 arch code', client('efi-x64', 7, http), profile(), env(), { kind: 'http', file: `${URL}/assets/ipxe.efi`, vendorClass: 'HTTPClient' }, /UEFI HTTP boot/],
  ['ARM64 HTTP boot (19) with the asset', client('unknown', 19, http), profile(), env(ALL), { kind: 'http', file: `${URL}/assets/arm64/ipxe.efi`, vendorClass: 'HTTPClient' }, /arm64\/ipxe\.efi/],
  ['ARM64 HTTP boot (19) without it: none', client('unknown', 19, http), profile(), env(), { kind: 'none' }, /no arm64\/ipxe\.efi/],
  ['pxelinux profile, BIOS', client('bios', 0), profile({ boot: 'pxelinux' }), env(), { kind: 'tftp', file: 'pxelinux.0', vendorClass: 'PXEClient' }, /boots pxelinux/],
  ['pxelinux profile, legacy ROM', client('unknown', undefined), profile({ boot: 'pxelinux' }), env(), { kind: 'tftp', file: 'pxelinux.0', vendorClass: 'PXEClient' }, /treated as BIOS/],
  ['pxelinux profile, UEFI with syslinux.efi', client('efi-x64', 7), profile({ boot: 'pxelinux' }), env(ALL), { kind: 'tftp', file: 'syslinux.efi', vendorClass: 'PXEClient' }, /syslinux\.efi/],
  ['pxelinux profile, UEFI without syslinux.efi', client('efi-x64', 7), profile({ boot: 'pxelinux', efiBinary: 'snponly.efi' }), env(), { kind: 'tftp', file: 'snponly.efi', vendorClass: 'PXEClient' }, /syslinux\.efi is not in the assets: falling back to iPXE snponly\.efi/],
  ['pxelinux profile, ARM64: iPXE', client('efi-arm64', 11), profile({ boot: 'pxelinux' }), env(ALL), { kind: 'tftp', file: 'arm64/ipxe.efi', vendorClass: 'PXEClient' }, /pxelinux has no build for it/],
  ['pxelinux profile, HTTP boot: iPXE by URL', client('efi-x64-http', 16, http), profile({ boot: 'pxelinux' }), env(ALL), { kind: 'http', file: `${URL}/assets/ipxe.efi`, vendorClass: 'HTTPClient' }, /pxelinux has no build/],
];

for (const [name, c, p, e, want, reason] of rows) {
  t.test(name, async (t) => {
    const { reason: why, ...rest } = decideBoot(c, p, e);
    t.strictSame(rest, want);
    t.match(why, reason);
  });
}
