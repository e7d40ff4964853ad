/**
 * The swarm router over real HTTP on 127.0.0.1: authentication (403, a warn
 * line and a count for every kind of bad caller), the join/report flow in
 * the text protocol swarm.sh speaks, the reconciler's desired state, the
 * loopback-only rotation, static mode, and no secret or token in any log.
 */
import t from 'tap';
import { tokensDigest } from '../../../server/swarm/rendezvous.js';
import { isLoopback, renderDesired } from '../../../server/swarm/api.js';
import type { ProfileSet, Profile } from '../../../server/profiles/types.js';
import { MGR1, MGR2, MGR3, UNKNOWN, WORKER1, WORKER2, lines, secret, startSwarmFixture, type SwarmFixture } from '../../helpers/swarm-fixture.js';

const W = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx';
const M = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2';
const W2 = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-0000000000000000000000002';

async function initSwarm(f: SwarmFixture): Promise<void> {
  const ask = await f.node(MGR1, 'POST', '/api/swarm/join', { role: 'manager', hostname: 'mgr1', addr: '10.0.0.1' });
  if (lines(ask.text).action !== 'init') throw new Error(`expected init, got ${ask.text}`);
  const rep = await f.node(MGR1, 'POST', '/api/swarm/report', { event: 'init', node_id: 'n-mgr1', addr: '10.0.0.1', worker_token: W, manager_token: M });
  if (rep.status !== 200) throw new Error(`init report: ${rep.status} ${rep.text}`);
}

t.test('bad callers get 403, a warn line naming the reason, and a count', async (t) => {
  const f = await startSwarmFixture(t);
  const form = { role: 'worker', hostname: 'worker1', addr: '10.0.0.11' };
  const cases: Array<{ name: string; headers: Record<string, string>; reason: string; message: RegExp }> = [
    { name: 'no MAC header', headers: { authorization: `Bearer ${secret(WORKER1)}` }, reason: 'no-mac', message: /X-Swarmboot-Mac is missing or not a MAC/ },
    { name: 'malformed MAC', headers: { authorization: `Bearer ${secret(WORKER1)}`, 'x-swarmboot-mac': 'blade1' }, reason: 'bad-mac', message: /not a MAC/ },
    { name: 'no secret', headers: { 'x-swarmboot-mac': WORKER1 }, reason: 'no-secret', message: /no swarm secret presented for 52:54:00:5b:00:11/ },
    { name: 'not a bearer', headers: { 'x-swarmboot-mac': WORKER1, authorization: `Basic ${secret(WORKER1)}` }, reason: 'no-secret', message: /no swarm secret/ },
    { name: 'another machine\'s secret', headers: { 'x-swarmboot-mac': WORKER1, authorization: `Bearer ${secret(WORKER2)}` }, reason: 'wrong-secret', message: /wrong swarm secret for 52:54:00:5b:00:11/ },
    { name: 'garbage secret', headers: { 'x-swarmboot-mac': WORKER1, authorization: 'Bearer x' }, reason: 'wrong-secret', message: /wrong swarm secret/ },
    { name: 'unknown MAC, right secret', headers: { 'x-swarmboot-mac': UNKNOWN, authorization: `Bearer ${secret(UNKNOWN)}` }, reason: 'unknown-mac', message: /no profile serves 52:54:00:99:99:99/ },
  ];
  for (const c of cases) {
    for (const [method, path] of [['POST', '/api/swarm/join'], ['POST', '/api/swarm/report'], ['GET', '/api/swarm/desired']] as const) {
      const endpoint = path.slice('/api/swarm/'.length);
      const before = f.metrics.counter('swarmboot_swarm_auth_failures_total', '').get({ endpoint, reason: c.reason });
      const r = await f.request(method, path, { headers: c.headers, ...(method === 'POST' ? { form } : {}) });
      t.equal(r.status, 403, `${c.name} ${endpoint}: 403`);
      t.match(r.text, /^E_FORBIDDEN: /, `${c.name}: one code: message line`);
      t.match(r.text, c.message);
      t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      t.equal(f.metrics.counter('swarmboot_swarm_auth_failures_total', '').get({ endpoint, reason: c.reason }), before + 1, `${c.name}: counted`);
      const line = f.logs.at(-1);
      t.match(line, { level: 40, msg: 'swarm API call refused', endpoint, reason: c.reason, remote: '127.0.0.1' }, `${c.name}: logged`);
    }
  }
  t.equal(f.swarm.phase(), 'none', 'nothing reached the rendezvous');
  t.notOk(f.rawLogs.some((l) => l.includes(secret(WORKER1)) || l.includes(secret(WORKER2)) || l.includes(secret(UNKNOWN))), 'presented secrets are never logged');
  t.match(f.metrics.render(), /swarmboot_swarm_auth_failures_total\{endpoint="join",reason="wrong-secret"\} 2/);

  // Role none: in the profiles but not in the swarm.
  const set = f.profiles;
  const worker = set.profiles.get('worker') as Profile;
  f.setProfiles({ ...set, profiles: new Map([...set.profiles, ['worker', { ...worker, role: 'none' }]]) } as ProfileSet);
  const none = await f.node(WORKER1, 'POST', '/api/swarm/join', form);
  t.equal(none.status, 403);
  t.match(none.text, /has role none in profile worker: not part of the swarm/);
  t.match(f.logs.at(-1), { reason: 'not-in-swarm' });
});

