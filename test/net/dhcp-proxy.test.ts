/**
 * proxyDHCP beside a real DHCP server. On one bridge: dnsmasq (the "site"
 * DHCP server, hands out 10.78.0.100-150, knows nothing about booting),
 * `swarmboot serve --dhcp proxy`, and PXE clients.
 *
 * How it proves the split with real peers: busybox udhcpc, announcing
 * itself as PXE firmware, completes its DORA with dnsmasq (its script sees
 * dnsmasq's server id and an address from dnsmasq's range). A passive
 * listener on UDP 68 in the same client namespace hears every broadcast
 * reply for that MAC (udhcpc -B asks for broadcast replies, as PXE ROMs
 * do): dnsmasq's OFFER/ACK with the address, and
 * swarmboot's proxy OFFER with no address (yiaddr 0.0.0.0), option 60
 * PXEClient and the boot file for the announced architecture. Then the
 * client, now holding dnsmasq's address, does what UEFI firmware and iPXE
 * do after a proxy offer: a REQUEST to swarmboot's port 4011, answered by
 * unicast with the boot file. swarmboot's reply delay (300 ms) makes
 * dnsmasq's offer arrive first, as a site server's usually does, so
 * udhcpc (which takes the first offer) picks the one with an address.
 * A plain DHCP client and an unknown MAC get nothing from swarmboot.
 */
import t from 'tap';
import { join } from 'node:path';
import { createLab, missingTools, netnsUnavailable, waitFor, type Netns, type Proc } from '../helpers/netns.js';
import { netTestDir, parseUdhcpc, REPO, startServe } from './fixtures/swarmboot.js';

const SWARMBOOT = '10.78.0.1';
const DNSMASQ = '10.78.0.2';
const macs = { bios: '52:54:00:78:00:01', efi: '52:54:00:78:00:02', plain: '52:54:00:78:00:03', unknown: '52:54:00:78:00:99' };

interface Heard {
  from: string;
  type: number;
  mac: string;
  yiaddr: string;
  siaddr: string;
  file: string;
  serverId?: string;
  vendorClass?: string;
  bootfile?: string;
  vendorSpecific?: string;
}

