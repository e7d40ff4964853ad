import t from 'tap';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../server/log.js';
import type { Mac } from '../../../server/mac.js';
import { LeaseConflictError, LeaseStore, decodeLease, holdsAddress, type Lease } from '../../../server/dhcp/leases.js';
import { allocate, compilePools } from '../../../server/dhcp/pool.js';

const T0 = 1_700_000_000_000;
const MIN = 60_000;
const HOUR = 60 * MIN;
const A = '52:54:00:00:00:0a' as Mac;
const B = '52:54:00:00:00:0b' as Mac;

interface HasTeardown {
  teardown(fn: () => void): void;
}

function tmp(t: HasTeardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-leases-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store with a clock the test moves by hand. */
async function openStore(t: HasTeardown, dir = tmp(t)) {
  const clock = { now: T0 };
  const store = await LeaseStore.open(dir, { log: silentLogger(), now: () => clock.now });
  return { store, clock, dir };
}

/** Files as kill -9 leaves them: everything acknowledged, no lock, nothing closed. */
function crashCopy(t: HasTeardown, dir: string): string {
  const copy = tmp(t);
  for (const f of readdirSync(dir)) if (!f.endsWith('.lock')) cpSync(join(dir, f), join(copy, f));
  return copy;
}

t.test('bind, get, byIp; bound leases survive a crash', async (t) => {
  const { store, dir } = await openStore(t);
  const l = await store.bind(A, '10.0.0.10', HOUR, 'blade-1');
  t.same(l, { mac: A, ip: '10.0.0.10', state: 'bound', expiresAt: T0 + HOUR, updatedAt: T0, hostname: 'blade-1' });
  t.ok(Object.isFrozen(l));
  t.equal(store.get(A), l);
  t.equal(store.byIp('10.0.0.10'), l);
  t.equal(store.get(B), undefined);
  t.equal(store.byIp('10.0.0.11'), undefined);
  await store.bind(B, '10.0.0.11', HOUR);
  t.equal(store.inUse(), 2);

  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger(), now: () => T0 });
  t.same(after.get(A), l);
  t.equal(after.get(B)?.ip, '10.0.0.11');
  t.equal(after.get(B)?.hostname, undefined);
  await after.close();
  await store.close();
});

t.test('offers are short-lived and in memory only', async (t) => {
  const { store, clock, dir } = await openStore(t);
  const o = store.offer(A, '10.0.0.10', MIN, 'blade-1');
  t.same(o, { mac: A, ip: '10.0.0.10', state: 'offered', expiresAt: T0 + MIN, updatedAt: T0, hostname: 'blade-1' });
  t.equal(store.get(A), o);
  t.equal(store.byIp('10.0.0.10'), o);
  t.equal(store.inUse(), 1);
  t.throws(() => store.offer(B, '10.0.0.10', MIN), LeaseConflictError, 'offered to someone else');
  t.throws(() => store.offer(B, '10.0.0.10', MIN), { code: 'E_LEASE_CONFLICT', message: '10.0.0.10 is offered to 52:54:00:00:00:0a' });
  await t.rejects(store.bind(B, '10.0.0.10', HOUR), { code: 'E_LEASE_CONFLICT' });

  // A second DISCOVER from A moves its offer.
  store.offer(A, '10.0.0.11', MIN);
  t.equal(store.byIp('10.0.0.10'), undefined);
  t.equal(store.get(A)?.ip, '10.0.0.11');

  await store.flush();
  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger() });
  t.equal(after.get(A), undefined, 'an offer is not persisted');
  await after.close();

  clock.now += MIN;
  t.equal(store.get(A), undefined, 'an expired offer is gone');
  t.equal(store.byIp('10.0.0.11'), undefined);
  t.equal(store.inUse(), 0);
  store.offer(B, '10.0.0.12', MIN);
  t.equal(await store.expire(), 1, 'the sweep drops the expired offer, not the live one');
  t.equal(store.get(B)?.ip, '10.0.0.12');
  store.offer(A, '10.0.0.13', MIN);
  clock.now += MIN;
  store.offer(B, '10.0.0.13', MIN);
  t.equal(store.get(A), undefined, "A's expired offer, overwritten by B's, is not A's");
  t.equal(store.get(B)?.ip, '10.0.0.13');
  await store.close();
});

t.test('an offer overlays a stored record and bind replaces both', async (t) => {
  const { store } = await openStore(t);
  await store.bind(A, '10.0.0.10', HOUR, 'blade-1');
  const o = store.offer(A, '10.0.0.10', MIN);
  t.equal(store.byIp('10.0.0.10'), o, 'a renewal DISCOVER');
  t.equal([...store].length, 1, 'iteration shows one record per address');
  t.equal([...store][0], o);
  const l = await store.bind(A, '10.0.0.10', 2 * HOUR);
  t.equal(l.hostname, 'blade-1', 'hostname kept when the client does not send one');
  t.equal(store.byIp('10.0.0.10'), l);
  t.same([...store], [l]);
  await store.close();
});

