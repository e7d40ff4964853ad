/**
 * QEMU blades for the VM tests and the lab: three firmware variants, a
 * command line built by a pure function, the serial console captured to a
 * file per VM, and an accelerator probe.
 *
 * Firmware variants (all with a virtio-net NIC, the MAC from the profiles):
 * - bios:     SeaBIOS with Debian's iPXE NIC ROM (ipxe-qemu): the ROM asks
 *             swarmboot's DHCP as iPXE and gets the per-MAC script URL.
 * - uefi:     OVMF with the NIC's option ROM removed, so OVMF's own UEFI PXE
 *             client boots: swarmboot must chain it to ipxe.efi over TFTP.
 * - pxelinux: SeaBIOS; Debian's ipxe.lkrn is loaded as a kernel with a small
 *             script that does DHCP and runs pxelinux.0 over TFTP, as a
 *             legacy PXE ROM does when handed pxelinux.0. (Every BIOS PXE
 *             ROM QEMU ships is iPXE, which swarmboot rightly sends to its
 *             iPXE script; pxelinux.0 then runs on the ROM's PXE API and
 *             fetches pxelinux.cfg/01-<mac>, the kernel and both initrds
 *             over TFTP, which is the path under test.)
 *
 * Accelerator: TCG unless a short probe boot proves KVM works on the host
 * (on some hosts /dev/kvm exists but a guest hangs or OVMF dies with "KVM
 * internal error").
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MachineDetail, TrailView } from '../../server/http/machines.js';
import type { TrailStep } from '../../server/state/machines.js';
import { createLab, type Lab, type Netns, type Proc } from './netns.js';
import { REPO_ROOT, type StandinOs } from './standin-os.js';

export type Firmware = 'bios' | 'uefi' | 'pxelinux';
export type Accel = 'tcg' | 'kvm';
export const FIRMWARES: readonly Firmware[] = ['bios', 'uefi', 'pxelinux'];

export const QEMU = 'qemu-system-x86_64';

/** Where Debian installs what each variant needs, and the package to install when it is missing. */
export const FIRMWARE_FILES = {
  /** QEMU's default virtio-net ROM; Debian's QEMU finds it in /usr/lib/ipxe/qemu. */
  biosNicRom: { path: '/usr/lib/ipxe/qemu/efi-virtio.rom', pkg: 'ipxe-qemu' },
  ovmfCode: { path: '/usr/share/OVMF/OVMF_CODE_4M.fd', pkg: 'ovmf' },
  ovmfVars: { path: '/usr/share/OVMF/OVMF_VARS_4M.fd', pkg: 'ovmf' },
  ipxeLkrn: { path: '/usr/lib/ipxe/ipxe.lkrn', pkg: 'ipxe' },
} as const;

const NEEDS: Record<Firmware, readonly (keyof typeof FIRMWARE_FILES)[]> = {
  bios: ['biosNicRom'],
  uefi: ['ovmfCode', 'ovmfVars'],
  pxelinux: ['ipxeLkrn'],
};

/** Why QEMU cannot run a VM here, or null. */
export function qemuProblem(): string | null {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) return `${QEMU} cannot run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); apt-get install qemu-system-x86`;
  if (r.status !== 0) return `${QEMU} --version failed: ${r.stderr.trim()}`;
  return null;
}

/** Why a firmware variant cannot run here (a missing Debian file), or null. */
export function firmwareProblem(fw: Firmware): string | null {
  for (const key of NEEDS[fw]) {
    const f = FIRMWARE_FILES[key];
    if (!existsSync(f.path)) return `${fw} firmware needs ${f.path}: apt-get install ${f.pkg}`;
  }
  return null;
}

export interface VmNet {
  /** A tap device that already exists (in the namespace QEMU runs in) and is on the boot bridge. */
  readonly tap?: string;
  /** QEMU's user-mode network, restricted to the VM (probes only). */
  readonly user?: true;
}

