/**
 * Issue 4 acceptance: the elected first manager dies before reporting.
 *
 * Three managers and a worker boot concurrently (init_timeout: 5s). Every
 * manager's swarm unit runs docker through a wrapper whose first
 * `docker swarm init` in the lab runs and then hangs, so the elected
 * manager has created a swarm but not reported it; the test then cuts that
 * blade's power. After the init lease runs out another manager takes it
 * over, inits, and the rest join its swarm; the dead manager, rebooted
 * diskless, joins it too.
 *
 * A second lab covers the elected manager that is only slow: its init
 * completes after the lease was taken over, its late report is refused
 * (409), and it leaves its own swarm and joins the adopted one.
 *
 * Real dockerd per blade (test/helpers/blade.ts). Needs root, iproute2,
 * dockerd, docker, udhcpc, curl; skips with the reason otherwise.
 */
import t from 'tap';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bladesUnavailable, labReport, nodeList, startSwarmLab, type SwarmLab, type SwarmMachine } from '../helpers/blade.js';
import { waitFor } from '../helpers/netns.js';

const machines: SwarmMachine[] = [
  { mac: '52:54:00:7a:00:01', hostname: 'fmgr1', role: 'manager' },
  { mac: '52:54:00:7a:00:02', hostname: 'fmgr2', role: 'manager' },
  { mac: '52:54:00:7a:00:03', hostname: 'fmgr3', role: 'manager' },
  { mac: '52:54:00:7a:00:11', hostname: 'fwrk1', role: 'worker' },
];
const SWARM_UNIT = 'swarmboot-swarm.service';
const WAIT = 120_000;

/**
 * docker for the swarm unit (via $DOCKER; the blade's socket is in
 * DOCKER_HOST). The first `swarm init` across the lab (mkdir is atomic)
 * runs for real, records who ran it, then hangs: a node that died between
 * its init and its report.
 */
const WRAPPER = `#!/bin/sh
if [ "$1" = swarm ] && [ "$2" = init ] && mkdir "$HANG_LOCK" 2>/dev/null; then
  docker "$@" || exit
  printf '%s\\n' "$SWARMBOOT_HOSTNAME" >"$HANG_LOCK/who"
  sleep "$HANG_SECONDS"
  exit 0
fi
exec docker "$@"
`;