t.test('the join/report flow, in the text protocol swarm.sh reads', async (t) => {
  const f = await startSwarmFixture(t);
  const ask = (mac: typeof MGR1, form: Record<string, string>) => f.node(mac, 'POST', '/api/swarm/join', form);

  const first = await ask(MGR1, { role: 'manager', hostname: 'mgr1', addr: '10.0.0.1' });
  t.equal(first.status, 200);
  t.equal(first.headers['content-type'], 'text/plain; charset=utf-8');
  t.equal(first.headers['cache-control'], 'no-store');
  t.match(first.text, /^action=init\nreason=elected to create the swarm; report within 120s\n$/);

  const worker = await ask(WORKER1, { role: 'worker', hostname: 'worker1', addr: '10.0.0.11' });
  t.same(lines(worker.text), { action: 'wait', retry: '5', reason: 'mgr1 is creating the swarm' });
  const second = await ask(MGR2, { role: 'manager', hostname: 'mgr2', addr: '10.0.0.2' });
  t.equal(lines(second.text).action, 'wait');

  const init = await f.node(MGR1, 'POST', '/api/swarm/report', { event: 'init', node_id: 'n-mgr1', addr: '10.0.0.1', worker_token: W, manager_token: M });
  t.equal(init.status, 200);
  t.equal(init.text, 'ok\n');
  t.match(f.machines.get(MGR1)?.swarm, { event: 'init', role: 'manager', nodeId: 'n-mgr1', addr: '10.0.0.1', at: 1714564800000 }, 'the machine view has it');

  const w = await ask(WORKER1, { role: 'worker', hostname: 'worker1', addr: '10.0.0.11' });
  t.same(lines(w.text), { action: 'join', token: W, managers: '10.0.0.1:2377', reason: 'join as worker through 1 manager(s)' });
  const m = await ask(MGR2, { role: 'manager', hostname: 'mgr2', addr: '10.0.0.2' });
  t.equal(lines(m.text).token, M, 'a manager gets the manager token');
  t.equal((await f.node(MGR2, 'POST', '/api/swarm/report', { event: 'joined', node_id: 'n-mgr2', addr: '10.0.0.2' })).status, 200);
  t.match(f.machines.get(MGR2)?.swarm, { event: 'joined', role: 'manager', nodeId: 'n-mgr2', addr: '10.0.0.2' });
  t.equal(lines((await ask(WORKER2, { role: 'worker', hostname: 'worker2', addr: '10.0.0.12' })).text).managers, '10.0.0.1:2377,10.0.0.2:2377');

  // The profile decides the role: a stale config asking as manager still gets the worker token.
  const stale = await ask(WORKER1, { role: 'manager', hostname: 'worker1', addr: '10.0.0.11' });
  t.equal(lines(stale.text).token, W);
  t.ok(f.logs.some((l) => l.msg === 'join request names another role than the profile; the profile wins' && l.asked === 'manager'));

  // Another manager's init into the active swarm: 409 with the reason, which swarm.sh prints.
  const late = await f.node(MGR3, 'POST', '/api/swarm/report', { event: 'init', node_id: 'n-mgr3', addr: '10.0.0.3', worker_token: W2, manager_token: M });
  t.equal(late.status, 409);
  t.match(late.text, /^E_SWARM_CONFLICT: the swarm already exists \(created by 52:54:00:5b:00:01\)/);

  for (const event of ['leaving', 'left'] as const) {
    t.equal((await f.node(WORKER2, 'POST', '/api/swarm/report', { event, node_id: event === 'leaving' ? 'n-w2' : '' })).status, 200, event);
  }
  t.match(f.machines.get(WORKER2)?.swarm, { event: 'left', role: 'worker', nodeId: undefined });
  t.equal(f.swarm.node(WORKER2)?.nodeId, 'n-w2', 'an empty node_id keeps the known one');

  t.same(
    { init: f.metrics.counter('swarmboot_swarm_join_answers_total', '').get({ action: 'init' }), wait: f.metrics.counter('swarmboot_swarm_join_answers_total', '').get({ action: 'wait' }), join: f.metrics.counter('swarmboot_swarm_join_answers_total', '').get({ action: 'join' }) },
    { init: 1, wait: 2, join: 4 },
  );
  t.match(f.metrics.render(), /swarmboot_swarm_managers 2\n/);

  const all = f.rawLogs.join('');
  for (const s of [W, M, W2, secret(MGR1), secret(MGR2), secret(WORKER1)]) t.notOk(all.includes(s), `no log line carries ${s.slice(0, 14)}...`);
  t.notOk(f.metrics.render().includes('SWMTKN'));
});

