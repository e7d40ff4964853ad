/**
 * The machine observation store: steps recorded in memory at once, written
 * in one batch per flush, read back after a restart.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../server/log.js';
import { requireMac } from '../../../server/mac.js';
import { MachineStates, TRAIL_LENGTH } from '../../../server/state/machines.js';

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
