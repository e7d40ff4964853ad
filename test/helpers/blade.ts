/**
 * The blade harness: a network namespace turned into a diskless "blade"
 * that boots the way a Flatcar blade does after PXE, against a real
 * `swarmboot serve`, with a real dockerd of its own.
 *
 *   import { bladesUnavailable, startSwarmLab, nodeList } from '../helpers/blade.js';
 *
 *   const why = bladesUnavailable();
 *   if (why !== null) t.plan(0, why);
 *   else t.test('...', async (t) => {
 *     const lab = await startSwarmLab(t, { swarm: { mode: 'automatic' }, machines: [...] });  // switch + serve
 *     const m1 = await lab.blade('mgr1');                // namespace plugged in with mgr1's MAC
 *     const boot = await m1.boot();                      // DHCP, Ignition, units; boot.failed lists failed units
 *     await nodeList(m1);                                // `docker node ls` on the blade's own daemon
 *     await m1.runTimer('swarmboot-reconcile.timer');    // fire a timer now
 *     await m1.shutdown();                               // ExecStop in reverse order, then dockerd
 *     await m1.powerOff();                               // or: a crash (no ExecStop)
 *     await m1.boot();                                   // a diskless reboot: every disk wiped
 *   });
 *
 * API
 *   bladesUnavailable(): string | null       why not here (root, namespaces, dockerd/docker/udhcpc/curl...)
 *   startSwarmLab(t, opts): SwarmLab         createSwarmLab + startServe
 *   createSwarmLab(t, { serverIp?, httpPort?, prefix? })  switch + server namespace, no serve yet
 *   SwarmLab.startServe({ swarm, machines, roleLabels? })   profiles written, `swarmboot serve --dhcp full`
 *   SwarmLab.blade(hostname, BladeOptions & { mac?, address? }): Blade
 *   SwarmLab.serverLog(): parsed pino lines of serve;  serverExec(cmd, args) in the server namespace
 *   SwarmLab.cleanup() / leftovers(): string[]   (cleanup also runs on t.teardown)
 *   Blade.boot(): BootResult   bareBoot() (fixed address + dockerd only: a host made by hand)
 *   Blade.shutdown() / powerOff() / runTimer(timer, env?) / runService(unit, env?)
 *   Blade.docker(args) / dockerOk(args) / nodeId() / dockerdAlive()
 *   Blade.units (state per unit), started, startTimes, stopOrder, stopTimes, journal, unitLog(unit), events
 *   BladeOptions: env (extra unit environment, e.g. DOCKER=<fault-injecting wrapper>),
 *     patchIgnition (what-if changes to the fetched config), start/stop/restart caps
 *   nodeList(blade): NodeRow[]   nodeLabels(blade, node)   swarmProfiles(opts)   labReport(lab)
 *   parseUnit, parseEnvFile, splitCommand, parseTimespan, runOrdered: the mini-systemd's pieces
 *
 * One boot (Blade.boot):
 *   1. DHCP: busybox `udhcpc` inside the blade's namespace gets the address
 *      from swarmboot (full DHCP mode) and configures eth0.
 *   2. Ignition: `curl http://SERVER/ignition?mac=...` from inside the
 *      namespace (so swarmboot's leased-IP gate sees the leased address);
 *      storage.files/links and systemd.units are written under a fresh
 *      per-boot root directory (`Blade.root`), data: URLs decoded.
 *   3. systemd, reduced: the units Ignition enabled (and links in
 *      multi-user.target.wants) are pulled in with their Requires=/Wants=;
 *      a unit starts once the units it is ordered after (After=, or their
 *      Before=) have started; units with no order between them start
 *      concurrently, as systemd's jobs do.
 *      docker.service is the blade's dockerd (`nsenter --net` into the
 *      namespace, `unshare --uts --mount` with the hostname Ignition wrote
 *      to /etc/hostname; its own data root, exec root and socket), started
 *      like Type=notify: the next unit starts once `docker info` answers.
 *      network-online.target is active once DHCP is done.
 *      Services run their ExecStart= with EnvironmentFile=/Environment=
 *      loaded, absolute paths that exist under the blade root rewritten into
 *      it (/opt/swarmboot/swarm.sh -> <root>/opt/swarmboot/swarm.sh), inside
 *      the blade's namespace (`ip netns exec`), as the real commands (the
 *      swarm script, curl, docker, ip). The only redirection:
 *      DOCKER="docker -H unix://<blade socket>" (swarm.sh runs $DOCKER) and
 *      DOCKER_HOST (for anything else calling docker, e.g. a test's
 *      fault-injecting wrapper), plus TMPDIR and HOME inside the blade root.
 *      Type=oneshot waits for ExecStart; RemainAfterExit=yes keeps the unit
 *      active; Restart=on-failure with RestartPreventExitStatus= retries
 *      (RestartSec capped, see BladeOptions.restartCapSec); TimeoutStartSec=
 *      and TimeoutStopSec= apply (capped by startCapSec/stopCapSec).
 *   4. Shutdown (Blade.shutdown): the reverse ordering: a unit stops once
 *      every unit ordered after it has stopped, unordered units stop
 *      concurrently; an active unit's ExecStop= runs, a unit still starting
 *      has its ExecStart killed (SIGTERM) as systemd does; docker.service
 *      stops by SIGTERM to dockerd (SIGKILL after its stop timeout). So the
 *      swarm unit's leave runs while dockerd is still up only because the
 *      unit is ordered After=docker.service, which is what issue 4 is
 *      about (the 2017 unit, without that order, loses the race here as it
 *      did on real blades). Blade.stopOrder and Blade.stopTimes record it.
 *   Blade.powerOff is the crash/power cut: every process SIGKILLed, no
 *   ExecStop, the address gone. The next boot starts from empty
 *   directories: /var/lib/docker (and so the swarm state and node ID) is
 *   lost, as on a diskless (tmpfs root) blade.
 *
 * Timers are not scheduled: a timer unit becomes active at boot and
 * Blade.runTimer(name) starts its Unit= service on demand (a test fires
 * swarmboot-reconcile.timer when it wants a reconcile run rather than
 * waiting OnUnitActiveSec=30s).
 *
 * What it does not emulate (honestly):
 *   - no real systemd: no cgroups (a unit's stray children are not killed
 *     with it, except by process group), no socket activation (docker.socket
 *     does not exist: dockerd is started as docker.service), no journald
 *     (output goes to Blade.journal), no D-Bus, no targets beyond ordering;
 *   - units are parsed only for the keys used here: [Unit] After, Before,
 *     Requires, Wants; [Service] Type, RemainAfterExit, ExecStart, ExecStop,
 *     Environment, EnvironmentFile, Restart, RestartSec,
 *     RestartPreventExitStatus, TimeoutStartSec, TimeoutStopSec; [Timer]
 *     Unit; [Install] WantedBy. Specifiers (%n...) are not expanded;
 *     ExecStart prefixes other than "-" are ignored; a Requires= without an
 *     order does not stop the dependent when the required unit fails later;
 *   - units the harness does not know (neither in the Ignition nor emulated:
 *     containerd.service, a profile's reference to an image unit) count as
 *     present and active, doing nothing;
 *   - a docker.service in the Ignition (a profile's drop-ins) is not
 *     applied: the harness's dockerd flags are fixed (vfs storage, no
 *     iptables, no bridge: see FACTS.md "This machine");
 *   - processes share the host's filesystem and PID space: only the network
 *     namespace, the UTS name and (for dockerd) the mount table are the
 *     blade's own; swarm.sh runs with the host's hostname in its UTS
 *     namespace (it never reads it); no users, passwd or SSH keys applied;
 *   - no kernel, initramfs, PXE or iPXE: the boot starts at the point where
 *     Flatcar's networkd has the address and Ignition fetches its config
 *     (test/net QEMU tests cover the firmware side);
 *   - DHCP is done once per boot (`udhcpc -q`): no renewals.
 *
 * Cleanup: every dockerd, unit process and namespace is stopped and the
 * blade directories (/tmp/sbb-<pid>-...) are removed on t.teardown, on
 * process exit and on SIGINT/SIGTERM/SIGHUP; directories of test processes
 * that died earlier are removed when the next lab starts.
 * SwarmLab.leftovers() lists what is still there (processes naming a lab
 * directory, mounts under it, namespaces), for an explicit check.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IgnitionConfig } from '../../ignition/types.js';
import { materialise } from './real-tools.js';
import { pidAlive } from '../../server/pid.js';
import { createLab, missingTools, netnsUnavailable, waitFor, type ExecResult, type Lab, type Netns, type Proc, type Switch } from './netns.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

const DIR_PREFIX = 'sbb-';
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Why blades cannot run here (not root, no namespaces, a tool missing), or null. */
export function bladesUnavailable(): string | null {
  return netnsUnavailable() ?? missingTools('dockerd', 'docker', 'udhcpc', 'curl', 'nsenter', 'unshare', 'umount');
}