t.test('malformed requests get 400 with the field named, never echoing a token', async (t) => {
  const f = await startSwarmFixture(t);
  await initSwarm(f);
  const rep = (form: Record<string, string>) => f.node(MGR1, 'POST', '/api/swarm/report', form);
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{}, /event must be one of init, joined, active, leaving, left, reconcile, rotated, tokens/],
    [{ event: 'exploded' }, /event must be one of/],
    [{ event: 'init', node_id: 'n1', addr: '10.0.0.1', worker_token: W }, /manager_token is required/],
    [{ event: 'init', node_id: 'n1', addr: '10.0.0.1', worker_token: `${W}\nx=1`, manager_token: M }, /worker_token is not a swarm join token/],
    [{ event: 'joined', node_id: 'n 1' }, /node_id is not a node ID/],
    [{ event: 'joined', addr: 'mgr1.example' }, /addr is not an IP address/],
    [{ event: 'reconcile', managers: '10.0.0.1:2377,evil host' }, /managers holds something that is not a host:port address/],
    [{ event: 'rotated', worker_token: W, manager_token: M, rotated: 'everything' }, /rotated holds something that is not worker or manager/],
  ];
  for (const [form, message] of cases) {
    const r = await rep(form);
    t.equal(r.status, 400, JSON.stringify(form).slice(0, 60));
    t.match(r.text, /^E_BAD_REQUEST: /);
    t.match(r.text, message);
    t.notMatch(r.text, /SWMTKN/);
  }
  const join = await f.node(WORKER1, 'POST', '/api/swarm/join', { role: 'worker' });
  t.equal(join.status, 400);
  t.match(join.text, /addr is required/);
  const twice = await f.node(WORKER1, 'POST', '/api/swarm/join', {}).then(() => f.request('POST', '/api/swarm/join', { headers: { authorization: `Bearer ${secret(WORKER1)}`, 'x-swarmboot-mac': WORKER1 }, body: 'addr=10.0.0.11&addr=10.0.0.12' }));
  t.equal(twice.status, 400);
  t.match(twice.text, /field addr given more than once/);
  const big = await f.request('POST', '/api/swarm/join', { headers: { authorization: `Bearer ${secret(WORKER1)}`, 'x-swarmboot-mac': WORKER1 }, body: `addr=${'1'.repeat(40_000)}` });
  t.equal(big.status, 413, 'bodies are bounded');
  t.ok(f.logs.some((l) => l.level === 40 && l.msg === 'swarm API call refused' && l.status === 400), 'logged');
  t.notOk(f.rawLogs.join('').includes('SWMTKN'), 'not even the malformed token is logged');
});

