/**
 * Network-namespace lab for tests that need real L2 peers (DHCP clients,
 * blades, QEMU) without touching the host's own interfaces.
 *
 *   import { createLab, netnsUnavailable, missingTools, waitFor } from '../helpers/netns.js';
 *
 *   const why = netnsUnavailable() ?? missingTools('udhcpc');
 *   if (why !== null) t.plan(0, why);                   // whole file skipped, reason printed
 *   else t.test('...', async (t) => {
 *     const lab = await createLab(t);                    // torn down by t.teardown
 *     const sw = await lab.switch();                     // namespace holding bridge br0
 *     const srv = await lab.namespace('server');
 *     await sw.plug(srv, { address: '10.77.0.1/24' });   // veth: br0 <-> srv's eth0
 *     const cli = await lab.namespace('client');
 *     await sw.plug(cli, { mac: '52:54:00:00:00:01' }); // no address: DHCP will give one
 *     const p = srv.spawn('node', ['server.js']);       // long-running, output captured
 *     await p.waitFor(/listening/, 20_000);
 *     const r = await cli.exec('udhcpc', [...], { timeoutMs: 10_000 });
 *   });
 *
 * API
 *   netnsUnavailable(): string | null     why namespaces cannot be used (not root, `ip netns` fails), or null
 *   missingTools(...cmds): string | null  which commands are not installed, or null
 *   createLab(t, { prefix? }): Lab        a lab whose cleanup runs on t.teardown, on process exit, and
 *                                         on SIGINT/SIGTERM/SIGHUP; stale labs of dead test processes are
 *                                         removed when a new one is created
 *   Lab.namespace(name): Netns            a new namespace "<prefix><pid>-<n>-<name>" with lo up
 *   Lab.switch(name?): Switch             a namespace with an up bridge br0 (no STP, no forward delay)
 *   Lab.link(a, b, opts?)                 a veth pair straight between two namespaces
 *   Lab.cleanup()                         kills every process in the lab's namespaces, deletes them (idempotent)
 *   Switch.plug(ns, { ifname?, address?, mac?, mtu? }) -> ifname in ns (default eth0, eth1, ...)
 *   Netns.exec(cmd, args, { timeoutMs?, env?, cwd?, input? }) -> { code, signal, stdout, stderr, ms }
 *   Netns.run(cmd, args, opts?)           exec that throws (with the output) unless the exit code is 0
 *   Netns.spawn(cmd, args, { env?, cwd?, via? }) -> Proc   `via: 'nsenter'` for dockerd-like programs
 *                                         (`ip netns exec` remounts /sys; nsenter does not)
 *   Netns.pids(): number[]                processes inside the namespace
 *   Proc.output / stdout / stderr         everything captured so far
 *   Proc.waitFor(re, timeoutMs)           resolves with the match once the output matches; rejects on
 *                                         timeout or if the process exits first
 *   Proc.exited                           resolves { code, signal }
 *   Proc.kill(signal?, graceMs?)          signal the process group, SIGKILL after graceMs
 *   waitFor(fn, { timeoutMs, intervalMs?, what }) polls until fn() gives a truthy value
 *
 * Everything is created inside namespaces the lab made: veth pairs are
 * created with both ends already in lab namespaces (`ip -n SW link add ...
 * peer ... netns NS`), so no interface ever appears in the host namespace,
 * and deleting a namespace removes its veth ends. Addresses are whatever the
 * test passes (use private 10.x ranges). Waits are bounded.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { pidAlive } from '../../server/pid.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How to enter the namespace. Default 'ip-netns'. */
  via?: 'ip-netns' | 'nsenter';
  /** Keep at most this many characters of output (the tail). Default 4 MiB. */
  maxOutput?: number;
}

const NETNS_DIR = '/var/run/netns';
const DEFAULT_EXEC_TIMEOUT = 30_000;

