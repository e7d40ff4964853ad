/**
 * Issue 4 acceptance: static mode with a given token joins an existing
 * swarm.
 *
 * A one-manager swarm is made by hand (`docker swarm init` on a host with a
 * fixed address that swarmboot does not boot); its worker token and
 * address go into a static-mode profile set; swarmboot serves it, and a
 * worker blade booted from it joins that swarm without any rendezvous, and
 * leaves it on a clean shutdown.
 *
 * Also a check of the harness itself: the same worker with the 2017 seed's
 * unit (no After=/Requires=docker.service, only Before=shutdown.target)
 * has dockerd stopped concurrently with its leave, as on the real blades
 * in 2017, so the ordering the other tests rely on comes from the unit and
 * not from the harness.
 *
 * Real dockerd per blade (test/helpers/blade.ts). Needs root, iproute2,
 * dockerd, docker, udhcpc, curl; skips with the reason otherwise.
 */
import t from 'tap';
import type { IgnitionConfig } from '../../ignition/types.js';
import { bladesUnavailable, createSwarmLab, labReport, nodeList, type Blade, type SwarmLab, type SwarmMachine } from '../helpers/blade.js';
import { waitFor } from '../helpers/netns.js';

const SERVER_IP = '10.80.0.1';
const MANAGER_IP = '10.80.0.2';
const machines: SwarmMachine[] = [
  { mac: '52:54:00:7b:00:11', hostname: 'swk1', role: 'worker' },
  { mac: '52:54:00:7b:00:12', hostname: 'swk2017', role: 'worker' },
];
const SWARM_UNIT = 'swarmboot-swarm.service';
const WAIT = 120_000;

/** The 2017 seed's ordering: the swarm unit is not ordered against docker.service at all. */
function seed2017Unit(cfg: IgnitionConfig): IgnitionConfig {
  const units = cfg.systemd.units.map((u) =>
    u.name !== SWARM_UNIT || u.contents === undefined
      ? u
      : { ...u, contents: u.contents.replace(/^(Requires|After)=.*\n/gm, '').replace('[Unit]\n', '[Unit]\nBefore=shutdown.target\n') },
  );
  return { ...cfg, systemd: { units } };
}

function stopSpan(b: Blade, unit: string): { began: number; ended: number } {
  const s = b.stopTimes.get(unit);
  if (s === undefined) throw new Error(`${b.name}: ${unit} was not stopped (${b.stopOrder.join(', ')})`);
  return s;
}

let lab: SwarmLab | undefined;
const why = bladesUnavailable();
if (why !== null) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  t.setTimeout(600_000);
  t.test('static mode joins a swarm made by hand', async (t) => {
    lab = await createSwarmLab(t, { serverIp: SERVER_IP, prefix: 'sbs' });
    const l = lab;
    t.teardown(() => {
      if (!t.passing()) t.comment(labReport(l));
    });

    const hand = await l.blade('hand1', { mac: '52:54:00:7b:00:01', address: `${MANAGER_IP}/24` });
    await hand.bareBoot();
    await hand.dockerOk(['swarm', 'init', '--advertise-addr', MANAGER_IP]);
    const token = (await hand.dockerOk(['swarm', 'join-token', '-q', 'worker'])).trim();
    t.match(token, /^SWMTKN-1-/, 'a swarm made by hand, worker token in hand');

    // Port 2377 is left to the default on purpose.
    await l.startServe({ swarm: { mode: 'static', managers: [MANAGER_IP], workerToken: token }, machines });

    const swk1 = await l.blade('swk1');
    await t.test('a worker booted from the static profiles joins with the token', async (t) => {
      const boot = await swk1.boot();
      t.same(boot.failed, [], 'booted with no failed unit');
      t.notOk(boot.started.includes('swarmboot-reconcile.timer'), 'no reconciler in static mode');
      t.match(swk1.unitLog(SWARM_UNIT).join('\n'), new RegExp(`joined the swarm as worker via ${MANAGER_IP.replace(/\./g, '\\.')}:2377`), 'joined through the given manager');
      const rows = await waitFor(
        async () => {
          const r = await nodeList(hand);
          return r.length === 2 && r.every((x) => x.status === 'Ready') ? r : null;
        },
        { timeoutMs: WAIT, intervalMs: 1000, what: 'swk1 Ready on the hand-made manager' },
      );
      t.same(rows.map((r) => r.hostname).sort(), ['hand1', 'swk1'], 'the hand-made swarm has the blade, under its profile hostname');
      t.notOk(l.serverLog().some((x) => typeof x.msg === 'string' && x.msg.startsWith('swarm join:')), 'no rendezvous join was asked');
      t.ok(l.serverLog().some((x) => x.msg === 'node joined the swarm' && x.hostname === 'swk1'), 'the blade reported its join');
    });

    await t.test('a clean shutdown leaves the swarm before dockerd stops', async (t) => {
      await swk1.shutdown();
      const leave = stopSpan(swk1, SWARM_UNIT);
      const docker = stopSpan(swk1, 'docker.service');
      t.ok(leave.ended <= docker.began, `the leave ended before dockerd was stopped (${swk1.stopOrder.join(', ')})`);
      t.match(swk1.unitLog(SWARM_UNIT).join('\n'), /left the swarm/, 'ExecStop left the swarm');
      const down = await waitFor(async () => (await nodeList(hand)).find((r) => r.hostname === 'swk1' && r.status === 'Down'), { timeoutMs: WAIT, intervalMs: 1000, what: 'swk1 Down' });
      t.ok(down, 'the manager sees it Down (left)');
    });

    await t.test('harness check: the 2017 unit (no order against docker.service) loses its leave', async (t) => {
      const old = await l.blade('swk2017', { patchIgnition: seed2017Unit });
      const boot = await old.boot();
      t.same(boot.failed, [], 'booted (the join waits for dockerd itself)');
      await waitFor(async () => (await nodeList(hand)).some((r) => r.hostname === 'swk2017' && r.status === 'Ready'), { timeoutMs: WAIT, intervalMs: 1000, what: 'swk2017 Ready' });
      await old.shutdown();
      const leave = stopSpan(old, SWARM_UNIT);
      const docker = stopSpan(old, 'docker.service');
      t.ok(docker.began < leave.ended, 'dockerd was being stopped while the leave ran (no ordering between them)');
      const log = old.unitLog(SWARM_UNIT).join('\n');
      t.notMatch(log, /left the swarm/, `the leave did not happen: ${old.unitLog(SWARM_UNIT).at(-1) ?? ''}`);
      const node = (await nodeList(hand)).find((r) => r.hostname === 'swk2017');
      t.ok(node !== undefined, `the node is still listed (${node?.status}): it did not leave`);
    });

    await l.cleanup();
    t.same(l.leftovers(), [], 'every daemon, mount, namespace and directory is gone');
  });

  t.test('nothing left behind after teardown', async (t) => {
    t.same(lab?.leftovers() ?? [], [], 'no dockerd, mount, namespace or directory of this test remains');
  });
}
