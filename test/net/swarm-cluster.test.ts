/**
 * Issue 4 acceptance, one booted cluster reused by the scenarios that can
 * share it (each step starts from where the previous one left the swarm):
 *
 *   1. 3 managers + 2 workers boot concurrently from one profile set: every
 *      manager's `docker node ls` shows 5 Ready nodes, one Leader and two
 *      Reachable, hostnames and (after a reconcile run) labels as in the
 *      profiles.
 *   2. A rendezvous call with a wrong secret gets 403 and a log line.
 *   3. A worker rebooted diskless (power cut: no ExecStop; its
 *      /var/lib/docker wiped): it rejoins with a new node ID and, after the
 *      leader's reconciler runs, no Down duplicate remains.
 *   4. A worker shut down cleanly: it leaves (ExecStop before dockerd
 *      stops) and the reconciler removes it (remove_down_after: 10s).
 *   5. The leader shut down: demoted before leaving; the other two keep
 *      quorum and a new worker joins.
 *
 * Real dockerd per blade (test/helpers/blade.ts). Needs root, iproute2,
 * dockerd, docker, udhcpc, curl; skips with the reason otherwise.
 */
import t from 'tap';
import { bladesUnavailable, labReport, nodeLabels, nodeList, startSwarmLab, type Blade, type NodeRow, type SwarmLab, type SwarmMachine } from '../helpers/blade.js';
import { waitFor } from '../helpers/netns.js';

const machines: SwarmMachine[] = [
  { mac: '52:54:00:78:00:01', hostname: 'mgr1', role: 'manager' },
  { mac: '52:54:00:78:00:02', hostname: 'mgr2', role: 'manager' },
  { mac: '52:54:00:78:00:03', hostname: 'mgr3', role: 'manager' },
  { mac: '52:54:00:78:00:11', hostname: 'wrk1', role: 'worker', labels: { disk: 'none' } },
  { mac: '52:54:00:78:00:12', hostname: 'wrk2', role: 'worker', labels: { gpu: 'true' } },
  { mac: '52:54:00:78:00:13', hostname: 'wrk3', role: 'worker' },
];
const roleLabels = { manager: { tier: 'control' }, worker: { tier: 'app' } };
const RECONCILE = 'swarmboot-reconcile.timer';
const SWARM_UNIT = 'swarmboot-swarm.service';
const WAIT = 120_000;

/** Fires the reconcile timer on every manager that is up (only the leader acts, as on real blades); returns the leader's output. */
async function reconcile(managers: readonly Blade[]): Promise<string> {
  const up = managers.filter((m) => m.dockerdAlive());
  const runs = await Promise.all(up.map((m) => m.runTimer(RECONCILE)));
  return runs.map((r) => r.output).join('');
}

/** The swarm unit's stop (its ExecStop, the leave) ended before docker.service's stop began. */
function leftBeforeDockerStopped(b: Blade): boolean {
  const swarm = b.stopTimes.get(SWARM_UNIT);
  const docker = b.stopTimes.get('docker.service');
  return swarm !== undefined && docker !== undefined && swarm.ended <= docker.began;
}

const summary = (rows: readonly NodeRow[]): string => rows.map((r) => `${r.hostname}:${r.status}:${r.managerStatus || '-'}`).sort().join(' ');