export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespace tests need root (run as root or skip)';
  const probe = `sbtprobe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 10_000 });
  if (add.error !== undefined) return `iproute2 "ip" cannot run: ${add.error.message}`;
  if (add.status !== 0) return `"ip netns add" fails here: ${add.stderr.trim()}`;
  const exec = spawnSync('ip', ['netns', 'exec', probe, 'ip', 'link', 'set', 'lo', 'up'], { encoding: 'utf8', timeout: 10_000 });
  spawnSync('ip', ['netns', 'del', probe], { timeout: 10_000 });
  if (exec.status !== 0) return `"ip netns exec" fails here: ${(exec.stderr ?? '').trim()}`;
  return null;
}

export function missingTools(...cmds: string[]): string | null {
  const missing = cmds.filter((c) => spawnSync('sh', ['-c', `command -v "$0"`, c], { timeout: 5000 }).status !== 0);
  return missing.length === 0 ? null : `missing tool(s): ${missing.join(', ')} (install the Debian package providing them)`;
}

export async function waitFor<T>(fn: () => T | Promise<T>, opts: { timeoutMs: number; intervalMs?: number; what: string }): Promise<NonNullable<T>> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

function execCmd(file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT, killSignal: 'SIGKILL', maxBuffer: 64 << 20, encoding: 'utf8', ...(opts.env && { env: opts.env }), ...(opts.cwd && { cwd: opts.cwd }) },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
        resolve({
          code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
          signal: e?.signal ?? null,
          stdout,
          stderr: e !== null && typeof e.code !== 'number' && !e.signal ? `${stderr}${e.message}` : stderr,
          ms: Date.now() - started,
        });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** A long-running process inside a namespace, in its own process group. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private err = '';
  private all = '';
  private done = false;
  private readonly max: number;
  private readonly watchers = new Set<() => void>();

  constructor(name: string, child: ChildProcess, maxOutput: number) {
    this.name = name;
    this.child = child;
    this.max = maxOutput;
    const keep = (s: string): string => (s.length > this.max ? s.slice(s.length - this.max) : s);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.out = keep(this.out + d);
      this.all = keep(this.all + d);
      this.notify();
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.err = keep(this.err + d);
      this.all = keep(this.all + d);
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      child.on('error', (e) => {
        this.err += `spawn error: ${e.message}\n`;
        this.all += `spawn error: ${e.message}\n`;
        this.done = true;
        this.notify();
        resolve({ code: null, signal: null });
      });
      child.on('exit', (code, signal) => {
        this.done = true;
        this.notify();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get output(): string {
    return this.all;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  alive(): boolean {
    return !this.done;
  }

  private notify(): void {
    for (const w of [...this.watchers]) w();
  }

  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.all.match(re);
        if (m !== null) {
          finish();
          resolve(m);
          return true;
        }
        if (this.done) {
          finish();
          reject(new Error(`${this.name} exited before printing ${re}; output:\n${this.all.slice(-4000)}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${this.name}; output:\n${this.all.slice(-4000)}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.watchers.delete(watcher);
      };
      const watcher = (): void => void check();
      this.watchers.add(watcher);
      check();
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.done || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {
      try {
        this.child.kill(sig);
      } catch {
        // already gone
      }
    }
  }

  /** Signals the process group; SIGKILL if it is still there after graceMs. Resolves when it exited. */
  async kill(sig: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.signal(sig);
    if (sig !== 'SIGKILL') {
      const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
      const r = await this.exited;
      clearTimeout(timer);
      return r;
    }
    return this.exited;
  }
}

export class Netns {
  readonly name: string;
  readonly path: string;
  private readonly lab: Lab;

  constructor(lab: Lab, name: string) {
    this.lab = lab;
    this.name = name;
    this.path = `${NETNS_DIR}/${name}`;
  }

