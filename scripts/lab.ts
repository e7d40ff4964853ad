/**
 * The swarmboot lab: a boot network in a box. One network namespace holds a
 * bridge and a tap per blade, another runs the real `swarmboot serve --dhcp
 * full` on that bridge, and QEMU blades with the MACs of your profiles
 * network-boot from it, each with its serial console captured to a file.
 * Prints every boot step swarmboot serves and each blade's console
 * milestones as they happen; removes everything on exit, Ctrl-C or SIGTERM.
 *
 *   npm run lab -- [--blades N] [--firmware bios|uefi|mixed] [--flatcar] [--keep]
 *                  [--profiles DIR] [--assets DIR] [--accel auto|tcg|kvm]
 *                  [--memory MB] [--timeout SECONDS] [--dir DIR]
 *
 * Needs root (namespaces, taps), qemu-system-x86, ovmf, ipxe-qemu, ipxe,
 * pxelinux, syslinux-common and curl (scripts/setup.sh --test installs them).
 * Traffic stays on the lab's own bridge: nothing is sent on the host's interfaces.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzip, readNewc } from '../ignition/cpio.js';
import { flatcarInitrdPath, flatcarKernelPath, OEM_CONFIG_PATH } from '../server/boot/layout.js';
import { loadProfileDir } from '../server/profiles/load.js';
import type { TrailView } from '../server/http/machines.js';
import { runCli } from '../test/helpers/cli.js';
import { missingTools, netnsUnavailable } from '../test/helpers/netns.js';
import {
  BladeLab,
  chooseAccel,
  firmwareProblem,
  formatTrailStep,
  LAB_SERVER_URL,
  pickBlades,
  plainSerial,
  qemuProblem,
  type Accel,
  type AccelChoice,
  type Blade,
  type Firmware,
} from '../test/helpers/qemu.js';
import { installStandin, parseStandinLog, prepareStandin, REPO_ROOT, STANDIN_MARK } from '../test/helpers/standin-os.js';

const HELP = `npm run lab -- [options]

  Boots QEMU blades from swarmboot inside network namespaces and prints
  their boot trail. Everything is removed on exit, Ctrl-C or SIGTERM.

  --blades N          how many blades (default 3), MACs taken from the profiles
  --firmware F        bios | uefi | mixed (default mixed: BIOS iPXE, UEFI PXE,
                      and pxelinux for machines whose profile says boot: pxelinux)
  --flatcar           boot the real Flatcar PXE files from --assets (3 GB per
                      blade) instead of the stand-in OS
  --keep              leave the lab running after the blades are up, until Ctrl-C
  --profiles DIR      profiles directory (default: profiles/)
  --assets DIR        assets directory with Flatcar (default: assets/; --flatcar only)
  --accel A           auto | tcg | kvm (default auto: KVM only if a probe boot works)
  --memory MB         RAM per blade (default 384, or 3072 with --flatcar)
  --timeout SECONDS   give up on blades not up by then (default 600, 1800 with --flatcar)
  --dir DIR           where serial logs go (default .cache/lab/run-<time>)
`;

/** Console lines worth a progress line: firmware, loader and OS milestones. */
const CONSOLE_MILESTONES = new RegExp(
  [
    STANDIN_MARK,
    'iPXE \\d',
    'Configuring \\(net',
    'No configuration methods',
    'Start (PXE|HTTP Boot) over IPv4',
    'PXE-E\\d+',
    'NBP file',
    'PXELINUX \\d',
    'Loading \\S+',
    'Failed to load',
    'EFI stub:',
    'Linux version',
    'Ignition \\d',
    'ignition\\[\\d+\\]: (fetched|files|failed|disks: op)',
    'Reached target .*(Initrd Root|Multi-User)',
    '\\blogin:',
    'Kernel panic',
  ].join('|'),
);

interface Flags {
  blades: number;
  firmware: 'bios' | 'uefi' | 'mixed';
  flatcar: boolean;
  keep: boolean;
  profiles: string;
  assets: string;
  accel: 'auto' | Accel;
  memory: number;
  timeout: number;
  dir: string;
}

function fail(message: string): never {
  process.stderr.write(`lab: ${message}\n`);
  process.exit(2);
}

function parseFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      blades: { type: 'string', default: '3' },
      firmware: { type: 'string', default: 'mixed' },
      flatcar: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      profiles: { type: 'string', default: join(REPO_ROOT, 'profiles') },
      assets: { type: 'string', default: join(REPO_ROOT, 'assets') },
      accel: { type: 'string', default: 'auto' },
      memory: { type: 'string' },
      timeout: { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const int = (name: string, v: string, min: number, max: number): number => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min || n > max) fail(`--${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
  if (!['bios', 'uefi', 'mixed'].includes(values.firmware)) fail('--firmware must be bios, uefi or mixed');
  if (!['auto', 'tcg', 'kvm'].includes(values.accel)) fail('--accel must be auto, tcg or kvm');
  const flatcar = values.flatcar;
  return {
    blades: int('blades', values.blades, 1, 50),
    firmware: values.firmware as Flags['firmware'],
    flatcar,
    keep: values.keep,
    profiles: resolve(values.profiles),
    assets: resolve(values.assets),
    accel: values.accel as Flags['accel'],
    memory: int('memory', values.memory ?? (flatcar ? '3072' : '384'), 128, 65536),
    timeout: int('timeout', values.timeout ?? (flatcar ? '1800' : '600'), 10, 86400),
    dir: resolve(values.dir ?? join(REPO_ROOT, '.cache/lab', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`)),
  };
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const short = (hex: string | null): string => (hex === null ? '-' : `${hex.slice(0, 12)}…`);

