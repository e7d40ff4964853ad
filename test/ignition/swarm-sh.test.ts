/**
 * ignition/swarm.sh under `sh` (dash here, like a strict POSIX shell), with
 * a fake `docker` that records its argv and answers from state files, a
 * `curl` wrapper that records curl's argv (secrets must not be there), an
 * instant `sleep` that records its durations, and a fake rendezvous server
 * on 127.0.0.1. The fake docker's `node inspect` answers from state files
 * shaped like the script's --format output (one line per node), so the
 * reconcile tests read like `docker node ls`.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tokensDigest } from '../../server/swarm/rendezvous.js';

const SCRIPT = fileURLToPath(new URL('../../ignition/swarm.sh', import.meta.url));
const SECRET = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const WORKER_TOKEN = 'SWMTKN-1-fakeworkertoken';
const MANAGER_TOKEN = 'SWMTKN-1-fakemanagertoken';
const JOIN_TOKEN = 'SWMTKN-1-tokenfromserver';
const STATIC_TOKEN = 'SWMTKN-1-statictoken';

const FAKE_DOCKER = `#!/bin/sh
S=$FAKE_STATE
printf '%s\\n' "$*" >>"$S/argv"
get() { if [ -f "$S/$1" ]; then cat "$S/$1"; else echo "$2"; fi; }
for last; do :; done
case $1 in
  info)
    if [ $# -eq 1 ]; then
      n=$(get down 0)
      if [ "$n" -gt 0 ]; then echo $((n - 1)) >"$S/down"; echo 'Cannot connect to the Docker daemon' >&2; exit 1; fi
      exit 0
    fi
    case $3 in
      '{{.Swarm.LocalNodeState}}') get state inactive ;;
      '{{.Swarm.NodeID}}') get nodeid '' ;;
      '{{.Swarm.ControlAvailable}}') get control false ;;
      *) echo "fake docker: unknown format $3" >&2; exit 1 ;;
    esac
    ;;
  swarm)
    case $2 in
      init)
        echo active >"$S/state"; echo true >"$S/control"; echo node-init-1 >"$S/nodeid"
        echo 'Swarm initialized: current node (node-init-1) is now a manager.'
        echo "    docker swarm join --token ${WORKER_TOKEN} 10.0.0.5:2377"
        ;;
      join-token)
        if [ "$3" = --rotate ]; then echo "SWMTKN-1-rotated\${last}token" >"$S/token-$last"; fi
        if [ -f "$S/token-$last" ]; then cat "$S/token-$last"; exit 0; fi
        case $last in worker) echo ${WORKER_TOKEN} ;; manager) echo ${MANAGER_TOKEN} ;; *) exit 1 ;; esac
        ;;
      join)
        if [ -f "$S/bad" ] && grep -qx "$last" "$S/bad"; then
          echo "Error response from daemon: could not reach $last" >&2; exit 1
        fi
        echo active >"$S/state"; echo node-joined-1 >"$S/nodeid"
        echo 'This node joined a swarm as a worker.'
        ;;
      leave)
        if [ "$(get control false)" = true ] && [ "$last" != --force ]; then
          echo 'Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager.' >&2; exit 1
        fi
        echo inactive >"$S/state"; echo false >"$S/control"; echo 'Node left the swarm.'
        ;;
    esac
    ;;
  node)
    case $2 in
      ls) if [ "$3" = -q ]; then get nodeids ''; else get nodes ''; fi ;;
      inspect)
        if [ "$3" = self ]; then get leader false; exit 0; fi
        case $4 in
          *Spec.Labels*) get "labels-$last" '' ;;
          *) get inspect '' ;;
        esac
        ;;
      demote)
        if [ "$last" = "$(get nodeid '')" ]; then echo false >"$S/control"; fi
        echo "Manager $last demoted in the swarm."
        ;;
      rm | update)
        if [ -f "$S/bad-$2" ] && grep -qx "$last" "$S/bad-$2"; then echo "Error response from daemon: $2 $last failed" >&2; exit 1; fi
        echo "$last"
        ;;
    esac
    ;;
  *) exit 1 ;;
esac
`;

const FAKE_CURL = `#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_STATE/curl-argv"
exec curl "$@"
`;

const FAKE_SLEEP = `#!/bin/sh
printf '%s\\n' "$1" >>"$FAKE_STATE/sleeps"
`;

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  form: Record<string, string>;
}

type Reply = { status: number; body: string };
/** Answers for /api/swarm/join and /api/swarm/report, in order (the last repeats; reports default to `report`, then 200); GET /api/swarm/desired gets `desired`. */
interface ServerPlan {
  join?: Reply[];
  report?: Reply;
  reports?: Reply[];
  desired?: Reply;
}

