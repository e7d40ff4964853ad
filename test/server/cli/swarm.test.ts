/**
 * `swarmboot swarm status|rotate-tokens` against the swarm router on
 * 127.0.0.1, called in-process (the lead registers the command in
 * server/cli/index.ts; these tests call swarmCommand directly).
 */
import t from 'tap';
import { createServer } from 'node:net';
import { swarmCommand, swarmHelp, formatStatus } from '../../../server/cli/swarm.js';
import { MGR1, WORKER1, lines, startSwarmFixture } from '../../helpers/swarm-fixture.js';

const W = 'SWMTKN-1-clitest-worker';
const M = 'SWMTKN-1-clitest-manager';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await swarmCommand(args, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

t.test('status: what the server knows, as a table and as JSON, never a token', async (t) => {
  const f = await startSwarmFixture(t);
  const empty = await run(['status', '--api', f.base]);
  t.equal(empty.code, 0, empty.err);
  t.match(empty.out, /^phase: {5}none\n/);
  t.match(empty.out, /no node has asked or reported yet/);

  await f.node(MGR1, 'POST', '/api/swarm/join', { addr: '10.0.0.1' });
  await f.node(WORKER1, 'POST', '/api/swarm/join', { addr: '10.0.0.11' });
  const initializing = await run(['status', '--api', f.base]);
  t.match(initializing.out, /phase: {5}initializing\nlease: {5}mgr1 \(52:54:00:5b:00:01\) until 2024-05-01T12:02:00\.000Z\n/);

  await f.node(MGR1, 'POST', '/api/swarm/report', { event: 'init', node_id: 'n-mgr1', addr: '10.0.0.1', worker_token: W, manager_token: M });
  const r = await run(['status', '--api', `${f.base}/`]);
  t.equal(r.code, 0);
  t.match(r.out, /phase: {5}active\n/);
  t.match(r.out, /tokens: {4}stored\n/);
  t.match(r.out, /managers: {2}10\.0\.0\.1:2377\n/);
  t.match(r.out, /warning: {3}1 manager\(s\) in the swarm: a swarm needs 3/);
  t.match(r.out, /\nMAC +HOSTNAME +ROLE +STATE +EVENT +NODE ID +ADDR +AT\n/);
  t.match(r.out, /52:54:00:5b:00:01 +mgr1 +manager +active +init +n-mgr1 +10\.0\.0\.1 +2024-05-01T12:00:00\.000Z\n/);
  t.match(r.out, /52:54:00:5b:00:11 +worker1 +worker +joining +ask +- +10\.0\.0\.11/);
  t.notMatch(r.out, /SWMTKN/);

  const json = await run(['status', '--api', f.base, '--json']);
  t.equal(JSON.parse(json.out).phase, 'active');
  t.notMatch(json.out, /SWMTKN/);
});

t.test('rotate-tokens: asks the server; the leader sees it in the desired state', async (t) => {
  const f = await startSwarmFixture(t);
  const early = await run(['rotate-tokens', '--api', f.base]);
  t.equal(early.code, 1);
  t.match(early.err, /the server refused \(409\): E_SWARM_CONFLICT: no swarm to rotate tokens in/);

  await f.node(MGR1, 'POST', '/api/swarm/join', { addr: '10.0.0.1' });
  await f.node(MGR1, 'POST', '/api/swarm/report', { event: 'init', node_id: 'n-mgr1', addr: '10.0.0.1', worker_token: W, manager_token: M });
  const r = await run(['rotate-tokens', '--api', f.base, '--which', 'manager']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^rotation requested \(manager\): the swarm leader rotates on its next reconcile run/);
  t.equal(lines((await f.node(MGR1, 'GET', '/api/swarm/desired')).text).rotate, 'manager');
  t.match((await run(['status', '--api', f.base])).out, /rotation: {2}manager pending/);
});

t.test('usage errors and an unreachable server', async (t) => {
  await t.rejects(run(['status', '--api', 'ftp://x']), { message: /--api must be an http\(s\) URL/ });
  await t.rejects(run(['spin']), { message: /unknown swarm subcommand "spin"/ });
  await t.rejects(run([]), { message: /swarm needs a subcommand/ });
  await t.rejects(run(['rotate-tokens', '--which', 'all']), { message: /--which must be worker, manager or both/ });
  await t.rejects(run(['status', '--bogus']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });

  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const r = await run(['status', '--api', `http://127.0.0.1:${port}`]);
  t.equal(r.code, 1);
  t.match(r.err, new RegExp(`cannot reach the swarmboot server at http://127\\.0\\.0\\.1:${port}/api/swarm/status: ECONNREFUSED`));
  t.match(swarmHelp, /swarmboot swarm status \[--api URL\]/);
  t.match(swarmHelp, /swarmboot swarm rotate-tokens/);
});

t.test('formatStatus with a reconcile report', async (t) => {
  const text = formatStatus({
    phase: 'active',
    lease: null,
    createdBy: null,
    tokens: { worker: true, manager: true },
    managers: [],
    rotate: 'none',
    warning: null,
    nodes: [],
    lastReconcile: { at: '2024-05-01T12:00:00.000Z', mac: MGR1, hostname: 'mgr1', nodeId: 'n1', managers: ['a:2377', 'b:2377', 'c:2377'], nodes: 5, labeled: 1, removed: ['w1/x'], keptDown: 0, failed: 0 },
  });
  t.match(text, /reconcile: 2024-05-01T12:00:00\.000Z by mgr1: 5 node\(s\), 3 manager\(s\), labels set on 1, removed w1\/x, 0 Down kept, 0 failure\(s\)\n/);
  t.match(text, /rotation: {2}none pending/);
});
