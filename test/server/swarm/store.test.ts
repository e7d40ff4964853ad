/**
 * swarm.json on disk: round trip, 0600, crash leftovers, refusal to start
 * on a damaged file (without quoting it: it holds tokens), and a restart of
 * the rendezvous over the real file.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../../server/log.js';
import { parseMac, type Mac } from '../../../server/mac.js';
import { Rendezvous, emptySwarmState, type SwarmState } from '../../../server/swarm/rendezvous.js';
import { FileSwarmStore, SWARM_STATE_FILE, parseSwarmState } from '../../../server/swarm/store.js';

const TOKENS = { worker: 'SWMTKN-1-storetest-worker', manager: 'SWMTKN-1-storetest-manager' };
const m1 = parseMac('52:54:00:00:00:01') as Mac;

function scratch(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-swarm-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(s) } });
  return { dir: join(dir, 'state'), logs, log };
}

const active: SwarmState = {
  ...emptySwarmState(),
  phase: 'active',
  tokens: TOKENS,
  createdBy: { mac: m1, nodeId: 'n1', at: 1 },
  nodes: { [m1]: { mac: m1, role: 'manager', hostname: 'mgr1', addr: '10.0.0.1', nodeId: 'n1', state: 'active', event: 'init', at: 1 } },
};

t.test('save then load gives the same state; the file is 0600 and no temp file stays', async (t) => {
  const { dir, log } = scratch(t);
  const store = new FileSwarmStore(dir, log);
  t.equal(store.load(), null, 'no file yet: a fresh state');
  const old = process.umask(0);
  try {
    store.save(active);
  } finally {
    process.umask(old);
  }
  t.equal(statSync(join(dir, SWARM_STATE_FILE)).mode & 0o777, 0o600, '0600 whatever the umask');
  t.equal(statSync(dir).mode & 0o777, 0o700, 'the state dir it creates is private too');
  t.notOk(existsSync(join(dir, `${SWARM_STATE_FILE}.tmp`)));
  t.same(store.load(), active);
  store.save({ ...active, rotate: { worker: true, manager: false, requestedAt: 5 } });
  t.same(new FileSwarmStore(dir, log).load()?.rotate, { worker: true, manager: false, requestedAt: 5 }, 'the second save replaced the first');
});

t.test('a crash before the rename leaves the old state; the leftover is removed', async (t) => {
  const { dir, log, logs } = scratch(t);
  const store = new FileSwarmStore(dir, log);
  store.save(active);
  writeFileSync(join(dir, `${SWARM_STATE_FILE}.tmp`), '{"version":1,"phase":"no');
  t.same(store.load(), active);
  t.notOk(existsSync(join(dir, `${SWARM_STATE_FILE}.tmp`)));
  t.ok(logs.some((l) => /removed an unfinished swarm state write/.test(l)));
  store.save(active);
  t.same(store.load(), active, 'and saving works again');
});

t.test('a readable-by-others file is reset to 0600, with a warning', async (t) => {
  const { dir, log, logs } = scratch(t);
  const store = new FileSwarmStore(dir, log);
  store.save(active);
  chmodSync(join(dir, SWARM_STATE_FILE), 0o644);
  t.same(store.load(), active);
  t.equal(statSync(join(dir, SWARM_STATE_FILE)).mode & 0o777, 0o600);
  t.ok(logs.some((l) => /permissions reset to 0600/.test(l) && /"was":"644"/.test(l)));
});

t.test('a damaged file stops the start, says where, and does not quote the tokens', async (t) => {
  const { dir, log } = scratch(t);
  const store = new FileSwarmStore(dir, log);
  store.save(active);
  const file = join(dir, SWARM_STATE_FILE);
  const text = readFileSync(file, 'utf8');
  writeFileSync(file, text.replace('"phase": "active",', '"phase": "active" "oops",'));
  const err = (() => {
    try {
      store.load();
    } catch (e) {
      return e as Error & { code?: string };
    }
    return null;
  })();
  t.equal(err?.code, 'E_SWARM_STATE');
  t.match(err?.message, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: byte \\d+: not valid JSON`));
  t.match(err?.message, /will not start without its swarm state/);
  t.notMatch(err?.message, /SWMTKN/, 'the message quotes nothing from the file');

  writeFileSync(file, text.replace('"phase": "active"', '"phase": "busy"'));
  t.throws(() => store.load(), { code: 'E_SWARM_STATE', message: /phase: expected one of none, initializing, active/ });
  writeFileSync(file, text.replace('"version": 1', '"version": 2'));
  t.throws(() => store.load(), { message: /version: unsupported version 2/ });
});

t.test('parseSwarmState checks each field and the phase invariants', async (t) => {
  const round = JSON.parse(JSON.stringify(active)) as unknown;
  t.same(parseSwarmState(round, 'x.json'), active);
  const broken = (patch: (o: Record<string, unknown>) => void) => {
    const o = JSON.parse(JSON.stringify(active)) as Record<string, unknown>;
    patch(o);
    return () => parseSwarmState(o, 'x.json');
  };
  t.throws(broken((o) => (o.tokens = null)), { message: /tokens: phase is active but no tokens are stored/ });
  t.throws(broken((o) => ((o.nodes as Record<string, Record<string, unknown>>)[m1]!.role = 'boss')), { message: /nodes\["52:54:00:00:00:01"\]\.role: expected one of manager, worker/ });
  t.throws(broken((o) => (o.nodes = { 'not-a-mac': (o.nodes as Record<string, unknown>)[m1] })), { message: /keyed by not-a-mac/ });
  t.throws(broken((o) => ((o.createdBy as Record<string, unknown>).mac = 'zz')), { message: /createdBy\.mac: not a MAC address/ });
  t.throws(broken((o) => Object.assign(o, { phase: 'initializing', lease: null })), { message: /phase is initializing but no lease/ });
});

t.test('the rendezvous over the real file survives a restart; nothing logged carries a token', async (t) => {
  const { dir, log, logs } = scratch(t);
  let now = 1_700_000_000_000;
  const a = Rendezvous.open({ store: new FileSwarmStore(dir, log), log, now: () => now });
  a.join({ mac: m1, role: 'manager', hostname: 'mgr1', addr: '10.0.0.1', initTimeout: 60 });
  a.report({ mac: m1, role: 'manager', hostname: 'mgr1', event: 'init', nodeId: 'n1', addr: '10.0.0.1', tokens: TOKENS });
  now += 1000;
  const b = Rendezvous.open({ store: new FileSwarmStore(dir, log), log, now: () => now });
  t.equal(b.phase(), 'active');
  t.same(b.snapshot(), a.snapshot());
  t.match(readFileSync(join(dir, SWARM_STATE_FILE), 'utf8'), /SWMTKN-1-storetest-worker/, 'the tokens are in the 0600 file...');
  const all = logs.join('');
  t.notMatch(all, /SWMTKN/, '...and in no log line');
  t.match(all, /swarm rendezvous state loaded/);
});