interface Run {
  code: number | null;
  output: string;
  requests: Seen[];
  argv: string[];
  curlArgv: string;
  sleeps: string[];
  state: string;
}

interface Case {
  args: string[];
  env?: Record<string, string>;
  state?: Record<string, string>;
  plan?: ServerPlan;
}

const ok = (body = 'ok\n'): Reply => ({ status: 200, body });

type Teardown = { teardown(fn: () => void | Promise<void>): void };

async function runSwarmShIn(shell: string, t: Teardown, c: Case): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-sh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'docker'), FAKE_DOCKER, { mode: 0o755 });
  writeFileSync(join(dir, 'curl'), FAKE_CURL, { mode: 0o755 });
  writeFileSync(join(dir, 'sleep'), FAKE_SLEEP, { mode: 0o755 });
  for (const [name, text] of Object.entries(c.state ?? {})) writeFileSync(join(dir, name), `${text}\n`);

  const requests: Seen[] = [];
  let joins = 0;
  let reportsSeen = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const path = req.url ?? '';
      requests.push({ method: req.method ?? '', path, headers: req.headers, form: Object.fromEntries(new URLSearchParams(body)) });
      let reply: Reply = { status: 404, body: 'not found\n' };
      if (path === '/api/swarm/join') {
        const list = c.plan?.join ?? [];
        reply = list[Math.min(joins++, list.length - 1)] ?? reply;
      } else if (path === '/api/swarm/report') {
        const list = c.plan?.reports ?? [];
        reply = list[Math.min(reportsSeen++, list.length - 1)] ?? c.plan?.report ?? ok();
      } else if (path === '/api/swarm/desired' && req.method === 'GET') {
        reply = c.plan?.desired ?? reply;
      }
      res.writeHead(reply.status, { 'content-type': 'text/plain' });
      res.end(reply.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;

  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TMPDIR: dir,
    FAKE_STATE: dir,
    DOCKER: join(dir, 'docker'),
    CURL: join(dir, 'curl'),
    SWARMBOOT_SLEEP: join(dir, 'sleep'),
    SWARMBOOT_RETRY_MAX: '4',
    SWARMBOOT_ADVERTISE_ADDR: '10.0.0.5',
    SWARMBOOT_URL: `http://127.0.0.1:${port}`,
    SWARMBOOT_MAC: '52:54:00:00:00:07',
    SWARMBOOT_SECRET: SECRET,
    SWARMBOOT_ROLE: 'worker',
    SWARMBOOT_HOSTNAME: 'blade07',
    SWARMBOOT_MODE: 'automatic',
    SWARMBOOT_LEAVE_LAST_MANAGER: '0',
    ...c.env,
  };
  const child = spawn(shell, [SCRIPT, ...c.args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  t.teardown(() => {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  clearTimeout(killer);

  const read = (name: string) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : '');
  return {
    code,
    output,
    requests,
    argv: read('argv').split('\n').filter((l) => l !== ''),
    curlArgv: read('curl-argv'),
    sleeps: read('sleeps').split('\n').filter((l) => l !== ''),
    state: read('state').trim(),
  };
}

const reports = (r: Run) => r.requests.filter((q) => q.path === '/api/swarm/report').map((q) => q.form);
const swarmCalls = (r: Run) => r.argv.filter((a) => /^(swarm|node) /.test(a));
/** What reconcile changed: everything but the reads. */
const changes = (r: Run) => r.argv.filter((a) => /^(node (update|rm|demote|promote)|swarm (init|join |leave|join-token --rotate))/.test(a));

function noSecretsLeak(t: Tap, r: Run, tokens: string[]): void {
  for (const s of [SECRET, ...tokens]) {
    t.notOk(r.output.includes(s), `output does not show ${s.slice(0, 12)}...`);
    t.notOk(r.curlArgv.includes(s), `curl's argv does not carry ${s.slice(0, 12)}...`);
  }
}
type Tap = { notOk(v: unknown, m: string): unknown };

/** Flatcar's /bin/sh is bash; dash (Debian's sh) catches bashisms. */
const SHELLS = ['sh', 'bash'].filter((sh) => spawnSync(sh, ['-c', 'exit 0']).status === 0);

for (const shell of SHELLS) {
  t.test(`swarm.sh under ${shell}`, async (t) => {
    const runSwarmSh = (tt: Teardown, c: Case) => runSwarmShIn(shell, tt, c);
    t.test('join: already active -> no join, reports active', async (t) => {
      const r = await runSwarmSh(t, { args: ['join'], state: { state: 'active', nodeid: 'node-old' } });
      t.equal(r.code, 0);
      t.same(swarmCalls(r), [], 'no swarm init/join');
      t.same(reports(r), [{ event: 'active', node_id: 'node-old', addr: '10.0.0.5' }]);
      t.notOk(r.requests.some((q) => q.path === '/api/swarm/join'), 'no rendezvous');
    });

    t.test('join: automatic init path reports the tokens without printing them', async (t) => {
      const r = await runSwarmSh(t, { args: ['join'], env: { SWARMBOOT_ROLE: 'manager' }, plan: { join: [ok('action=init\n')] } });
      t.equal(r.code, 0, r.output);
      const join = r.requests[0];
      t.equal(join?.path, '/api/swarm/join');
      t.equal(join?.headers.authorization, `Bearer ${SECRET}`);
      t.equal(join?.headers['x-swarmboot-mac'], '52:54:00:00:00:07');
      t.same(join?.form, { role: 'manager', hostname: 'blade07', addr: '10.0.0.5' });
      t.same(swarmCalls(r), ['swarm init --advertise-addr 10.0.0.5', 'swarm join-token -q worker', 'swarm join-token -q manager']);
      t.same(reports(r), [
        { event: 'init', node_id: 'node-init-1', addr: '10.0.0.5', worker_token: WORKER_TOKEN, manager_token: MANAGER_TOKEN },
      ]);
      t.equal(r.requests[1]?.headers.authorization, `Bearer ${SECRET}`, 'reports are authenticated too');
      noSecretsLeak(t, r, [WORKER_TOKEN, MANAGER_TOKEN]);
      t.match(r.output, /^swarmboot: /m);
    });

    t.test('join: advertise address derived from the route to the server', async (t) => {
      if (spawnSync('ip', ['-4', 'route', 'get', '127.0.0.1']).status !== 0) {
        t.plan(0, 'no working `ip -4 route get` here (iproute2 missing)');
        return;
      }
      // The fake server is on 127.0.0.1, so the route's src is 127.0.0.1 too.
      const r = await runSwarmSh(t, { args: ['join'], env: { SWARMBOOT_ADVERTISE_ADDR: '' }, plan: { join: [ok('action=init\n')] } });
      t.equal(r.code, 0, r.output);
      t.equal(r.requests[0]?.form.addr, '127.0.0.1');
      t.equal(swarmCalls(r)[0], 'swarm init --advertise-addr 127.0.0.1');
    });

    t.test('join: first manager fails, second works', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['join'],
        state: { bad: '10.0.0.2:2377' },
        plan: { join: [ok(`action=join\ntoken=${JOIN_TOKEN}\nmanagers=10.0.0.2:2377,10.0.0.3:2377\n`)] },
      });
      t.equal(r.code, 0, r.output);
      t.same(swarmCalls(r), [
        `swarm join --token ${JOIN_TOKEN} --advertise-addr 10.0.0.5 10.0.0.2:2377`,
        `swarm join --token ${JOIN_TOKEN} --advertise-addr 10.0.0.5 10.0.0.3:2377`,
      ]);
      t.same(reports(r), [{ event: 'joined', node_id: 'node-joined-1', addr: '10.0.0.5' }]);
      t.equal(r.state, 'active');
      noSecretsLeak(t, r, [JOIN_TOKEN]);
    });

    t.test('join: waits for dockerd, then wait and 5xx with backoff, then join', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['join'],
        state: { down: '2' },
        plan: {
          join: [
            ok('action=wait\nretry=7\n'),
            { status: 503, body: 'busy\n' },
            ok('action=wait\n'),
            { status: 500, body: 'oops\n' },
            { status: 502, body: 'oops\n' },
            ok(`action=join\r\ntoken=${JOIN_TOKEN}\r\nmanagers=10.0.0.3:2377`),
          ],
        },
      });
      t.equal(r.code, 0, r.output);
      t.same(r.sleeps, ['2', '2', '7', '2', '4', '4', '4'], 'dockerd polled every 2 s; server retry=7 honoured; then backoff doubling, capped at SWARMBOOT_RETRY_MAX=4');
      t.equal(r.requests.filter((q) => q.path === '/api/swarm/join').length, 6);
      t.same(swarmCalls(r), [`swarm join --token ${JOIN_TOKEN} --advertise-addr 10.0.0.5 10.0.0.3:2377`], 'CRLF and a missing final newline are tolerated');
    });

    t.test('join: 403 -> exit 1 with a reason, no retry', async (t) => {
      const r = await runSwarmSh(t, { args: ['join'], plan: { join: [{ status: 403, body: 'bad secret for 52:54:00:00:00:07\n' }] } });
      t.equal(r.code, 1);
      t.equal(r.requests.length, 1, 'asked once');
      t.same(r.sleeps, []);
      t.same(swarmCalls(r), []);
      t.match(r.output, /swarmboot: rendezvous refused \(HTTP 403: bad secret/);
      t.equal(r.output.trim().split('\n').length, 1, 'one line');
    });

    t.test('join: 404 (unknown machine) is final too', async (t) => {
      const r = await runSwarmSh(t, { args: ['join'], plan: { join: [{ status: 404, body: 'unknown machine\n' }] } });
      t.equal(r.code, 1);
      t.equal(r.requests.length, 1);
    });

    t.test('join: static mode joins the listed managers, report is best effort', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['join'],
        env: { SWARMBOOT_MODE: 'static', SWARMBOOT_MANAGERS: '10.0.0.2:2377,10.0.0.3:2377', SWARMBOOT_TOKEN: STATIC_TOKEN },
        plan: { report: { status: 500, body: 'down\n' } },
      });
      t.equal(r.code, 0, r.output);
      t.same(swarmCalls(r), [`swarm join --token ${STATIC_TOKEN} --advertise-addr 10.0.0.5 10.0.0.2:2377`]);
      t.notOk(r.requests.some((q) => q.path === '/api/swarm/join'), 'no rendezvous in static mode');
      t.same(reports(r), [{ event: 'joined', node_id: 'node-joined-1', addr: '10.0.0.5' }]);
      t.match(r.output, /report event=joined failed \(HTTP 500\); continuing/);
      noSecretsLeak(t, r, [STATIC_TOKEN]);
    });

    t.test('join: static mode with no manager answering fails transiently (exit 3)', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['join'],
        state: { bad: '10.0.0.2:2377' },
        env: { SWARMBOOT_MODE: 'static', SWARMBOOT_MANAGERS: '10.0.0.2:2377', SWARMBOOT_TOKEN: STATIC_TOKEN },
      });
      t.equal(r.code, 3);
      t.match(r.output, /no manager of 10\.0\.0\.2:2377 accepted the join/);
    });

    t.test('leave: worker', async (t) => {
      const r = await runSwarmSh(t, { args: ['leave'], state: { state: 'active', nodeid: 'w-1' } });
      t.equal(r.code, 0, r.output);
      t.same(swarmCalls(r), ['swarm leave']);
      t.same(reports(r).map((f) => f.event), ['leaving', 'left']);
      t.equal(reports(r)[0]?.node_id, 'w-1');
      t.match(r.curlArgv, /--max-time 5/, 'leave reports are bounded');
    });

    t.test('leave: not in a swarm -> nothing to do', async (t) => {
      const r = await runSwarmSh(t, { args: ['leave'], state: { state: 'inactive' }, plan: { report: { status: 503, body: '' } } });
      t.equal(r.code, 0);
      t.same(swarmCalls(r), []);
      t.match(r.output, /not in a swarm \(state: inactive\)/);
    });

    t.test('leave: manager with other managers demotes, then leaves', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['leave'],
        env: { SWARMBOOT_ROLE: 'manager' },
        state: {
          state: 'active',
          nodeid: 'm-1',
          control: 'true',
          nodes: 'm-1 true Ready Leader\nm-2 false Ready Reachable\nm-3 false Down Unreachable',
        },
      });
      t.equal(r.code, 0, r.output);
      const calls = swarmCalls(r);
      t.equal(calls[0]?.startsWith('node ls --filter role=manager'), true);
      t.same(calls.slice(1), ['node demote m-1', 'swarm leave'], 'demote first, then a plain leave');
      t.match(r.output, /1 other managers remain/);
    });

    t.test('leave: last manager stays unless allowed', async (t) => {
      const state = { state: 'active', nodeid: 'm-1', control: 'true', nodes: 'm-1 true Ready Leader\nm-3 false Down Unreachable' };
      const stays = await runSwarmSh(t, { args: ['leave'], env: { SWARMBOOT_ROLE: 'manager' }, state });
      t.equal(stays.code, 0);
      t.same(swarmCalls(stays).filter((c) => !c.startsWith('node ls')), [], 'no demote, no leave');
      t.match(stays.output, /last manager: staying in the swarm/);
      t.equal(stays.state, 'active');

      const leaves = await runSwarmSh(t, { args: ['leave'], env: { SWARMBOOT_ROLE: 'manager', SWARMBOOT_LEAVE_LAST_MANAGER: '1' }, state });
      t.equal(leaves.code, 0, leaves.output);
      t.same(swarmCalls(leaves).filter((c) => !c.startsWith('node ls')), ['swarm leave --force']);
      t.equal(leaves.state, 'inactive');
      t.same(reports(leaves).map((f) => f.event), ['leaving', 'left']);
    });

    t.test('join: a refused init (409, lease taken over) leaves that swarm and joins the chosen one', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['join'],
        env: { SWARMBOOT_ROLE: 'manager' },
        plan: {
          join: [ok('action=init\n'), ok(`action=join\ntoken=${JOIN_TOKEN}\nmanagers=10.0.0.9:2377\n`)],
          reports: [{ status: 409, body: 'E_SWARM_CONFLICT: late init: the init lease was taken over by blade09\n' }, ok()],
        },
      });
      t.equal(r.code, 0, r.output);
      t.same(swarmCalls(r), [
        'swarm init --advertise-addr 10.0.0.5',
        'swarm join-token -q worker',
        'swarm join-token -q manager',
        'swarm leave --force',
        `swarm join --token ${JOIN_TOKEN} --advertise-addr 10.0.0.5 10.0.0.9:2377`,
      ]);
      t.same(reports(r).map((f) => f.event), ['init', 'joined']);
      t.equal(r.requests.filter((q) => q.path === '/api/swarm/join').length, 2, 'asked again after leaving');
      t.match(r.output, /the server refused this swarm \(E_SWARM_CONFLICT: late init: the init lease was taken over by blade09\); leaving it/);
      noSecretsLeak(t, r, [WORKER_TOKEN, MANAGER_TOKEN, JOIN_TOKEN]);
    });

    const leader = { state: 'active', nodeid: 'm-1', control: 'true', leader: 'true' };
    const managerEnv = { SWARMBOOT_ROLE: 'manager' };
    const sum = tokensDigest({ worker: WORKER_TOKEN, manager: MANAGER_TOKEN });
    const desired = (lines: string[]) => ok([`tokens_sha256=${sum}`, ...lines].join('\n') + '\n');

    t.test('reconcile: a manager that is not the leader does nothing', async (t) => {
      const r = await runSwarmSh(t, { args: ['reconcile'], env: managerEnv, state: { ...leader, leader: 'false' }, plan: { desired: desired([]) } });
      t.equal(r.code, 0, r.output);
      t.same(r.requests, [], 'no desired state fetched, nothing reported');
      t.same(changes(r), []);
      t.equal(r.output, '', 'quiet: every manager\'s timer fires every 30 s');
    });

    t.test('reconcile: labels where they differ, Down twins removed, lone Down node kept (never)', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['reconcile'],
        env: { ...managerEnv, SWARMBOOT_NOW: '100000' },
        state: {
          ...leader,
          nodeids: 'm-1\nm-2\nm-old\nw-1\nw-old\nw-2\nw-gone',
          inspect: [
            'm-1 mgr1 ready manager 1000 reachable 10.0.0.2:2377',
            'm-2 mgr2 ready manager 1000 reachable 10.0.0.3:2377',
            'm-old mgr2 down manager 900 unreachable 10.0.0.3:2377',
            'w-1 worker1 ready worker 1000 - -',
            'w-old worker1 down worker 500 - -',
            'w-2 worker2 ready worker 1000 - -',
            'w-gone worker9 down worker 100 - -',
          ].join('\n'),
          'labels-m-1': 'tier=control',
          'labels-w-1': 'owner=ops\ntier=web',
          'labels-w-2': 'tier=app',
        },
        plan: {
          desired: desired([
            'remove_down_after=never',
            'rotate=none',
            'label=mgr1 tier=control',
            'label=worker1 tier=app',
            'label=worker1 zone=rack 4, row b',
            'label=worker2 tier=app',
            'label=ghost tier=app',
          ]),
        },
      });
      t.equal(r.code, 0, r.output);
      t.same(changes(r), [
        'node demote m-old',
        'node rm m-old',
        'node rm w-old',
        'node update --label-add tier=app --label-add zone=rack 4, row b w-1',
      ], 'a Down manager is demoted before removal; owner=ops (not in the profile) is left alone; mgr1 and worker2 already match');
      t.notOk(r.argv.some((a) => / w-gone$/.test(a) && !a.startsWith('node inspect')), 'worker9 is Down with no Ready twin and remove_down_after is never: kept');
      t.notOk(r.argv.some((a) => a.includes('--label-rm')), 'labels are never removed');
      const desiredReq = r.requests.find((q) => q.path === '/api/swarm/desired');
      t.equal(desiredReq?.method, 'GET');
      t.equal(desiredReq?.headers.authorization, `Bearer ${SECRET}`);
      t.equal(desiredReq?.headers['x-swarmboot-mac'], '52:54:00:00:00:07');
      t.same(reports(r), [{
        event: 'reconcile',
        node_id: 'm-1',
        managers: '10.0.0.2:2377,10.0.0.3:2377',
        nodes: '5',
        labeled: '1',
        removed: 'mgr2/m-old,worker1/w-old',
        kept_down: '1',
        failed: '0',
      }], 'one summary report; no token report (the server\'s digest matches)');
      t.match(r.output, /removed manager mgr2 \(m-old\): a Ready node has its hostname/);
      t.match(r.output, /removed worker worker1 \(w-old\)/);
      t.match(r.output, /reconciled: 5 node\(s\), labels set on 1, removed 2, kept 1 down node\(s\), 0 failure\(s\)/);
      noSecretsLeak(t, r, [WORKER_TOKEN, MANAGER_TOKEN]);
    });

    t.test('reconcile: a lone Down node goes once remove_down_after has passed since its UpdatedAt', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['reconcile'],
        env: { ...managerEnv, SWARMBOOT_NOW: '10000' },
        state: {
          ...leader,
          nodeids: 'm-1\nw-old\nw-new\nw-odd',
          inspect: [
            'm-1 mgr1 ready manager 9000 reachable 10.0.0.2:2377',
            'w-old worker8 down worker 6400 - -',
            'w-new worker9 down worker 6401 - -',
            'w-odd worker7 unknown worker 100 - -',
          ].join('\n'),
        },
        plan: { desired: desired(['remove_down_after=3600', 'rotate=none']) },
      });
      t.equal(r.code, 0, r.output);
      t.same(changes(r), ['node rm w-old'], 'down 3600 s: removed; down 3599 s: kept; state unknown: not judged');
      t.match(r.output, /removed worker worker8 \(w-old\): down for 3600s, remove_down_after is 3600s/);
      t.equal(reports(r)[0]?.kept_down, '1');
    });

    t.test('reconcile: a failed removal is reported and exits 3', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['reconcile'],
        env: managerEnv,
        state: { ...leader, nodeids: 'm-1\nw-1\nw-old', inspect: 'm-1 mgr1 ready manager 1 reachable 10.0.0.2:2377\nw-1 worker1 ready worker 1 - -\nw-old worker1 down worker 1 - -', 'bad-rm': 'w-old' },
        plan: { desired: desired(['remove_down_after=never', 'rotate=none']) },
      });
      t.equal(r.code, 3);
      t.equal(reports(r)[0]?.failed, '1');
      t.equal(reports(r)[0]?.removed, '');
      t.match(r.output, /could not remove worker worker1 \(w-old\)/);
    });

    t.test('reconcile: a requested rotation is applied and the new tokens handed in', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['reconcile'],
        env: managerEnv,
        state: { ...leader, nodeids: 'm-1', inspect: 'm-1 mgr1 ready manager 1 reachable 10.0.0.2:2377' },
        plan: { desired: desired(['remove_down_after=never', 'rotate=worker']) },
      });
      t.equal(r.code, 0, r.output);
      t.same(changes(r), ['swarm join-token --rotate -q worker']);
      t.same(reports(r), [
        { event: 'rotated', node_id: 'm-1', worker_token: 'SWMTKN-1-rotatedworkertoken', manager_token: MANAGER_TOKEN, rotated: 'worker' },
        { event: 'reconcile', node_id: 'm-1', managers: '10.0.0.2:2377', nodes: '1', labeled: '0', removed: '', kept_down: '0', failed: '0' },
      ]);
      t.match(r.output, /rotated the worker join token/);
      noSecretsLeak(t, r, ['SWMTKN-1-rotatedworkertoken', MANAGER_TOKEN]);

      const both = await runSwarmSh(t, {
        args: ['reconcile'],
        env: managerEnv,
        state: { ...leader, nodeids: 'm-1', inspect: 'm-1 mgr1 ready manager 1 reachable 10.0.0.2:2377' },
        plan: { desired: desired(['remove_down_after=never', 'rotate=both']), reports: [{ status: 503, body: '' }, ok()] },
      });
      t.equal(both.code, 0, both.output);
      t.same(changes(both), ['swarm join-token --rotate -q worker', 'swarm join-token --rotate -q manager']);
      t.same(reports(both).map((f) => f.event), ['rotated', 'rotated', 'reconcile'], 'the token report is retried');
      t.equal(reports(both)[1]?.rotated, 'worker,manager');
      t.equal(reports(both)[1]?.manager_token, 'SWMTKN-1-rotatedmanagertoken');
    });

    t.test('reconcile: tokens the server does not have (digest differs) are handed in without rotating', async (t) => {
      const r = await runSwarmSh(t, {
        args: ['reconcile'],
        env: managerEnv,
        state: { ...leader, nodeids: 'm-1', inspect: 'm-1 mgr1 ready manager 1 reachable 10.0.0.2:2377' },
        plan: { desired: ok('remove_down_after=never\nrotate=none\ntokens_sha256=none\n') },
      });
      t.equal(r.code, 0, r.output);
      t.same(changes(r), []);
      t.same(reports(r)[0], { event: 'tokens', node_id: 'm-1', worker_token: WORKER_TOKEN, manager_token: MANAGER_TOKEN });
      noSecretsLeak(t, r, [WORKER_TOKEN, MANAGER_TOKEN]);

      const other = await runSwarmSh(t, {
        args: ['reconcile'],
        env: managerEnv,
        state: { ...leader, nodeids: 'm-1', inspect: 'm-1 mgr1 ready manager 1 reachable 10.0.0.2:2377' },
        plan: {
          desired: ok('remove_down_after=never\nrotate=none\ntokens_sha256=0123\n'),
          reports: [{ status: 409, body: 'E_SWARM_CONFLICT: these tokens belong to another swarm than the cluster\'s\n' }, ok()],
        },
      });
      t.equal(other.code, 3, 'a refusal is a failure of this run');
      t.same(reports(other).map((f) => f.event), ['tokens', 'reconcile'], 'not retried');
      t.equal(reports(other)[1]?.failed, '1');
      t.match(other.output, /the server refused the join tokens: E_SWARM_CONFLICT: these tokens belong to another swarm/);
    });

    t.test('reconcile: refusals and preconditions', async (t) => {
      const denied = await runSwarmSh(t, { args: ['reconcile'], env: managerEnv, state: leader, plan: { desired: { status: 403, body: 'E_FORBIDDEN: wrong swarm secret\n' } } });
      t.equal(denied.code, 1);
      t.match(denied.output, /rendezvous refused \(HTTP 403: E_FORBIDDEN: wrong swarm secret\)/);
      t.same(changes(denied), []);
      const down = await runSwarmSh(t, { args: ['reconcile'], env: managerEnv, state: leader, plan: { desired: { status: 502, body: '' } } });
      t.equal(down.code, 3, 'server unreachable: the next timer run tries again');
      const worker = await runSwarmSh(t, { args: ['reconcile'], state: leader });
      t.equal(worker.code, 2);
      t.match(worker.output, /reconcile runs on managers only/);
      const outside = await runSwarmSh(t, { args: ['reconcile'], env: managerEnv, state: { state: 'inactive', leader: 'true' } });
      t.equal(outside.code, 0);
      t.same(outside.requests, []);
      t.match(outside.output, /not in a swarm \(state: inactive\); nothing to reconcile/);
      const bogus = await runSwarmSh(t, { args: ['reconcile'], env: managerEnv, state: leader, plan: { desired: ok('remove_down_after=soon\nrotate=none\n') } });
      t.equal(bogus.code, 3);
      t.same(changes(bogus), []);
    });

    t.test('usage and configuration errors exit 2', async (t) => {
      const usage = await runSwarmSh(t, { args: [] });
      t.equal(usage.code, 2);
      t.match(usage.output, /usage: swarm\.sh join\|leave\|reconcile/);
      const mode = await runSwarmSh(t, { args: ['join'], env: { SWARMBOOT_MODE: 'sometimes' } });
      t.equal(mode.code, 2);
      const tok = await runSwarmSh(t, { args: ['join'], env: { SWARMBOOT_MODE: 'static', SWARMBOOT_MANAGERS: '10.0.0.2:2377' } });
      t.equal(tok.code, 2);
      t.match(tok.output, /static mode without SWARMBOOT_TOKEN/);
    });
  });
}