export interface VmSpec {
  readonly name: string;
  /** Colon form, e.g. 52:54:00:5b:00:01. */
  readonly mac: string;
  readonly firmware: Firmware;
  readonly memoryMb: number;
  readonly accel: Accel;
  readonly net: VmNet;
  readonly serialLog: string;
  /** Per-VM scratch dir (OVMF variable store, chain script). */
  readonly workDir: string;
  /** pxelinux variant: the TFTP server the chain script asks for pxelinux.0. */
  readonly tftpServer?: string;
  /** Boot this kernel directly instead of from the network (the accelerator probe). */
  readonly direct?: { readonly kernel: string; readonly initrd: string; readonly append: string };
}

/** The iPXE script the pxelinux variant runs in place of a legacy PXE ROM. */
export function pxelinuxChainScript(tftpServer: string): string {
  if (!/^[0-9.]+$/.test(tftpServer)) throw new Error(`tftp server must be an IPv4 address, not ${tftpServer}`);
  return [
    '#!ipxe',
    '# A legacy PXE ROM handed pxelinux.0: DHCP, then run pxelinux.0 from the TFTP server.',
    'dhcp || dhcp || goto failed',
    // pxelinux reads its file name and server from the DHCP reply the PXE API hands it and
    // looks for pxelinux.cfg/ next to that name; edit the stored reply (net0.dhcp) so it says
    // what a legacy ROM's reply would have said, instead of the iPXE script URL.
    'set net0.dhcp/filename pxelinux.0',
    `set net0.dhcp/next-server ${tftpServer}`,
    // iPXE also keeps an offer carrying option 60 "PXEClient" as its proxyDHCP settings, and
    // the PXE API hands pxelinux that copy last: edit it too when it exists.
    'isset ${proxydhcp/filename} && set proxydhcp/filename pxelinux.0 || echo -n',
    `isset \${proxydhcp/next-server} && set proxydhcp/next-server ${tftpServer} || echo -n`,
    `chain tftp://${tftpServer}/pxelinux.0 || goto failed`,
    ':failed',
    'echo swarmboot-lab: pxelinux chain failed',
    'exit 1',
    '',
  ].join('\n');
}

/** Files under workDir the command line refers to. */
export function vmFiles(spec: VmSpec): { ovmfVars: string; chainScript: string } {
  return { ovmfVars: join(spec.workDir, 'OVMF_VARS.fd'), chainScript: join(spec.workDir, 'pxelinux-chain.ipxe') };
}

/** The QEMU command line (arguments after the binary). Pure. */
export function qemuArgs(spec: VmSpec): string[] {
  const files = vmFiles(spec);
  const machine = spec.firmware === 'uefi' ? 'q35' : 'pc';
  const args = [
    '-name', spec.name,
    '-accel', spec.accel,
    ...(spec.accel === 'kvm' ? ['-cpu', 'host'] : []),
    // graphics=off makes SeaBIOS mirror its screen (and the iPXE ROM's) to the serial port.
    '-machine', `${machine},graphics=off`,
    '-m', String(spec.memoryMb),
    '-smp', '1',
    '-nodefaults',
    '-display', 'none',
    '-monitor', 'none',
    '-serial', `file:${spec.serialLog}`,
    // Each boot ends in a power-off (stand-in) or a failure; a reboot would only loop.
    '-no-reboot',
  ];
  if (spec.firmware === 'uefi') {
    args.push(
      '-drive', `if=pflash,format=raw,readonly=on,file=${FIRMWARE_FILES.ovmfCode.path}`,
      '-drive', `if=pflash,format=raw,file=${files.ovmfVars}`,
    );
  }
  let netdev: string;
  if (spec.net.tap !== undefined) netdev = `tap,id=n0,ifname=${spec.net.tap},script=no,downscript=no`;
  else if (spec.net.user === true) netdev = 'user,id=n0,restrict=on';
  else throw new Error(`VM ${spec.name}: no network`);
  // bios keeps QEMU's default NIC ROM, which Debian's QEMU loads from ipxe-qemu (naming it in
  // romfile= makes SeaBIOS skip it under QEMU 7.2). An empty romfile leaves OVMF's own driver
  // and PXE client in charge (uefi), or the NIC without a boot ROM (pxelinux, direct boots).
  const rom = spec.firmware === 'bios' && spec.direct === undefined ? '' : ',romfile=';
  args.push('-netdev', netdev, '-device', `virtio-net-pci,netdev=n0,mac=${spec.mac}${rom},bootindex=1`);
  if (spec.direct !== undefined) {
    args.push('-kernel', spec.direct.kernel, '-initrd', spec.direct.initrd, '-append', spec.direct.append);
  } else if (spec.firmware === 'pxelinux') {
    args.push('-kernel', FIRMWARE_FILES.ipxeLkrn.path, '-initrd', files.chainScript);
  }
  return args;
}

