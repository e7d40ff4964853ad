import t from 'tap';
import { ConfigError } from '../../server/errors.js';
import { dataUrl, loadSwarmScript, renderIgnition, serializeIgnition } from '../../ignition/render.js';
import type { IgnitionConfig } from '../../ignition/types.js';
import {
  DOCKER_WANTS_LINK,
  RECONCILE_SERVICE_NAME,
  RECONCILE_TIMER_NAME,
  reconcileService,
  reconcileTimer,
  SWARM_ENV_PATH,
  SWARM_SCRIPT_PATH,
  SWARM_UNIT_NAME,
  swarmEnv,
  swarmUnit,
} from '../../ignition/units.js';
import { matchGolden } from '../helpers/golden.js';
import {
  automaticSwarm,
  ignitionFixtures,
  makeCluster,
  makeContext,
  makeMachine,
  makeProfile,
  staticSwarm,
} from '../helpers/ignition-fixtures.js';

const SCRIPT = '#!/bin/sh\n# stand-in for ignition/swarm.sh\nexit 0\n';

const decode = (source: string): string => {
  if (!source.startsWith('data:,')) throw new Error(`not a data URL: ${source}`);
  return decodeURIComponent(source.slice('data:,'.length));
};

function fileText(cfg: IgnitionConfig, path: string): string | undefined {
  const f = cfg.storage.files.find((x) => x.path === path);
  return f === undefined ? undefined : decode(f.contents.source);
}

const workerCtx = () => makeContext(makeCluster(), makeProfile('worker'), makeMachine('52:54:00:aa:bb:cc', 'w1', 'workers'));

t.test('golden config per fixture', async (t) => {
  for (const { name, ctx } of ignitionFixtures) {
    matchGolden(t, `ignition/${name}.json`, serializeIgnition(renderIgnition(ctx, SCRIPT)));
  }
});

t.test('the swarm unit and env files have goldens too', async (t) => {
  matchGolden(t, 'ignition/swarmboot-swarm.service', swarmUnit());
  matchGolden(t, 'ignition/swarmboot-reconcile.service', reconcileService());
  matchGolden(t, 'ignition/swarmboot-reconcile.timer', reconcileTimer());
  const byName = new Map(ignitionFixtures.map((f) => [f.name, f.ctx]));
  matchGolden(t, 'ignition/manager.env', swarmEnv(byName.get('manager')!));
  matchGolden(t, 'ignition/static-manager.env', swarmEnv(byName.get('static-manager')!));
});

t.test('rendering is deterministic and independent of key insertion order', async (t) => {
  for (const { name, ctx } of ignitionFixtures) {
    const a = serializeIgnition(renderIgnition(ctx, SCRIPT));
    const b = serializeIgnition(renderIgnition(ctx, SCRIPT));
    t.equal(a, b, `${name}: same bytes twice`);
    const shuffled = JSON.parse(a, (_k, v: unknown) =>
      v !== null && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).reverse())
        : v,
    ) as IgnitionConfig;
    t.equal(serializeIgnition(shuffled), a, `${name}: key order does not leak into the text`);
  }
});

t.test('common parts: hostname, core user keys, docker at boot', async (t) => {
  const cfg = renderIgnition(workerCtx(), SCRIPT);
  t.equal(cfg.ignition.version, '3.3.0');
  t.equal(fileText(cfg, '/etc/hostname'), 'w1\n');
  const host = cfg.storage.files.find((f) => f.path === '/etc/hostname');
  t.equal(host?.mode, 420);
  t.equal(host?.overwrite, true);
  const core = cfg.passwd.users.find((u) => u.name === 'core');
  const keys = core?.sshAuthorizedKeys ?? [];
  t.equal(keys.length, 2, 'cluster key listed once although the profile repeats it');
  t.match(keys[0], /admin@/, 'cluster keys first');
  t.match(keys[1], /ops@/);
  t.same(cfg.storage.links, [
    { path: DOCKER_WANTS_LINK, target: '/usr/lib/systemd/system/docker.service', hard: false, overwrite: true },
  ]);
});

