/**
 * The on-disk layout without any network: manifests, the `current` link
 * swap, release listing, locks, and prune (planned, dry-run, applied).
 */
import t from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readlinkSync, existsSync, symlinkSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkRelease, listReleases, lockRelease, readCurrent, setCurrent, MANIFEST } from '../../../server/assets/store.js';
import { planPrune, applyPrune } from '../../../server/assets/prune.js';
import { AssetError } from '../../../server/assets/errors.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL } from '../../../server/boot/layout.js';
import { loadProfiles } from '../../../server/profiles/load.js';
import { plantRelease as plant } from '../../helpers/release-server.js';
import { procStart } from '../../../server/pid.js';

type Test = Pick<typeof t, 'teardown' | 'fail' | 'type' | 'equal' | 'match'>;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('checkRelease: verified, unverified (no manifest / size changed), incomplete', async (t) => {
  const assets = tmp(t);
  const ok = plant(assets, 'stable', '1.0.0', 'amd64');
  t.equal(checkRelease(ok).state, 'verified');
  const bare = plant(assets, 'stable', '1.1.0', 'amd64', { manifest: false });
  t.equal(checkRelease(bare).state, 'unverified');
  t.match(checkRelease(bare).problems, [/no \.swarmboot-verified\.json/]);
  writeFileSync(join(ok, FLATCAR_KERNEL), 'a different kernel');
  t.match(checkRelease(ok), { state: 'unverified', problems: [/vmlinuz is 18 bytes, verified as 6/] });
  const half = plant(assets, 'stable', '1.2.0', 'amd64', { skip: FLATCAR_INITRD });
  writeFileSync(join(half, `.${FLATCAR_INITRD}.part`), 'ini');
  t.match(checkRelease(half), { state: 'incomplete', missing: [FLATCAR_INITRD], partial: [`.${FLATCAR_INITRD}.part`] });
  writeFileSync(join(bare, MANIFEST), '{not json');
  t.equal(checkRelease(bare).manifest, null, 'an unreadable manifest counts as none');
});

t.test('current link: relative, per arch, swapped by rename; refuses to clobber a real dir', async (t) => {
  const assets = tmp(t);
  plant(assets, 'stable', '1.0.0', 'amd64');
  plant(assets, 'stable', '2.0.0', 'amd64');
  t.equal(readCurrent(assets, 'stable', 'amd64'), null);
  setCurrent(assets, 'stable', 'amd64', '1.0.0');
  t.equal(readlinkSync(join(assets, 'flatcar/stable/current/amd64')), '../1.0.0/amd64');
  setCurrent(assets, 'stable', 'amd64', '2.0.0');
  t.equal(readCurrent(assets, 'stable', 'amd64'), '2.0.0');
  t.same(readdirSync(join(assets, 'flatcar/stable/current')), ['amd64'], 'no temp link left');
  t.equal(readCurrent(assets, 'stable', 'arm64'), null);

  mkdirSync(join(assets, 'flatcar/beta/current/amd64'), { recursive: true });
  t.throws(() => setCurrent(assets, 'beta', 'amd64', '1.0.0'), /is not a symlink/);
  mkdirSync(join(assets, 'flatcar/lts/1.0.0'), { recursive: true });
  symlinkSync('1.0.0', join(assets, 'flatcar/lts/current'));
  t.throws(() => setCurrent(assets, 'lts', 'amd64', '1.0.0'), /is not a directory/, 'an old-style current -> version link is not written through');
  t.throws(() => setCurrent(assets, 'stable', 'amd64', '../x'), AssetError);
});

t.test('listReleases: every channel/version/arch, versions in order, current dir skipped', async (t) => {
  const assets = tmp(t);
  plant(assets, 'stable', '3975.10.0', 'amd64');
  plant(assets, 'stable', '3975.2.0', 'amd64');
  plant(assets, 'beta', '4000.0.0', 'arm64');
  setCurrent(assets, 'stable', 'amd64', '3975.2.0');
  t.same(
    listReleases(assets).map((r) => `${r.channel}/${r.version}/${r.arch}`),
    ['stable/3975.2.0/amd64', 'stable/3975.10.0/amd64', 'beta/4000.0.0/arm64'],
  );
});

t.test('lock: exclusive while held, taken over from a dead process', async (t) => {
  const assets = tmp(t);
  const dir = plant(assets, 'stable', '1.0.0', 'amd64');
  const unlock = lockRelease(dir);
  writeFileSync(join(dir, '.swarmboot-fetch.lock'), '1\n'); // pid 1 is alive
  t.throws(() => lockRelease(dir), { code: 'E_ASSET_BUSY' });
  writeFileSync(join(dir, '.swarmboot-fetch.lock'), `1 ${procStart(1)}\n`); // pid 1, and the same process
  t.throws(() => lockRelease(dir), { code: 'E_ASSET_BUSY' });
  writeFileSync(join(dir, '.swarmboot-fetch.lock'), `1 ${Number(procStart(1)) + 1}\n`); // pid 1 reused (a container restart)
  lockRelease(dir)();
  writeFileSync(join(dir, '.swarmboot-fetch.lock'), '999999999\n');
  const again = lockRelease(dir);
  again();
  unlock();
  t.notOk(existsSync(join(dir, '.swarmboot-fetch.lock')));
});

t.test('prune: keeps N newest, the current target and pinned versions; removes the rest', async (t) => {
  const assets = tmp(t);
  for (const v of ['1.0.0', '2.0.0', '3.0.0', '4.0.0', '5.0.0']) plant(assets, 'stable', v, 'amd64');
  plant(assets, 'stable', '1.0.0', 'arm64');
  plant(assets, 'beta', '9.0.0', 'amd64');
  setCurrent(assets, 'stable', 'amd64', '2.0.0');
  const set = loadProfiles([
    {
      file: 'p.yaml',
      text: 'cluster:\n  name: c\nprofiles:\n  old:\n    role: worker\n    flatcar: { channel: stable, version: 1.0.0, arch: amd64 }\n    machines: [{ mac: "52:54:00:00:00:01" }]\n',
    },
  ]);
  const plan = planPrune(assets, 2, set);
  t.same(
    plan.map((d) => `${d.keep ? 'keep' : 'drop'} ${d.release.channel}/${d.release.version}/${d.release.arch}: ${d.why}`),
    [
      'keep stable/5.0.0/amd64: one of the 2 newest',
      'keep stable/4.0.0/amd64: one of the 2 newest',
      'drop stable/3.0.0/amd64: older than the 2 newest',
      'keep stable/2.0.0/amd64: target of flatcar/stable/current/amd64',
      'keep stable/1.0.0/amd64: pinned by a profile',
      'keep stable/1.0.0/arm64: one of the 2 newest',
      'keep beta/9.0.0/amd64: one of the 2 newest',
    ],
  );
  t.throws(() => planPrune(assets, 0, null), RangeError);
  const result = applyPrune(plan);
  t.same(result.removed.map((r) => r.version), ['3.0.0']);
  t.notOk(existsSync(join(assets, 'flatcar/stable/3.0.0')), 'the emptied version dir went too');
  t.ok(existsSync(join(assets, 'flatcar/stable/current/amd64', FLATCAR_KERNEL)), 'current still resolves');
  t.same(readdirSync(join(assets, 'flatcar/stable')).filter((n) => n.startsWith('.')), [], 'no deletion leftovers');
});