export interface VmExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One running VM. Start it with Vm.start; stop() is safe to call any number of times. */
export class Vm {
  readonly spec: VmSpec;
  readonly exited: Promise<VmExit>;
  private readonly child: ChildProcess;
  private done: VmExit | null = null;
  private stderr = '';

  private constructor(spec: VmSpec, child: ChildProcess) {
    this.spec = spec;
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += s;
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.done = { code, signal };
        resolve(this.done);
      });
      child.once('error', (err) => {
        this.stderr += `\n${err.message}`;
        this.done = { code: null, signal: null };
        resolve(this.done);
      });
    });
  }

  /**
   * Writes the VM's scratch files and starts QEMU, inside network namespace
   * `netns` when given (`ip netns exec` execs QEMU, so the child's pid is QEMU's).
   */
  static start(spec: VmSpec, opts: { netns?: string } = {}): Vm {
    mkdirSync(spec.workDir, { recursive: true });
    const files = vmFiles(spec);
    if (spec.firmware === 'uefi' && spec.direct === undefined) copyFileSync(FIRMWARE_FILES.ovmfVars.path, files.ovmfVars);
    if (spec.firmware === 'pxelinux' && spec.direct === undefined) {
      if (spec.tftpServer === undefined) throw new Error(`VM ${spec.name}: the pxelinux variant needs tftpServer`);
      writeFileSync(files.chainScript, pxelinuxChainScript(spec.tftpServer));
    }
    writeFileSync(spec.serialLog, '');
    const argv = [QEMU, ...qemuArgs(spec)];
    const [cmd, ...args] = opts.netns === undefined ? argv : ['ip', 'netns', 'exec', opts.netns, ...argv];
    const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Vm(spec, child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.done === null;
  }

  /** What QEMU itself printed (errors such as "KVM internal error"), less the note our own SIGTERM causes. */
  qemuErrors(): string {
    return this.stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !/terminating on signal/.test(l))
      .join('\n');
  }

  serial(): string {
    try {
      return readFileSync(this.spec.serialLog, 'latin1');
    } catch {
      return '';
    }
  }

  /** Polls the serial log (as plainSerial text) until `pattern` matches, the VM exits, or `timeoutMs` passes. */
  async waitForSerial(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(plainSerial(this.serial()));
      if (m !== null) return m;
      if (!this.running || Date.now() >= deadline) return pattern.exec(plainSerial(this.serial()));
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Waits for the VM to exit by itself, up to `timeoutMs`; null when it is still running. */
  async waitForExit(timeoutMs: number): Promise<VmExit | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM (QEMU exits at once), then SIGKILL after 3 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    if ((await this.waitForExit(3000)) === null) {
      this.child.kill('SIGKILL');
      await this.waitForExit(3000);
    }
  }
}

