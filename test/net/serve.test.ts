/**
 * `swarmboot serve` as an operator runs it, inside namespaces this test
 * creates: the README's embedded defaults (proxy DHCP on the only
 * interface, example profiles, HTTP 8080, TFTP 69); in full DHCP mode the
 * secret gate (a machine's Ignition only to the IP leased to it, with a real
 * udhcpc lease); profile edits (a valid one is served at once, a broken one
 * keeps the last good set); SIGTERM stops cleanly with exit 0.
 *
 * Needs root, iproute2, udhcpc, curl; skips with the reason otherwise.
 */
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { missingTools, netnsUnavailable, waitFor } from '../helpers/netns.js';
import { netTestDir, serverLab, REPO, parseUdhcpc, startServe } from './fixtures/swarmboot.js';

const skip = netnsUnavailable() ?? missingTools('udhcpc', 'curl');
if (skip !== null) {
  t.comment(`skipping: ${skip}`);
  t.plan(0, skip);
} else {
  t.setTimeout(240_000);

  t.test('embedded defaults: the README start command in a one-interface namespace', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'swarmboot-net-defaults-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(REPO, 'profiles'), join(dir, 'profiles'), { recursive: true });
    const { lab, sw, srv } = await serverLab(t, '10.78.0.1/24');
    const peer = await lab.namespace('peer');
    await sw.plug(peer, { address: '10.78.0.2/24' });
    // No flags at all: everything comes from the embedded defaults, relative to the working directory.
    // The tsx loader by absolute path: a bare 'tsx' would be resolved from the working directory.
    const tsx = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
    const proc = srv.spawn(process.execPath, ['--import', tsx, join(REPO, 'server/main.ts'), 'serve'], { cwd: dir });
    t.teardown(() => proc.kill());
    await proc.waitFor(/swarmboot: serving on eth0 10\.78\.0\.1 \(http 8080, tftp 69, dhcp proxy\)/, 60_000);
    const get = (path: string) => peer.exec('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', `http://10.78.0.1:8080${path}`], { timeoutMs: 10_000 });
    t.match((await get('/healthz')).stdout, /200$/);
    t.match((await get('/boot.ipxe')).stdout, /set base http:\/\/10\.78\.0\.1:8080/, 'server URL derived from the interface');
    t.match((await get('/ipxe?mac=52-54-00-5b-00-01')).stdout, /# swarmboot: mgr1 .*\n[\s\S]*200$/, 'an example machine');
    t.match((await get('/ipxe?mac=52-54-00-00-99-99')).stdout, /no profile for MAC[\s\S]*404$/, 'an unknown one');
    // Boot binaries were copied from Debian's packages into the default assets dir.
    t.ok(readFileSync(join(dir, 'assets', 'undionly.kpxe')).length > 0, 'assets/undionly.kpxe installed');
    const tftp = await peer.exec('curl', ['-sS', '-m', '10', '-o', '/dev/null', '-w', '%{size_download}', 'tftp://10.78.0.1/undionly.kpxe'], { timeoutMs: 15_000 });
    t.equal(Number(tftp.stdout), readFileSync(join(dir, 'assets', 'undionly.kpxe')).length, 'TFTP on port 69 serves it');
    const metrics = (await get('/metrics')).stdout;
    t.match(metrics, /^swarmboot_event_loop_delay_seconds\{quantile="max"\} [0-9.e-]+$/m, 'event-loop delay on /metrics');
    t.match(metrics, /^swarmboot_asset_cache_bytes 0$/m, 'asset cache gauge on /metrics (nothing cached yet)');
    const missing = proc.output.split('\n').find((l) => l.includes('Flatcar stable/current/amd64 is missing')) ?? '';
    t.match(missing, /"fix":"swarmboot assets fetch --channel stable --version current --arch amd64"/, 'says what is missing and the fix');
  });

  t.test('full mode: Ignition only to the leased IP; profile edits; SIGTERM', async (t) => {
    const mac = '52:54:00:78:00:01';
    const { dir, script } = netTestDir(t, 'serve', [{ mac, hostname: 'blade1' }]);
    const { lab, sw, srv } = await serverLab(t, '10.78.1.1/24');
    const served = await startServe(srv, { ifname: 'eth0', mode: 'full', pool: '10.78.1.100-10.78.1.150', dir });
    const blade = await lab.namespace('blade');
    await sw.plug(blade, { mac });
    const other = await lab.namespace('other');
    await sw.plug(other, { address: '10.78.1.200/24' });

    const lease = parseUdhcpc((await blade.exec('udhcpc', ['-f', '-q', '-n', '-t', '5', '-T', '1', '-i', 'eth0', '-s', script], { timeoutMs: 30_000 })).stdout);
    t.ok(lease.ok, `blade got a lease: ${lease.ip}`);
    const ign = (ns: typeof blade) => ns.exec('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', `http://10.78.1.1:8080/ignition?mac=52-54-00-78-00-01`], { timeoutMs: 10_000 });
    const mine = await ign(blade);
    t.match(mine.stdout, /"version": "3\.3\.0"[\s\S]*200$/, 'the leased IP gets its Ignition');
    const theirs = await ign(other);
    t.match(theirs.stdout, /is leased 10\.78\.1\.1\d\d, the request came from 10\.78\.1\.200[\s\S]*403$/, 'another IP is refused, with the reason');
    t.equal(await served.metric('swarmboot_http_secret_refusals_total'), 1, 'refusal counted');
    t.match(served.proc.output, /"mac":"52:54:00:78:00:01".*"remote":"10\.78\.1\.200"|"ip":"10\.78\.1\.200".*52:54:00:78:00:01/, 'refusal logged');

    const profiles = join(dir, 'profiles', 'profiles.yaml');
    const good = readFileSync(profiles, 'utf8');
    const ipxe = async (m: string) =>
      (await other.exec('curl', ['-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://10.78.1.1:8080/ipxe?mac=${m}`], { timeoutMs: 10_000 })).stdout;
    writeFileSync(profiles, good.replace('hostname: blade1 }', 'hostname: blade1 }\n      - { mac: "52:54:00:78:00:02", hostname: blade2 }'));
    await waitFor(async () => (await ipxe('52-54-00-78-00-02')) === '200', { timeoutMs: 15_000, what: 'the added machine to be served' });
    t.pass('a valid edit is served without a restart');
    writeFileSync(profiles, good.replace('role: worker', 'rol: worker'));
    await waitFor(() => /profile edit rejected; keeping the last good set/.test(served.proc.output), { timeoutMs: 15_000, what: 'the rejection log line' });
    t.equal(await ipxe('52-54-00-78-00-02'), '200', 'the last good set is still served');
    t.match(served.proc.output, /unknown key \\"rol\\"/, 'the log says why');

    served.proc.kill('SIGTERM', 15_000);
    const exit = await served.proc.exited;
    t.equal(exit.code, 0, 'SIGTERM: exit 0');
    t.match(served.proc.output, /"msg":"stopped"/, 'logged a clean stop');
  });
}
