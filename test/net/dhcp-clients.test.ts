/**
 * Real DHCP clients against `swarmboot serve --dhcp full` over a bridge
 * between network namespaces: busybox udhcpc and ISC dhclient get leases,
 * and the boot file / next server they are told matches the architecture
 * they announced (BIOS -> undionly.kpxe, EFI x64 -> ipxe.efi, iPXE -> the
 * HTTP URL of its iPXE script). A MAC no profile lists gets no reply at all.
 *
 * Needs root, iproute2, udhcpc, dhclient, curl; skips with the reason otherwise.
 */
import t from 'tap';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { missingTools, netnsUnavailable, waitFor, type Lab, type Netns, type Switch } from '../helpers/netns.js';
import { netTestDir, serverLab, parseUdhcpc, startServe, type Served } from './fixtures/swarmboot.js';

type Test = Pick<typeof t, 'equal' | 'match'>;

const SERVER_IP = '10.77.0.1';
const POOL = '10.77.0.100-10.77.0.199';
const macs = {
  bios: '52:54:00:77:00:01',
  efi: '52:54:00:77:00:02',
  ipxe: '52:54:00:77:00:03',
  dhclientBios: '52:54:00:77:00:04',
  dhclientEfi: '52:54:00:77:00:05',
  plain: '52:54:00:77:00:06',
  reserved: '52:54:00:77:00:07',
  unknown: '52:54:00:77:00:99',
};

