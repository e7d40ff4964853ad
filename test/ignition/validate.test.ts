/**
 * Real-tool checks of what the renderer emits: Debian's ignition-validate
 * (Ignition 2.14) on every fixture's config, and systemd 252's
 * `systemd-analyze verify` on the units as Ignition would lay them out.
 * Each check skips, saying why, when its tool is absent.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadSwarmScript, renderIgnition, serializeIgnition } from '../../ignition/render.js';
import type { IgnitionConfig } from '../../ignition/types.js';
import { SWARM_UNIT_NAME } from '../../ignition/units.js';
import { ignitionFixtures } from '../helpers/ignition-fixtures.js';

const script = loadSwarmScript();

function toolMissing(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) return `${cmd} not available (${r.error.message}); install Debian package ${cmd === 'ignition-validate' ? 'ignition' : 'systemd'}`;
  return null;
}

function tempDir(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function decodeData(source: string): string {
  if (!source.startsWith('data:,')) throw new Error(`unexpected source ${source.slice(0, 40)}`);
  return decodeURIComponent(source.slice('data:,'.length));
}

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

/** Lays the config's files, links and units out under `root` the way Ignition would. */
function materialise(root: string, cfg: IgnitionConfig): void {
  const at = (p: string) => join(root, p);
  for (const f of cfg.storage.files) {
    mkdirSync(dirname(at(f.path)), { recursive: true });
    writeFileSync(at(f.path), decodeData(f.contents.source));
    chmodSync(at(f.path), f.mode);
  }
  for (const l of cfg.storage.links) {
    mkdirSync(dirname(at(l.path)), { recursive: true });
    symlinkSync(l.target, at(l.path));
  }
  const unitDir = at('/etc/systemd/system');
  mkdirSync(unitDir, { recursive: true });
  for (const u of cfg.systemd.units) {
    if (u.mask === true) symlinkSync('/dev/null', join(unitDir, u.name));
    else if (u.contents !== undefined) writeFileSync(join(unitDir, u.name), u.contents);
    for (const d of u.dropins ?? []) {
      mkdirSync(join(unitDir, `${u.name}.d`), { recursive: true });
      writeFileSync(join(unitDir, `${u.name}.d`, d.name), d.contents);
    }
  }
}

/**
 * What the image would provide: systemd's own targets (verify loads
 * sysinit.target and friends from the root), and stand-ins for Flatcar's
 * docker.service and docker binary, which this machine's root lacks.
 */
function imageStubs(root: string): void {
  const lib = join(root, 'usr/lib/systemd/system');
  mkdirSync(lib, { recursive: true });
  for (const name of readdirSync('/usr/lib/systemd/system')) {
    if (name.endsWith('.target')) copyFileSync(join('/usr/lib/systemd/system', name), join(lib, name));
  }
  writeFileSync(
    join(lib, 'docker.service'),
    '[Unit]\nDescription=Docker Application Container Engine (stub)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd\n\n[Install]\nWantedBy=multi-user.target\n',
  );
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  for (const bin of ['docker', 'dockerd']) writeFileSync(join(root, 'usr/bin', bin), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
}

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
