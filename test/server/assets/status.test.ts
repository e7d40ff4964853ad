/**
 * `assets status` as data and as text (golden): releases with their state,
 * the current links, which profiles boot what, and the fix for each gap.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assetsStatus, formatStatus, fetchCommand, unmetNeeds } from '../../../server/assets/status.js';
import { setCurrent } from '../../../server/assets/store.js';
import type { BootBinary } from '../../../server/assets/boot-binaries.js';
import { loadProfiles } from '../../../server/profiles/load.js';
import { FLATCAR_INITRD } from '../../../server/boot/layout.js';
import { matchGolden } from '../../helpers/golden.js';
import { plantRelease } from '../../helpers/release-server.js';

const PROFILES = `cluster:
  name: lab
  flatcar: { channel: stable, version: current, arch: amd64 }
profiles:
  manager:
    role: manager
    machines: [{ mac: "52:54:00:00:00:01" }]
  worker:
    role: worker
    machines: [{ mac: "52:54:00:00:00:02" }]
  legacy:
    role: worker
    boot: pxelinux
    flatcar: { version: 3940.0.0 }
    machines: [{ mac: "52:54:00:00:00:03" }]
  edge:
    role: worker
    flatcar: { channel: beta, version: 4000.1.0, arch: arm64 }
    machines: [{ mac: "52:54:00:00:00:04" }]
`;

t.test('status: releases, links, needs and fixes', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'swarmboot-status-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const assets = join(root, 'assets');
  plantRelease(assets, 'stable', '3975.2.0', 'amd64');
  plantRelease(assets, 'stable', '3940.0.0', 'amd64', { manifest: false });
  const half = plantRelease(assets, 'beta', '4000.0.0', 'arm64', { skip: FLATCAR_INITRD });
  writeFileSync(join(half, `.${FLATCAR_INITRD}.part`), 'x');
  setCurrent(assets, 'stable', 'amd64', '3975.2.0');
  // Binaries: one present, one missing but installable from a "Debian" dir, one with no package.
  const debian = join(root, 'debian');
  mkdirSync(debian);
  writeFileSync(join(debian, 'ipxe.efi'), 'efi');
  writeFileSync(join(assets, 'undionly.kpxe'), 'kpxe');
  const table: BootBinary[] = [
    { name: 'undionly.kpxe', sources: [join(debian, 'undionly.kpxe')], pkg: 'ipxe', optional: false, purpose: 'BIOS machines' },
    { name: 'ipxe.efi', sources: [join(debian, 'ipxe.efi')], pkg: 'ipxe', optional: false, purpose: 'x86-64 UEFI machines' },
    { name: 'pxelinux.0', sources: [join(debian, 'pxelinux.0')], pkg: 'pxelinux', optional: true, purpose: 'BIOS profiles with boot: pxelinux' },
    { name: 'arm64/ipxe.efi', sources: [], pkg: null, optional: true, purpose: 'ARM64 UEFI machines' },
  ];
  const set = loadProfiles([{ file: 'p.yaml', text: PROFILES }]);
  const s = assetsStatus(assets, set, null, { assetsArg: 'assets', binaryTable: table });

  t.equal(s.ok, false);
  t.same(
    s.releases.map((r) => [`${r.channel}/${r.version}/${r.arch}`, r.state, r.current, r.usedBy]),
    [
      ['stable/3940.0.0/amd64', 'unverified', false, ['legacy']],
      ['stable/3975.2.0/amd64', 'verified', true, ['manager', 'worker']],
      ['beta/4000.0.0/arm64', 'incomplete', false, []],
    ],
  );
  t.same(
    s.needs?.map((n) => [n.profiles, n.resolved, n.state, n.fix]),
    [
      [['edge'], '4000.1.0', 'missing', fetchCommand({ channel: 'beta', version: '4000.1.0', arch: 'arm64' }, 'assets')],
      [['legacy'], '3940.0.0', 'unverified', 'swarmboot assets fetch --channel stable --version 3940.0.0 --arch amd64 --assets assets'],
      [['manager', 'worker'], '3975.2.0', 'verified', null],
    ],
  );
  t.same(
    s.binaries.map((b) => [b.name, b.present, b.neededBy]),
    [
      ['undionly.kpxe', true, ['manager', 'worker']],
      ['ipxe.efi', false, ['manager', 'worker', 'legacy']],
      ['pxelinux.0', false, ['legacy']],
      ['arm64/ipxe.efi', false, ['edge']],
    ],
  );
  matchGolden(t, 'assets/status.txt', formatStatus(s).replaceAll(assets, '<assets>'));
  t.same(unmetNeeds(assets, set).map((n) => [n.profiles, n.state, n.fix]), [
    [['edge'], 'missing', 'swarmboot assets fetch --channel beta --version 4000.1.0 --arch arm64'],
    [['legacy'], 'unverified', 'swarmboot assets fetch --channel stable --version 3940.0.0 --arch amd64'],
  ]);

  // With no profiles: what is there, nothing "needed", not an error by itself.
  const bare = assetsStatus(assets, null, 'no profiles directory profiles', { binaryTable: table.slice(0, 1) });
  t.equal(bare.needs, null);
  t.match(formatStatus(bare), /Profiles:\n {2}not read: no profiles directory profiles/);
});

t.test('status: all good is ok', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'swarmboot-status-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  plantRelease(root, 'stable', '3975.2.0', 'amd64');
  setCurrent(root, 'stable', 'amd64', '3975.2.0');
  const set = loadProfiles([{ file: 'p.yaml', text: PROFILES.split('  legacy:')[0] ?? '' }]);
  const s = assetsStatus(root, set, null, { binaryTable: [] });
  t.equal(s.ok, true);
  t.match(formatStatus(s), /ok: everything the profiles need is present and verified\n$/);
});