// ---- unit files --------------------------------------------------------------

/** A parsed unit: section -> key -> values in file order (an empty assignment resets the list). */
export interface UnitFile {
  readonly name: string;
  readonly sections: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;
}

/** Parses unit text plus drop-ins (applied in order), the way systemd merges them, for the keys this harness reads. */
export function parseUnit(name: string, text: string, dropins: readonly string[] = []): UnitFile {
  const sections = new Map<string, Map<string, string[]>>();
  for (const src of [text, ...dropins]) {
    let section = '';
    const lines = src.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
    for (const raw of lines) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      const sec = /^\[([^\]]+)\]$/.exec(line);
      if (sec !== null) {
        section = sec[1] ?? '';
        continue;
      }
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      const keys = sections.get(section) ?? new Map<string, string[]>();
      sections.set(section, keys);
      if (value === '') keys.set(key, []);
      else keys.set(key, [...(keys.get(key) ?? []), value]);
    }
  }
  return { name, sections };
}

function unitValues(u: UnitFile, section: string, key: string): readonly string[] {
  return u.sections.get(section)?.get(key) ?? [];
}

function unitValue(u: UnitFile, section: string, key: string): string | undefined {
  return unitValues(u, section, key).at(-1);
}

/** Space-separated list keys (After=a b, After=c). */
function unitList(u: UnitFile, section: string, key: string): string[] {
  return unitValues(u, section, key).flatMap((v) => v.split(/\s+/).filter((x) => x !== ''));
}

/** systemd time spans as used in our units: "90", "30s", "1min", "15min", "2h"; "infinity" -> Infinity. */
export function parseTimespan(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'infinity') return Infinity;
  let total = 0;
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|hr)?/g;
  let matched = false;
  for (const m of v.matchAll(re)) {
    matched = true;
    const n = Number(m[1]);
    const unit = m[2] ?? 's';
    total += unit === 'ms' ? n / 1000 : unit === 'min' || unit === 'm' ? n * 60 : unit === 'h' || unit === 'hr' ? n * 3600 : n;
  }
  return matched ? total : undefined;
}

/** A command line split the way systemd does for the simple cases: whitespace, double or single quotes. */
export function splitCommand(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let any = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] ?? '';
    if (quote !== null) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      any = true;
    } else if (/\s/.test(ch)) {
      if (any || cur !== '') out.push(cur);
      cur = '';
      any = false;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i];
    } else {
      cur += ch;
    }
  }
  if (any || cur !== '') out.push(cur);
  return out;
}

/** EnvironmentFile= syntax: KEY=VALUE lines, # and ; comments, optional quotes around the value. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1);
    env[line.slice(0, eq).trim()] = value;
  }
  return env;
}

/**
 * Runs fn over `names`, each once every name it waits for (among `names`)
 * has finished, unrelated ones concurrently: systemd's job ordering.
 * A cycle is broken by ignoring the edge that closes it.
 */
export async function runOrdered(names: readonly string[], waitsFor: (name: string) => readonly string[], fn: (name: string) => Promise<void>): Promise<void> {
  const jobs = new Map<string, Promise<void>>();
  const job = (n: string, path: readonly string[]): Promise<void> => {
    const have = jobs.get(n);
    if (have !== undefined) return have;
    const deps = waitsFor(n).filter((d) => names.includes(d) && !path.includes(d) && d !== n);
    const p = Promise.all(deps.map((d) => job(d, [...path, n]))).then(() => fn(n));
    jobs.set(n, p);
    return p;
  };
  await Promise.all(names.map((n) => job(n, [])));
}

// ---- the blade ----------------------------------------------------------------

export type UnitState = 'inactive' | 'activating' | 'active' | 'deactivating' | 'failed';

export interface UnitStatus {
  state: UnitState;
  /** Why it failed: exit-code, timeout, dependency, signal, start-limit. */
  result?: string;
  /** Exit code of the last ExecStart. */
  code?: number | null;
}