const labs: SwarmLab[] = [];
const why = bladesUnavailable();
if (why !== null) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  t.setTimeout(600_000);
  t.test('the elected first manager dies before reporting', async (t) => {
    const l = await startSwarmLab(t, { swarm: { mode: 'automatic', initTimeout: '5s' }, machines, serverIp: '10.79.0.1', prefix: 'sbf' });
    labs.push(l);
    t.teardown(() => {
      if (!t.passing()) t.comment(labReport(l));
    });
    const wrapper = join(l.dir, 'docker-hang-first-init');
    writeFileSync(wrapper, WRAPPER);
    chmodSync(wrapper, 0o755);
    const lock = join(l.dir, 'first-init');
    const env = { DOCKER: wrapper, HANG_LOCK: lock, HANG_SECONDS: '600' };
    const managers = await Promise.all(['fmgr1', 'fmgr2', 'fmgr3'].map((n) => l.blade(n, { env })));
    const worker = await l.blade('fwrk1');
    const all = [...managers, worker];

    const boots = Promise.all(all.map((b) => b.boot()));
    const who = await waitFor(() => existsSync(join(lock, 'who')) && readFileSync(join(lock, 'who'), 'utf8').trim(), { timeoutMs: WAIT, what: 'the elected manager to run docker swarm init' });
    const dead = managers.find((m) => m.hostname === who);
    if (dead === undefined) throw new Error(`unknown init runner ${who}`);
    const deadMac = dead.mac;
    t.ok(l.serverLog().some((x) => x.msg === 'swarm join: init' && x.mac === deadMac), `${who} was granted the init lease`);
    await dead.powerOff();
    t.pass(`${who} lost power after its swarm init, before reporting it`);

    const results = await boots;
    const survivors = managers.filter((m) => m !== dead);
    for (const b of [...survivors, worker]) {
      const r = results[all.indexOf(b)];
      t.same(r?.failed, [], `${b.name} booted with no failed unit`);
    }
    const takeover = l.serverLog().find((x) => x.msg === 'init lease ran out without a report; the next manager takes it over');
    t.match(takeover, { previous: deadMac }, 'the server noticed the lease ran out and handed it on');
    const created = l.serverLog().filter((x) => x.msg === 'swarm created; join tokens stored');
    t.equal(created.length, 1, 'one swarm adopted');
    const creator = survivors.find((m) => m.mac === created[0]?.mac);
    t.ok(creator !== undefined, `the swarm was created by a surviving manager (${creator?.name})`);
    if (creator === undefined) return;

    const rows = await waitFor(
      async () => {
        const r = await nodeList(creator);
        return r.length === 3 && r.every((x) => x.status === 'Ready') ? r : null;
      },
      { timeoutMs: WAIT, intervalMs: 1000, what: 'the other manager and the worker in the new swarm' },
    );
    t.same(rows.map((r) => r.hostname).sort(), [...survivors, worker].map((b) => b.hostname).sort(), 'the rest joined the new swarm');
    t.same(rows.map((r) => r.managerStatus).filter((s) => s !== '').sort(), ['Leader', 'Reachable'], 'two managers');
    for (const b of [...survivors, worker]) t.match(b.unitLog(SWARM_UNIT).join('\n'), creator === b ? /swarm created/ : /joined the swarm as/, `${b.name}'s swarm unit: ${b.unitLog(SWARM_UNIT).at(-1) ?? ''}`);

    // The dead manager comes back diskless: it must join the adopted swarm, not its own.
    const again = await dead.boot();
    t.same(again.failed, [], `${dead.name} rebooted with no failed unit`);
    t.match(dead.unitLog(SWARM_UNIT).join('\n'), /joined the swarm as manager/, `${dead.name} joined as a manager`);
    const full = await waitFor(
      async () => {
        const r = await nodeList(creator);
        return r.length === 4 && r.every((x) => x.status === 'Ready') ? r : null;
      },
      { timeoutMs: WAIT, intervalMs: 1000, what: `${dead.name} Ready in the swarm` },
    );
    t.same(full.map((r) => r.managerStatus).filter((s) => s !== '').sort(), ['Leader', 'Reachable', 'Reachable'], 'three managers again');
    t.equal(l.serverLog().filter((x) => x.msg === 'swarm created; join tokens stored').length, 1, 'still one swarm');

    await l.cleanup();
    t.same(l.leftovers(), [], 'every daemon, mount, namespace and directory is gone');
  });

  t.test('the elected first manager reports too late: refused, it leaves its swarm and joins the adopted one', async (t) => {
    const l = await startSwarmLab(t, { swarm: { mode: 'automatic', initTimeout: '5s' }, machines, serverIp: '10.81.0.1', prefix: 'sbf' });
    labs.push(l);
    t.teardown(() => {
      if (!t.passing()) t.comment(labReport(l));
    });
    const wrapper = join(l.dir, 'docker-slow-first-init');
    writeFileSync(wrapper, WRAPPER);
    chmodSync(wrapper, 0o755);
    // Longer than the lease (5 s) plus a waiting manager's next ask (<= 5 s) and its init.
    const env = { DOCKER: wrapper, HANG_LOCK: join(l.dir, 'first-init'), HANG_SECONDS: '15' };
    const managers = await Promise.all(['fmgr1', 'fmgr2', 'fmgr3'].map((n) => l.blade(n, { env })));
    const all = [...managers, await l.blade('fwrk1')];
    const boots = await Promise.all(all.map((b) => b.boot()));
    for (const [i, b] of boots.entries()) t.same(b.failed, [], `${all[i]?.name} booted with no failed unit`);

    const who = readFileSync(join(l.dir, 'first-init', 'who'), 'utf8').trim();
    const slow = managers.find((m) => m.hostname === who);
    if (slow === undefined) throw new Error(`unknown init runner ${who}`);
    // Which refusal depends on timing: the lease was taken over, or the taker has already reported its swarm.
    const refusal = l.serverLog().find((x) => x.mac === slow.mac && /^(late init refused|init report refused: the swarm already exists)/.test(x.msg));
    t.ok(refusal, `${who}'s late init report was refused (${refusal?.msg})`);
    const log = slow.unitLog(SWARM_UNIT).join('\n');
    t.match(log, /the server refused this swarm .*; leaving it/, `${who} left the swarm it had made`);
    t.match(log, /joined the swarm as manager/, `${who} then joined the adopted swarm`);
    const created = l.serverLog().filter((x) => x.msg === 'swarm created; join tokens stored');
    t.equal(created.length, 1, 'one swarm adopted');
    t.not(created[0]?.mac, slow.mac, 'created by another manager');
    const rows = await waitFor(
      async () => {
        const r = await nodeList(slow);
        return r.length === 4 && r.every((x) => x.status === 'Ready') ? r : null;
      },
      { timeoutMs: WAIT, intervalMs: 1000, what: 'all four nodes in one swarm' },
    );
    t.same(rows.map((r) => r.managerStatus).filter((s) => s !== '').sort(), ['Leader', 'Reachable', 'Reachable'], 'one swarm of three managers and a worker');

    await l.cleanup();
    t.same(l.leftovers(), [], 'every daemon, mount, namespace and directory is gone');
  });

  t.test('nothing left behind after teardown', async (t) => {
    t.same(labs.flatMap((l) => l.leftovers()), [], 'no dockerd, mount, namespace or directory of these tests remains');
  });
}