  exec(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    return execCmd('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  async run(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(cmd, args, opts);
    if (r.code !== 0) throw new Error(`[${this.name}] ${cmd} ${args.join(' ')} failed (exit ${r.code}, signal ${r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r;
  }

  /** `ip -n NS <args>`: iproute2 against this namespace without entering it. */
  ip(...args: string[]): Promise<ExecResult> {
    return this.lab.ipOk(['-n', this.name, ...args]);
  }

  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): Proc {
    const argv = opts.via === 'nsenter' ? ['nsenter', `--net=${this.path}`, cmd, ...args] : ['ip', 'netns', 'exec', this.name, cmd, ...args];
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.env && { env: opts.env }),
      ...(opts.cwd && { cwd: opts.cwd }),
    });
    const proc = new Proc(`${cmd}@${this.name}`, child, opts.maxOutput ?? 4 << 20);
    this.lab.track(proc);
    return proc;
  }

  pids(): number[] {
    return nsPids(this.name);
  }
}

export interface PlugOptions {
  /** Interface name inside `ns`. Default eth0, eth1, ... */
  ifname?: string;
  /** CIDR, e.g. 10.77.0.1/24. */
  address?: string;
  mac?: string;
  mtu?: number;
}

export class Switch {
  readonly ns: Netns;
  readonly bridge = 'br0';
  private ports = 0;
  private readonly lab: Lab;

  constructor(lab: Lab, ns: Netns) {
    this.lab = lab;
    this.ns = ns;
  }

  /** Connects `ns` to the bridge with a veth pair; returns the interface name inside `ns`. */
  async plug(ns: Netns, opts: PlugOptions = {}): Promise<string> {
    const port = `p${++this.ports}`;
    const ifname = opts.ifname ?? this.lab.nextIfname(ns);
    await this.lab.ipOk(['-n', this.ns.name, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns.name]);
    await this.lab.ipOk(['-n', this.ns.name, 'link', 'set', port, 'master', this.bridge, 'up']);
    await this.lab.configure(ns, ifname, opts);
    return ifname;
  }
}

function nsPids(name: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

/** Kill everything inside, then delete: synchronous, for exit and signal handlers too. */
function destroyNamespaceSync(name: string): void {
  for (let round = 0; round < 3; round++) {
    const pids = nsPids(name);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    spawnSync('sleep', ['0.2']);
  }
  spawnSync('ip', ['netns', 'del', name], { timeout: 10_000 });
}

const liveLabs = new Set<Lab>();
let handlersInstalled = false;

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const cleanAll = (): void => {
    for (const lab of [...liveLabs]) lab.cleanupSync();
  };
  process.on('exit', cleanAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      cleanAll();
      process.removeListener(sig, handler);
      // Re-raise so the process ends the way the sender meant.
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/** Namespaces left by test processes that died without cleaning up (SIGKILL). Ours by name and dead by pid. */
function removeStale(prefix: string): void {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  const re = new RegExp(`^${prefix}(\\d+)-`);
  for (const line of r.stdout?.split('\n') ?? []) {
    const name = line.split(' ')[0] ?? '';
    const m = re.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !pidAlive(pid)) destroyNamespaceSync(name);
  }
}

export class Lab {
  readonly id: string;
  private readonly namespaces: Netns[] = [];
  private readonly procs = new Set<Proc>();
  private readonly ifCount = new Map<string, number>();
  private n = 0;
  private cleaned = false;

  constructor(prefix: string) {
    this.id = `${prefix}${process.pid}-${Lab.serial++}`;
  }

  private static serial = 0;

  async ipOk(args: string[]): Promise<ExecResult> {
    const r = await execCmd('ip', args, { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
    return r;
  }

  track(p: Proc): void {
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
  }

  nextIfname(ns: Netns): string {
    const k = this.ifCount.get(ns.name) ?? 0;
    this.ifCount.set(ns.name, k + 1);
    return `eth${k}`;
  }

  async configure(ns: Netns, ifname: string, opts: PlugOptions): Promise<void> {
    if (opts.mac !== undefined) await this.ipOk(['-n', ns.name, 'link', 'set', ifname, 'address', opts.mac]);
    if (opts.mtu !== undefined) await this.ipOk(['-n', ns.name, 'link', 'set', ifname, 'mtu', String(opts.mtu)]);
    if (opts.address !== undefined) await this.ipOk(['-n', ns.name, 'addr', 'add', opts.address, 'dev', ifname]);
    await this.ipOk(['-n', ns.name, 'link', 'set', ifname, 'up']);
  }

  async namespace(label: string): Promise<Netns> {
    if (this.cleaned) throw new Error('lab already cleaned up');
    const name = `${this.id}-${this.n++}-${label}`.replace(/[^A-Za-z0-9_.-]/g, '_');
    const ns = new Netns(this, name);
    // Registered first, so a failure below is still cleaned up.
    this.namespaces.push(ns);
    await this.ipOk(['netns', 'add', name]);
    await this.ipOk(['-n', name, 'link', 'set', 'lo', 'up']);
    // Quieter links: no IPv6 autoconf chatter on the test segment.
    await ns.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { timeoutMs: 5000 });
    return ns;
  }

  async switch(label = 'switch'): Promise<Switch> {
    const ns = await this.namespace(label);
    await this.ipOk(['-n', ns.name, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await this.ipOk(['-n', ns.name, 'link', 'set', 'br0', 'up']);
    return new Switch(this, ns);
  }

  /** A veth pair straight from `a` to `b`; returns both interface names. */
  async link(a: Netns, b: Netns, opts: { a?: PlugOptions; b?: PlugOptions } = {}): Promise<[string, string]> {
    const ia = opts.a?.ifname ?? this.nextIfname(a);
    const ib = opts.b?.ifname ?? this.nextIfname(b);
    await this.ipOk(['-n', a.name, 'link', 'add', ia, 'type', 'veth', 'peer', 'name', ib, 'netns', b.name]);
    await this.configure(a, ia, opts.a ?? {});
    await this.configure(b, ib, opts.b ?? {});
    return [ia, ib];
  }

  /** Stops every process (group SIGTERM, then SIGKILL), then deletes the namespaces. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    await Promise.all([...this.procs].map((p) => p.kill('SIGTERM', 2000)));
    this.cleanupSync();
  }

  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    liveLabs.delete(this);
    for (const p of this.procs) p.signal('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) destroyNamespaceSync(ns.name);
  }
}

/**
 * A lab cleaned up by t.teardown (and on exit/signals). Removes namespaces
 * of earlier test processes that were SIGKILLed before they could.
 */
export async function createLab(t: Teardown, opts: { prefix?: string } = {}): Promise<Lab> {
  const prefix = opts.prefix ?? 'sbt';
  installProcessHandlers();
  removeStale(prefix);
  const lab = new Lab(prefix);
  liveLabs.add(lab);
  t.teardown(() => lab.cleanup());
  return lab;
}