/** Whether this process may open /dev/kvm; the reason when not. */
export function kvmDeviceProblem(): string | null {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return null;
  } catch (err) {
    return `/dev/kvm not usable (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}

export interface AccelChoice {
  readonly accel: Accel;
  readonly reason: string;
}

const PROBE_TIMEOUT_MS = 20_000;

/**
 * Picks the accelerator: KVM only when a probe boot under KVM works here.
 * The probe boots the stand-in kernel directly (it reaches its init in 1-2 s
 * under a working KVM, powers off at once) and, when UEFI will be used, OVMF
 * until its boot manager prints; both within PROBE_TIMEOUT_MS.
 */
export async function chooseAccel(opts: { standin: StandinOs; workDir: string; uefi: boolean }): Promise<AccelChoice> {
  const dev = kvmDeviceProblem();
  if (dev !== null) return { accel: 'tcg', reason: `${dev}: using TCG` };
  const base = { memoryMb: 256, accel: 'kvm' as const, net: { user: true as const }, mac: '52:54:00:00:00:fe' };
  const kernel = Vm.start({
    ...base,
    name: 'kvm-probe',
    firmware: 'bios',
    serialLog: join(opts.workDir, 'kvm-probe.log'),
    workDir: join(opts.workDir, 'kvm-probe'),
    direct: { kernel: opts.standin.kernel, initrd: opts.standin.initrd, append: 'console=ttyS0 swarmboot.probe' },
  });
  const booted = await kernel.waitForSerial(/swarmboot-standin: done/, PROBE_TIMEOUT_MS);
  await kernel.stop();
  if (booted === null) {
    const err = kernel.qemuErrors().split('\n')[0] ?? '';
    return { accel: 'tcg', reason: `KVM probe: the stand-in kernel did not reach its init within ${PROBE_TIMEOUT_MS / 1000} s${err ? ` (${err})` : ''}: using TCG` };
  }
  if (opts.uefi) {
    const ovmf = Vm.start({ ...base, name: 'kvm-probe-ovmf', firmware: 'uefi', serialLog: join(opts.workDir, 'kvm-probe-ovmf.log'), workDir: join(opts.workDir, 'kvm-probe-ovmf') });
    const bds = await ovmf.waitForSerial(/BdsDxe|UEFI Interactive Shell|Start PXE/, PROBE_TIMEOUT_MS);
    await ovmf.stop();
    if (bds === null) {
      const err = ovmf.qemuErrors().split('\n')[0] ?? '';
      return { accel: 'tcg', reason: `KVM probe: OVMF did not reach its boot manager within ${PROBE_TIMEOUT_MS / 1000} s${err ? ` (${err})` : ''}: using TCG` };
    }
  }
  return { accel: 'kvm', reason: 'KVM probe boot succeeded: using KVM' };
}

/** The firmware's last words when nothing answered its DHCP (iPXE ROM, then SeaBIOS). */
export const NO_BOOT_OFFER = /No configuration methods\s+succeeded|PXE-E16|No valid offer\s+received/;

/** Serial text without ANSI escapes and carriage returns (SeaBIOS and OVMF paint the screen). */
export function plainSerial(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?=]*[A-Za-z]/g, '').replace(/\x1bc/g, '').replace(/\r/g, '');
}

// ------------------------------------------------------------------ blade lab
//
// What the VM test and `npm run lab` share: a switch namespace holding the
// bridge and one tap per blade (QEMU runs there), a server namespace plugged
// into the bridge running the real `swarmboot serve --dhcp full`, and the
// blades' boot trails read from the server's GET /api/machines/:mac.

export const LAB_SERVER_IP = '10.77.0.1';
export const LAB_POOL = '10.77.0.100-10.77.0.199';
export const LAB_HTTP_PORT = 8080;
export const LAB_SERVER_URL = `http://${LAB_SERVER_IP}:${LAB_HTTP_PORT}`;

export interface BladeSpec {
  readonly name: string;
  readonly mac: string;
  readonly firmware: Firmware;
  readonly memoryMb: number;
}

/** What pickBlades needs to know of a listed machine. */
export interface LabMachine {
  readonly mac: string;
  readonly hostname: string;
  readonly boot: 'ipxe' | 'pxelinux';
}

/**
 * Chooses `count` machines and a firmware for each. pxelinux-profile
 * machines boot through pxelinux (a BIOS path) unless every blade is to be
 * UEFI; with 'mixed' the others alternate BIOS and UEFI, and the first
 * picks cover every variant the profiles allow. Pure.
 */
export function pickBlades(machines: readonly LabMachine[], count: number, firmware: 'bios' | 'uefi' | 'mixed', memoryMb: number): BladeSpec[] {
  let alternate = 0;
  const withFw = [...machines]
    .sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0))
    .map((m) => {
      let fw: Firmware;
      if (firmware === 'uefi') fw = 'uefi';
      else if (m.boot === 'pxelinux') fw = 'pxelinux';
      else if (firmware === 'bios') fw = 'bios';
      else fw = alternate++ % 2 === 0 ? 'bios' : 'uefi';
      return { ...m, fw };
    });
  const picked: typeof withFw = [];
  for (const fw of FIRMWARES) {
    const first = withFw.find((m) => m.fw === fw);
    if (first !== undefined && picked.length < count) picked.push(first);
  }
  for (const m of withFw) if (picked.length < count && !picked.includes(m)) picked.push(m);
  return picked
    .sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0))
    .map((m) => ({ name: m.hostname, mac: m.mac, firmware: m.fw, memoryMb }));
}

