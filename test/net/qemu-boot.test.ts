/**
 * Real firmware end to end: QEMU blades network-boot from `swarmboot serve
 * --dhcp full` over a bridge inside network namespaces, all at once:
 *
 *   mgr1     52:54:00:5b:00:01  BIOS, iPXE NIC ROM        Ignition by URL
 *   worker1  52:54:00:5b:00:11  UEFI, OVMF's own PXE      oem initrd (iPXE, initrd --name)
 *   worker4  52:54:00:5b:00:21  BIOS, pxelinux.0          oem initrd over TFTP
 *   stranger 52:54:00:5b:00:99  BIOS, iPXE NIC ROM        in no profile: no offer
 *
 * The OS is the stand-in (test/helpers/standin-os.ts) under the Flatcar
 * asset names, so every URL and TFTP path is the production one. Its serial
 * report must carry the SHA-256 of exactly what `swarmboot render` gives for
 * that MAC, and swarmboot's boot trail must list every step it served.
 *
 * Accelerator: TCG (SWARMBOOT_VM_ACCEL=auto probes KVM first, =kvm forces it).
 * Skips, with the reason, only when QEMU cannot run or namespaces cannot be made.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzip, readNewc } from '../../ignition/cpio.js';
import { OEM_CONFIG_PATH } from '../../server/boot/layout.js';
import { loadProfileDir } from '../../server/profiles/load.js';
import type { TrailStep } from '../../server/state/machines.js';
import { runCli } from '../helpers/cli.js';
import { missingTools, netnsUnavailable } from '../helpers/netns.js';
import {
  BladeLab,
  chooseAccel,
  firmwareProblem,
  FIRMWARES,
  formatTrailStep,
  LAB_SERVER_URL,
  missingTrailStep,
  NO_BOOT_OFFER,
  pickBlades,
  plainSerial,
  pxelinuxChainScript,
  qemuArgs,
  qemuProblem,
  Vm,
  type Accel,
  type BladeSpec,
} from '../helpers/qemu.js';
import { installStandin, modinfoDepends, moduleLoadOrder, parseStandinLog, prepareStandin, REPO_ROOT, type StandinOs } from '../helpers/standin-os.js';

const MEMORY_MB = 384;
/** Every wait is bounded; the whole file must stay well under 10 minutes under TCG on 2 cores. */
const BOOT_DEADLINE_MS = 6 * 60_000;
const STRANGER_DEADLINE_MS = 3 * 60_000;

const sha256 = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

/** The example profiles, with the iPXE worker profile switched to oem delivery so UEFI iPXE's `initrd --name` path is covered too. */
function writeTestProfiles(dir: string): void {
  cpSync(join(REPO_ROOT, 'profiles'), dir, { recursive: true });
  const file = join(dir, 'workers.yaml');
  const text = readFileSync(file, 'utf8');
  const anchor = '\n  worker:\n';
  if (text.split(anchor).length !== 2) throw new Error(`profiles/workers.yaml no longer has exactly one "  worker:" profile; update ${import.meta.url}`);
  writeFileSync(file, text.replace(anchor, `${anchor}    ignition: oem\n`));
}

const qemuWhy = qemuProblem();
const nsWhy = netnsUnavailable() ?? missingTools('curl', 'ip');