export interface BootResult {
  ip: string;
  hostname: string;
  /** Units in the order they were started. */
  started: string[];
  /** Units that ended up failed. */
  failed: string[];
  ms: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

export interface BladeOptions {
  /** Host name of the blade's namespace (defaults to the machine's hostname). */
  label?: string;
  /** Extra environment for every unit command (after the EnvironmentFile=): e.g. DOCKER for a wrapper. */
  env?: Record<string, string>;
  /** Upper bound for TimeoutStartSec= (seconds). Default 240. */
  startCapSec?: number;
  /** Upper bound for TimeoutStopSec= (seconds). Default 90. */
  stopCapSec?: number;
  /** Upper bound for RestartSec= (seconds). Default 5. */
  restartCapSec?: number;
  /** How many restarts Restart=on-failure gets per start. Default 3. */
  maxRestarts?: number;
  /** Changes the fetched Ignition before it is applied (what-if tests: e.g. the 2017 unit without After=docker.service). */
  patchIgnition?: (cfg: IgnitionConfig) => IgnitionConfig;
}

interface LoadedUnit {
  file: UnitFile | null;
  /** Emulated by the harness rather than run from its file. */
  builtin: 'docker' | 'network-online' | 'noop' | null;
}

/** The per-boot directories; a diskless blade starts every boot from empty ones. */
interface BootDirs {
  base: string;
  root: string;
  data: string;
  exec: string;
  sock: string;
}

export class Blade {
  readonly name: string;
  readonly mac: string;
  readonly ns: Netns;
  /** Everything the units printed, "unit: line", in order, across boots. */
  readonly journal: string[] = [];
  /** Start and stop events ("start docker.service", "stop swarmboot-swarm.service"), across boots. */
  readonly events: string[] = [];
  ip: string | null = null;
  /** CIDR for a host outside the profiles (bareBoot); null: the address comes from DHCP. */
  staticAddress: string | null = null;
  hostname: string;
  bootCount = 0;
  /** Units started this boot, in order. */
  started: string[] = [];
  /** When each unit's start job began and ended (performance.now() ms; a oneshot ends when ExecStart exits), this boot. */
  readonly startTimes = new Map<string, { began: number; ended: number }>();
  /** Units stopped by the last shutdown, in the order their stop began. */
  stopOrder: string[] = [];
  /** When each unit's stop began and ended (performance.now() ms), last shutdown. */
  readonly stopTimes = new Map<string, { began: number; ended: number }>();
  readonly units = new Map<string, UnitStatus>();
  private dirs: BootDirs | null = null;
  private loaded = new Map<string, LoadedUnit>();
  private dockerd: Proc | null = null;
  private running = new Map<string, Proc>();
  private generation = 0;
  private readonly opts: BladeOptions;
  private readonly lab: SwarmLab;

  constructor(lab: SwarmLab, name: string, mac: string, ns: Netns, opts: BladeOptions) {
    this.lab = lab;
    this.name = name;
    this.hostname = name;
    this.mac = mac;
    this.ns = ns;
    this.opts = opts;
  }

  /** The current boot's root directory (Ignition's files land here). */
  get root(): string {
    return this.need().root;
  }

  /** The blade's docker socket (unix path). */
  get socket(): string {
    return this.need().sock;
  }

  private need(): BootDirs {
    if (this.dirs === null) throw new Error(`${this.name} has not booted`);
    return this.dirs;
  }

  private log(unit: string, text: string): void {
    for (const line of text.split('\n')) if (line.trim() !== '') this.journal.push(`${unit}: ${line}`);
  }

  /** The blade's docker CLI: `docker -H unix://<socket> ...`. */
  docker(args: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return this.ns.exec('docker', ['-H', `unix://${this.socket}`, ...args], { timeoutMs });
  }