export interface Blade {
  readonly spec: BladeSpec;
  readonly vm: Vm;
  readonly tap: string;
}

export interface BladeLabOptions {
  /** Registers the lab's cleanup (a tap Test, or the lab script's own list). */
  readonly teardown: { teardown(fn: () => void | Promise<void>): void };
  /** Serial logs and per-VM files go here. */
  readonly workDir: string;
  readonly profilesDir: string;
  readonly assetsDir: string;
  readonly stateDir: string;
  readonly blades: readonly BladeSpec[];
  readonly accel: Accel;
  readonly logLevel?: string;
  /** Namespace name prefix; stale namespaces with it from dead processes are removed. */
  readonly prefix?: string;
}

/** The `serve` command line (arguments to node) the lab runs. */
export function labServeArgs(o: Pick<BladeLabOptions, 'profilesDir' | 'assetsDir' | 'stateDir' | 'logLevel'>, ifname: string): string[] {
  return [
    '--import', 'tsx', join(REPO_ROOT, 'server/main.ts'), 'serve',
    '--interface', ifname,
    '--dhcp', 'full',
    '--pool', LAB_POOL,
    '--http-port', String(LAB_HTTP_PORT),
    '--tftp-port', '69',
    '--profiles', o.profilesDir,
    '--assets', o.assetsDir,
    '--state', o.stateDir,
    '--log-level', o.logLevel ?? 'info',
  ];
}

export class BladeLab {
  readonly lab: Lab;
  readonly switchNs: Netns;
  readonly serverNs: Netns;
  readonly serve: Proc;
  readonly blades: readonly Blade[];
  readonly startedAt: number;

  private constructor(lab: Lab, switchNs: Netns, serverNs: Netns, serve: Proc, blades: Blade[], startedAt: number) {
    this.lab = lab;
    this.switchNs = switchNs;
    this.serverNs = serverNs;
    this.serve = serve;
    this.blades = blades;
    this.startedAt = startedAt;
  }

