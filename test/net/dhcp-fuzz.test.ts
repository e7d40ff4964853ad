/**
 * 100,000 mutated DHCP packets (seeded mutations of the captured client
 * packets in test/fixtures/dhcp/, built ones, and plain garbage; see
 * fixtures/dhcp-fuzz.ts) sent over the bridge to `swarmboot serve --dhcp
 * full`, by unicast and broadcast. Afterwards the server process is alive,
 * its /metrics count the decode errors, no request ended in an internal
 * error, and a real udhcpc still gets a lease with the right boot file.
 *
 * SWARMBOOT_FUZZ_COUNT and SWARMBOOT_FUZZ_SEED change the run (default
 * 100000 packets, seed 1).
 */
import t from 'tap';
import { join } from 'node:path';
import { missingTools, netnsUnavailable } from '../helpers/netns.js';
import { netTestDir, serverLab, parseUdhcpc, REPO, startServe } from './fixtures/swarmboot.js';

const SERVER_IP = '10.80.0.1';
const COUNT = Number(process.env.SWARMBOOT_FUZZ_COUNT ?? 100_000);
const SEED = Number(process.env.SWARMBOOT_FUZZ_SEED ?? 1);
const known = ['02:5b:00:00:00:01', '52:54:00:80:00:02', '52:54:00:80:00:03'];
const CLIENT_MAC = '52:54:00:80:00:10';

const skip = netnsUnavailable() ?? missingTools('udhcpc', 'curl');
if (skip !== null) {
  t.comment(`skipping: ${skip}`);
  t.plan(0, skip);
} else {
  t.setTimeout(420_000);
  t.test(`${COUNT} mutated packets, then a real client`, async (t) => {
    const { dir, script } = netTestDir(t, 'fuzz', [
      ...known.map((mac, i) => ({ mac, hostname: `known${i + 1}` })),
      { mac: CLIENT_MAC, hostname: 'after' },
      { mac: '52:54:00:80:00:20', hostname: 'fixed', ip: '10.80.0.50' },
    ]);
    const { lab, sw, srv } = await serverLab(t, `${SERVER_IP}/16`, { defaultRoute: true });
    const fuzz = await lab.namespace('fuzzer');
    await sw.plug(fuzz, { address: '10.80.255.250/16' });
    await fuzz.ip('route', 'add', 'default', 'dev', 'eth0');
    const served = await startServe(srv, { ifname: 'eth0', mode: 'full', pool: '10.80.1.0-10.80.254.255', dir, logLevel: 'warn' });
    const pid = served.proc.pid;

    const r = await fuzz.exec(process.execPath, ['--import', 'tsx', join(REPO, 'test/net/fixtures/dhcp-fuzz.ts'), SERVER_IP, String(COUNT), String(SEED), known.join(',')], {
      timeoutMs: 300_000,
      cwd: REPO,
    });
    t.equal(r.code, 0, `fuzzer ran ${r.stderr.trim()}`);
    let summary: { sent?: number; garbage?: number; ms?: number } = {};
    try {
      summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as typeof summary;
    } catch {
      t.fail(`fuzzer printed no summary: ${r.stdout.slice(-500)}`);
    }
    t.equal(summary.sent, COUNT, `sent ${summary.sent} packets (${summary.garbage} pure garbage) in ${summary.ms} ms`);

    // Let the server drain what is queued: until its counters stop moving.
    const count = (m: string, re: RegExp): number => m.split('\n').filter((l) => re.test(l)).reduce((s, l) => s + Number(l.split(' ').at(-1)), 0);
    let seen = -1;
    let last = '';
    for (let i = 0; i < 60; i++) {
      const m = await served.metrics();
      const now = m.split('\n').filter((l) => l.startsWith('swarmboot_dhcp_') && !l.includes('leases_in_use')).join('\n');
      seen = count(m, /^swarmboot_dhcp_(messages_total\{direction="in"|decode_errors_total)/);
      if (now === last) break;
      last = now;
      await new Promise((res) => setTimeout(res, 1000));
    }

    t.ok(served.proc.alive(), 'server process still running');
    t.doesNotThrow(() => process.kill(pid, 0), 'same pid, never restarted');
    const metrics = await served.metrics();
    t.comment(metrics.split('\n').filter((l) => l.startsWith('swarmboot_dhcp')).join('\n'));
    const decodeErrors = await served.metric('swarmboot_dhcp_decode_errors_total');
    t.ok(seen >= 0.9 * COUNT, `the server saw ${seen} of the ${COUNT} packets (decoded or counted as errors)`);
    t.ok(decodeErrors >= COUNT / 10, `decode errors counted: ${decodeErrors}`);
    t.equal(await served.metric('swarmboot_dhcp_ignored_total', { reason: 'internal-error' }), 0, 'no request ended in an internal error');
    t.notMatch(served.proc.stderr, /Uncaught|TypeError|RangeError|FATAL/, 'no crash traces on stderr');

    const client = await lab.namespace('client');
    await sw.plug(client, { mac: CLIENT_MAC });
    const u = await client.exec('udhcpc', ['-f', '-q', '-n', '-t', '5', '-T', '2', '-i', 'eth0', '-s', script, '-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'], { timeoutMs: 60_000 });
    const lease = parseUdhcpc(u.stdout);
    t.ok(lease.ok, `udhcpc got a lease after the fuzzing (${lease.ip})`);
    if (!lease.ok) {
      t.comment(`udhcpc: ${u.stdout}${u.stderr}`);
      t.comment(`server log tail:\n${served.proc.stderr.slice(-3000)}`);
      t.comment((await served.metrics()).split('\n').filter((l) => l.startsWith('swarmboot_dhcp')).join('\n'));
    }
    t.match(lease.ip, /^10\.80\.\d+\.\d+$/);
    t.equal(lease.bootFile, 'undionly.kpxe');
    t.equal(lease.serverid, SERVER_IP);
  });
}
