/**
 * Acceptance for the shipped example profiles: for every example machine,
 * what the boot service serves passes the real tools. The Ignition config
 * passes ignition-validate, its units pass systemd-analyze verify, and its
 * oem initrd, unpacked by GNU cpio, holds exactly usr/share/oem/config.ign,
 * byte-equal to the Ignition config.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { loadProfileDir } from '../../server/profiles/load.js';
import { BootService } from '../../server/boot/service.js';
import { packageFile } from '../../server/paths.js';
import { toolMissing, tempDir, materialise, imageStubs, verifyUnits, ignitionValidate } from '../helpers/real-tools.js';
import type { IgnitionConfig } from '../../ignition/types.js';

const set = loadProfileDir(packageFile('profiles'));
const boot = new BootService({ profiles: () => set, serverKey: Buffer.alloc(32, 9), serverUrlOverride: 'http://10.0.0.1:8080' });
const machines = [...set.machines.values()];

t.test('every example machine: ignition-validate', async (t) => {
  const missing = toolMissing('ignition-validate', ['--version']);
  if (missing) return t.plan(0, missing);
  const dir = tempDir(t, 'swarmboot-examples-ign-');
  for (const m of machines) {
    const file = join(dir, `${m.hostname}.ign`);
    writeFileSync(file, boot.ignition(m.mac).body);
    const r = ignitionValidate(file);
    t.equal(r.status, 0, `${m.hostname}: exit 0`);
    t.equal(r.output, '', `${m.hostname}: no findings`);
  }
});

t.test('every example machine: systemd-analyze verify on its units', async (t) => {
  const missing = toolMissing('systemd-analyze', ['--version']);
  if (missing) return t.plan(0, missing);
  for (const m of machines) {
    const cfg = JSON.parse(boot.ignition(m.mac).body) as IgnitionConfig;
    const root = tempDir(t, `swarmboot-examples-root-`);
    imageStubs(root);
    materialise(root, cfg);
    const r = verifyUnits(root, cfg);
    t.ok(r.units.includes('swarmboot-swarm.service'), `${m.hostname}: has the swarm unit`);
    t.equal(r.status, 0, `${m.hostname}: verify exit 0 ${r.stderr}`);
    t.equal(r.stderr.trim(), '', `${m.hostname}: no warnings`);
  }
});

t.test('every example machine: GNU cpio unpacks the oem initrd to exactly config.ign', async (t) => {
  const missing = toolMissing('cpio', ['--version']);
  if (missing) return t.plan(0, missing);
  for (const m of machines) {
    const dir = tempDir(t, 'swarmboot-examples-oem-');
    const cpio = gunzipSync(boot.oem(m.mac).body);
    const list = spawnSync('cpio', ['-t', '--quiet'], { input: cpio, encoding: 'utf8', timeout: 10_000 });
    t.same(list.stdout.trim().split('\n'), ['usr', 'usr/share', 'usr/share/oem', 'usr/share/oem/config.ign'], `${m.hostname}: entries`);
    mkdirSync(join(dir, 'x'));
    const r = spawnSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: cpio, cwd: join(dir, 'x'), timeout: 10_000 });
    t.equal(r.status, 0, `${m.hostname}: cpio exit 0`);
    t.equal(readFileSync(join(dir, 'x/usr/share/oem/config.ign'), 'utf8'), boot.ignition(m.mac).body, `${m.hostname}: byte-equal`);
  }
});
