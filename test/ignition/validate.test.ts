/**
 * Real-tool checks of what the renderer emits: Debian's ignition-validate
 * (Ignition 2.14) on every fixture's config, and systemd 252's
 * `systemd-analyze verify` on the units as Ignition would lay them out.
 * Each check skips, saying why, when its tool is absent.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSwarmScript, renderIgnition, serializeIgnition } from '../../ignition/render.js';
import { SWARM_UNIT_NAME } from '../../ignition/units.js';
import { ignitionFixtures } from '../helpers/ignition-fixtures.js';
import { toolMissing, tempDir, materialise, imageStubs } from '../helpers/real-tools.js';

const script = loadSwarmScript();

t.test('ignition-validate accepts every fixture', async (t) => {
  const missing = toolMissing('ignition-validate', ['--version']);
  if (missing !== null) {
    t.plan(0, missing);
    return;
  }
  const dir = tempDir(t, 'swarmboot-ign-');
  for (const { name, ctx } of ignitionFixtures) {
    const file = join(dir, `${name}.ign`);
    writeFileSync(file, serializeIgnition(renderIgnition(ctx, script)));
    const r = spawnSync('ignition-validate', [file], { encoding: 'utf8', timeout: 30_000 });
    t.equal(r.status, 0, `${name}: ignition-validate exit 0`);
    t.equal(`${r.stdout}${r.stderr}`.trim(), '', `${name}: no findings`);
  }
});

t.test('systemd-analyze verify accepts the units as Ignition lays them out', async (t) => {
  const missing = toolMissing('systemd-analyze', ['--version']);
  if (missing !== null) {
    t.plan(0, missing);
    return;
  }
  for (const { name, ctx } of ignitionFixtures) {
    const cfg = renderIgnition(ctx, script);
    const root = tempDir(t, `swarmboot-root-${name}-`);
    imageStubs(root);
    materialise(root, cfg);
    // Masked units and drop-in-only entries have nothing of their own to verify.
    const units = cfg.systemd.units.filter((u) => u.mask !== true && u.contents !== undefined).map((u) => u.name);
    if (cfg.systemd.units.some((u) => u.name === 'docker.service')) units.push('docker.service');
    if (units.length === 0) {
      t.notOk(cfg.systemd.units.some((u) => u.name === SWARM_UNIT_NAME), `${name}: no units, no swarm unit`);
      continue;
    }
    // --root makes verify read units, and check ExecStart= binaries, inside the root.
    const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, ...units], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' },
    });
    t.equal(r.status, 0, `${name}: verify ${units.join(' ')} exit 0${r.stderr ? `\n${r.stderr}` : ''}`);
    t.equal(r.stderr.trim(), '', `${name}: no warnings`);
  }
});

t.test('verify refuses a broken swarm unit (the check has teeth)', async (t) => {
  const missing = toolMissing('systemd-analyze', ['--version']);
  if (missing !== null) {
    t.plan(0, missing);
    return;
  }
  const manager = ignitionFixtures.find((f) => f.name === 'manager');
  if (manager === undefined) throw new Error('manager fixture missing');
  const cfg = renderIgnition(manager.ctx, script);
  const root = tempDir(t, 'swarmboot-root-broken-');
  imageStubs(root);
  materialise(root, cfg);
  // Without the script on disk ExecStart= points nowhere.
  rmSync(join(root, 'opt/swarmboot/swarm.sh'));
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, SWARM_UNIT_NAME], { encoding: 'utf8', timeout: 60_000 });
  t.not(r.status, 0, 'missing ExecStart binary is an error');
  t.match(r.stderr, /swarm\.sh is not executable/);
});