t.test('one lease per MAC: binding elsewhere releases the old address', async (t) => {
  const { store, clock, dir } = await openStore(t);
  await store.bind(A, '10.0.0.10', HOUR);
  clock.now += 1000;
  await store.bind(A, '10.1.0.10', HOUR);
  t.equal(store.byIp('10.0.0.10')?.state, 'released');
  t.equal(store.get(A)?.ip, '10.1.0.10');
  t.equal(store.inUse(), 1);
  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger(), now: () => clock.now });
  t.equal(after.get(A)?.ip, '10.1.0.10', 'the index is rebuilt from the newest record');
  await after.close();
  await store.close();
});

t.test('bind refuses an address another MAC holds, accepts it once expired', async (t) => {
  const { store, clock } = await openStore(t);
  await store.bind(A, '10.0.0.10', HOUR);
  await t.rejects(store.bind(B, '10.0.0.10', HOUR), { code: 'E_LEASE_CONFLICT', message: '10.0.0.10 is leased to 52:54:00:00:00:0a' });
  clock.now += HOUR;
  const l = await store.bind(B, '10.0.0.10', HOUR);
  t.equal(l.mac, B);
  t.equal(store.get(A), undefined, 'A lost its only record to B');
  await t.rejects(store.bind(A, 'not-an-ip', HOUR), { code: 'E_BAD_REQUEST' });
  t.throws(() => store.offer(A, '10.0.0.256', HOUR), { code: 'E_BAD_REQUEST' });
  await store.close();
});

t.test('release', async (t) => {
  const { store, clock, dir } = await openStore(t);
  await store.bind(A, '10.0.0.10', HOUR);
  clock.now += MIN;
  t.equal(await store.release(B, '10.0.0.10'), false, 'not yours');
  t.equal(await store.release(A, '10.0.0.99'), false, 'no such lease');
  t.equal(await store.release(A, '10.0.0.10'), true);
  const r = store.get(A);
  t.same(r, { mac: A, ip: '10.0.0.10', state: 'released', expiresAt: T0 + MIN, updatedAt: T0 + MIN });
  t.notOk(holdsAddress(r!, clock.now));
  t.equal(store.inUse(), 0);
  t.equal(await store.release(A, '10.0.0.10'), false, 'twice');
  store.offer(B, '10.0.0.11', MIN);
  t.equal(await store.release(B, '10.0.0.11'), true, 'a RELEASE drops an offer too');
  t.equal(store.get(B), undefined);
  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger() });
  t.equal(after.get(A)?.state, 'released', 'the MAC is remembered for next time');
  await after.close();
  await store.close();
});

t.test('decline quarantines the address; the sweep ends the quarantine', async (t) => {
  const { store, clock } = await openStore(t);
  store.offer(A, '10.0.0.10', MIN);
  const d = await store.decline('10.0.0.10', 10 * MIN);
  t.same(d, { mac: A, ip: '10.0.0.10', state: 'declined', expiresAt: T0 + 10 * MIN, updatedAt: T0 });
  t.equal(store.byIp('10.0.0.10'), d);
  await t.rejects(store.bind(A, '10.0.0.10', HOUR), { message: /10\.0\.0\.10 is quarantined \(declined\) until/ });
  t.throws(() => store.offer(B, '10.0.0.10', HOUR), { code: 'E_LEASE_CONFLICT' });
  const anon = await store.decline('10.0.0.20', MIN);
  t.equal(anon.mac, null, 'nobody held it');
  const named = await store.decline('10.0.0.21', MIN, B);
  t.equal(named.mac, B);
  t.same(store.counts(), { offered: 0, bound: 0, declined: 3, released: 0, expired: 0 });
  clock.now += 10 * MIN;
  t.equal(await store.expire(), 3);
  t.equal(store.byIp('10.0.0.10'), undefined);
  t.equal(store.get(A), undefined);
  t.equal(store.get(B), undefined);
  await store.bind(B, '10.0.0.10', HOUR);
  await store.close();
});

t.test('expire marks expired leases released, keeping who had them; counts and iteration', async (t) => {
  const { store, clock, dir } = await openStore(t);
  await store.bind(A, '10.0.0.10', HOUR);
  await store.bind(B, '10.0.0.11', 2 * HOUR);
  store.offer('52:54:00:00:00:0c' as Mac, '10.0.0.12', 3 * HOUR);
  await store.decline('10.0.0.13', 3 * HOUR);
  t.same(store.counts(), { offered: 1, bound: 2, declined: 1, released: 0, expired: 0 });
  t.equal(store.inUse(), 3);
  clock.now += HOUR;
  t.same(store.counts(), { offered: 1, bound: 1, declined: 1, released: 0, expired: 1 });
  t.equal(await store.expire(), 1);
  t.equal(await store.expire(), 0, 'nothing left to do');
  t.same(store.counts(), { offered: 1, bound: 1, declined: 1, released: 1, expired: 0 });
  const a = store.get(A)!;
  t.same(a, { mac: A, ip: '10.0.0.10', state: 'released', expiresAt: T0 + HOUR, updatedAt: T0 + HOUR });
  t.same([...store].map((l) => `${l.ip} ${l.state}`), ['10.0.0.10 released', '10.0.0.11 bound', '10.0.0.13 declined', '10.0.0.12 offered']);
  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger(), now: () => clock.now });
  t.same([...after].map((l) => `${l.ip} ${l.state}`), ['10.0.0.10 released', '10.0.0.11 bound', '10.0.0.13 declined']);
  await after.close();
  await store.close();
});