  /** docker(), throwing with the output unless it exits 0; returns stdout. */
  async dockerOk(args: string[], timeoutMs = 60_000): Promise<string> {
    const r = await this.docker(args, timeoutMs);
    if (r.code !== 0) throw new Error(`[${this.name}] docker ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** This daemon's swarm node ID ('' when not in a swarm). */
  async nodeId(): Promise<string> {
    return (await this.dockerOk(['info', '--format', '{{.Swarm.NodeID}}'])).trim();
  }

  /** Powers on: DHCP, Ignition, units. Every directory is new (diskless). */
  async boot(): Promise<BootResult> {
    if (this.dirs !== null && (this.dockerd !== null || this.running.size > 0)) throw new Error(`${this.name} is running: shut it down or power it off first`);
    const t0 = Date.now();
    const gen = ++this.generation;
    this.bootCount++;
    if (this.dirs !== null) rmSync(this.dirs.base, { recursive: true, force: true });
    const base = join(this.lab.dir, this.name, String(this.bootCount));
    this.dirs = { base, root: join(base, 'root'), data: join(base, 'd'), exec: join(base, 'e'), sock: join(base, 'docker.sock') };
    for (const d of [this.dirs.root, this.dirs.data, this.dirs.exec, join(this.dirs.root, 'tmp'), join(this.dirs.root, 'root')]) mkdirSync(d, { recursive: true });
    this.units.clear();
    this.loaded.clear();
    this.started = [];
    this.startTimes.clear();
    this.stopOrder = [];
    this.events.push(`boot ${this.bootCount}`);

    this.ip = await this.dhcp();
    const fetched = await this.fetchIgnition();
    const cfg = this.opts.patchIgnition?.(fetched) ?? fetched;
    materialise(this.dirs.root, cfg);
    const hn = join(this.dirs.root, 'etc/hostname');
    this.hostname = existsSync(hn) ? readFileSync(hn, 'utf8').trim() : this.name;
    this.loadUnits(cfg);

    const jobs = this.bootTransaction(cfg);
    await runOrdered(jobs, (n) => this.startAfter(n, jobs), async (n) => {
      if (gen === this.generation) await this.startUnit(n, gen);
    });
    const failed = [...this.units].filter(([, s]) => s.state === 'failed').map(([n]) => n);
    return { ip: this.ip ?? '', hostname: this.hostname, started: [...this.started], failed, ms: Date.now() - t0 };
  }

  /**
   * A host that is not booted by swarmboot (a swarm made by hand): its
   * static address, a fresh dockerd named after the blade, nothing else.
   */
  async bareBoot(): Promise<void> {
    if (this.staticAddress === null) throw new Error(`${this.name}: bareBoot needs a blade created with an address`);
    if (this.dockerd !== null) throw new Error(`${this.name} is running`);
    this.generation++;
    this.bootCount++;
    if (this.dirs !== null) rmSync(this.dirs.base, { recursive: true, force: true });
    const base = join(this.lab.dir, this.name, String(this.bootCount));
    this.dirs = { base, root: join(base, 'root'), data: join(base, 'd'), exec: join(base, 'e'), sock: join(base, 'docker.sock') };
    for (const d of [this.dirs.root, this.dirs.data, this.dirs.exec]) mkdirSync(d, { recursive: true });
    this.units.clear();
    this.loaded.clear();
    this.started = [];
    this.startTimes.clear();
    this.events.push(`bare boot ${this.bootCount}`);
    if ((await this.ns.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout.trim() === '') await this.ns.run('ip', ['addr', 'add', this.staticAddress, 'dev', 'eth0']);
    this.ip = this.staticAddress.split('/')[0] ?? null;
    await this.startUnit('docker.service', this.generation);
    if (this.units.get('docker.service')?.state !== 'active') throw new Error(`${this.name}: dockerd did not start: ${this.unitLog('docker.service').join('\n')}`);
  }

  /** busybox udhcpc in the namespace, once (-q); configures eth0 and returns the address. */
  async dhcp(): Promise<string> {
    const r = await this.ns.exec('udhcpc', ['-f', '-q', '-n', '-t', '6', '-T', '2', '-i', 'eth0', '-s', this.lab.udhcpcScript], { timeoutMs: 60_000 });
    const m = /^bound ip=(\S+)/m.exec(r.stdout);
    if (r.code !== 0 || m === null) throw new Error(`[${this.name}] no DHCP lease (exit ${r.code}): ${r.stderr.trim()} ${r.stdout.trim()}`);
    return m[1] ?? '';
  }

  /** GET /ignition?mac=... from inside the namespace (the leased-IP gate sees this blade's address). */
  async fetchIgnition(): Promise<IgnitionConfig> {
    const url = `${this.lab.serverUrl}/ignition?mac=${this.mac.replace(/:/g, '-')}`;
    const r = await this.ns.exec('curl', ['-sS', '-f', '--max-time', '20', url], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`[${this.name}] GET ${url} failed (exit ${r.code}): ${r.stderr.trim()}`);
    const cfg = JSON.parse(r.stdout) as IgnitionConfig;
    if (typeof cfg !== 'object' || cfg === null || !Array.isArray(cfg.storage?.files) || !Array.isArray(cfg.systemd?.units)) {
      throw new Error(`[${this.name}] ${url} is not an Ignition config: ${r.stdout.slice(0, 200)}`);
    }
    return cfg;
  }

  private loadUnits(cfg: IgnitionConfig): void {
    for (const u of cfg.systemd.units) {
      if (u.name === 'docker.service') continue; // emulated; see the header
      if (u.mask === true || u.contents === undefined) continue;
      this.loaded.set(u.name, { file: parseUnit(u.name, u.contents, (u.dropins ?? []).map((d) => d.contents)), builtin: null });
    }
  }

  private unit(name: string): LoadedUnit {
    const have = this.loaded.get(name);
    if (have !== undefined) return have;
    const made: LoadedUnit =
      name === 'docker.service'
        ? { file: parseUnit(name, '[Unit]\nAfter=network-online.target\nWants=network-online.target\n'), builtin: 'docker' }
        : name === 'network-online.target'
          ? { file: null, builtin: 'network-online' }
          : { file: null, builtin: 'noop' };
    this.loaded.set(name, made);
    return made;
  }

  /** What the boot starts: enabled units (Ignition `enabled`, *.wants links) and their Requires=/Wants=, in start order. */
  private bootTransaction(cfg: IgnitionConfig): string[] {
    const roots = new Set<string>();
    for (const u of cfg.systemd.units) {
      if (u.enabled !== true || u.mask === true) continue;
      const f = this.unit(u.name).file;
      const wantedBy = f === null ? [] : unitList(f, 'Install', 'WantedBy');
      if (u.name === 'docker.service' || wantedBy.some((w) => ['multi-user.target', 'timers.target', 'default.target'].includes(w))) roots.add(u.name);
    }
    for (const l of cfg.storage.links) {
      const m = /^\/etc\/systemd\/system\/(?:multi-user|default|timers)\.target\.wants\/([^/]+)$/.exec(l.path);
      if (m?.[1] !== undefined) roots.add(m[1]);
    }
    const all = new Set<string>();
    const visit = (n: string): void => {
      if (all.has(n)) return;
      all.add(n);
      const f = this.unit(n).file;
      if (f !== null) for (const d of [...unitList(f, 'Unit', 'Requires'), ...unitList(f, 'Unit', 'Wants')]) visit(d);
    };
    for (const r of roots) visit(r);
    return [...all].sort();
  }

  private deps(n: string, key: string): string[] {
    const f = this.unit(n).file;
    return f === null ? [] : unitList(f, 'Unit', key);
  }

  /** Units of `set` that must have started before `n` starts: n's After= plus those naming n in Before=. */
  private startAfter(n: string, set: readonly string[]): string[] {
    return set.filter((m) => m !== n && (this.deps(n, 'After').includes(m) || this.deps(m, 'Before').includes(n)));
  }

  private serviceEnv(f: UnitFile, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { PATH: DEFAULT_PATH, LANG: 'C.UTF-8' };
    for (const v of unitValues(f, 'Service', 'Environment')) {
      for (const kv of splitCommand(v)) {
        const eq = kv.indexOf('=');
        if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
    }
    for (const v of unitValues(f, 'Service', 'EnvironmentFile')) {
      const optional = v.startsWith('-');
      const path = this.inRoot(optional ? v.slice(1) : v);
      if (!existsSync(path)) {
        if (optional) continue;
        throw new Error(`EnvironmentFile ${v} does not exist (looked at ${path})`);
      }
      Object.assign(env, parseEnvFile(readFileSync(path, 'utf8')));
    }
    const d = this.need();
    Object.assign(env, { DOCKER: `docker -H unix://${d.sock}`, DOCKER_HOST: `unix://${d.sock}`, TMPDIR: join(d.root, 'tmp'), HOME: join(d.root, 'root') }, this.opts.env ?? {}, extra);
    return env;
  }

  /** An absolute path that exists under the blade root, as that; anything else unchanged. */
  private inRoot(p: string): string {
    if (!p.startsWith('/')) return p;
    const q = join(this.need().root, p);
    return existsSync(q) ? q : p;
  }

  /** Runs one Exec*= line list in the namespace; stops at the first failure not prefixed by "-". */
  private async exec(unit: string, f: UnitFile, key: 'ExecStart' | 'ExecStop', timeoutSec: number, extraEnv: Record<string, string> = {}): Promise<RunResult & { timedOut: boolean }> {
    let last: RunResult & { timedOut: boolean } = { code: 0, signal: null, output: '', timedOut: false };
    for (const line of unitValues(f, 'Service', key)) {
      const m = /^([-@:+!]*)(.*)$/.exec(line);
      const ignoreFailure = (m?.[1] ?? '').includes('-');
      let env: NodeJS.ProcessEnv;
      try {
        env = this.serviceEnv(f, extraEnv);
      } catch (err) {
        // systemd fails the unit (result "resources") when a required EnvironmentFile is missing.
        this.log(unit, (err as Error).message);
        return { code: null, signal: null, output: (err as Error).message, timedOut: false };
      }
      const argv = splitCommand(m?.[2] ?? '').map((a, i) => {
        const expanded = a.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_s, k: string) => env[k] ?? '');
        return i === 0 || expanded.startsWith('/') ? this.inRoot(expanded) : expanded;
      });
      const [cmd, ...args] = argv;
      if (cmd === undefined) continue;
      const proc = this.ns.spawn(cmd, args, { env, cwd: this.need().root });
      this.running.set(unit, proc);
      let timedOut = false;
      const timer = Number.isFinite(timeoutSec)
        ? setTimeout(() => {
            timedOut = true;
            this.log(unit, `${key} timed out after ${timeoutSec}s; killing it`);
            void proc.kill('SIGTERM', 5000);
          }, timeoutSec * 1000)
        : undefined;
      const r = await proc.exited;
      clearTimeout(timer);
      if (this.running.get(unit) === proc) this.running.delete(unit);
      this.log(unit, proc.output);
      last = { code: r.code, signal: r.signal, output: proc.output, timedOut };
      if ((r.code !== 0 || timedOut) && !ignoreFailure) return last;
      if (ignoreFailure) last = { ...last, code: 0 };
    }
    return last;
  }

