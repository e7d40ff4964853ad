/**
 * Real-tool checks shared by the test suites: Debian's ignition-validate,
 * systemd-analyze verify on units laid out the way Ignition would, in a
 * scratch root with stand-ins for what the Flatcar image provides.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { IgnitionConfig } from '../../ignition/types.js';

export function toolMissing(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) return `${cmd} not available (${r.error.message}); install Debian package ${cmd === 'ignition-validate' ? 'ignition' : 'systemd'}`;
  return null;
}

export function tempDir(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function decodeData(source: string): string {
  if (!source.startsWith('data:,')) throw new Error(`unexpected source ${source.slice(0, 40)}`);
  return decodeURIComponent(source.slice('data:,'.length));
}

/** Lays the config's files, links and units out under `root` the way Ignition would. */
export function materialise(root: string, cfg: IgnitionConfig): void {
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
export function imageStubs(root: string): void {
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


/** Runs `systemd-analyze verify --root` on the config's units; returns status and stderr. */
export function verifyUnits(root: string, cfg: IgnitionConfig): { units: string[]; status: number | null; stderr: string } {
  const units = cfg.systemd.units.filter((u) => u.mask !== true && u.contents !== undefined).map((u) => u.name);
  if (cfg.systemd.units.some((u) => u.name === 'docker.service')) units.push('docker.service');
  if (units.length === 0) return { units, status: 0, stderr: '' };
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, ...units], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' },
  });
  return { units, status: r.status, stderr: r.stderr };
}

/** Ignition's own check (Debian package ignition). */
export function ignitionValidate(file: string): { status: number | null; output: string } {
  const r = spawnSync('ignition-validate', [file], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}