const skip = netnsUnavailable() ?? missingTools('dnsmasq', 'udhcpc', 'curl');
if (skip !== null) {
  t.comment(`skipping: ${skip}`);
  t.plan(0, skip);
} else {
  t.setTimeout(240_000);
  t.test('swarmboot proxyDHCP next to dnsmasq', async (t) => {
    const { dir, script } = netTestDir(t, 'proxy', [
      { mac: macs.bios, hostname: 'bios1' },
      { mac: macs.efi, hostname: 'efi1' },
      { mac: macs.plain, hostname: 'plain1' },
    ]);

    const lab = await createLab(t);
    const sw = await lab.switch();
    const site = await lab.namespace('dnsmasq');
    await sw.plug(site, { address: `${DNSMASQ}/24` });
    const dnsmasq = site.spawn('dnsmasq', [
      '-d', '--port=0', '--conf-file=/dev/null', '--user=root', '--group=root',
      '--interface=eth0', '--bind-interfaces', '--no-ping', '--log-dhcp',
      '--dhcp-range=10.78.0.100,10.78.0.150,255.255.255.0,1h',
      `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    ]);
    await dnsmasq.waitFor(/DHCP, IP range/, 15_000);

    const srv = await lab.namespace('swarmboot');
    await sw.plug(srv, { address: `${SWARMBOOT}/24` });
    await srv.ip('route', 'add', 'default', 'dev', 'eth0');
    const served = await startServe(srv, { ifname: 'eth0', mode: 'proxy', dir, config: 'dhcp:\n  reply_delay: 300ms\n' });

    const listen = (ns: Netns): Promise<Proc> => {
      const p = ns.spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/net/fixtures/dhcp-listen.ts')], { cwd: REPO });
      return p.waitFor(/listening/, 30_000).then(() => p);
    };
    const heard = (p: Proc, mac: string): Heard[] =>
      p.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Heard)
        .filter((h) => h.mac === mac);
    const pxeClient = async (label: string, mac: string): Promise<{ ns: Netns; listener: Proc }> => {
      const ns = await lab.namespace(label);
      await sw.plug(ns, { mac });
      return { ns, listener: await listen(ns) };
    };
    const udhcpc = (ns: Netns, extra: string[]) => ns.exec('udhcpc', ['-f', '-q', '-n', '-t', '4', '-T', '2', '-i', 'eth0', '-s', script, ...extra], { timeoutMs: 30_000 });

    for (const [name, mac, arch, file] of [
      ['BIOS', macs.bios, 0, 'undionly.kpxe'],
      ['EFI x64', macs.efi, 7, 'ipxe.efi'],
    ] as const) {
      await t.test(`${name} PXE client: address from dnsmasq, boot file from swarmboot`, async (t) => {
        const { ns, listener } = await pxeClient(name.replace(/\W/g, ''), mac);
        const vc = `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`;
        // -B: ask for broadcast replies (as PXE ROMs do), so the listener hears dnsmasq's too;
        // otherwise dnsmasq unicasts them to the not-yet-configured address.
        const r = await udhcpc(ns, ['-B', '-V', vc, '-x', `0x5d:${arch.toString(16).padStart(4, '0')}`]);
        const lease = parseUdhcpc(r.stdout);
        t.ok(lease.ok, `udhcpc bound (exit ${r.code})`);
        t.equal(lease.serverid, DNSMASQ, 'the lease is from dnsmasq');
        t.match(lease.ip, /^10\.78\.0\.1[0-5]\d$/, `address from dnsmasq's range: ${lease.ip}`);

        const proxyOffer = await waitFor(() => heard(listener, mac).find((h) => h.serverId === SWARMBOOT), { timeoutMs: 5000, what: "swarmboot's proxy offer" });
        t.equal(proxyOffer.type, 2, 'an OFFER');
        t.equal(proxyOffer.yiaddr, '0.0.0.0', 'no address from swarmboot');
        t.equal(proxyOffer.vendorClass, 'PXEClient');
        t.equal(proxyOffer.file, file, `boot file for arch ${arch}`);
        t.equal(proxyOffer.bootfile, file, 'option 67 too');
        t.equal(proxyOffer.siaddr, SWARMBOOT);
        if (arch === 0) t.equal(proxyOffer.vendorSpecific, '060108ff', 'BIOS: option 43 says use this boot file');
        const siteReplies = heard(listener, mac).filter((h) => h.serverId === DNSMASQ);
        t.ok(siteReplies.some((h) => h.type === 2 && h.yiaddr === lease.ip), "dnsmasq's OFFER carried the address");
        t.ok(siteReplies.some((h) => h.type === 5 && h.yiaddr === lease.ip), "dnsmasq's ACK carried the address");
        t.notOk(heard(listener, mac).some((h) => h.serverId === SWARMBOOT && h.type !== 2), 'swarmboot sent no ACK/NAK on port 67');

        const ack = await ns.exec(process.execPath, ['--import', 'tsx', join(REPO, 'test/net/fixtures/pxe-request.ts'), SWARMBOOT, mac, lease.ip ?? '', String(arch), '5000'], { timeoutMs: 30_000, cwd: REPO });
        t.equal(ack.code, 0, `port 4011 answered ${ack.stderr.trim()}`);
        const reply = JSON.parse(ack.stdout.trim() || '{}') as Heard & { ciaddr: string };
        t.equal(reply.from, `${SWARMBOOT}:4011`, 'ACK by unicast from port 4011');
        t.equal(reply.type, 5);
        t.equal(reply.yiaddr, '0.0.0.0');
        t.equal(reply.ciaddr, lease.ip, 'ciaddr echoed');
        t.equal(reply.file, file);
      });
    }

    await t.test('plain DHCP client: only dnsmasq answers', async (t) => {
      const { ns, listener } = await pxeClient('plain', macs.plain);
      const lease = parseUdhcpc((await udhcpc(ns, [])).stdout);
      t.equal(lease.serverid, DNSMASQ);
      t.equal(lease.bootFile, undefined);
      await new Promise((r) => setTimeout(r, 800));
      t.same(heard(listener, macs.plain).filter((h) => h.serverId === SWARMBOOT), [], 'nothing from swarmboot');
      t.ok((await served.metric('swarmboot_dhcp_ignored_total', { reason: 'not-pxe' })) >= 1);
    });

    await t.test('unknown MAC, even as PXE: only dnsmasq answers', async (t) => {
      const { ns, listener } = await pxeClient('unknown', macs.unknown);
      const lease = parseUdhcpc((await udhcpc(ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'])).stdout);
      t.equal(lease.serverid, DNSMASQ);
      await new Promise((r) => setTimeout(r, 800));
      t.same(heard(listener, macs.unknown).filter((h) => h.serverId === SWARMBOOT), []);
      t.ok((await served.metric('swarmboot_dhcp_ignored_total', { reason: 'unknown-mac' })) >= 1);
    });

    await t.test('server counters', async (t) => {
      t.comment((await served.metrics()).split('\n').filter((l) => l.startsWith('swarmboot_dhcp')).join('\n'));
      t.equal(await served.metric('swarmboot_dhcp_messages_total', { type: 'offer', direction: 'out' }), 2, 'two proxy offers');
      t.equal(await served.metric('swarmboot_dhcp_messages_total', { type: 'ack', direction: 'out' }), 2, 'two port-4011 ACKs');
      t.ok((await served.metric('swarmboot_dhcp_ignored_total', { reason: 'wrong-port' })) >= 2, "REQUESTs to dnsmasq left alone");
      t.ok(served.proc.alive() && dnsmasq.alive());
    });
  });
}