/** What `swarmboot render` gives this MAC: the Ignition hash, and the hash of config.ign inside the oem initrd. */
async function renderedHashes(mac: string, f: Flags, stateDir: string, scratch: string): Promise<{ ignition: string; oem: string | null }> {
  const common = ['--mac', mac, '--profiles', f.profiles, '--state', stateDir, '--server-url', LAB_SERVER_URL];
  const ign = join(scratch, `${mac.replace(/:/g, '-')}.ign`);
  const oem = join(scratch, `${mac.replace(/:/g, '-')}.oem.cpio.gz`);
  const a = await runCli(['render', 'ignition', ...common, '-o', ign]);
  const b = await runCli(['render', 'oem', ...common, '-o', oem]);
  if (a.code !== 0 || b.code !== 0) throw new Error(`swarmboot render failed for ${mac}: ${a.err}${b.err}`);
  const entry = readNewc(gunzip(readFileSync(oem))).find((r) => r.name === OEM_CONFIG_PATH);
  return { ignition: sha256(readFileSync(ign)), oem: entry ? sha256(entry.data) : null };
}

interface BladeState {
  readonly blade: Blade;
  trailSeen: number;
  consoleSeen: number;
  up: boolean;
  result: string | null;
}

async function main(): Promise<number> {
  const f = parseFlags(process.argv.slice(2));
  const problem = qemuProblem() ?? netnsUnavailable() ?? missingTools('curl', 'ip');
  if (problem !== null) fail(problem);

  const set = loadProfileDir(f.profiles);
  const machines = [...set.machines.values()].map((m) => ({ mac: m.mac, hostname: m.hostname, boot: set.profiles.get(m.profile)?.boot ?? 'ipxe' }));
  if (machines.length === 0) fail(`no machines in ${f.profiles}: list some under a profile's machines:`);
  const specs = pickBlades(machines, f.blades, f.firmware, f.memory);
  if (specs.length < f.blades) say(`lab: the profiles list only ${specs.length} machines; booting ${specs.length}`);
  for (const fw of new Set<Firmware>(specs.map((s) => s.firmware))) {
    const why = firmwareProblem(fw);
    if (why !== null) fail(why);
  }

  mkdirSync(f.dir, { recursive: true });
  const stateDir = join(f.dir, 'state');
  let assetsDir = f.assets;
  const standin = await prepareStandin({ say: (l) => say(`lab: ${l}`) });
  if (f.flatcar) {
    const missing = [...set.profiles.values()].flatMap((p) => [flatcarKernelPath(p.flatcar), flatcarInitrdPath(p.flatcar)]).filter((p) => !existsSync(join(assetsDir, p)));
    if (missing.length > 0) {
      fail(`Flatcar PXE files missing from ${assetsDir}:\n  ${[...new Set(missing)].join('\n  ')}\nfetch them first: npx tsx server/main.ts assets fetch --assets ${assetsDir}`);
    }
  } else {
    // A private assets dir: the stand-in goes under the Flatcar names the profiles point to, so serve's paths are the production ones.
    assetsDir = join(f.dir, 'assets');
    for (const p of set.profiles.values()) installStandin(standin, assetsDir, p.flatcar);
  }

  let accel: AccelChoice;
  if (f.accel === 'auto') {
    say('lab: probing KVM (a short boot; TCG if it fails)...');
    accel = await chooseAccel({ standin, workDir: join(f.dir, 'kvm-probe'), uefi: specs.some((s) => s.firmware === 'uefi') });
  } else {
    accel = { accel: f.accel, reason: `--accel ${f.accel}` };
  }
  say(`lab: accelerator ${accel.accel} (${accel.reason})`);
  say(`lab: OS ${f.flatcar ? `Flatcar from ${assetsDir}` : `stand-in (Debian ${standin.kernelVersion} + busybox; reports what it received, then powers off)`}`);

  const cleanups: (() => void | Promise<void>)[] = [];
  let stopping = false;
  let stoppingSince = 0;
  // Registered before the lab exists, so it runs before the lab's own handler, which removes the namespaces and re-raises the signal.
  // The lab's own handler (test/helpers/netns.ts) then kills what runs in its namespaces and
  // deletes them, synchronously; this one stays registered, so the process lives on to print
  // the summary and exit 130 instead of dying mid-line.
  const onSignal = (sig: NodeJS.Signals): void => {
    // A second signal means now (the exit handler still removes the namespaces); the one the
    // lab's handler re-raises right after the first does not count.
    if (stopping) {
      if (Date.now() - stoppingSince > 2000) process.exit(130);
      return;
    }
    stopping = true;
    stoppingSince = Date.now();
    say(`\nlab: ${sig}: stopping the blades and swarmboot, removing the namespaces`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = Date.now();
  const lab = await BladeLab.start({
    teardown: { teardown: (fn) => void cleanups.push(fn) },
    workDir: join(f.dir, 'vms'),
    profilesDir: f.profiles,
    assetsDir,
    stateDir,
    blades: specs,
    accel: accel.accel,
    prefix: 'sblab',
  });
  say(`lab: swarmboot serve --dhcp full on ${LAB_SERVER_URL} (namespace ${lab.serverNs.name}); blades on bridge br0 in ${lab.switchNs.name}`);
  for (const b of lab.blades) {
    say(`lab:   ${b.spec.name.padEnd(10)} ${b.spec.mac}  ${b.spec.firmware.padEnd(8)} ${b.spec.memoryMb} MB  serial ${relative(process.cwd(), b.vm.spec.serialLog)}`);
  }

  const states: BladeState[] = lab.blades.map((blade) => ({ blade, trailSeen: 0, consoleSeen: 0, up: false, result: null }));
  const scratch = join(f.dir, 'rendered');
  mkdirSync(scratch, { recursive: true });
  const deadline = started + f.timeout * 1000;

  const finish = async (s: BladeState): Promise<void> => {
    const b = s.blade;
    if (f.flatcar) {
      s.result = 'up (login prompt on the serial console)';
      return;
    }
    const r = parseStandinLog(b.vm.serial());
    if (!r.done) {
      s.result = `FAILED: the stand-in did not finish${r.errors.length ? ` (${r.errors.join(', ')})` : ''}`;
      return;
    }
    const want = await renderedHashes(b.spec.mac, f, stateDir, scratch);
    const got = r.oemSha256 ?? r.urlSha256;
    const via = r.oemSha256 !== null ? 'oem initrd' : 'Ignition URL';
    const ok = r.errors.length === 0 && got === want.ignition && (r.oemSha256 === null || r.oemSha256 === want.oem);
    s.result = `${ok ? 'ok' : 'FAILED'}: ip ${r.ip ?? '-'}, Ignition via ${via} sha256 ${short(got)} ${got === want.ignition ? '= swarmboot render' : `!= swarmboot render ${short(want.ignition)}`}${r.errors.length ? `, ${r.errors.join(', ')}` : ''}`;
  };

  const poll = async (): Promise<void> => {
    for (const s of states) {
      // After a signal the lab's namespaces are gone: nothing more to read.
      if (stopping) return;
      const b = s.blade;
      let trail: TrailView[] = [];
      try {
        trail = await lab.trail(b.spec.mac);
      } catch (err) {
        say(`lab: could not read the trail of ${b.spec.mac}: ${(err as Error).message}`);
      }
      // The trail keeps the last 64 steps; count from its end if it was trimmed.
      const fresh = trail.slice(Math.min(s.trailSeen, trail.length));
      for (const e of fresh) say(formatTrailStep(b.spec.name, e, started));
      s.trailSeen = trail.length;
      const text = plainSerial(b.vm.serial());
      const lines = text.slice(s.consoleSeen).split('\n');
      const complete = lines.slice(0, -1);
      s.consoleSeen += complete.reduce((n, l) => n + l.length + 1, 0);
      for (const line of complete) {
        const m = CONSOLE_MILESTONES.exec(line);
        // From the milestone on: kernel timestamps and half-painted firmware lines before it are noise.
        if (m !== null) say(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${b.spec.name.padEnd(10)} console         ${line.slice(m.index).trim().slice(0, 110)}`);
        if (f.flatcar && /\blogin:/.test(line)) s.up = true;
      }
      if (!b.vm.running && s.result === null) {
        s.up = true;
        say(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${b.spec.name.padEnd(10)} powered off`);
      }
      if (s.up && s.result === null) await finish(s);
    }
  };

  while (!stopping && Date.now() < deadline && !states.every((s) => s.result !== null)) {
    await poll();
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (!stopping) await poll();

  say('\nlab: summary');
  for (const s of states) {
    const result = s.result ?? (stopping ? 'interrupted' : `not up after ${f.timeout} s (see ${relative(process.cwd(), s.blade.vm.spec.serialLog)})`);
    say(`lab:   ${s.blade.spec.name.padEnd(10)} ${s.blade.spec.mac}  ${s.blade.spec.firmware.padEnd(8)} ${result}`);
  }
  const allOk = states.every((s) => s.result?.startsWith('ok') === true || (f.flatcar && s.up));

  if (f.keep && !stopping) {
    say(`lab: running; API: ip netns exec ${lab.serverNs.name} curl ${LAB_SERVER_URL}/api/machines ; Ctrl-C to stop`);
    while (!stopping) await new Promise((r) => setTimeout(r, 500));
  }
  say(`lab: tearing down; serial logs stay in ${relative(process.cwd(), f.dir) || '.'}`);
  for (const fn of cleanups.reverse()) await fn();
  if (!f.flatcar) rmSync(assetsDir, { recursive: true, force: true });
  return stopping ? 130 : allOk ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`lab: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