t.test('manager/worker in a swarm get script, env (0600) and unit', async (t) => {
  const ctx = workerCtx();
  const cfg = renderIgnition(ctx, SCRIPT);
  t.equal(fileText(cfg, SWARM_SCRIPT_PATH), SCRIPT);
  t.equal(cfg.storage.files.find((f) => f.path === SWARM_SCRIPT_PATH)?.mode, 0o755);
  t.equal(cfg.storage.files.find((f) => f.path === SWARM_ENV_PATH)?.mode, 0o600);
  const env = fileText(cfg, SWARM_ENV_PATH) ?? '';
  t.match(env, /^SWARMBOOT_URL=http:\/\/10\.0\.0\.1:8080$/m);
  t.match(env, /^SWARMBOOT_MAC=52:54:00:aa:bb:cc$/m);
  t.match(env, /^SWARMBOOT_SECRET=9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c$/m);
  t.match(env, /^SWARMBOOT_ROLE=worker$/m);
  t.match(env, /^SWARMBOOT_HOSTNAME=w1$/m);
  t.match(env, /^SWARMBOOT_MODE=automatic$/m);
  t.match(env, /^SWARMBOOT_LEAVE_LAST_MANAGER=0$/m);
  t.notMatch(env, /SWARMBOOT_TOKEN|SWARMBOOT_MANAGERS/);
  const unit = cfg.systemd.units.find((u) => u.name === SWARM_UNIT_NAME);
  t.equal(unit?.enabled, true);
  t.equal(unit?.contents, swarmUnit());
});

t.test('the unit orders the leave before dockerd stops', async (t) => {
  const unit = swarmUnit();
  for (const line of [
    'Wants=network-online.target',
    'Requires=docker.service',
    'After=docker.service network-online.target',
    'Type=oneshot',
    'RemainAfterExit=yes',
    'EnvironmentFile=/etc/swarmboot/swarm.env',
    'ExecStart=/opt/swarmboot/swarm.sh join',
    'ExecStop=/opt/swarmboot/swarm.sh leave',
    'WantedBy=multi-user.target',
  ]) {
    t.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line);
  }
  t.notMatch(unit, /shutdown\.target/, 'no shutdown.target trick: ordering against docker.service does the job');
});

