import t from 'tap';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { runCli } from '../../helpers/cli.js';
import { packageFile, PACKAGE_ROOT } from '../../../server/paths.js';

const state = mkdtempSync(join(tmpdir(), 'swarmboot-state-'));
t.teardown(() => rmSync(state, { recursive: true, force: true }));
const common = ['--profiles', packageFile('profiles'), '--state', state, '--server-url', 'http://10.0.0.1:8080'];

t.test('validate: examples exit 0; broken set exits 1 with every problem', async (t) => {
  const ok = await runCli(['validate', '--profiles', packageFile('profiles')]);
  t.equal(ok.code, 0);
  t.match(ok.out, /^ok: 3 file\(s\), 3 profile\(s\), 7 machine\(s\) \(3 manager, 4 worker\)/);
  const bad = await runCli(['validate', '--profiles', packageFile('test/fixtures/profiles-broken')]);
  t.equal(bad.code, 1);
  t.ok(bad.err.split('\n').filter((l) => /\.yaml:\d+:\d+: /.test(l)).length >= 15);
  t.match(bad.err, /problem\(s\); nothing was applied/);
});

t.test('machines: table and --json with the documented keys', async (t) => {
  const table = await runCli(['machines', '--profiles', packageFile('profiles'), '--offline']);
  t.equal(table.code, 0);
  t.match(table.out, /^MAC\s+HOSTNAME\s+PROFILE\s+ROLE\s+BOOT\s+IP\s+LAST STEP\s+SWARM\n/);
  const json = await runCli(['machines', '--profiles', packageFile('profiles'), '--json', '--offline']);
  const rows = JSON.parse(json.out) as Record<string, string>[];
  t.equal(rows.length, 7);
  for (const r of rows) for (const k of ['mac', 'hostname', 'profile', 'role', 'boot']) t.ok(k in r, `key ${k}`);
  t.match(rows.find((r) => r.hostname === 'worker3'), { mac: '52:54:00:5b:00:13', hostname: 'worker3', profile: 'worker', role: 'worker', boot: 'ipxe', ip: null, swarm: null });
  t.equal(rows.find((r) => r.hostname === 'worker4')?.boot, 'pxelinux');
});

t.test('machines: merges what a running server observed; says so when none answers', async (t) => {
  const http = await import('node:http');
  const server = http.createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify([{ mac: '52:54:00:5b:00:11', ip: '10.0.0.111', lastStep: 'ignition', lastSeen: '2026-01-01T00:00:00.000Z', swarm: { event: 'joined', role: 'worker', nodeId: 'abcdef0123456789', at: '2026-01-01T00:00:00.000Z' } }]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const api = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const r = await runCli(['machines', '--profiles', packageFile('profiles'), '--api', api]);
  t.match(r.out, /52:54:00:5b:00:11\s+worker1\s+worker\s+worker\s+ipxe\s+10\.0\.0\.111\s+ignition\s+joined worker abcdef012345/);
  const j = JSON.parse((await runCli(['machines', '--profiles', packageFile('profiles'), '--api', api, '--json'])).out) as { hostname: string; swarm: unknown }[];
  t.match(j.find((x) => x.hostname === 'worker1')?.swarm, { nodeId: 'abcdef0123456789' });
  const down = await runCli(['machines', '--profiles', packageFile('profiles'), '--api', 'http://127.0.0.1:1']);
  t.equal(down.code, 0);
  t.match(down.err, /no server at http:\/\/127\.0\.0\.1:1 .*showing profiles only/);
});

t.test('render: each kind, any MAC form, -o FILE, same bytes twice', async (t) => {
  for (const kind of ['ignition', 'ipxe', 'pxelinux']) {
    const a = await runCli(['render', kind, '--mac', '52-54-00-5B-00-11', ...common]);
    const b = await runCli(['render', kind, '--mac', '5254.005b.0011', ...common]);
    t.equal(a.code, 0, kind);
    t.equal(a.out, b.out, `${kind} is deterministic and MAC-form independent`);
  }
  const ign = await runCli(['render', 'ignition', '--mac', '52:54:00:5b:00:11', ...common]);
  t.equal(JSON.parse(ign.out).ignition.version, '3.3.0');
  const oem = await runCli(['render', 'oem', '--mac', '52:54:00:5b:00:21', ...common]);
  t.equal(oem.bytes[0], 0x1f, 'gzip');
  const file = join(state, 'out.cpio.gz');
  t.equal((await runCli(['render', 'oem', '--mac', '52:54:00:5b:00:21', ...common, '-o', file])).code, 0);
  t.same(readFileSync(file), oem.bytes);
  t.equal((statSync(join(state, 'server.key')).mode & 0o777).toString(8), '600', 'server key is private');
});

t.test('render: clear exit 2 for unknown MAC, bad MAC, bad kind, missing flag', async (t) => {
  const cases: [string[], RegExp][] = [
    [['render', 'ipxe', '--mac', '52:54:00:99:99:99', ...common], /no profile for MAC 52:54:00:99:99:99/],
    [['render', 'ipxe', '--mac', 'zz', ...common], /not a MAC address/],
    [['render', 'kernel', '--mac', '52:54:00:5b:00:11', ...common], /render needs one of: ignition, ipxe, pxelinux, oem/],
    [['render', 'ipxe', ...common], /needs --mac/],
    [['render', 'ipxe', '--mac', '52:54:00:5b:00:11', '--bogus', ...common], /Unknown option/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ];
  for (const [args, msg] of cases) {
    const r = await runCli(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.err, msg);
  }
});

t.test('render without any server URL says how to give one', async (t) => {
  const r = await runCli(['render', 'ipxe', '--mac', '52:54:00:5b:00:11', '--profiles', packageFile('profiles'), '--state', state]);
  t.equal(r.code, 2);
  t.match(r.err, /no server URL: set cluster.server_url .* or pass --server-url/);
});

t.test('the real binary: exit codes through process.exitCode', async (t) => {
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(PACKAGE_ROOT, 'server/main.ts'), ...args], { encoding: 'utf8', cwd: PACKAGE_ROOT, timeout: 30_000 });
  t.equal(run('validate').status, 0);
  t.equal(run('validate', '--profiles', 'test/fixtures/profiles-broken').status, 1);
  t.equal(run('render', 'ipxe', '--mac', 'nope', '--state', state, '--server-url', 'http://x').status, 2);
  t.equal(run('--help').status, 0);
});