t.test('decodeLease checks what it loads', async (t) => {
  const good = { mac: A, ip: '10.0.0.10', state: 'bound', expiresAt: 1, updatedAt: 1 };
  t.same(decodeLease(good, '10.0.0.10'), good);
  t.same(decodeLease({ ...good, hostname: 'h' }, '10.0.0.10').hostname, 'h');
  t.same(decodeLease({ ...good, mac: null, state: 'declined' }, '10.0.0.10').mac, null);
  const bad: [string, unknown, string][] = [
    ['not an object', 7, '10.0.0.10'],
    ['key and ip differ', good, '10.0.0.11'],
    ['bad ip', { ...good, ip: '10.0.0.999' }, '10.0.0.999'],
    ['offers are never stored', { ...good, state: 'offered' }, '10.0.0.10'],
    ['unknown state', { ...good, state: 'lost' }, '10.0.0.10'],
    ['MAC not canonical', { ...good, mac: '52-54-00-00-00-0A' }, '10.0.0.10'],
    ['MAC missing on a lease', { ...good, mac: null }, '10.0.0.10'],
    ['time not a number', { ...good, expiresAt: '1' }, '10.0.0.10'],
    ['hostname not a string', { ...good, hostname: 1 }, '10.0.0.10'],
  ];
  for (const [name, raw, key] of bad) t.throws(() => decodeLease(raw, key), name);
});

t.test('a boot storm: 5,000 MACs allocate and bind concurrently, all survive a crash', async (t) => {
  const [pool] = compilePools([{ subnet: '10.32.0.0/19', range: { start: '10.32.0.10', end: '10.32.31.250' }, leaseTime: 3600 }]);
  const { store, dir } = await openStore(t);
  const acks: Promise<Lease>[] = [];
  const macs: Mac[] = [];
  const started = performance.now();
  for (let i = 0; i < 5000; i++) {
    const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac;
    macs.push(mac);
    const a = allocate(pool!, store, mac);
    if (a.ip === null) throw new Error(a.reason);
    store.offer(mac, a.ip, MIN);
    acks.push(store.bind(mac, a.ip, HOUR));
  }
  const leases = await Promise.all(acks);
  const ms = performance.now() - started;
  t.equal(new Set(leases.map((l) => l.ip)).size, 5000);
  t.comment(`5,000 allocate+offer+bind in ${Math.round(ms)} ms, ${store.journalStats().fsyncs} fdatasyncs (group commit)`);
  const after = await LeaseStore.open(crashCopy(t, dir), { log: silentLogger(), now: () => T0 });
  for (const [i, mac] of macs.entries()) {
    if (after.get(mac)?.ip !== leases[i]!.ip) t.fail(`${mac} lost its address`);
  }
  t.equal(after.inUse(), 5000);
  await after.close();
  await store.close();
});

t.test('options pass through to the journal', async (t) => {
  const dir = tmp(t);
  const s = await LeaseStore.open(dir, { log: silentLogger(), fsync: 'always', compactEvery: 3, onCorrupt: 'fail' });
  for (let i = 0; i < 4; i++) await s.bind(A, `10.0.0.${10 + i}`, HOUR);
  t.ok(s.journalStats().compactions >= 1);
  t.ok(s.now() > 0, 'default clock');
  await s.close();
});

t.test('expire() works in slices and leaves alone a lease renewed while it paused', async (t) => {
  const { store, clock } = await openStore(t);
  const n = 1500;
  const mac = (i: number) => `52:54:00:01:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac;
  const ip = (i: number) => `10.0.${i >> 8}.${i & 255}`;
  await Promise.all([...Array(n).keys()].map((i) => store.bind(mac(i), ip(i), MIN)));
  clock.now += 2 * MIN;
  const sweep = store.expire();
  // expire() handled its first slice synchronously and is waiting for its next turn; this immediate runs after that turn.
  await new Promise<void>((r) => setImmediate(r));
  const renewed = store.bind(mac(n - 1), ip(n - 1), HOUR);
  t.equal(await sweep, n - 1, 'every other lease released');
  await renewed;
  t.match(store.get(mac(n - 1)), { state: 'bound', expiresAt: clock.now + HOUR }, 'the renewed one is still bound');
  t.match(store.counts(), { bound: 1, released: n - 1 });
});