t.test('managers in automatic mode get the reconcile service and timer; nobody else does', async (t) => {
  const byName = new Map(ignitionFixtures.map((f) => [f.name, f.ctx]));
  const manager = renderIgnition(byName.get('manager')!, SCRIPT);
  const service = manager.systemd.units.find((u) => u.name === RECONCILE_SERVICE_NAME);
  const timer = manager.systemd.units.find((u) => u.name === RECONCILE_TIMER_NAME);
  t.same(service, { name: RECONCILE_SERVICE_NAME, contents: reconcileService() }, 'service: started by the timer, not enabled itself');
  t.same(timer, { name: RECONCILE_TIMER_NAME, enabled: true, contents: reconcileTimer() });
  t.same(manager.systemd.units.map((u) => u.name), [SWARM_UNIT_NAME, RECONCILE_SERVICE_NAME, RECONCILE_TIMER_NAME]);
  t.match(fileText(manager, SWARM_ENV_PATH), /^# Written by swarmboot; read by swarmboot-swarm\.service and swarmboot-reconcile\.service\./);
  for (const name of ['worker', 'static-manager', 'none', 'extras']) {
    const cfg = renderIgnition(byName.get(name)!, SCRIPT);
    t.notOk(cfg.systemd.units.some((u) => u.name === RECONCILE_SERVICE_NAME || u.name === RECONCILE_TIMER_NAME), `${name}: no reconcile units`);
  }
  // systemd-analyze verify does not notice a timer whose Unit= is missing, so check it here.
  const target = /^Unit=(.+)$/m.exec(timer?.contents ?? '')?.[1];
  t.ok(manager.systemd.units.some((u) => u.name === target && u.contents !== undefined), `the timer's Unit= (${target}) is in the config`);
  const off = makeContext(makeCluster({ swarm: { mode: 'off' } }), makeProfile('manager'), makeMachine('52:54:00:00:00:12', 'm2', 'managers'));
  t.notOk(renderIgnition(off, SCRIPT).systemd.units.some((u) => u.name === RECONCILE_TIMER_NAME), 'swarm off: no timer');
});

t.test('the reconcile units: after the join, leader-only script, every 30 s', async (t) => {
  const service = reconcileService();
  const timer = reconcileTimer();
  const has = (text: string, line: string) => t.match(text, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line);
  for (const line of [
    'Requires=docker.service',
    'After=docker.service swarmboot-swarm.service',
    'Type=oneshot',
    'EnvironmentFile=/etc/swarmboot/swarm.env',
    'ExecStart=/opt/swarmboot/swarm.sh reconcile',
  ]) has(service, line);
  t.notMatch(service, /\[Install\]/, 'the timer starts it');
  t.notMatch(service, /RemainAfterExit/, 'inactive between runs, so OnUnitActiveSec= fires again');
  for (const line of ['OnBootSec=1min', 'OnUnitActiveSec=30s', 'Unit=swarmboot-reconcile.service', 'WantedBy=timers.target']) has(timer, line);
});

t.test('role none and swarm off: no swarm bits, docker still starts', async (t) => {
  const contexts = [
    makeContext(makeCluster(), makeProfile('none'), makeMachine('52:54:00:00:00:10', 'n1', 'plain')),
    makeContext(makeCluster({ swarm: { mode: 'off' } }), makeProfile('manager'), makeMachine('52:54:00:00:00:11', 'm1', 'managers')),
  ];
  for (const ctx of contexts) {
    const cfg = renderIgnition(ctx, SCRIPT);
    const text = serializeIgnition(cfg);
    t.notOk(cfg.storage.files.some((f) => f.path === SWARM_SCRIPT_PATH || f.path === SWARM_ENV_PATH), 'no script/env');
    t.notOk(cfg.systemd.units.some((u) => u.name === SWARM_UNIT_NAME), 'no unit');
    t.notMatch(text, /SWARMBOOT|9f2c4e6a8b0d/, 'no secret anywhere');
    t.ok(cfg.storage.links.some((l) => l.path === DOCKER_WANTS_LINK), 'docker link kept');
  }
});

t.test('static mode: managers and the role token; missing token is a clear error', async (t) => {
  const ctx = makeContext(makeCluster({ swarm: staticSwarm }), makeProfile('worker'), makeMachine('52:54:00:00:00:20', 's1', 'workers'));
  const env = fileText(renderIgnition(ctx, SCRIPT), SWARM_ENV_PATH) ?? '';
  t.match(env, /^SWARMBOOT_MODE=static$/m);
  t.match(env, /^SWARMBOOT_MANAGERS=10\.0\.0\.2:2377,10\.0\.0\.3:2377$/m);
  t.match(env, new RegExp(`^SWARMBOOT_TOKEN=${staticSwarm.mode === 'static' ? staticSwarm.tokens.worker : ''}$`, 'm'));
  t.notMatch(env, /LEAVE_LAST_MANAGER/);

  const noManagerToken = makeContext(
    makeCluster({ swarm: { mode: 'static', managers: ['10.0.0.2:2377'], tokens: { worker: 'SWMTKN-1-abc-def' } } }),
    makeProfile('manager'),
    makeMachine('52:54:00:00:00:21', 's2', 'managers'),
  );
  t.throws(() => renderIgnition(noManagerToken, SCRIPT), ConfigError);
  t.throws(() => renderIgnition(noManagerToken, SCRIPT), { code: 'E_CONFIG', message: /no manager token \(swarm\.tokens\.manager\)/ });
});

t.test('values the env file cannot carry are refused, secrets not echoed', async (t) => {
  const ctx = { ...workerCtx(), swarmSecret: 'abc def' };
  t.throws(() => renderIgnition(ctx, SCRIPT), { code: 'E_CONFIG', message: /SWARMBOOT_SECRET would be "<secret>"/ });
  const url = { ...workerCtx(), serverUrl: 'http://x\n' };
  t.throws(() => renderIgnition(url, SCRIPT), { code: 'E_CONFIG', message: /SWARMBOOT_URL/ });
});

t.test('profile files and units are passed through', async (t) => {
  const extras = ignitionFixtures.find((f) => f.name === 'extras')!.ctx;
  const cfg = renderIgnition(extras, SCRIPT);
  const hello = cfg.storage.files.find((f) => f.path === '/opt/bin/hello');
  t.equal(hello?.mode, 0o755);
  t.equal(hello?.overwrite, false);
  t.equal(fileText(cfg, '/opt/bin/hello'), extras.profile.files[1]?.contents, 'data URL round-trips, UTF-8 and specials included');
  t.same(cfg.systemd.units.find((u) => u.name === 'update-engine.service'), { name: 'update-engine.service', mask: true });
  t.same(cfg.systemd.units.find((u) => u.name === 'docker.service')?.dropins, [
    { name: '10-opts.conf', contents: '[Service]\nEnvironment="DOCKER_OPTS=--log-opt max-size=10m"\n' },
  ]);
  t.equal(cfg.systemd.units[0]?.name, SWARM_UNIT_NAME, "swarmboot's unit first, then the profile's in order");
});

t.test('duplicate paths are refused, naming both owners', async (t) => {
  const clash = (over: Parameters<typeof makeProfile>[1]) =>
    renderIgnition(makeContext(makeCluster(), makeProfile('worker', over), makeMachine('52:54:00:00:00:30', 'd1', 'workers')), SCRIPT);
  t.throws(() => clash({ files: [{ path: '/etc/hostname', mode: 0o644, contents: 'x\n', overwrite: true }] }), {
    code: 'E_CONFIG',
    message: /\/etc\/hostname is written twice: by swarmboot \(hostname\) and by profile workers files\[0\]/,
  });
  t.throws(() => clash({ files: [{ path: '/etc/swarmboot//swarm.env', mode: 0o600, contents: '', overwrite: true }] }), {
    message: /\/etc\/swarmboot\/swarm\.env is written twice/,
  }, 'paths compared after normalisation');
  t.throws(() => clash({ units: [{ name: SWARM_UNIT_NAME, contents: '[Unit]\n', dropins: [] }] }), {
    message: /swarmboot-swarm\.service is written twice: by swarmboot \(swarm unit\) and by profile workers units\[0\]/,
  });
  t.throws(() => clash({ files: [{ path: '/etc/systemd/system/x.service', mode: 0o644, contents: '', overwrite: true }], units: [{ name: 'x.service', contents: '', dropins: [] }] }), {
    message: /x\.service is written twice/,
  }, 'a file and a unit at the same place');
  t.throws(() => clash({ files: [{ path: DOCKER_WANTS_LINK, mode: 0o644, contents: '', overwrite: true }] }), {
    message: /docker\.service is written twice/,
  }, 'a file over the docker link');
  t.throws(() => clash({ files: [
    { path: '/etc/a', mode: 0o644, contents: '', overwrite: true },
    { path: '/etc/a', mode: 0o644, contents: '', overwrite: true },
  ] }), { message: /files\[0\] and by profile workers files\[1\]/ }, 'within the profile too');
  const managerClash = (name: string) =>
    renderIgnition(makeContext(makeCluster(), makeProfile('manager', { units: [{ name, contents: '[Unit]\n', dropins: [] }] }), makeMachine('52:54:00:00:00:32', 'm9', 'managers')), SCRIPT);
  t.throws(() => managerClash(RECONCILE_TIMER_NAME), { message: /swarmboot-reconcile\.timer is written twice: by swarmboot \(reconcile timer\) and by profile managers units\[0\]/ });
  t.throws(() => managerClash(RECONCILE_SERVICE_NAME), { message: /swarmboot-reconcile\.service is written twice: by swarmboot \(reconcile service\)/ });
  t.doesNotThrow(() => clash({ units: [{ name: RECONCILE_TIMER_NAME, contents: '[Unit]\n', dropins: [] }] }), 'a worker has no reconcile timer, so the name is free');
  // Role none has no swarm unit, so the same name is free there.
  const none = makeContext(makeCluster({ swarm: automaticSwarm }), makeProfile('none', { units: [{ name: SWARM_UNIT_NAME, contents: '[Unit]\n', dropins: [] }] }), makeMachine('52:54:00:00:00:31', 'n1', 'plain'));
  t.doesNotThrow(() => renderIgnition(none, SCRIPT));
});

t.test('data URLs', async (t) => {
  t.equal(dataUrl('a b\n'), 'data:,a%20b%0A');
  t.equal(dataUrl('k=v,/x:y'), 'data:,k=v,/x:y', 'readable characters stay literal');
  t.equal(dataUrl('100%#?+"'), 'data:,100%25%23%3F%2B%22', 'characters Go would mis-parse are escaped');
  t.equal(dataUrl('é'), 'data:,%C3%A9', 'UTF-8 bytes');
  const all = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i)).join('') + 'ü€';
  t.equal(decode(dataUrl(all)), all, 'round trip');
});

t.test('loadSwarmScript finds ignition/swarm.sh from the package root', async (t) => {
  const text = loadSwarmScript();
  t.match(text, /^#!\/bin\/sh\n/);
  t.match(text, /swarm\.sh join\|leave/);
});