const skip = netnsUnavailable() ?? missingTools('udhcpc', 'curl');
if (skip !== null) {
  t.comment(`skipping: ${skip}`);
  t.plan(0, skip);
} else {
  t.setTimeout(240_000);
  t.test('real clients against swarmboot serve --dhcp full', async (t) => {
    const { dir, script } = netTestDir(t, 'clients', [
      { mac: macs.bios, hostname: 'bios1' },
      { mac: macs.efi, hostname: 'efi1' },
      { mac: macs.ipxe, hostname: 'ipxe1' },
      { mac: macs.dhclientBios, hostname: 'dhbios' },
      { mac: macs.dhclientEfi, hostname: 'dhefi' },
      { mac: macs.plain, hostname: 'plain1' },
      { mac: macs.reserved, hostname: 'fixed1', ip: '10.77.0.50' },
    ]);
    const { lab, sw, srv } = await serverLab(t, `${SERVER_IP}/24`, { defaultRoute: true });
    const served = await startServe(srv, { ifname: 'eth0', mode: 'full', pool: POOL, dir });
    t.teardown(() => served.proc.kill());

    const client = async (mac: string, label: string): Promise<Netns> => {
      const ns = await lab.namespace(label);
      await sw.plug(ns, { mac });
      return ns;
    };
    const udhcpc = (ns: Netns, extra: string[], tries = 4) =>
      ns.exec('udhcpc', ['-f', '-q', '-n', '-t', String(tries), '-T', '1', '-i', 'eth0', '-s', script, ...extra], { timeoutMs: 30_000 });

    const cases: [string, string, string[], string][] = [
      ['BIOS PXE', macs.bios, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'], 'undionly.kpxe'],
      ['EFI x64 PXE', macs.efi, ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007'], 'ipxe.efi'],
      ['iPXE', macs.ipxe, ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007', '-x', '0x4d:69505845'], `http://${SERVER_IP}:8080/ipxe?mac=52-54-00-77-00-03`],
    ];
    const leased = new Map<string, string>();
    for (const [name, mac, args, file] of cases) {
      await t.test(`udhcpc as ${name}`, async (t) => {
        const ns = await client(mac, name.replace(/\W/g, ''));
        const r = await udhcpc(ns, args);
        const got = parseUdhcpc(r.stdout);
        t.ok(got.ok, `got a lease (exit ${r.code}) ${r.stderr.trim().split('\n').at(-1) ?? ''}`);
        t.match(got.ip, /^10\.77\.0\.1\d\d$/, `address from the pool: ${got.ip}`);
        t.equal(got.bootFile, file, 'boot file for its architecture');
        t.equal(got.siaddr, SERVER_IP, 'siaddr is the server');
        t.equal(got.serverid, SERVER_IP, 'server id');
        t.equal(got.hostname, mac === macs.bios ? 'bios1' : mac === macs.efi ? 'efi1' : 'ipxe1', 'hostname from the profile');
        if (got.ip !== undefined) leased.set(mac, got.ip);
        const addr = await ns.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
        t.match(addr.stdout, new RegExp(`inet ${got.ip}/24`), 'the script configured it');
      });
    }

    await t.test('plain udhcpc (no PXE vendor class): an address, no boot file', async (t) => {
      const ns = await client(macs.plain, 'plain');
      const got = parseUdhcpc((await udhcpc(ns, [])).stdout);
      t.ok(got.ok);
      t.equal(got.bootFile, undefined);
    });

    await t.test('reservation from the profiles', async (t) => {
      const ns = await client(macs.reserved, 'reserved');
      const got = parseUdhcpc((await udhcpc(ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'])).stdout);
      t.equal(got.ip, '10.77.0.50', 'the reserved address (outside the dynamic range)');
    });

    await t.test('the same client again keeps its address', async (t) => {
      const ns = await lab.namespace('again');
      await sw.plug(ns, { mac: macs.bios });
      const got = parseUdhcpc((await udhcpc(ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'])).stdout);
      t.equal(got.ip, leased.get(macs.bios));
    });

    await t.test('unknown MAC: no reply at all', async (t) => {
      const ignoredBefore = await served.metric('swarmboot_dhcp_ignored_total', { reason: 'unknown-mac' });
      const ns = await client(macs.unknown, 'unknown');
      const r = await udhcpc(ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'], 3);
      t.not(r.code, 0, 'udhcpc gave up');
      t.match(r.stderr, /no lease/);
      t.notOk(parseUdhcpc(r.stdout).ok);
      t.ok((await served.metric('swarmboot_dhcp_ignored_total', { reason: 'unknown-mac' })) >= ignoredBefore + 3, 'every DISCOVER counted as ignored');
    });

    const dhclientMissing = missingTools('dhclient');
    await t.test('dhclient as BIOS and EFI x64 PXE clients', { skip: dhclientMissing ?? false }, async (t) => {
      for (const [mac, arch, file] of [
        [macs.dhclientBios, 0, 'undionly.kpxe'],
        [macs.dhclientEfi, 7, 'ipxe.efi'],
      ] as const) {
        await dhclientCase(t, lab, sw, dir, served, mac, arch, file);
      }
    });

    await t.test('server state', async (t) => {
      const m = await served.metrics();
      t.comment(m.split('\n').filter((l) => l.startsWith('swarmboot_dhcp')).join('\n'));
      t.equal(await served.metric('swarmboot_dhcp_messages_total', { type: 'nak', direction: 'out' }), 0, 'no NAKs');
      t.ok(served.proc.alive(), 'server still running');
    });
  });
}

async function dhclientCase(t: Test, lab: Lab, sw: Switch, dir: string, served: Served, mac: string, arch: number, file: string): Promise<void> {
  const ns = await lab.namespace(`dh${arch}`);
  await sw.plug(ns, { mac });
  const base = join(dir, `dhclient-${arch}`);
  const conf = `${base}.conf`;
  writeFileSync(
    conf,
    [
      'option sbarch code 93 = unsigned integer 16;',
      `send vendor-class-identifier "PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003016";`,
      `send sbarch ${arch};`,
      'request subnet-mask, routers, domain-name-servers, host-name;',
      '',
    ].join('\n'),
  );
  const envFile = `${base}.env`;
  const sh = `${base}.sh`;
  writeFileSync(sh, `#!/bin/sh\nif [ "$reason" = BOUND ]; then env > ${envFile}.tmp; mv ${envFile}.tmp ${envFile}; ip addr add "$new_ip_address/24" dev "$interface"; fi\nexit 0\n`);
  chmodSync(sh, 0o755);
  const r = await ns.exec('dhclient', ['-4', '-1', '-v', '-cf', conf, '-sf', sh, '-lf', `${base}.leases`, '-pf', `${base}.pid`, 'eth0'], { timeoutMs: 40_000 });
  t.equal(r.code, 0, `dhclient exited 0 ${r.stderr.split('\n').filter((l) => /DHCP|bound/.test(l)).join(' | ')}`);
  await waitFor(() => existsSync(envFile), { timeoutMs: 10_000, what: 'the BOUND script run' });
  const env = new Map(readFileSync(envFile, 'utf8').split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
  t.match(env.get('new_ip_address'), /^10\.77\.0\.1\d\d$/, `dhclient (arch ${arch}) got ${env.get('new_ip_address')}`);
  t.equal(env.get('new_filename')?.replace(/^'|'$/g, ''), file, `filename for arch ${arch}`);
  t.equal(env.get('new_dhcp_server_identifier')?.replace(/^'|'$/g, ''), '10.77.0.1');
  const leases = readFileSync(`${base}.leases`, 'utf8');
  t.match(leases, new RegExp(`filename "${file.replace(/\./g, '\\.')}";`), 'lease file records the boot file');
  t.match(leases, /next-server 10\.77\.0\.1;|option dhcp-server-identifier 10\.77\.0\.1;/);
  // dhclient daemonized after BOUND; the lab kills whatever is left in the namespace.
  void served;
}
