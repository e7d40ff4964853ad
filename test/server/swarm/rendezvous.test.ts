/**
 * The rendezvous state machine, driven by tables of steps against a fake
 * clock and an in-memory store: election, takeover, late init, joins,
 * leaves, loss of the whole swarm, adoption, rotation, and the log lines
 * the decisions leave.
 */
import t from 'tap';
import { createLogger } from '../../../server/log.js';
import { parseMac, type Mac } from '../../../server/mac.js';
import {
  Rendezvous,
  SwarmConflictError,
  formatJoinAnswer,
  managerCountWarning,
  tokenSwarm,
  tokensDigest,
  type JoinAnswer,
  type SwarmReport,
  type SwarmRole,
  type SwarmState,
  type SwarmTokens,
} from '../../../server/swarm/rendezvous.js';
import { MemorySwarmStore } from '../../../server/swarm/store.js';

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);
const INIT_TIMEOUT = 120;
const TOKENS: SwarmTokens = { worker: 'SWMTKN-1-aaaa-worker', manager: 'SWMTKN-1-aaaa-manager' };
const TOKENS2: SwarmTokens = { worker: 'SWMTKN-1-aaaa-worker2', manager: 'SWMTKN-1-aaaa-manager2' };

function mac(text: string): Mac {
  const m = parseMac(text);
  if (m === null) throw new Error(text);
  return m;
}

interface Node {
  mac: Mac;
  hostname: string;
  role: SwarmRole;
  addr: string;
}
const N: Record<'m1' | 'm2' | 'm3' | 'm4' | 'w1' | 'w2', Node> = {
  m1: { mac: mac('52:54:00:00:00:01'), hostname: 'mgr1', role: 'manager', addr: '10.0.0.1' },
  m2: { mac: mac('52:54:00:00:00:02'), hostname: 'mgr2', role: 'manager', addr: '10.0.0.2' },
  m3: { mac: mac('52:54:00:00:00:03'), hostname: 'mgr3', role: 'manager', addr: '10.0.0.3' },
  m4: { mac: mac('52:54:00:00:00:04'), hostname: 'mgr4', role: 'manager', addr: '10.0.0.4' },
  w1: { mac: mac('52:54:00:00:00:11'), hostname: 'worker1', role: 'worker', addr: '10.0.0.11' },
  w2: { mac: mac('52:54:00:00:00:12'), hostname: 'worker2', role: 'worker', addr: '10.0.0.12' },
};
type Who = keyof typeof N;

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function setup(store = new MemorySwarmStore()) {
  let now = T0;
  const logs: LogLine[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) } });
  const r = Rendezvous.open({ store, log, now: () => now });
  return { r, store, logs, advance: (ms: number) => void (now += ms), now: () => now };
}

const nid = (who: Who) => `node-${who}`;
const report = {
  init: (who: Who, tokens = TOKENS): SwarmReport => ({ ...N[who], event: 'init', nodeId: nid(who), addr: N[who].addr, tokens }),
  joined: (who: Who): SwarmReport => ({ ...N[who], event: 'joined', nodeId: nid(who), addr: N[who].addr }),
  active: (who: Who): SwarmReport => ({ ...N[who], event: 'active', nodeId: nid(who), addr: N[who].addr }),
  leaving: (who: Who): SwarmReport => ({ ...N[who], event: 'leaving', nodeId: nid(who) }),
  left: (who: Who): SwarmReport => ({ ...N[who], event: 'left', nodeId: null }),
  rotated: (who: Who, rotated: SwarmRole[], tokens = TOKENS2): SwarmReport => ({ ...N[who], event: 'rotated', nodeId: nid(who), tokens, rotated }),
  tokens: (who: Who, tokens = TOKENS): SwarmReport => ({ ...N[who], event: 'tokens', nodeId: nid(who), tokens, rotated: [] }),
  reconcile: (who: Who, managers: string[]): SwarmReport => ({
    ...N[who],
    event: 'reconcile',
    nodeId: nid(who),
    summary: { managers, nodes: managers.length, labeled: 0, removed: [], keptDown: 0, failed: 0 },
  }),
};

type Step =
  | { advance: number }
  | { join: Who; want: { action?: JoinAnswer['action']; token?: string; managers?: string[]; retry?: number; reason?: RegExp | string } }
  | { report: SwarmReport; refused?: RegExp }
  | { rotate: 'worker' | 'manager' | 'both'; refused?: RegExp; pending?: string }
  | { phase: SwarmState['phase'] }
  | { managers: string[] }
  | { log: RegExp; level?: 'debug' | 'info' | 'warn' }
  | { check: (t: Tap, r: Rendezvous) => void };