  private set(name: string, s: UnitStatus): void {
    this.units.set(name, s);
  }

  private async startUnit(name: string, gen: number): Promise<void> {
    const began = performance.now();
    try {
      await this.startUnitNow(name, gen);
    } finally {
      if (this.started.includes(name)) this.startTimes.set(name, { began, ended: performance.now() });
    }
  }

  private async startUnitNow(name: string, gen: number): Promise<void> {
    const u = this.unit(name);
    const f = u.file;
    // A Requires= dependency that failed fails this unit without running it.
    if (f !== null) {
      const bad = unitList(f, 'Unit', 'Requires').find((d) => this.units.get(d)?.state === 'failed');
      if (bad !== undefined) {
        this.set(name, { state: 'failed', result: 'dependency' });
        this.log(name, `dependency failed: ${bad}`);
        return;
      }
    }
    this.events.push(`start ${name}`);
    this.started.push(name);
    if (u.builtin === 'docker') {
      this.set(name, { state: 'activating' });
      try {
        await this.startDockerd();
        this.set(name, { state: 'active' });
      } catch (err) {
        this.log(name, (err as Error).message);
        this.set(name, { state: 'failed', result: 'exit-code' });
      }
      return;
    }
    if (u.builtin !== null || f === null) {
      this.set(name, { state: 'active' });
      return;
    }
    if (name.endsWith('.timer') || name.endsWith('.target')) {
      this.set(name, { state: 'active' });
      return;
    }
    const type = unitValue(f, 'Service', 'Type') ?? (unitValues(f, 'Service', 'ExecStart').length > 0 ? 'simple' : 'oneshot');
    if (type !== 'oneshot') {
      // simple/exec/notify/forking: started, not waited for.
      this.set(name, { state: 'active' });
      void this.exec(name, f, 'ExecStart', Infinity).then((r) => {
        if (this.units.get(name)?.state === 'active') this.set(name, { state: r.code === 0 ? 'inactive' : 'failed', result: r.code === 0 ? 'success' : 'exit-code', code: r.code });
      });
      return;
    }
    const startCap = this.opts.startCapSec ?? 240;
    const timeout = Math.min(parseTimespan(unitValue(f, 'Service', 'TimeoutStartSec')) ?? 90, startCap);
    const restart = unitValue(f, 'Service', 'Restart') ?? 'no';
    const prevent = new Set(unitList(f, 'Service', 'RestartPreventExitStatus').map(Number));
    const restartSec = Math.min(parseTimespan(unitValue(f, 'Service', 'RestartSec')) ?? 0.1, this.opts.restartCapSec ?? 5);
    const remain = /^(yes|true|1|on)$/i.test(unitValue(f, 'Service', 'RemainAfterExit') ?? 'no');
    for (let attempt = 0; ; attempt++) {
      this.set(name, { state: 'activating' });
      const r = await this.exec(name, f, 'ExecStart', timeout);
      if (gen !== this.generation || this.units.get(name)?.state !== 'activating') return; // stopped or powered off meanwhile
      if (r.code === 0 && !r.timedOut) {
        this.set(name, { state: remain ? 'active' : 'inactive', result: 'success', code: 0 });
        return;
      }
      const result = r.timedOut ? 'timeout' : r.signal !== null ? 'signal' : 'exit-code';
      this.set(name, { state: 'failed', result, code: r.code });
      const retry = (restart === 'on-failure' || restart === 'always') && !(r.code !== null && prevent.has(r.code)) && attempt < (this.opts.maxRestarts ?? 3);
      this.log(name, `failed (${result}, exit ${r.code})${retry ? `; restarting in ${restartSec}s` : ''}`);
      if (!retry) return;
      await new Promise((res) => setTimeout(res, restartSec * 1000));
      if (gen !== this.generation) return;
    }
  }

