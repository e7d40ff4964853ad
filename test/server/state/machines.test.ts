/**
 * The machine observation store: steps recorded in memory at once, written
 * once per machine per flush (in slices), read back after a restart.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../server/log.js';
import { requireMac } from '../../../server/mac.js';
import { FLUSH_SLICE, MachineStates, TRAIL_LENGTH } from '../../../server/state/machines.js';

const A = requireMac('52:54:00:00:00:0a');
const B = requireMac('52:54:00:00:00:0b');

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-machines-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a DHCP exchange: four steps, one record per machine per flush, back after a restart', async (t) => {
  const dir = tmp(t);
  let now = 1_000;
  const m = await MachineStates.open(dir, { log: silentLogger(), now: () => now, flushMs: 60_000 });
  m.record(A, 'dhcp-discover');
  m.record(A, 'dhcp-offer', { ip: '10.0.0.10' });
  now += 5;
  m.record(A, 'dhcp-request', { ip: '10.0.0.10', detail: 'selecting' });
  m.record(A, 'dhcp-ack', { ip: '10.0.0.10', detail: 'undionly.kpxe' });
  m.record(B, 'tftp', { detail: 'tftp:undionly.kpxe', ip: '10.0.0.11' });
  t.same(m.get(A), {
    mac: A,
    ip: '10.0.0.10',
    lastStep: 'dhcp-ack',
    lastSeen: 1_005,
    trail: [
      { at: 1_000, step: 'dhcp-discover' },
      { at: 1_000, step: 'dhcp-offer', ip: '10.0.0.10' },
      { at: 1_005, step: 'dhcp-request', detail: 'selecting', ip: '10.0.0.10' },
      { at: 1_005, step: 'dhcp-ack', detail: 'undionly.kpxe', ip: '10.0.0.10' },
    ],
    lastDetail: 'undionly.kpxe',
  });
  t.same(Object.keys(m.get(B)!), ['mac', 'ip', 'lastStep', 'lastDetail', 'lastSeen', 'trail'], 'a new observation keeps the usual field order');
  await m.flush();
  const journal = readFileSync(join(dir, 'machines.journal'), 'utf8').trim().split('\n');
  t.equal(journal.length, 1 + 2, 'header and one record per machine, not one per step');
  m.reportSwarm(A, { event: 'joined', role: 'worker' });
  await m.close();

  const again = await MachineStates.open(dir, { log: silentLogger(), now: () => now });
  t.equal(again.all().length, 2);
  t.equal(again.get(A)?.trail.length, 5);
  t.match(again.get(A), { lastStep: 'swarm', lastDetail: 'joined', swarm: { event: 'joined', role: 'worker', at: 1_005 } });
  t.equal(again.get(B)?.ip, '10.0.0.11');
  await again.close();
});

t.test('the trail keeps the last TRAIL_LENGTH steps; a flush with nothing changed writes nothing', async (t) => {
  const dir = tmp(t);
  const m = await MachineStates.open(dir, { log: silentLogger(), now: () => 1, flushMs: 60_000 });
  for (let i = 0; i < TRAIL_LENGTH + 10; i++) m.record(A, 'tftp', { detail: `f${i}` });
  t.equal(m.get(A)?.trail.length, TRAIL_LENGTH);
  t.equal(m.get(A)?.trail[0]?.detail, 'f10');
  await m.flush();
  const lines = () => readFileSync(join(dir, 'machines.journal'), 'utf8').trim().split('\n').length;
  const before = lines();
  await m.flush();
  t.equal(lines(), before);
  m.record(A, 'kernel');
  await m.flush();
  t.equal(lines(), before + 1, 'changed again: written again');
  await m.close();
});

t.test('the timer flushes on its own', async (t) => {
  const dir = tmp(t);
  const m = await MachineStates.open(dir, { log: silentLogger(), flushMs: 10 });
  m.record(A, 'dhcp-discover');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(readFileSync(join(dir, 'machines.journal'), 'utf8').trim().split('\n').length, 2);
  await m.close();
});

t.test('a flush of thousands: written a slice at a time, one record per machine, resolves once all are written', async (t) => {
  const dir = tmp(t);
  const m = await MachineStates.open(dir, { log: silentLogger(), now: () => 7, flushMs: 60_000 });
  const macs = Array.from({ length: 1000 }, (_, i) => requireMac(`52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`));
  for (const mac of macs) m.record(mac, 'dhcp-discover');
  const journalLines = () => readFileSync(join(dir, 'machines.journal'), 'utf8').trim().split('\n').slice(1);
  t.ok(FLUSH_SLICE < 1000);
  const first = m.flush();
  // After one turn of the event loop the first slice is serialised, the rest not yet.
  await new Promise((r) => setImmediate(r));
  m.record(macs[0]!, 'dhcp-offer'); // already serialised: dirty again, for the next flush
  m.record(macs[999]!, 'dhcp-offer'); // not yet: joins this flush's record
  const second = m.flush(); // called while the first is slicing: resolves after it
  await second;
  const written = journalLines().map((l) => JSON.parse(l.slice(9)) as { k: string; v: { trail: unknown[] } });
  t.equal(written.length, 1001, 'one record per machine, plus machine 0 again');
  t.equal(new Set(written.slice(0, 1000).map((r) => r.k)).size, 1000);
  t.equal(written.find((r) => r.k === macs[999])?.v.trail.length, 2, 'a step recorded before its slice was written is in it');
  t.equal(written[1000]?.k, macs[0], 'machine 0 changed after its slice: written by the second flush');
  await first;
  await m.close();
  const again = await MachineStates.open(dir, { log: silentLogger() });
  t.equal(again.all().length, 1000);
  t.equal(again.get(macs[0]!)?.trail.length, 2);
  await again.close();
});

t.test('close() waits for a flush still slicing', async (t) => {
  const dir = tmp(t);
  const m = await MachineStates.open(dir, { log: silentLogger(), flushMs: 60_000 });
  for (let i = 0; i < 600; i++) m.record(requireMac(`52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`), 'tftp');
  void m.flush();
  await m.close();
  const again = await MachineStates.open(dir, { log: silentLogger() });
  t.equal(again.all().length, 600);
  await again.close();
});