/** The assertions the steps use (a subtest's t, not the root's). */
type Tap = Pick<typeof t, 'match' | 'throws' | 'doesNotThrow' | 'equal' | 'same' | 'ok'>;

function run(t: Tap, steps: Step[], ctx = setup()): ReturnType<typeof setup> {
  const { r } = ctx;
  steps.forEach((s, i) => {
    const at = `step ${i + 1}`;
    if ('advance' in s) ctx.advance(s.advance);
    else if ('join' in s) {
      const n = N[s.join];
      const a = r.join({ ...n, initTimeout: INIT_TIMEOUT });
      t.match(a, s.want, `${at}: ${s.join} asks -> ${s.want.action ?? '?'}`);
    } else if ('report' in s) {
      if (s.refused) t.throws(() => r.report(s.report), { code: 'E_SWARM_CONFLICT', status: 409, message: s.refused }, `${at}: ${s.report.hostname} ${s.report.event} refused`);
      else t.doesNotThrow(() => r.report(s.report), `${at}: ${s.report.hostname} ${s.report.event} accepted`);
    } else if ('rotate' in s) {
      if (s.refused) t.throws(() => r.requestRotation(s.rotate), { code: 'E_SWARM_CONFLICT', message: s.refused }, `${at}: rotation refused`);
      else t.equal(r.requestRotation(s.rotate), s.pending ?? s.rotate, `${at}: rotation pending`);
    } else if ('phase' in s) t.equal(r.phase(), s.phase, `${at}: phase ${s.phase}`);
    else if ('managers' in s) t.same(r.managerAddresses(null), s.managers, `${at}: managers`);
    else if ('log' in s) {
      const level = { debug: 20, info: 30, warn: 40 }[s.level ?? 'warn'];
      t.ok(ctx.logs.some((l) => l.level === level && s.log.test(l.msg)), `${at}: logged ${s.log}`);
    } else s.check(t, r);
  });
  return ctx;
}

const up3: Step[] = [
  { join: 'm1', want: { action: 'init' } },
  { report: report.init('m1') },
  { join: 'm2', want: { action: 'join' } },
  { report: report.joined('m2') },
  { join: 'm3', want: { action: 'join' } },
  { report: report.joined('m3') },
  { managers: ['10.0.0.1:2377', '10.0.0.2:2377', '10.0.0.3:2377'] },
];