  private async startDockerd(): Promise<void> {
    const d = this.need();
    const args = [
      '--data-root', d.data, '--exec-root', d.exec, '-H', `unix://${d.sock}`, '--pidfile', join(d.base, 'dockerd.pid'),
      '--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=vfs',
    ];
    // Own UTS name (the swarm node is named after it) and own mount table
    // (dockerd's bind mounts and netns handles vanish with it, even on SIGKILL).
    const proc = this.ns.spawn('unshare', ['--uts', '--mount', '--propagation', 'private', 'sh', '-c', 'hostname "$0" && exec dockerd "$@"', this.hostname, ...args], { via: 'nsenter', maxOutput: 1 << 20 });
    this.dockerd = proc;
    await waitFor(
      async () => {
        if (!proc.alive()) throw new Error(`dockerd exited: ${proc.output.slice(-2000)}`);
        return (await this.ns.exec('docker', ['-H', `unix://${d.sock}`, 'info', '--format', '{{.ID}}'], { timeoutMs: 10_000 })).code === 0;
      },
      { timeoutMs: 90_000, intervalMs: 300, what: `${this.name}'s dockerd to answer` },
    ).catch((err: unknown) => {
      void proc.kill('SIGKILL');
      throw err;
    });
  }

  private async stopDockerd(graceMs: number): Promise<void> {
    const p = this.dockerd;
    this.dockerd = null;
    if (p === null || !p.alive()) return;
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      // gone
    }
    const timer = setTimeout(() => p.signal('SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
    this.log('docker.service', p.output.split('\n').filter((l) => /level=(error|fatal)/.test(l)).slice(-5).join('\n'));
  }

  /** Fires a timer: starts its Unit= service now and waits for it (oneshot). */
  async runTimer(timer: string, env: Record<string, string> = {}): Promise<RunResult> {
    const t = this.unit(timer);
    if (t.file === null) throw new Error(`${this.name} has no timer ${timer}`);
    if (this.units.get(timer)?.state !== 'active') throw new Error(`${this.name}: ${timer} is not active`);
    const svc = unitValue(t.file, 'Timer', 'Unit') ?? timer.replace(/\.timer$/, '.service');
    return this.runService(svc, env);
  }

  /** Starts a (oneshot) service now, outside the boot transaction; returns its ExecStart result. */
  async runService(name: string, env: Record<string, string> = {}): Promise<RunResult> {
    const f = this.unit(name).file;
    if (f === null) throw new Error(`${this.name} has no unit ${name}`);
    this.events.push(`start ${name}`);
    this.set(name, { state: 'activating' });
    const timeout = Math.min(parseTimespan(unitValue(f, 'Service', 'TimeoutStartSec')) ?? 90, this.opts.startCapSec ?? 240);
    const r = await this.exec(name, f, 'ExecStart', timeout, env);
    this.set(name, { state: r.code === 0 ? 'inactive' : 'failed', result: r.code === 0 ? 'success' : 'exit-code', code: r.code });
    return r;
  }

  /**
   * Clean shutdown, as systemd orders it: a unit stops only after every
   * unit ordered after it (After=/Before=) has stopped; units with no order
   * between them stop at the same time. So the swarm unit's ExecStop runs
   * while dockerd is up only because the unit says After=docker.service.
   */
  async shutdown(): Promise<void> {
    const gen = ++this.generation;
    this.events.push('shutdown');
    this.stopOrder = [];
    this.stopTimes.clear();
    const up = [...this.units].filter(([, st]) => st.state === 'active' || st.state === 'activating').map(([n]) => n);
    if (this.dockerd !== null && !up.includes('docker.service')) up.push('docker.service');
    await runOrdered(up, (n) => up.filter((m) => m !== n && this.startAfter(m, up).includes(n)), async (n) => {
      if (gen === this.generation) await this.stopUnit(n);
    });
    for (const [unit, p] of this.running) {
      this.log(unit, 'killed at shutdown');
      await p.kill('SIGTERM', 5000);
    }
    this.running.clear();
    await this.stopDockerd(5000);
    await this.flushAddress();
  }

  private async stopUnit(name: string): Promise<void> {
    const st = this.units.get(name);
    if (st === undefined || st.state === 'inactive' || st.state === 'failed') return;
    const u = this.unit(name);
    this.events.push(`stop ${name}`);
    this.stopOrder.push(name);
    const began = performance.now();
    try {
      await this.stopUnitNow(name, st, u);
    } finally {
      this.stopTimes.set(name, { began, ended: performance.now() });
    }
  }

  private async stopUnitNow(name: string, st: UnitStatus, u: LoadedUnit): Promise<void> {
    const stopCap = this.opts.stopCapSec ?? 90;
    if (u.builtin === 'docker') {
      this.set(name, { state: 'deactivating' });
      await this.stopDockerd(Math.min(90, stopCap) * 1000);
      this.set(name, { state: 'inactive' });
      return;
    }
    const f = u.file;
    if (st.state === 'activating') {
      // systemd kills a start job in progress; ExecStop is for units that started.
      this.set(name, { state: 'deactivating' });
      const p = this.running.get(name);
      this.log(name, 'stopped while starting: ExecStart killed');
      if (p !== undefined) await p.kill('SIGTERM', Math.min(parseTimespan(f === null ? undefined : unitValue(f, 'Service', 'TimeoutStopSec')) ?? 90, stopCap) * 1000);
      this.set(name, { state: 'failed', result: 'signal' });
      return;
    }
    if (f === null || name.endsWith('.timer') || name.endsWith('.target')) {
      this.set(name, { state: 'inactive' });
      return;
    }
    this.set(name, { state: 'deactivating' });
    const p = this.running.get(name);
    if (p !== undefined) await p.kill('SIGTERM', 5000);
    if (unitValues(f, 'Service', 'ExecStop').length > 0) {
      const timeout = Math.min(parseTimespan(unitValue(f, 'Service', 'TimeoutStopSec')) ?? 90, stopCap);
      const r = await this.exec(name, f, 'ExecStop', timeout);
      if (r.code !== 0) this.log(name, `ExecStop failed (exit ${r.code}${r.timedOut ? ', timed out' : ''})`);
    }
    this.set(name, { state: 'inactive' });
  }

  /** The power cut: everything SIGKILLed at once, no ExecStop, the address gone. */
  async powerOff(): Promise<void> {
    this.generation++;
    this.events.push('power off');
    const procs = [...this.running.values(), ...(this.dockerd !== null ? [this.dockerd] : [])];
    for (const p of procs) p.signal('SIGKILL');
    // dockerd's children die with it (containerd has a parent-death signal); anything else left in the namespace goes too.
    for (const pid of this.ns.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await Promise.all(procs.map((p) => p.exited));
    this.running.clear();
    this.dockerd = null;
    for (const [n, s] of this.units) if (s.state !== 'failed') this.units.set(n, { state: 'inactive' });
    await this.flushAddress();
  }

  /** Whether this blade's dockerd is running. */
  dockerdAlive(): boolean {
    return this.dockerd?.alive() ?? false;
  }

  private async flushAddress(): Promise<void> {
    this.ip = null;
    await this.ns.exec('ip', ['addr', 'flush', 'dev', 'eth0'], { timeoutMs: 10_000 });
  }

  /** The swarm unit's log lines (swarm.sh prints "swarmboot: ..."). */
  unitLog(unit: string): string[] {
    const p = `${unit}: `;
    return this.journal.filter((l) => l.startsWith(p)).map((l) => l.slice(p.length));
  }
}

// ---- the lab: switch, swarmboot serve, blades ----------------------------------

export interface SwarmMachine {
  mac: string;
  hostname: string;
  role: 'manager' | 'worker';
  labels?: Record<string, string>;
}

export type SwarmProfileSettings =
  | { mode: 'automatic'; initTimeout?: string; removeDownAfter?: string; leaveLastManager?: boolean }
  | { mode: 'static'; managers: string[]; workerToken?: string; managerToken?: string };

export interface SwarmLabOptions {
  swarm: SwarmProfileSettings;
  machines: readonly SwarmMachine[];
  /** Labels every machine of a role gets (profile labels). */
  roleLabels?: { manager?: Record<string, string>; worker?: Record<string, string> };
  /** Server address on the lab segment; the pool is .100-.199 of its /24. Default 10.78.0.1. */
  serverIp?: string;
  httpPort?: number;
  /** Namespace name prefix (stale ones of dead test processes are removed). Default 'sbw'. */
  prefix?: string;
}

export interface ServerLogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function yamlLabels(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? '' : `{ ${entries.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')} }`;
}

/** cluster.yaml + profiles.yaml for a swarm lab: profiles "manager" and "worker" (each only when it has machines). */
export function swarmProfiles(o: Pick<SwarmLabOptions, 'swarm' | 'machines' | 'roleLabels'>): { 'cluster.yaml': string; 'profiles.yaml': string } {
  const s = o.swarm;
  const swarm =
    s.mode === 'automatic'
      ? [
          '    mode: automatic',
          `    init_timeout: ${s.initTimeout ?? '60s'}`,
          `    remove_down_after: ${s.removeDownAfter ?? 'never'}`,
          `    leave_last_manager: ${s.leaveLastManager ?? false}`,
        ]
      : [
          '    mode: static',
          `    managers: [${s.managers.map((m) => JSON.stringify(m)).join(', ')}]`,
          '    join_tokens:',
          ...(s.workerToken !== undefined ? [`      worker: ${s.workerToken}`] : []),
          ...(s.managerToken !== undefined ? [`      manager: ${s.managerToken}`] : []),
        ];
  const cluster = ['cluster:', '  name: swarmlab', '  swarm:', ...swarm, '  unknown_machines: ignore', ''].join('\n');
  let profiles = 'profiles:\n';
  for (const role of ['manager', 'worker'] as const) {
    const ms = o.machines.filter((m) => m.role === role);
    // A role without machines gets no profile: static mode checks each profile's role has its token.
    if (ms.length === 0) continue;
    profiles += `  ${role}:\n    role: ${role}\n`;
    const pl = yamlLabels(o.roleLabels?.[role]);
    if (pl !== '') profiles += `    labels: ${pl}\n`;
    profiles += '    machines:\n';
    for (const m of ms) {
      const l = yamlLabels(m.labels);
      profiles += `      - { mac: "${m.mac}", hostname: ${m.hostname}${l !== '' ? `, labels: ${l}` : ''} }\n`;
    }
  }
  return { 'cluster.yaml': cluster, 'profiles.yaml': profiles };
}

const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc event script for blades: configure the address, print it.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    echo "bound ip=$ip"
    ;;
esac
exit 0
`;

const liveLabs = new Set<SwarmLab>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const l of [...liveLabs]) l.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      for (const l of [...liveLabs]) l.cleanupSync();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/** Processes whose command line names `dir`, as "pid cmdline". */
function processesUsing(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmd.includes(dir)) out.push(`${e} ${cmd}`);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Mount points at or under `dir` in this mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp.replace(/\\040/g, ' '));
  }
  return out.sort((a, b) => b.length - a.length);
}

function removeDirSync(dir: string): void {
  for (const p of processesUsing(dir)) {
    try {
      process.kill(Number(p.split(' ')[0]), 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const mp of mountsUnder(dir)) spawnSync('umount', ['-l', mp], { timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true });
}

/** Blade directories of test processes that died (SIGKILL) before cleaning up. */
function removeStaleDirs(): void {
  for (const e of readdirSync('/tmp')) {
    const m = new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(e);
    if (m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) removeDirSync(join('/tmp', e));
  }
}

export class SwarmLab {
  readonly lab: Lab;
  readonly sw: Switch;
  readonly server: Netns;
  readonly dir: string;
  readonly serverIp: string;
  readonly serverUrl: string;
  readonly udhcpcScript: string;
  /** The machines of the profiles (set by startServe). */
  machines: readonly SwarmMachine[] = [];
  serve: Proc | null = null;
  private readonly blades = new Map<string, Blade>();
  private cleaned = false;

  readonly httpPort: number;

  constructor(lab: Lab, sw: Switch, server: Netns, dir: string, serverIp: string, httpPort: number) {
    this.lab = lab;
    this.sw = sw;
    this.server = server;
    this.dir = dir;
    this.serverIp = serverIp;
    this.httpPort = httpPort;
    this.serverUrl = `http://${serverIp}:${httpPort}`;
    this.udhcpcScript = join(dir, 'udhcpc.sh');
    writeFileSync(this.udhcpcScript, UDHCPC_SCRIPT);
    chmodSync(this.udhcpcScript, 0o755);
  }