  /** Builds the network, starts serve and waits until it serves, then powers on every blade at once. */
  static async start(o: BladeLabOptions): Promise<BladeLab> {
    const lab = await createLab(o.teardown, { prefix: o.prefix ?? 'sbq' });
    const sw = await lab.switch();
    const server = await lab.namespace('server');
    const ifname = await sw.plug(server, { address: `${LAB_SERVER_IP}/24` });
    // serve answers from a 0.0.0.0:67 socket, and Linux routes 255.255.255.255 by the table: without a route it fails with ENETUNREACH.
    await server.ip('route', 'add', 'default', 'dev', ifname);
    const serve = server.spawn(process.execPath, labServeArgs(o, ifname), { cwd: REPO_ROOT });
    await serve.waitFor(/swarmboot: serving on/, 60_000);

    mkdirSync(o.workDir, { recursive: true });
    const taps = o.blades.map((_, i) => `tap${i}`);
    for (const tap of taps) {
      await sw.ns.ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
      await sw.ns.ip('link', 'set', tap, 'master', sw.bridge, 'up');
    }
    // All at once, as a rack powering up: the server sees concurrent DHCP, TFTP and HTTP.
    const startedAt = Date.now();
    const started: Blade[] = o.blades.map((spec, i) => ({
      spec,
      tap: taps[i]!,
      vm: Vm.start(
        {
          name: spec.name,
          mac: spec.mac,
          firmware: spec.firmware,
          memoryMb: spec.memoryMb,
          accel: o.accel,
          net: { tap: taps[i]! },
          serialLog: join(o.workDir, `${spec.name}.serial.log`),
          workDir: join(o.workDir, spec.name),
          tftpServer: LAB_SERVER_IP,
        },
        { netns: sw.ns.name },
      ),
    }));
    const bl = new BladeLab(lab, sw.ns, server, serve, started, startedAt);
    o.teardown.teardown(() => bl.stop());
    return bl;
  }

  /** GET a JSON document from the server's HTTP API (from inside its namespace); null on 404. */
  async api<T>(path: string): Promise<T | null> {
    const r = await this.serverNs.exec('curl', ['-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:${LAB_HTTP_PORT}${path}`], { timeoutMs: 10_000 });
    const nl = r.stdout.lastIndexOf('\n');
    const status = r.stdout.slice(nl + 1).trim();
    if (status === '404') return null;
    if (r.code !== 0 || status !== '200') throw new Error(`GET ${path}: curl exit ${r.code}, HTTP ${status}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout.slice(0, nl)) as T;
  }

  /** The machine's boot trail as swarmboot recorded it; [] when it never saw the MAC. */
  async trail(mac: string): Promise<TrailView[]> {
    const m = await this.api<MachineDetail>(`/api/machines/${mac}`);
    return m?.trail ?? [];
  }

  /** Stops every VM, then serve, then removes the namespaces (with their bridge and taps). Idempotent. */
  async stop(): Promise<void> {
    await Promise.all(this.blades.map((b) => b.vm.stop()));
    await this.lab.cleanup();
  }
}

/** One trail entry as a line of the lab's progress output. */
export function formatTrailStep(name: string, e: TrailView, since: number): string {
  const secs = ((Date.parse(e.at) - since) / 1000).toFixed(1).padStart(6);
  const what = [e.detail, e.ip !== undefined ? `(${e.ip})` : undefined].filter((x) => x !== undefined && x !== '').join(' ');
  return `[${secs}s] ${name.padEnd(10)} ${e.step.padEnd(15)} ${what}`.trimEnd();
}

/** Whether `want` occurs in `trail` in order (other steps may come between). Returns the first step not found. */
export function missingTrailStep(trail: readonly TrailView[], want: readonly { step: TrailStep; detail?: RegExp }[]): string | null {
  let i = 0;
  for (const w of want) {
    while (i < trail.length && !(trail[i]!.step === w.step && (w.detail === undefined || w.detail.test(trail[i]!.detail ?? '')))) i++;
    if (i === trail.length) return `${w.step}${w.detail ? ` ${w.detail}` : ''}`;
    i++;
  }
  return null;
}