let lab: SwarmLab | undefined;
const why = bladesUnavailable();
if (why !== null) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  t.setTimeout(900_000);
  t.test('3 managers + 2 workers, then reboot, leave, manager shutdown', async (t) => {
    lab = await startSwarmLab(t, { swarm: { mode: 'automatic', removeDownAfter: '10s', initTimeout: '60s' }, machines, roleLabels });
    const l = lab;
    t.teardown(() => {
      if (t.passing()) return;
      t.comment(labReport(l));
    });
    const [mgr1, mgr2, mgr3, wrk1, wrk2] = await Promise.all(['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2'].map((n) => l.blade(n))) as [Blade, Blade, Blade, Blade, Blade];
    const managers = [mgr1, mgr2, mgr3];

    await t.test('boot concurrently: 5 Ready nodes, 3 managers, hostnames and labels from the profiles', async (t) => {
      const boots = await Promise.all([mgr1, mgr2, mgr3, wrk1, wrk2].map((b) => b.boot()));
      for (const b of boots) {
        t.same(b.failed, [], `${b.hostname} booted with no failed unit (${b.ms} ms, ${b.ip})`);
      }
      for (const b of [mgr1, mgr2, mgr3, wrk1, wrk2]) {
        const docker = b.startTimes.get('docker.service');
        const swarm = b.startTimes.get(SWARM_UNIT);
        t.ok(docker !== undefined && swarm !== undefined && docker.ended <= swarm.began, `${b.name}: the swarm unit started once dockerd answered`);
      }
      for (const m of managers) {
        const rows = await waitFor(
          async () => {
            const r = await nodeList(m);
            return r.length === 5 && r.every((x) => x.status === 'Ready') ? r : null;
          },
          { timeoutMs: WAIT, intervalMs: 1000, what: `5 Ready nodes on ${m.name}` },
        );
        t.same(rows.map((r) => r.hostname).sort(), ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2'], `${m.name}: hostnames as in the profiles`);
        t.same(rows.map((r) => r.managerStatus).filter((s) => s !== '').sort(), ['Leader', 'Reachable', 'Reachable'], `${m.name}: one Leader, two Reachable (${summary(rows)})`);
      }
      const created = l.serverLog().filter((x) => x.msg === 'swarm created; join tokens stored');
      t.equal(created.length, 1, 'exactly one swarm was created');

      const out = await reconcile(managers);
      t.match(out, /set \d+ label\(s\) on/, 'the leader applied the labels');
      const want: Record<string, Record<string, string>> = {
        mgr1: roleLabels.manager, mgr2: roleLabels.manager, mgr3: roleLabels.manager,
        wrk1: { tier: 'app', disk: 'none' }, wrk2: { tier: 'app', gpu: 'true' },
      };
      for (const [host, labels] of Object.entries(want)) t.same(await nodeLabels(mgr2, host), labels, `labels of ${host}`);
      const again = await reconcile(managers);
      t.notMatch(again, /label/, 'a second run has nothing to label');
    });

    await t.test('a rendezvous call with a wrong secret is refused and logged', async (t) => {
      const before = l.serverLog().length;
      const r = await wrk1.ns.exec('curl', [
        '-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}',
        '-H', `Authorization: Bearer ${'0'.repeat(64)}`, '-H', `X-Swarmboot-Mac: ${wrk1.mac}`,
        '--data-urlencode', 'role=worker', '--data-urlencode', `addr=${wrk1.ip ?? ''}`,
        `${l.serverUrl}/api/swarm/join`,
      ]);
      t.equal(r.stdout, '403', 'HTTP 403');
      const line = await waitFor(() => l.serverLog().slice(before).find((x) => x.msg === 'swarm API call refused'), { timeoutMs: 5000, what: 'the refusal in the server log' });
      t.match(line, { level: 40, endpoint: 'join', reason: 'wrong-secret', mac: wrk1.mac, remote: wrk1.ip }, 'one warn line: endpoint, reason, MAC, remote address');
      t.notMatch(JSON.stringify(line), /0{64}/, 'the presented secret is not logged');
      const metrics = (await l.serverExec('curl', ['-sS', '--max-time', '10', 'http://127.0.0.1:8080/metrics'])).stdout;
      t.match(metrics, /swarmboot_swarm_auth_failures_total\{[^}]*reason="wrong-secret"[^}]*\} 1/, 'counted in swarmboot_swarm_auth_failures_total');
      t.same((await nodeList(mgr1)).length, 5, 'the swarm is untouched');
    });

    await t.test('a worker rebooted diskless rejoins with a new ID; no Down duplicate remains', async (t) => {
      const oldId = await wrk2.nodeId();
      // A power cycle: no ExecStop, no leave. The next boot starts with an empty /var/lib/docker.
      await wrk2.powerOff();
      const boot = await wrk2.boot();
      t.same(boot.failed, [], 'rebooted with no failed unit');
      const newId = await wrk2.nodeId();
      t.not(newId, oldId, `a new node ID (${oldId} -> ${newId})`);
      t.match(wrk2.unitLog(SWARM_UNIT).join('\n'), /joined the swarm as worker/, 'joined through the rendezvous');

      let removedLine = '';
      const rows = await waitFor(
        async () => {
          const out = await reconcile(managers);
          const m = new RegExp(`removed worker wrk2 \\(${oldId}\\): .*`).exec(out);
          if (m !== null) removedLine = m[0];
          const r = await nodeList(mgr1);
          return r.length === 5 && r.every((x) => x.status === 'Ready') && r.filter((x) => x.hostname === 'wrk2').length === 1 ? r : null;
        },
        { timeoutMs: WAIT, intervalMs: 3000, what: 'the old wrk2 to go Down and be removed by the reconciler' },
      );
      t.same(rows.filter((r) => r.hostname === 'wrk2').map((r) => r.id), [newId], 'wrk2 is listed once, with its new ID');
      t.notOk(rows.some((r) => r.status === 'Down'), `no Down node (${summary(rows)})`);
      t.match(removedLine, /a Ready node has its hostname/, `the leader removed the stale twin: ${removedLine}`);
    });

    await t.test('a worker shut down cleanly leaves; the reconciler removes it', async (t) => {
      await wrk1.shutdown();
      t.ok(leftBeforeDockerStopped(wrk1), `the swarm unit's ExecStop ended before docker.service began stopping (${wrk1.stopOrder.join(', ')})`);
      t.match(wrk1.unitLog(SWARM_UNIT).join('\n'), /left the swarm/, 'ExecStop left the swarm');
      t.ok(l.serverLog().some((x) => x.msg === 'node left the swarm' && x.hostname === 'wrk1'), 'the server heard "left"');

      const down = await waitFor(async () => (await nodeList(mgr1)).find((r) => r.hostname === 'wrk1' && r.status === 'Down'), { timeoutMs: WAIT, intervalMs: 1000, what: 'wrk1 Down' });
      t.ok(down, 'the managers see wrk1 Down after its leave');
      let removedLine = '';
      await waitFor(
        async () => {
          const out = await reconcile(managers);
          const m = /removed worker wrk1 \(\S+\): .*/.exec(out);
          if (m !== null) removedLine = m[0];
          return !(await nodeList(mgr1)).some((r) => r.hostname === 'wrk1');
        },
        { timeoutMs: WAIT, intervalMs: 3000, what: 'the reconciler to remove wrk1' },
      );
      t.match(removedLine, /down for \d+s, remove_down_after is 10s/, `removed by remove_down_after: ${removedLine}`);
      const left = await nodeList(mgr1);
      t.same(left.map((r) => `${r.hostname}:${r.status}`).sort(), ['mgr1:Ready', 'mgr2:Ready', 'mgr3:Ready', 'wrk2:Ready'], 'four nodes left, all Ready');
    });

    await t.test('the leader shut down: demoted before leaving; two managers keep quorum and take a new worker', async (t) => {
      const rows = await nodeList(mgr1);
      const leaderRow = rows.find((r) => r.managerStatus === 'Leader');
      const leader = managers.find((m) => m.hostname === leaderRow?.hostname);
      if (leader === undefined) throw new Error(`no leader among ${summary(rows)}`);
      const others = managers.filter((m) => m !== leader);
      const leaderId = leaderRow?.id ?? '';

      await leader.shutdown();
      t.ok(leftBeforeDockerStopped(leader), `the swarm unit's ExecStop ended before docker.service began stopping (${leader.stopOrder.join(', ')})`);
      t.match(leader.unitLog(SWARM_UNIT).join('\n'), /demoted and left the swarm \(2 other managers remain\)/, 'ExecStop demoted, then left');

      const [a, b] = others as [Blade, Blade];
      const after = await waitFor(
        async () => {
          const r = await nodeList(a);
          const gone = r.find((x) => x.id === leaderId);
          const mgrs = r.filter((x) => x.managerStatus !== '').map((x) => x.managerStatus).sort();
          return gone?.status === 'Down' && gone.managerStatus === '' && mgrs.join(',') === 'Leader,Reachable' ? r : null;
        },
        { timeoutMs: WAIT, intervalMs: 1000, what: `a new leader among ${others.map((o) => o.name).join(', ')} and ${leader.name} Down as a worker` },
      );
      t.pass(`after the shutdown: ${summary(after)}`);
      t.equal(await a.docker(['node', 'inspect', '--format', '{{.Spec.Role}}', leaderId]).then((r) => r.stdout.trim()), 'worker', `${leader.name} was demoted (its node is a worker)`);
      // Quorum: a write to the raft store succeeds on both remaining managers.
      await a.dockerOk(['node', 'update', '--label-add', 'quorum=a', a.hostname]);
      await b.dockerOk(['node', 'update', '--label-add', 'quorum=b', b.hostname]);
      t.equal((await nodeLabels(b, a.hostname)).quorum, 'a', 'the swarm accepts writes (2 of 3 raft members)');

      // A reconcile refreshes the manager list the server hands out.
      await reconcile(others);
      const wrk3 = await l.blade('wrk3');
      const boot = await wrk3.boot();
      t.same(boot.failed, [], 'the new worker booted with no failed unit');
      const joined = await waitFor(
        async () => (await nodeList(a)).find((r) => r.hostname === 'wrk3' && r.status === 'Ready'),
        { timeoutMs: WAIT, intervalMs: 1000, what: 'wrk3 Ready' },
      );
      t.ok(joined, 'the new worker is Ready in the swarm');
      t.match(wrk3.unitLog(SWARM_UNIT).join('\n'), /joined the swarm as worker via 10\.78\.0\.\d+:2377/, 'joined through a remaining manager');
    });

    await l.cleanup();
    t.same(l.leftovers(), [], 'every daemon, mount, namespace and directory is gone');
  });

  t.test('nothing left behind after teardown', async (t) => {
    t.same(lab?.leftovers() ?? [], [], 'no dockerd, mount, namespace or directory of this test remains');
  });
}