  /**
   * A blade for a machine of the profiles (by hostname), plugged into the
   * switch with its MAC. Created once. A host outside the profiles (a
   * swarm made by hand) needs `mac` and `address` (CIDR, configured at
   * once) and is started with Blade.bareBoot().
   */
  async blade(hostname: string, opts: BladeOptions & { mac?: string; address?: string } = {}): Promise<Blade> {
    const have = this.blades.get(hostname);
    if (have !== undefined) return have;
    const mac = opts.mac ?? this.machines.find((x) => x.hostname === hostname)?.mac;
    if (mac === undefined) throw new Error(`no machine ${hostname} in the lab's profiles (and no mac given)`);
    const ns = await this.lab.namespace(opts.label ?? hostname);
    await this.sw.plug(ns, { mac, ...(opts.address !== undefined ? { address: opts.address } : {}) });
    const b = new Blade(this, hostname, mac, ns, opts);
    if (opts.address !== undefined) b.staticAddress = opts.address;
    this.blades.set(hostname, b);
    return b;
  }

  /**
   * Writes the profiles and starts `swarmboot serve --dhcp full` in the
   * server namespace (pool .100-.199 of the server's /24), waiting until it
   * says it is serving.
   */
  async startServe(o: Pick<SwarmLabOptions, 'swarm' | 'machines' | 'roleLabels'>): Promise<void> {
    if (this.serve !== null) throw new Error('serve is already running');
    this.machines = o.machines;
    const profiles = join(this.dir, 'profiles');
    mkdirSync(profiles, { recursive: true });
    for (const [f, text] of Object.entries(swarmProfiles(o))) writeFileSync(join(profiles, f), text);
    const net = this.serverIp.split('.').slice(0, 3).join('.');
    const args = [
      '--import', 'tsx', join(REPO, 'server/main.ts'), 'serve',
      '--interface', 'eth0', '--dhcp', 'full', '--pool', `${net}.100-${net}.199`,
      '--http-port', String(this.httpPort), '--tftp-port', '69',
      '--profiles', profiles, '--assets', join(this.dir, 'assets'), '--state', join(this.dir, 'state'), '--log-level', 'debug',
    ];
    this.serve = this.server.spawn(process.execPath, args, { cwd: REPO, maxOutput: 16 << 20 });
    await this.serve.waitFor(/swarmboot: serving on/, 60_000);
  }

