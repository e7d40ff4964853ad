import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installBootBinaries, bootBinaryStatus, profilesNeeding, BOOT_BINARIES, type BootBinary } from '../../../server/assets/boot-binaries.js';
import { loadProfiles } from '../../../server/profiles/load.js';

type Test = Pick<typeof t, 'teardown' | 'fail' | 'type' | 'equal' | 'match'>;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-bins-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('copies from the search dir first, then the package path; idempotent; says what is missing and how to fix it', async (t) => {
  const root = tmp(t);
  const debian = join(root, 'usr-lib-ipxe');
  const custom = join(root, 'custom');
  const assets = join(root, 'assets');
  mkdirSync(debian);
  mkdirSync(join(custom, 'arm64'), { recursive: true });
  writeFileSync(join(debian, 'undionly.kpxe'), 'debian kpxe');
  writeFileSync(join(debian, 'ipxe.efi'), 'debian efi');
  writeFileSync(join(custom, 'ipxe.efi'), 'custom efi');
  writeFileSync(join(custom, 'arm64', 'ipxe.efi'), 'arm64 efi');
  const table: BootBinary[] = [
    { name: 'undionly.kpxe', sources: [join(debian, 'undionly.kpxe')], pkg: 'ipxe', optional: false, purpose: 'BIOS' },
    { name: 'ipxe.efi', sources: [join(debian, 'ipxe.efi')], pkg: 'ipxe', optional: false, purpose: 'UEFI' },
    { name: 'pxelinux.0', sources: [join(debian, 'pxelinux.0')], pkg: 'pxelinux', optional: true, purpose: 'pxelinux' },
    { name: 'arm64/ipxe.efi', sources: [], pkg: null, optional: true, purpose: 'ARM64' },
    { name: 'arm64/snponly.efi', sources: [], pkg: null, optional: true, purpose: 'ARM64' },
  ];
  const first = installBootBinaries(assets, table, { searchDirs: [custom], assetsArg: 'assets' });
  t.same(first.copied, ['undionly.kpxe', 'ipxe.efi', 'arm64/ipxe.efi']);
  t.equal(readFileSync(join(assets, 'ipxe.efi'), 'utf8'), 'custom efi', 'the configured dir wins over Debian');
  t.equal(readFileSync(join(assets, 'arm64/ipxe.efi'), 'utf8'), 'arm64 efi');
  t.same(
    first.missing.map((m) => [m.name, m.fix]),
    [
      ['pxelinux.0', 'apt-get install pxelinux && swarmboot assets binaries --assets assets   (serve also copies it at start)'],
      ['arm64/snponly.efi', 'build or obtain snponly.efi for this arch, put it at DIR/arm64/snponly.efi, then: swarmboot assets binaries --assets assets --from DIR'],
    ],
  );
  t.same(readdirSync(assets).filter((n) => n.startsWith('.')), [], 'no temp copies left');
  const second = installBootBinaries(assets, table, { searchDirs: [custom] });
  t.same(second.copied, [], 'nothing copied twice');

  const status = bootBinaryStatus(assets, null, table, { assetsArg: 'assets' });
  t.same(
    status.map((s) => [s.name, s.present, s.fix !== null]),
    [
      ['undionly.kpxe', true, false],
      ['ipxe.efi', true, false],
      ['pxelinux.0', false, true],
      ['arm64/ipxe.efi', true, false],
      ['arm64/snponly.efi', false, true],
    ],
  );
});

t.test('which profiles need which binary', async (t) => {
  const set = loadProfiles([
    {
      file: 'p.yaml',
      text: `cluster:
  name: c
profiles:
  bios:
    role: worker
    machines: [{ mac: "52:54:00:00:00:01" }]
  pxe:
    role: worker
    boot: pxelinux
    machines: [{ mac: "52:54:00:00:00:02" }]
  arm:
    role: worker
    efi_binary: snponly.efi
    flatcar: { arch: arm64 }
    machines: [{ mac: "52:54:00:00:00:03" }]
`,
    },
  ]);
  const need = (name: string) => profilesNeeding(BOOT_BINARIES.find((b) => b.name === name) as BootBinary, set);
  t.same(need('undionly.kpxe'), ['bios']);
  t.same(need('ipxe.efi'), ['bios', 'pxe']);
  t.same(need('pxelinux.0'), ['pxe']);
  t.same(need('ldlinux.c32'), ['pxe']);
  t.same(need('arm64/snponly.efi'), ['arm']);
  t.same(need('arm64/ipxe.efi'), []);
  t.same(need('snponly.efi'), []);
  t.same(need('ipxe.pxe'), []);
});
