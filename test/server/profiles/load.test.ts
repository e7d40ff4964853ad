import t from 'tap';
import { join } from 'node:path';
import { loadProfileDir, loadProfiles, parseDuration, defaultHostname } from '../../../server/profiles/load.js';
import { ConfigError } from '../../../server/errors.js';
import { requireMac } from '../../../server/mac.js';
import { packageFile } from '../../../server/paths.js';
import { matchGolden } from '../../helpers/golden.js';

const EXAMPLES = packageFile('profiles');
const BROKEN = packageFile('test/fixtures/profiles-broken');

const cluster = 'cluster:\n  name: lab\n';
const load = (...texts: string[]) => loadProfiles(texts.map((text, i) => ({ file: `f${i}.yaml`, text })));
const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
};

t.test('the shipped examples load: 3 managers, workers, one pxelinux machine', async (t) => {
  const set = loadProfileDir(EXAMPLES);
  t.same(set.warnings, []);
  const roles = [...set.machines.values()].map((m) => set.profiles.get(m.profile)?.role);
  t.equal(roles.filter((r) => r === 'manager').length, 3);
  t.ok(roles.filter((r) => r === 'worker').length >= 2);
  t.equal(set.profiles.get('worker-pxelinux')?.boot, 'pxelinux');
  // The example writes one MAC upper-case with hyphens: it is normalised.
  t.equal(set.machines.get(requireMac('52:54:00:5b:00:13'))?.hostname, 'worker3');
  t.same(set.machines.get(requireMac('52:54:00:5b:00:12'))?.labels, { tier: 'app', gpu: 'false', 'rack-slot': '4' });
  t.ok(Object.isFrozen(set.cluster) && Object.isFrozen(set.machines.get(requireMac('52:54:00:5b:00:01'))), 'frozen');
});

t.test('a broken set reports every problem at once, located (golden)', async (t) => {
  const lines = problemsOf(() => loadProfileDir(BROKEN)).map((l) => l.split(BROKEN + '/').join(''));
  t.ok(lines.length >= 15, `${lines.length} problems`);
  for (const l of lines) t.match(l, /^[a-z-]+\.yaml:\d+:\d+: /, 'file:line:col');
  matchGolden(t, 'profiles/broken.txt', lines.join('\n') + '\n');
  const all = lines.join('\n');
  for (const what of ['unknown key "colour"', 'unknown key "rol"', 'not a MAC address', 'listed twice', 'hostname "dup" is used twice', 'outside any [Section]', 'no [Install] section', 'written by swarmboot itself', 'a second "cluster" section', 'defined twice', 'YAML syntax', 'is set by swarmboot', 'contains whitespace']) {
    t.ok(all.includes(what), `reports: ${what}`);
  }
});

t.test('defaults and inheritance', async (t) => {
  const set = load(cluster + '  flatcar: { channel: beta }\n  ignition: oem\n', 'profiles:\n  w:\n    role: worker\n    flatcar: { version: 3975.2.0 }\n    machines: [{ mac: "aa:bb:cc:dd:ee:01" }]\n');
  const p = set.profiles.get('w')!;
  t.same(p.flatcar, { channel: 'beta', version: '3975.2.0', arch: 'amd64' });
  t.equal(p.ignition, 'oem');
  t.equal(p.boot, 'ipxe');
  t.equal(p.efiBinary, 'ipxe.efi');
  t.same(set.cluster.kernelArgs, ['console=tty0', 'console=ttyS0', 'flatcar.autologin']);
  t.match(set.cluster.swarm, { mode: 'automatic', leaveLastManager: false, removeDownAfter: null, initTimeout: 120 });
  t.equal(set.machines.get(requireMac('aa:bb:cc:dd:ee:01'))?.hostname, 'w-ddee01');
  t.equal(defaultHostname('w', requireMac('aa:bb:cc:dd:ee:01')), 'w-ddee01');
});

t.test('manager count warnings (automatic swarm)', async (t) => {
  const managers = (n: number) =>
    'profiles:\n  m:\n    role: manager\n    machines:\n' + Array.from({ length: n }, (_, i) => `      - mac: "aa:bb:cc:00:00:0${i + 1}"\n`).join('');
  t.match(load(cluster, managers(1)).warnings[0], /1 manager\(s\)/);
  t.match(load(cluster, managers(4)).warnings[0], /even count/);
  t.same(load(cluster, managers(3)).warnings, []);
  t.match(load(cluster, 'profiles:\n  w:\n    role: worker\n    machines: [{ mac: "aa:bb:cc:00:00:09" }]\n').warnings[0], /no machine has a manager profile/);
});

t.test('static swarm needs managers and the tokens for the roles in use', async (t) => {
  const set = load(
    cluster + '  swarm:\n    mode: static\n    managers: [10.0.0.2, "10.0.0.3:2400"]\n    join_tokens: { worker: SWMTKN-1-abc-def }\n',
    'profiles:\n  w:\n    role: worker\n',
  );
  t.same(set.cluster.swarm, { mode: 'static', managers: ['10.0.0.2:2377', '10.0.0.3:2400'], tokens: { worker: 'SWMTKN-1-abc-def' } });
  const lines = problemsOf(() => load(cluster + '  swarm: { mode: static }\n', 'profiles:\n  m:\n    role: manager\n'));
  t.ok(lines.some((l) => l.includes('needs "managers"')));
  t.ok(lines.some((l) => l.includes('needs "join_tokens"')));
  t.ok(lines.some((l) => l.includes('join_tokens.manager is not set')));
});

t.test('unknown_machines names a profile or ignore', async (t) => {
  t.same(load(cluster + '  unknown_machines: w\n', 'profiles:\n  w: { role: worker }\n').cluster.unknownMachines, { policy: 'profile', profile: 'w' });
  t.ok(problemsOf(() => load(cluster + '  unknown_machines: nope\n', 'profiles:\n  w: { role: worker }\n')).some((l) => l.includes('"nope" is neither')));
});

t.test('no cluster, empty directory-like input, empty file', async (t) => {
  t.ok(problemsOf(() => load('profiles:\n  w: { role: worker }\n')).some((l) => l.includes('no "cluster" section')));
  t.equal(load(cluster, '').profiles.size, 0, 'an empty file is allowed');
  t.throws(() => loadProfileDir(join(BROKEN, 'does-not-exist')), ConfigError);
});

t.test('file modes and units are converted for the renderer', async (t) => {
  const set = load(
    cluster,
    `profiles:
  w:
    role: worker
    files:
      - { path: /etc/motd, contents: hi, mode: "0600" }
      - { path: /etc/issue, contents: x }
    units:
      - name: hello.service
        enabled: true
        contents: |
          [Service]
          ExecStart=/bin/echo hi
          [Install]
          WantedBy=multi-user.target
        dropins: [{ name: 10-env.conf, contents: "[Service]\\nEnvironment=A=1\\n" }]
`,
  );
  const p = set.profiles.get('w')!;
  t.same(p.files.map((f) => [f.path, f.mode, f.overwrite]), [['/etc/motd', 0o600, true], ['/etc/issue', 0o644, true]]);
  t.equal(p.units[0]?.dropins[0]?.name, '10-env.conf');
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('90s'), 90);
  t.equal(parseDuration('2m'), 120);
  t.equal(parseDuration('24h'), 86400);
  t.equal(parseDuration('7d'), 604800);
  t.throws(() => parseDuration('soon'));
});