  all(): Blade[] {
    return [...this.blades.values()];
  }

  /** swarmboot's log (pino JSON on stderr), parsed. */
  serverLog(): ServerLogLine[] {
    const out: ServerLogLine[] = [];
    for (const line of (this.serve?.stderr ?? '').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as ServerLogLine);
      } catch {
        // a line cut by the output cap
      }
    }
    return out;
  }

  /** Runs a command in the server's namespace (e.g. curl the API from loopback). */
  serverExec(cmd: string, args: string[], timeoutMs = 30_000): Promise<ExecResult> {
    return this.server.exec(cmd, args, { timeoutMs });
  }

  /** What is left of this lab: processes naming its directory, mounts under it, its namespaces. */
  leftovers(): string[] {
    const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(this.lab.id));
    return [...processesUsing(this.dir).map((p) => `process ${p}`), ...mountsUnder(this.dir).map((m) => `mount ${m}`), ...ns.map((n) => `netns ${n}`), ...(existsSync(this.dir) ? [`dir ${this.dir}`] : [])];
  }

  /** Power off every blade, stop serve, delete namespaces and directories. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    await Promise.all(this.all().map((b) => b.powerOff().catch(() => undefined)));
    if (this.serve !== null) await this.serve.kill('SIGTERM', 5000);
    await this.lab.cleanup();
    this.cleanupSync();
  }

  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    liveLabs.delete(this);
    this.lab.cleanupSync();
    removeDirSync(this.dir);
  }
}

/** Debug aid: dumps every blade's journal and events plus serve's log tail. */
export function labReport(lab: SwarmLab): string {
  const parts: string[] = [];
  for (const b of lab.all()) parts.push(`--- ${b.name} (boot ${b.bootCount}, ip ${b.ip ?? '-'})\n${b.events.join(' | ')}\n${b.journal.slice(-60).join('\n')}`);
  parts.push(`--- serve\n${(lab.serve?.stderr ?? '').split('\n').slice(-60).join('\n')}`);
  return parts.join('\n');
}

/**
 * A switch and a server namespace (address `serverIp`/24), torn down by
 * t.teardown (and on exit); serve not started yet (SwarmLab.startServe).
 */
export async function createSwarmLab(t: Teardown, o: Pick<SwarmLabOptions, 'serverIp' | 'httpPort' | 'prefix'> = {}): Promise<SwarmLab> {
  installHandlers();
  removeStaleDirs();
  const dir = mkdtempSync(`/tmp/${DIR_PREFIX}${process.pid}-`);
  const lab = await createLab(t, { prefix: o.prefix ?? 'sbw' });
  const serverIp = o.serverIp ?? '10.78.0.1';
  const sw = await lab.switch();
  const srv = await lab.namespace('server');
  const sl = new SwarmLab(lab, sw, srv, dir, serverIp, o.httpPort ?? 8080);
  liveLabs.add(sl);
  t.teardown(() => sl.cleanup());
  await sw.plug(srv, { address: `${serverIp}/24` });
  // serve binds 0.0.0.0:67; a wildcard socket sends 255.255.255.255 by the routing table.
  await srv.ip('route', 'add', 'default', 'dev', 'eth0');
  return sl;
}

/** createSwarmLab + startServe: the switch, `swarmboot serve --dhcp full` on the given profiles, ready for blades. */
export async function startSwarmLab(t: Teardown, o: SwarmLabOptions): Promise<SwarmLab> {
  const sl = await createSwarmLab(t, o);
  await sl.startServe(o);
  return sl;
}

/** `docker node ls` rows as the issue polls them. */
export interface NodeRow {
  id: string;
  hostname: string;
  status: string;
  availability: string;
  managerStatus: string;
  self: boolean;
}

export async function nodeList(b: Blade): Promise<NodeRow[]> {
  const out = await b.dockerOk(['node', 'ls', '--format', '{{.ID}}|{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}|{{.Self}}']);
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id = '', hostname = '', status = '', availability = '', managerStatus = '', self = ''] = l.split('|');
      return { id, hostname, status, availability, managerStatus, self: self === 'true' };
    });
}

/** Node labels (`docker node inspect`), by node ID or hostname. */
export async function nodeLabels(b: Blade, node: string): Promise<Record<string, string>> {
  return JSON.parse(await b.dockerOk(['node', 'inspect', '--format', '{{json .Spec.Labels}}', node])) as Record<string, string>;
}

