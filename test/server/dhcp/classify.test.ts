import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeDhcp, type DhcpMessage } from '../../../server/dhcp/codec.js';
import { archFromCode, classifyClient, type ClientInfo } from '../../../server/dhcp/classify.js';
import { Opt } from '../../../server/dhcp/options.js';
import { DecodeError } from '../../../server/errors.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/dhcp/', import.meta.url));
const load = (name: string): DhcpMessage => decodeDhcp(readFileSync(`${FIXTURES}${name}.bin`));
const UUID = '00112233445566778899aabbccddeeff';

/** Fields compared; mac is the same for every capture (02:5b:00:00:00:01). */
type Expected = Omit<ClientInfo, 'mac' | 'uuid'> & { uuid?: string };

const rows: Array<[string, Expected]> = [
  ['udhcpc-bios-discover', { arch: 'bios', archCode: 0, isPxe: true, isHttpClient: false, isIpxe: false, uuid: UUID, vendorClass: 'PXEClient:Arch:00000:UNDI:002001' }],
  ['udhcpc-efi-x64-discover', { arch: 'efi-x64', archCode: 7, isPxe: true, isHttpClient: false, isIpxe: false, uuid: UUID, vendorClass: 'PXEClient:Arch:00007:UNDI:003016' }],
  ['udhcpc-efi-bc-discover', { arch: 'efi-x64', archCode: 9, isPxe: true, isHttpClient: false, isIpxe: false, vendorClass: 'PXEClient:Arch:00009:UNDI:003016' }],
  ['udhcpc-ia32-request', { arch: 'efi-ia32', archCode: 6, isPxe: true, isHttpClient: false, isIpxe: false, vendorClass: 'PXEClient:Arch:00006:UNDI:003016' }],
  ['udhcpc-arm64-discover', { arch: 'efi-arm64', archCode: 11, isPxe: true, isHttpClient: false, isIpxe: false, uuid: UUID, vendorClass: 'PXEClient:Arch:00011:UNDI:003000' }],
  ['udhcpc-http-discover', { arch: 'efi-x64-http', archCode: 16, isPxe: false, isHttpClient: true, isIpxe: false, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000' }],
  ['udhcpc-ipxe-discover', { arch: 'bios', archCode: 0, isPxe: true, isHttpClient: false, isIpxe: true, userClass: 'iPXE', vendorClass: 'PXEClient:Arch:00000:UNDI:002001' }],
  ['udhcpc-rfc3004-request', { arch: 'efi-x64', archCode: 7, isPxe: true, isHttpClient: false, isIpxe: true, userClass: 'iPXE,rack1', vendorClass: 'PXEClient:Arch:00007:UNDI:003016' }],
  ['dhclient-efi-x64-discover', { arch: 'efi-x64', archCode: 7, isPxe: true, isHttpClient: false, isIpxe: true, uuid: UUID, userClass: 'iPXE', vendorClass: 'PXEClient:Arch:00007:UNDI:003016' }],
  ['udhcpc-plain-discover', { arch: 'unknown', isPxe: false, isHttpClient: false, isIpxe: false, vendorClass: 'udhcp 1.35.0' }],
  ['dhclient-plain-request', { arch: 'unknown', isPxe: false, isHttpClient: false, isIpxe: false }],
];

t.test('captured clients', async (t) => {
  for (const [name, want] of rows) {
    const { mac, uuid, ...rest } = classifyClient(load(name));
    t.equal(mac, '02:5b:00:00:00:01', `${name}: mac`);
    t.same({ ...rest, ...(uuid && { uuid: uuid.toString('hex') }) }, want, name);
    t.strictSame(Object.keys(rest).sort(), Object.keys(want).filter((k) => k !== 'uuid').sort(), `${name}: no extra keys`);
  }
});

t.test('edited packets', async (t) => {
  const base = load('udhcpc-bios-discover');
  const edit = (set: Array<[number, Buffer | null]>): DhcpMessage => {
    const options = new Map(base.options);
    for (const [code, v] of set) {
      if (v === null) options.delete(code);
      else options.set(code, v);
    }
    return base.with({ options });
  };
  const cases: Array<[string, DhcpMessage, Partial<ClientInfo>]> = [
    ['legacy ROM without option 93', edit([[Opt.CLIENT_ARCH, null]]), { arch: 'unknown', isPxe: true }],
    ['ARM32 EFI', edit([[Opt.CLIENT_ARCH, Buffer.from([0, 10])]]), { arch: 'efi-arm32', archCode: 10 }],
    ['ARM64 HTTP (19) is not in our table', edit([[Opt.CLIENT_ARCH, Buffer.from([0, 19])]]), { arch: 'unknown', archCode: 19 }],
    ['a list of archs: the first counts', edit([[Opt.CLIENT_ARCH, Buffer.from([0, 7, 0, 0])]]), { arch: 'efi-x64', archCode: 7 }],
    ['option 175 alone marks iPXE', edit([[Opt.IPXE_ENCAP, Buffer.from([0x11, 1, 1])]]), { isIpxe: true }],
    ['user class other than iPXE', edit([[Opt.USER_CLASS, Buffer.from('gPXE')]]), { isIpxe: false, userClass: 'gPXE' }],
    ['UUID with a non-zero type is not a UUID', edit([[Opt.CLIENT_UUID, Buffer.alloc(17, 1)]]), { uuid: undefined }],
  ];
  for (const [name, msg, want] of cases) {
    const got = classifyClient(msg);
    for (const [k, v] of Object.entries(want)) t.same(got[k as keyof ClientInfo], v, `${name}: ${k}`);
  }
  t.notOk('archCode' in classifyClient(cases[0]![1]), 'no archCode key when option 93 is absent');
});

t.test('archFromCode', async (t) => {
  const table: Array<[number | undefined, string]> = [
    [0, 'bios'], [6, 'efi-ia32'], [7, 'efi-x64'], [9, 'efi-x64'], [10, 'efi-arm32'],
    [11, 'efi-arm64'], [16, 'efi-x64-http'], [15, 'unknown'], [undefined, 'unknown'], [0xffff, 'unknown'],
  ];
  for (const [code, arch] of table) t.equal(archFromCode(code), arch, `code ${code}`);
});

t.test('clients without an Ethernet MAC are refused with DecodeError', async (t) => {
  const base = load('udhcpc-bios-discover');
  t.throws(() => classifyClient(base.with({ htype: 32, hlen: 0 })), DecodeError);
  t.throws(() => classifyClient(base.with({ hlen: 8 })), DecodeError);
});
