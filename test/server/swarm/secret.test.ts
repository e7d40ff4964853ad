import t from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerKey, machineSecret, checkMachineSecret } from '../../../server/swarm/secret.js';
import { requireMac } from '../../../server/mac.js';

t.test('server key: created once, 0600, stable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-key-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = loadServerKey(join(dir, 'state'));
  const b = loadServerKey(join(dir, 'state'));
  t.same(a, b);
  t.equal(a.length, 32);
  t.equal(statSync(join(dir, 'state', 'server.key')).mode & 0o777, 0o600);
  writeFileSync(join(dir, 'state', 'server.key'), 'garbage\n');
  t.throws(() => loadServerKey(join(dir, 'state')), /not a 64-hex-digit key/);
});

t.test('per-machine secrets differ per MAC and per key, and check in constant time', async (t) => {
  const k1 = Buffer.alloc(32, 1);
  const k2 = Buffer.alloc(32, 2);
  const m1 = requireMac('52:54:00:00:00:01');
  const m2 = requireMac('52:54:00:00:00:02');
  t.not(machineSecret(k1, m1), machineSecret(k1, m2));
  t.not(machineSecret(k1, m1), machineSecret(k2, m1));
  t.match(machineSecret(k1, m1), /^[0-9a-f]{64}$/);
  t.ok(checkMachineSecret(k1, m1, machineSecret(k1, m1)));
  t.notOk(checkMachineSecret(k1, m1, machineSecret(k1, m2)));
  t.notOk(checkMachineSecret(k1, m1, ''));
});