t.test('desired state: for managers only; labels from the profiles, grace period, rotation, token digest', async (t) => {
  const f = await startSwarmFixture(t);
  const denied = await f.node(WORKER1, 'GET', '/api/swarm/desired');
  t.equal(denied.status, 403);
  t.match(denied.text, /is a worker: the desired state is for managers/);
  t.match(f.logs.at(-1), { reason: 'not-manager', endpoint: 'desired' });

  const before = await f.node(MGR2, 'GET', '/api/swarm/desired');
  t.equal(before.status, 200);
  t.equal(
    before.text,
    [
      'remove_down_after=never',
      'rotate=none',
      'tokens_sha256=none',
      'label=mgr1 tier=control',
      'label=mgr2 tier=control',
      'label=mgr3 tier=control',
      'label=worker1 tier=app',
      'label=worker2 gpu=false',
      'label=worker2 rack-slot=4',
      'label=worker2 tier=app',
      'label=worker3 tier=app',
      'label=worker4 tier=app',
      '',
    ].join('\n'),
    'every machine\'s labels (profile overlaid with the machine\'s), sorted',
  );

  await initSwarm(f);
  const set = f.profiles;
  f.setProfiles({ ...set, cluster: { ...set.cluster, swarm: { mode: 'automatic', leaveLastManager: false, removeDownAfter: 86400, initTimeout: 120 } } });
  const after = lines((await f.node(MGR2, 'GET', '/api/swarm/desired')).text);
  t.equal(after.remove_down_after, '86400', 'a profile reload applies at once');
  t.equal(after.tokens_sha256, tokensDigest({ worker: W, manager: M }));
  t.notMatch((await f.node(MGR2, 'GET', '/api/swarm/desired')).text, /SWMTKN/, 'the digest, never the tokens');
});

t.test('renderDesired skips nothing it can carry and sorts', async (t) => {
  t.equal(
    renderDesired({ removeDownAfter: 60, rotate: 'both', tokensDigest: 'abc', labels: [{ hostname: 'b', labels: { z: '1', a: 'x y=z' } }, { hostname: 'a', labels: {} }] }),
    'remove_down_after=60\nrotate=both\ntokens_sha256=abc\nlabel=b a=x y=z\nlabel=b z=1\n',
  );
});

t.test('a label value with a newline is left out, with a warning', async (t) => {
  const f = await startSwarmFixture(t);
  const set = f.profiles;
  const m = set.machines.get(WORKER1);
  if (m === undefined) throw new Error('worker1 missing');
  f.setProfiles({ ...set, machines: new Map([...set.machines, [WORKER1, { ...m, labels: { ...m.labels, note: 'two\nlines' } }]]) });
  const r = await f.node(MGR1, 'GET', '/api/swarm/desired');
  t.notMatch(r.text, /note=/);
  t.match(r.text, /label=worker1 tier=app/);
  t.ok(f.logs.some((l) => /label value holds a control character/.test(l.msg) && l.hostname === 'worker1' && l.label === 'note'));
});

t.test('rotation: loopback only, handed to the leader, applied by its report', async (t) => {
  const f = await startSwarmFixture(t);
  const early = await f.request('POST', '/api/swarm/rotate', { form: { which: 'both' } });
  t.equal(early.status, 409);
  t.match(early.text, /^E_SWARM_CONFLICT: no swarm to rotate tokens in \(phase: none\)/);

  await initSwarm(f);
  const r = await f.request('POST', '/api/swarm/rotate', { form: { which: 'worker' } });
  t.equal(r.status, 200);
  t.equal(r.text, 'ok rotate=worker\n');
  t.equal((await f.request('POST', '/api/swarm/rotate')).text, 'ok rotate=both\n', 'no body: both');
  t.equal((await f.request('POST', '/api/swarm/rotate', { form: { which: 'all' } })).status, 400);
  t.equal(lines((await f.node(MGR1, 'GET', '/api/swarm/desired')).text).rotate, 'both');

  const rotated = await f.node(MGR1, 'POST', '/api/swarm/report', { event: 'rotated', node_id: 'n-mgr1', worker_token: W2, manager_token: M, rotated: 'worker' });
  t.equal(rotated.status, 200);
  t.equal(lines((await f.node(MGR1, 'GET', '/api/swarm/desired')).text).rotate, 'manager', 'the manager token is still due');
  t.equal(lines((await f.node(WORKER1, 'POST', '/api/swarm/join', { addr: '10.0.0.11' })).text).token, W2, 'new joiners get the new token');
  t.notOk(f.rawLogs.join('').includes('SWMTKN'));

  const remote = await startSwarmFixture(t, { adminAllowed: () => false });
  const refused = await remote.request('POST', '/api/swarm/rotate', { form: { which: 'both' } });
  t.equal(refused.status, 403);
  t.match(refused.text, /accepted from loopback only/);
  t.match(remote.logs.at(-1), { level: 40, msg: 'swarm API call refused', endpoint: 'rotate', reason: 'not-loopback' });
  t.equal(remote.metrics.counter('swarmboot_swarm_auth_failures_total', '').get({ endpoint: 'rotate', reason: 'not-loopback' }), 1);
});