const scenarios: Array<{ name: string; steps: Step[] }> = [
  {
    name: 'first manager wins the lease; other managers and workers wait',
    steps: [
      { phase: 'none' },
      { join: 'w1', want: { action: 'wait', retry: 5, reason: /no swarm yet/ } },
      { join: 'm1', want: { action: 'init', reason: /elected to create the swarm; report within 120s/ } },
      { phase: 'initializing' },
      { log: /swarm join: init/, level: 'info' },
      { join: 'm2', want: { action: 'wait', retry: 5, reason: 'mgr1 is creating the swarm' } },
      { advance: 118_000 },
      { join: 'm2', want: { action: 'wait', retry: 2 } },
      { join: 'w1', want: { action: 'wait', retry: 5 } },
      { join: 'm1', want: { action: 'init', reason: /holds the init lease until 2024-05-01T12:02:00\.000Z/ } },
      { check: (t, r) => t.equal(r.snapshot().lease?.until, T0 + 120_000, 'asking again does not extend the lease') },
    ],
  },
  {
    name: 'init report: swarm active; joiners get their role token and the managers, never themselves',
    steps: [
      { join: 'm1', want: { action: 'init' } },
      { report: report.init('m1') },
      { phase: 'active' },
      { log: /swarm created; join tokens stored/, level: 'info' },
      { join: 'w1', want: { action: 'join', token: TOKENS.worker, managers: ['10.0.0.1:2377'] } },
      { join: 'm2', want: { action: 'join', token: TOKENS.manager, managers: ['10.0.0.1:2377'] } },
      { report: report.joined('m2') },
      { join: 'w2', want: { action: 'join', managers: ['10.0.0.1:2377', '10.0.0.2:2377'] } },
      // mgr2 rebooted without its swarm state: it must not be sent to itself.
      { join: 'm2', want: { action: 'join', managers: ['10.0.0.1:2377'] } },
      { check: (t, r) => t.equal(r.node(N.m2.mac)?.state, 'joining', 'asking marks the node out of the swarm') },
      { report: report.active('m2') },
      { check: (t, r) => t.match(r.node(N.m2.mac), { state: 'active', event: 'active', nodeId: 'node-m2', addr: '10.0.0.2' }) },
    ],
  },
  {
    name: 'init timeout: the next manager takes over; the late init is refused',
    steps: [
      { join: 'm1', want: { action: 'init' } },
      { advance: 119_999 },
      { join: 'm2', want: { action: 'wait' } },
      { advance: 1 },
      { join: 'w1', want: { action: 'wait', reason: 'mgr1 is creating the swarm' } },
      { join: 'm2', want: { action: 'init' } },
      { log: /init lease ran out without a report; the next manager takes it over/ },
      { check: (t, r) => t.match(r.snapshot().lease, { mac: N.m2.mac, until: T0 + 240_000 }) },
      { check: (t, r) => t.equal(r.node(N.m1.mac)?.state, 'joining', 'the old holder is no longer initializing') },
      { report: report.init('m1'), refused: /late init: the init lease was taken over by mgr2 \(52:54:00:00:00:02\)/ },
      { log: /late init refused/ },
      { phase: 'initializing' },
      { report: report.init('m2', TOKENS2) },
      { phase: 'active' },
      { check: (t, r) => t.equal(r.snapshot().createdBy?.mac, N.m2.mac) },
      { report: report.init('m3'), refused: /the swarm already exists \(created by 52:54:00:00:00:02\)/ },
      { log: /init report refused: the swarm already exists/ },
      { report: report.init('m2', TOKENS2) },
      { report: report.init('m2', TOKENS), refused: /already exists/ },
      { join: 'w1', want: { action: 'join', token: TOKENS2.worker, managers: ['10.0.0.2:2377'] } },
    ],
  },
  {
    name: 'a holder whose lease ran out may still report, as long as nobody took over',
    steps: [
      { join: 'm1', want: { action: 'init' } },
      { advance: 600_000 },
      { report: report.init('m1') },
      { phase: 'active' },
    ],
  },
  {
    name: 'an init report without a lease is refused',
    steps: [{ report: report.init('m1'), refused: /no init lease is held/ }, { phase: 'none' }],
  },
  {
    name: 'leaving managers are no longer handed out; the last one leaving ends the swarm',
    steps: [
      ...up3,
      { report: report.leaving('m2') },
      { managers: ['10.0.0.1:2377', '10.0.0.3:2377'] },
      { report: report.left('m2') },
      { report: report.left('m3') },
      { managers: ['10.0.0.1:2377'] },
      { phase: 'active' },
      { report: report.left('w1') },
      { phase: 'active' },
      { report: report.left('m1') },
      { log: /the last manager left: the swarm is gone/ },
      { phase: 'none' },
      { check: (t, r) => t.equal(r.snapshot().tokens, null, 'tokens of the gone swarm are dropped') },
      { join: 'w1', want: { action: 'wait' } },
      { join: 'm2', want: { action: 'init' } },
    ],
  },
  {
    name: 'a rack-wide power cut: once every manager has asked again, a new first manager is elected',
    steps: [
      ...up3,
      { join: 'm1', want: { action: 'join', managers: ['10.0.0.2:2377', '10.0.0.3:2377'] } },
      { join: 'm2', want: { action: 'join', managers: ['10.0.0.3:2377'] } },
      { join: 'w1', want: { action: 'join', managers: ['10.0.0.3:2377'] } },
      { join: 'm3', want: { action: 'init' } },
      { log: /swarm lost: no manager is left in it; electing a new first manager/ },
      { phase: 'initializing' },
      { join: 'w1', want: { action: 'wait' } },
      { join: 'm1', want: { action: 'wait' } },
      { report: report.init('m3', TOKENS2) },
      { join: 'm1', want: { action: 'join', token: TOKENS2.manager, managers: ['10.0.0.3:2377'] } },
    ],
  },
  {
    name: 'the leader\'s reconcile report adds the managers it sees, for ten minutes',
    steps: [
      ...up3,
      { report: report.reconcile('m2', ['10.0.0.2:2377', '10.0.0.9:2377']) },
      { log: /swarm reconciled by the leader/, level: 'debug' },
      { join: 'm1', want: { action: 'join', managers: ['10.0.0.2:2377', '10.0.0.3:2377', '10.0.0.9:2377'] } },
      { join: 'w1', want: { action: 'join', managers: ['10.0.0.2:2377', '10.0.0.3:2377', '10.0.0.9:2377'] } },
      { advance: 10 * 60_000 },
      { join: 'w1', want: { action: 'join', managers: ['10.0.0.2:2377', '10.0.0.3:2377'] } },
      { join: 'm3', want: { action: 'join', managers: ['10.0.0.2:2377'] } },
      // The leader itself lost its state: its own report proves nothing.
      { join: 'm2', want: { action: 'init' } },
    ],
  },
  {
    name: 'workers wait while the swarm has no manager to join through',
    steps: [
      { join: 'm1', want: { action: 'init' } },
      { report: report.init('m1') },
      { report: report.leaving('m1') },
      { join: 'w1', want: { action: 'wait', reason: 'no manager is in the swarm right now' } },
    ],
  },
  {
    name: 'a running swarm reported by its manager is adopted (server state lost, or tokens rotated by hand)',
    steps: [
      { report: report.tokens('m1') },
      { log: /adopting the running swarm a manager reported/ },
      { phase: 'active' },
      { join: 'w1', want: { action: 'wait' } },
      { report: report.reconcile('m1', ['10.0.0.1:2377']) },
      { join: 'w1', want: { action: 'join', token: TOKENS.worker, managers: ['10.0.0.1:2377'] } },
      { report: report.tokens('m1', TOKENS2) },
      { log: /join tokens changed on the swarm/, level: 'info' },
      { join: 'w2', want: { action: 'join', token: TOKENS2.worker } },
      { report: report.tokens('w1'), refused: /only managers hand in tokens/ },
      { report: report.reconcile('w1', []), refused: /only the leader reconciles/ },
    ],
  },
  {
    name: 'tokens of another swarm are refused, not adopted over the cluster\'s',
    steps: [
      { join: 'm1', want: { action: 'init' } },
      { report: report.init('m1') },
      { report: report.tokens('m2', { worker: 'SWMTKN-1-bbbb-worker', manager: 'SWMTKN-1-bbbb-manager' }), refused: /these tokens belong to another swarm than the cluster's \(root CA bbbb\.\.\., not aaaa\.\.\.\)/ },
      { log: /report refused: these tokens belong to another swarm/ },
      { check: (t, r) => t.equal(r.tokensDigest(), tokensDigest(TOKENS), 'the cluster\'s tokens stay') },
      { report: report.rotated('m1', ['worker'], { worker: 'SWMTKN-1-aaaa-worker9', manager: TOKENS.manager }) },
      { check: (t, r) => t.equal(r.snapshot().tokens?.worker, 'SWMTKN-1-aaaa-worker9', 'a rotation keeps the swarm part') },
    ],
  },
  {
    name: 'adoption beats a pending init: the lease holder\'s init is then refused',
    steps: [
      { join: 'm2', want: { action: 'init' } },
      { report: report.tokens('m1') },
      { phase: 'active' },
      { report: report.init('m2', TOKENS2), refused: /already exists/ },
    ],
  },
  {
    name: 'rotation: requested, handed to the leader, cleared by its report',
    steps: [
      { rotate: 'both', refused: /no swarm to rotate tokens in \(phase: none\)/ },
      { join: 'm1', want: { action: 'init' } },
      { report: report.init('m1') },
      { check: (t, r) => t.equal(r.rotateRequest(), 'none') },
      { rotate: 'worker' },
      { rotate: 'manager', pending: 'both' },
      { log: /join token rotation requested/, level: 'info' },
      { report: report.rotated('m1', ['worker']) },
      { check: (t, r) => t.equal(r.rotateRequest(), 'manager', 'the manager token is still due') },
      { join: 'w1', want: { action: 'join', token: TOKENS2.worker } },
      { report: report.rotated('m1', ['manager']) },
      { check: (t, r) => t.equal(r.rotateRequest(), 'none') },
      { check: (t, r) => t.equal(r.tokensDigest(), tokensDigest(TOKENS2)) },
      { log: /join tokens rotated; new joiners get the new ones/, level: 'info' },
    ],
  },
];

for (const s of scenarios) t.test(s.name, async (t) => void run(t, s.steps));

t.test('manager count: warned at runtime when even or below 3, once per change', async (t) => {
  const ctx = run(t, [
    ...up3,
    { join: 'm4', want: { action: 'join' } },
    { report: report.joined('m4') },
    { report: report.active('m4') },
  ]);
  const lines = ctx.logs.filter((l) => /manager/.test(l.msg) && /count|swarm needs|odd/.test(l.msg)).map((l) => `${l.level} ${l.msg}`);
  t.same(lines, [
    '40 1 manager(s) in the swarm: a swarm needs 3 to survive the loss of one',
    '40 2 manager(s) in the swarm: a swarm needs 3 to survive the loss of one',
    '30 manager count is odd and at least 3 again',
    '40 4 managers in the swarm: an even count tolerates no more failures than 3; keep an odd number',
  ]);
  t.equal(ctx.r.warning(), managerCountWarning(4));
  t.equal(managerCountWarning(5), null);
  t.equal(managerCountWarning(0), '0 manager(s) in the swarm: a swarm needs 3 to survive the loss of one');
  // The leader's count wins while fresh.
  ctx.r.report(report.reconcile('m1', ['10.0.0.1:2377', '10.0.0.2:2377', '10.0.0.3:2377']));
  t.equal(ctx.r.managerCount(), 3);
  t.equal(ctx.r.warning(), null);
});

t.test('tokenSwarm reads the root CA part', async (t) => {
  t.equal(tokenSwarm('SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx'), '3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl');
  t.equal(tokenSwarm('SWMTKN-1-fakeworkertoken'), null);
});

t.test('join answers as swarm.sh reads them', async (t) => {
  t.equal(formatJoinAnswer({ action: 'init', reason: 'elected' }), 'action=init\nreason=elected\n');
  t.equal(
    formatJoinAnswer({ action: 'join', token: TOKENS.worker, managers: ['10.0.0.1:2377', '[fd00::1]:2377'], reason: 'join as worker\nthrough' }),
    `action=join\ntoken=${TOKENS.worker}\nmanagers=10.0.0.1:2377,[fd00::1]:2377\nreason=join as worker through\n`,
  );
  t.equal(formatJoinAnswer({ action: 'wait', retry: 5, reason: 'x' }), 'action=wait\nretry=5\nreason=x\n');
});

t.test('IPv6 managers are bracketed', async (t) => {
  const { r } = setup();
  r.join({ ...N.m1, addr: 'fd00::1', initTimeout: 60 });
  r.report({ ...N.m1, event: 'init', nodeId: 'n1', addr: 'fd00::1', tokens: TOKENS });
  t.same(r.managerAddresses(null), ['[fd00::1]:2377']);
});

t.test('every change is saved before it is seen; repeated waits are not written', async (t) => {
  const store = new MemorySwarmStore();
  const { r } = setup(store);
  t.equal(store.saves, 0, 'opening writes nothing');
  r.join({ ...N.w1, initTimeout: 60 });
  t.equal(store.saves, 1, 'first ask records the node');
  r.join({ ...N.w1, initTimeout: 60 });
  r.join({ ...N.w1, initTimeout: 60 });
  t.equal(store.saves, 1, 'the same wait again: no write');
  r.join({ ...N.m1, initTimeout: 60 });
  t.equal(store.saves, 2, 'the lease is written');
  t.equal(store.load()?.lease?.mac, N.m1.mac, 'and is in the store');
  r.report(report.init('m1'));
  t.same(store.load()?.tokens, TOKENS);

  const again = Rendezvous.open({ store, log: createLogger({ level: 'silent' }), now: () => T0 });
  t.equal(again.phase(), 'active', 'a restart resumes where it was');
  t.same(again.snapshot(), r.snapshot());
});

t.test('a failing store: the change is not applied and the caller gets a 503', async (t) => {
  class BrokenStore extends MemorySwarmStore {
    override save(): void {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    }
  }
  const { r, logs } = setup(new BrokenStore());
  t.throws(() => r.join({ ...N.m1, initTimeout: 60 }), { code: 'E_SWARM_STATE_IO', status: 503 });
  t.equal(r.phase(), 'none', 'no lease was granted');
  t.equal(r.node(N.m1.mac), undefined);
  t.ok(logs.some((l) => l.level === 50 && /could not save the swarm state/.test(l.msg)));
});

t.test('status and logs never carry tokens', async (t) => {
  const ctx = run(t, [...up3, { rotate: 'both' }, { report: report.rotated('m1', ['worker', 'manager']) }]);
  const status = JSON.stringify(ctx.r.status());
  for (const tok of [...Object.values(TOKENS), ...Object.values(TOKENS2)]) {
    t.notOk(status.includes(tok), `status has no ${tok}`);
    t.notOk(ctx.logs.some((l) => JSON.stringify(l).includes(tok)), `logs have no ${tok}`);
  }
  t.match(ctx.r.status(), { phase: 'active', tokens: { worker: true, manager: true }, rotate: 'none', managers: ['10.0.0.1:2377', '10.0.0.2:2377', '10.0.0.3:2377'] });
  t.ok(SwarmConflictError);
});