if (qemuWhy !== null) {
  t.comment(`skipping: ${qemuWhy}`);
  t.plan(0, qemuWhy);
} else {
  t.setTimeout(9 * 60_000);

  t.test('pure parts: command lines, chain script, module order, serial parsing, blade choice', async (t) => {
    const base = { name: 'b', mac: '52:54:00:5b:00:01', memoryMb: 256, accel: 'tcg' as Accel, net: { tap: 'tap0' }, serialLog: '/x/b.log', workDir: '/x/b' };
    const bios = qemuArgs({ ...base, firmware: 'bios' }).join(' ');
    t.match(bios, /-machine pc,graphics=off/);
    t.match(bios, /virtio-net-pci,netdev=n0,mac=52:54:00:5b:00:01,bootindex=1/, 'BIOS keeps the iPXE NIC ROM');
    t.match(bios, /-netdev tap,id=n0,ifname=tap0,script=no,downscript=no/);
    t.notMatch(bios, /-kernel/);
    const uefi = qemuArgs({ ...base, firmware: 'uefi' }).join(' ');
    t.match(uefi, /-machine q35/);
    t.match(uefi, /if=pflash,format=raw,readonly=on,file=\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd/);
    t.match(uefi, /if=pflash,format=raw,file=\/x\/b\/OVMF_VARS\.fd/, 'a per-VM copy of the variable store');
    t.match(uefi, /romfile=,bootindex=1/, 'no option ROM: OVMF runs its own PXE client');
    const pxl = qemuArgs({ ...base, firmware: 'pxelinux', tftpServer: '10.77.0.1' }).join(' ');
    t.match(pxl, /-kernel \/usr\/lib\/ipxe\/ipxe\.lkrn -initrd \/x\/b\/pxelinux-chain\.ipxe/);
    t.match(qemuArgs({ ...base, firmware: 'bios', accel: 'kvm' }).join(' '), /-accel kvm -cpu host/);

    const script = pxelinuxChainScript('10.77.0.1');
    t.match(script, /^#!ipxe\n/);
    t.match(script, /chain tftp:\/\/10\.77\.0\.1\/pxelinux\.0/);
    t.match(script, /set net0\.dhcp\/filename pxelinux\.0/);
    t.throws(() => pxelinuxChainScript('10.0.0.1; shell'));

    const deps: Record<string, string[]> = { virtio_net: ['virtio_ring', 'virtio', 'net_failover'], net_failover: ['failover'], virtio: ['virtio_ring'], virtio_pci: ['virtio_ring', 'virtio'] };
    t.strictSame(moduleLoadOrder(['virtio_pci', 'virtio_net'], (n) => deps[n] ?? []), ['virtio_ring', 'virtio', 'virtio_pci', 'failover', 'net_failover', 'virtio_net']);
    const ko = Buffer.concat([Buffer.from('\x7fELF...\0license=GPL\0depends=virtio_ring,virtio\0retpoline=Y\0', 'latin1')]);
    t.strictSame(modinfoDepends(ko), ['virtio_ring', 'virtio'], '.modinfo depends= is read');
    t.strictSame(modinfoDepends(Buffer.from('\0depends=\0intree=Y\0', 'latin1')), [], 'an empty depends= is no dependency');

    const log = [
      'SeaBIOS (version 1.16.2)',
      '[    1.0] random kernel line',
      'swarmboot-standin: boot kernel=6.1.0-56-cloud-amd64',
      'swarmboot-standin: mac=52:54:00:5b:00:01',
      'swarmboot-standin: ip=10.77.0.101',
      `swarmboot-standin: oem-sha256=${'a'.repeat(64)}`,
      'swarmboot-standin: url=http://10.77.0.1:8080/ignition?mac=52-54-00-5b-00-01',
      `swarmboot-standin: url-sha256=${'b'.repeat(64)}`,
      'swarmboot-standin: done',
    ].join('\r\n');
    t.strictSame(parseStandinLog(log), {
      booted: true,
      kernel: '6.1.0-56-cloud-amd64',
      mac: '52:54:00:5b:00:01',
      ip: '10.77.0.101',
      oemSha256: 'a'.repeat(64),
      configUrl: 'http://10.77.0.1:8080/ignition?mac=52-54-00-5b-00-01',
      urlSha256: 'b'.repeat(64),
      errors: [],
      done: true,
    });
    const cut = parseStandinLog('swarmboot-standin: boot kernel=x\nswarmboot-standin: oem=absent\nswarmboot-standin: url=none\nswarmboot-standin: error=fetch-failed\nswarmboot-standin: url-sha256=abc');
    t.equal(cut.oemSha256, null);
    t.equal(cut.configUrl, null);
    t.equal(cut.urlSha256, null, 'a cut-short hash does not count');
    t.strictSame(cut.errors, ['error=fetch-failed']);
    t.equal(cut.done, false);

    t.match(plainSerial('\x1b[2J\x1b[0mNo configuration methods \r\nsucceeded'), NO_BOOT_OFFER, 'iPXE\'s give-up line, wrapped at 80 columns');

    const examples = [...loadProfileDir(join(REPO_ROOT, 'profiles')).machines.values()].map((m) => ({
      mac: m.mac,
      hostname: m.hostname,
      boot: loadProfileDir(join(REPO_ROOT, 'profiles')).profiles.get(m.profile)?.boot ?? 'ipxe',
    }));
    const mixed = pickBlades(examples, 3, 'mixed', 384);
    t.strictSame(new Set(mixed.map((b) => b.firmware)), new Set(FIRMWARES), 'three blades from the examples cover every firmware variant');
    t.ok(mixed.some((b) => b.mac === '52:54:00:5b:00:21' && b.firmware === 'pxelinux'), 'the pxelinux profile machine boots pxelinux');
    t.ok(pickBlades(examples, 5, 'uefi', 384).every((b) => b.firmware === 'uefi'));
    t.equal(pickBlades(examples, 99, 'bios', 384).length, examples.length);
  });

  let standin: StandinOs | undefined;
  t.test('stand-in OS: Debian kernel + busybox initramfs boots to its init under TCG', async (t) => {
    standin = await prepareStandin({ say: (line) => t.comment(line) });
    t.comment(`stand-in kernel ${standin.kernelVersion}, initramfs ${standin.initrd}`);
    const dir = mkdtempSync(join(tmpdir(), 'swarmboot-standin-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const vm = Vm.start({
      name: 'standin-direct',
      mac: '52:54:00:5b:00:fe',
      firmware: 'bios',
      memoryMb: 256,
      accel: 'tcg',
      // QEMU's user network, restricted: the VM reaches nothing but QEMU's own DHCP.
      net: { user: true },
      serialLog: join(dir, 'serial.log'),
      workDir: dir,
      direct: { kernel: standin.kernel, initrd: standin.initrd, append: 'console=ttyS0 ignition.config.url=oem:///config.ign' },
    });
    t.teardown(() => vm.stop());
    const exit = await vm.waitForExit(90_000);
    t.ok(exit, `the VM powered itself off${exit ? '' : ' (timed out)'} ${vm.qemuErrors()}`);
    const report = parseStandinLog(vm.serial());
    t.ok(report.booted, 'init ran (the kernel unpacked our newc archive)');
    t.equal(report.mac, '52:54:00:5b:00:fe', 'virtio-net came up (modules loaded in order)');
    t.match(report.ip ?? '', /^10\.0\.2\./, 'udhcpc configured the interface');
    t.equal(report.configUrl, 'oem:///config.ign');
    t.strictSame(report.errors, ['error=oem-url-missing'], 'no oem initrd here, and the report says so');
    t.ok(report.done);
    if (!report.done) t.comment(plainSerial(vm.serial()).slice(-3000));
  });

  if (nsWhy !== null) {
    t.comment(`skipping the blade boots: ${nsWhy}`);
    t.test('blades boot from swarmboot', { skip: nsWhy }, async () => {});
  } else {
    t.test('BIOS iPXE, UEFI OVMF and pxelinux blades boot from swarmboot at once; a stranger gets no offer', async (t) => {
      for (const fw of FIRMWARES) {
        const why = firmwareProblem(fw);
        if (why !== null) t.fail(why);
      }
      if (standin === undefined) {
        t.fail('the stand-in OS could not be prepared (see the test above)');
        return;
      }
      const dir = mkdtempSync(join(tmpdir(), 'swarmboot-qemu-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const profilesDir = join(dir, 'profiles');
      const assetsDir = join(dir, 'assets');
      const stateDir = join(dir, 'state');
      writeTestProfiles(profilesDir);
      const set = loadProfileDir(profilesDir);
      for (const p of set.profiles.values()) installStandin(standin, assetsDir, p.flatcar);
      mkdirSync(stateDir, { recursive: true });

      const accelMode = process.env.SWARMBOOT_VM_ACCEL ?? 'tcg';
      const choice =
        accelMode === 'auto'
          ? await chooseAccel({ standin, workDir: join(dir, 'probe'), uefi: true })
          : { accel: (accelMode === 'kvm' ? 'kvm' : 'tcg') as Accel, reason: `SWARMBOOT_VM_ACCEL=${accelMode}` };
      t.comment(`accelerator: ${choice.accel} (${choice.reason})`);

      const blades: BladeSpec[] = [
        { name: 'mgr1', mac: '52:54:00:5b:00:01', firmware: 'bios', memoryMb: MEMORY_MB },
        { name: 'worker1', mac: '52:54:00:5b:00:11', firmware: 'uefi', memoryMb: MEMORY_MB },
        { name: 'worker4', mac: '52:54:00:5b:00:21', firmware: 'pxelinux', memoryMb: MEMORY_MB },
        { name: 'stranger', mac: '52:54:00:5b:00:99', firmware: 'bios', memoryMb: MEMORY_MB },
      ];
      const known = blades.filter((b) => b.name !== 'stranger');
      const stranger = blades.find((b) => b.name === 'stranger')!;
      t.notOk(set.machines.has(stranger.mac as never), 'the stranger is in no profile');
      t.equal(set.cluster.unknownMachines.policy, 'ignore', 'default policy: unknown machines are ignored');

      const lab = await BladeLab.start({ teardown: t, workDir: join(dir, 'vms'), profilesDir, assetsDir, stateDir, blades, accel: choice.accel });
      const vmOf = (name: string): Vm => lab.blades.find((b) => b.spec.name === name)!.vm;

      // What the blades must receive: exactly what `swarmboot render` gives (same profiles, same server key).
      const expected = new Map<string, { ignition: string; oemConfig: string | null }>();
      for (const b of known) {
        const common = ['--mac', b.mac, '--profiles', profilesDir, '--state', stateDir, '--server-url', LAB_SERVER_URL];
        const ignFile = join(dir, `${b.name}.ign`);
        const oemFile = join(dir, `${b.name}.oem.cpio.gz`);
        const ign = await runCli(['render', 'ignition', ...common, '-o', ignFile]);
        t.equal(ign.code, 0, `render ignition ${b.mac} ${ign.err}`);
        const oem = await runCli(['render', 'oem', ...common, '-o', oemFile]);
        t.equal(oem.code, 0, `render oem ${b.mac} ${oem.err}`);
        const entry = readNewc(gunzip(readFileSync(oemFile))).find((r) => r.name === OEM_CONFIG_PATH);
        expected.set(b.mac, { ignition: sha256(readFileSync(ignFile)), oemConfig: entry ? sha256(entry.data) : null });
      }

      const strangerGaveUp = vmOf('stranger').waitForSerial(NO_BOOT_OFFER, STRANGER_DEADLINE_MS);
      const exits = await Promise.all(known.map((b) => vmOf(b.name).waitForExit(BOOT_DEADLINE_MS)));
      const elapsed = (Date.now() - lab.startedAt) / 1000;
      t.comment(`blades finished after ${elapsed.toFixed(0)} s`);

      const wantTrail: Record<string, { step: TrailStep; detail?: RegExp }[]> = {
        mgr1: [
          { step: 'dhcp-discover' },
          { step: 'dhcp-offer', detail: /\/ipxe\?mac=52-54-00-5b-00-01$/ },
          { step: 'dhcp-ack' },
          { step: 'ipxe-script' },
          { step: 'kernel', detail: /flatcar_production_pxe\.vmlinuz$/ },
          { step: 'initrd', detail: /flatcar_production_pxe_image\.cpio\.gz$/ },
          { step: 'ignition' },
        ],
        worker1: [
          { step: 'dhcp-discover' },
          { step: 'dhcp-offer', detail: /^ipxe\.efi$/ },
          { step: 'dhcp-ack' },
          { step: 'tftp', detail: /^tftp:ipxe\.efi$/ },
          { step: 'dhcp-offer', detail: /\/ipxe\?mac=52-54-00-5b-00-11$/ },
          { step: 'ipxe-script' },
          { step: 'kernel', detail: /flatcar_production_pxe\.vmlinuz$/ },
          { step: 'initrd', detail: /flatcar_production_pxe_image\.cpio\.gz$/ },
          { step: 'oem' },
        ],
        worker4: [
          { step: 'dhcp-discover' },
          { step: 'dhcp-ack' },
          { step: 'tftp', detail: /^tftp:pxelinux\.0$/ },
          { step: 'tftp', detail: /^tftp:ldlinux\.c32$/ },
          { step: 'pxelinux-config', detail: /^tftp:pxelinux\.cfg\/01-52-54-00-5b-00-21$/ },
          { step: 'kernel', detail: /^tftp:flatcar\/.*flatcar_production_pxe\.vmlinuz$/ },
          { step: 'initrd', detail: /^tftp:flatcar\/.*flatcar_production_pxe_image\.cpio\.gz$/ },
          { step: 'oem', detail: /^tftp:oem\/52-54-00-5b-00-21\.cpio\.gz$/ },
        ],
      };

      for (const [i, b] of known.entries()) {
        await t.test(`${b.name} (${b.firmware}, ${b.mac})`, async (t) => {
          const vm = vmOf(b.name);
          const report = parseStandinLog(vm.serial());
          const want = expected.get(b.mac)!;
          const oemDelivery = set.profiles.get(set.machines.get(b.mac as never)!.profile)!.ignition === 'oem';
          t.ok(exits[i], `powered off by itself within ${BOOT_DEADLINE_MS / 1000} s ${vm.qemuErrors()}`);
          t.ok(report.booted, 'the stand-in init ran');
          t.equal(report.mac, b.mac);
          t.strictSame(report.errors, [], 'no errors in the report');
          if (oemDelivery) {
            t.equal(report.oemSha256, want.oemConfig, 'config.ign from the oem initrd equals the one in `swarmboot render oem`');
            t.equal(report.oemSha256, want.ignition, '... which is `swarmboot render ignition`');
            t.equal(report.configUrl, 'oem:///config.ign');
          } else {
            t.equal(report.oemSha256, null, 'no oem initrd');
            t.equal(report.configUrl, `${LAB_SERVER_URL}/ignition?mac=${b.mac.replace(/:/g, '-')}`);
            t.equal(report.urlSha256, want.ignition, 'what the Ignition URL returned equals `swarmboot render ignition`');
          }
          const trail = await lab.trail(b.mac);
          const missing = missingTrailStep(trail, wantTrail[b.name] ?? []);
          t.equal(missing, null, 'the boot trail lists every step swarmboot served, in order');
          if (missing !== null || !report.done) {
            t.comment(trail.map((e) => formatTrailStep(b.name, e, lab.startedAt)).join('\n'));
            t.comment(plainSerial(vm.serial()).split('\n').filter((l) => !l.startsWith('[')).slice(-40).join('\n'));
          }
        });
      }

      await t.test('stranger (unknown MAC, BIOS iPXE)', async (t) => {
        const gaveUp = await strangerGaveUp;
        t.ok(gaveUp, `the firmware gave up on DHCP (${NO_BOOT_OFFER}) within ${STRANGER_DEADLINE_MS / 1000} s`);
        const trail = await lab.trail(stranger.mac);
        t.notOk(trail.some((e) => e.step === 'dhcp-offer' || e.step === 'dhcp-ack' || e.step === 'proxy-offer'), 'swarmboot never offered it anything');
        t.notMatch(lab.serve.output, new RegExp(`"mac":"${stranger.mac}"[^\\n]*-> (OFFER|ACK)`), 'no OFFER or ACK in the server log');
        const metrics = await lab.serverNs.exec('curl', ['-sS', '--max-time', '5', 'http://127.0.0.1:8080/metrics'], { timeoutMs: 10_000 });
        t.match(metrics.stdout, /swarmboot_dhcp_ignored_total\{[^}]*reason="unknown-mac"[^}]*\} [1-9]/, 'the server saw the stranger and ignored it');
        if (!gaveUp) t.comment(plainSerial(vmOf('stranger').serial()).slice(-2000));
      });

      await t.test('teardown leaves no VM, tap, bridge or namespace', async (t) => {
        const pids = lab.blades.map((b) => b.vm.pid).filter((p): p is number => p !== undefined);
        const names = [lab.switchNs.name, lab.serverNs.name];
        await lab.stop();
        t.ok(lab.blades.every((b) => !b.vm.running), 'every QEMU exited');
        for (const pid of pids) {
          let alive = true;
          try {
            process.kill(pid, 0);
          } catch {
            alive = false;
          }
          t.notOk(alive, `QEMU pid ${pid} is gone`);
        }
        const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
        for (const n of names) t.notMatch(left, n, `namespace ${n} (and the bridge and taps in it) removed`);
        t.notOk(lab.serve.alive(), 'serve stopped');
      });
    });
  }
}