t.test('isLoopback', async (t) => {
  for (const ip of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(ip), ip);
  for (const ip of ['10.0.0.1', '::ffff:10.0.0.1', '0.0.0.0', '::', 'fe80::1', '', '128.0.0.1']) t.notOk(isLoopback(ip), ip || '(empty)');
});

t.test('reconcile reports from the leader; status shows everything but the tokens', async (t) => {
  const f = await startSwarmFixture(t);
  await initSwarm(f);
  const r = await f.node(MGR1, 'POST', '/api/swarm/report', {
    event: 'reconcile',
    node_id: 'n-mgr1',
    managers: '10.0.0.1:2377,10.0.0.2:2377,10.0.0.3:2377',
    nodes: '7',
    labeled: '2',
    removed: 'worker1/abc123,worker2/def456',
    kept_down: '1',
    failed: '0',
  });
  t.equal(r.status, 200);
  t.ok(f.logs.some((l) => l.level === 30 && l.msg === 'swarm reconciled by the leader' && l.labeled === 2), 'a run that acted is logged at info');
  t.notOk(f.machines.get(MGR1)?.trail.some((e) => e.detail === 'reconcile'), 'reconcile runs do not flood the boot trail');
  const worker = await f.node(WORKER1, 'POST', '/api/swarm/report', { event: 'reconcile' });
  t.equal(worker.status, 409);

  const status = await f.request('GET', '/api/swarm/status');
  t.equal(status.status, 200);
  t.equal(status.headers['content-type'], 'application/json; charset=utf-8');
  t.notMatch(status.text, /SWMTKN/);
  t.match(JSON.parse(status.text), {
    phase: 'active',
    tokens: { worker: true, manager: true },
    managers: ['10.0.0.1:2377', '10.0.0.2:2377', '10.0.0.3:2377'],
    warning: null,
    lastReconcile: { hostname: 'mgr1', nodes: 7, labeled: 2, removed: ['worker1/abc123', 'worker2/def456'], keptDown: 1 },
    nodes: [{ hostname: 'mgr1', role: 'manager', state: 'active', event: 'init', nodeId: 'n-mgr1' }],
  });
});

t.test('static mode: no rendezvous (409), reports still recorded', async (t) => {
  const f = await startSwarmFixture(t);
  const set = f.profiles;
  f.setProfiles({ ...set, cluster: { ...set.cluster, swarm: { mode: 'static', managers: ['10.0.0.2:2377'], tokens: { worker: W } } } });
  const join = await f.node(WORKER1, 'POST', '/api/swarm/join', { role: 'worker', hostname: 'worker1', addr: '10.0.0.11' });
  t.equal(join.status, 409);
  t.match(join.text, /swarm mode is static: there is no rendezvous \(static mode joins with the token in swarm\.env\)/);
  const joined = await f.node(WORKER1, 'POST', '/api/swarm/report', { event: 'joined', node_id: 'n-w1', addr: '10.0.0.11' });
  t.equal(joined.status, 200);
  t.match(f.machines.get(WORKER1)?.swarm, { event: 'joined', nodeId: 'n-w1' });

  f.setProfiles({ ...set, cluster: { ...set.cluster, swarm: { mode: 'off' } } });
  t.equal((await f.node(WORKER1, 'POST', '/api/swarm/report', { event: 'joined' })).status, 409);
});

t.test('routes outside /api/swarm are not this router\'s business', async (t) => {
  const f = await startSwarmFixture(t);
  const r = await f.request('GET', '/api/swarm/join');
  t.equal(r.status, 404, 'GET on a POST route falls through to express\'s 404');
});
