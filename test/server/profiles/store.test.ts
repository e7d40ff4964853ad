import t, { type Test } from 'tap';
import { mkdtempSync, cpSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { ProfileStore } from '../../../server/profiles/store.js';
import { packageFile } from '../../../server/paths.js';
import { silentLogger } from '../../../server/log.js';
import { requireMac } from '../../../server/mac.js';

function copyExamples(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-profiles-'));
  cpSync(packageFile('profiles'), dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a valid edit swaps the whole set; an invalid one keeps the last good set', async (t) => {
  const dir = copyExamples(t);
  const store = new ProfileStore(dir, silentLogger());
  const first = store.open();
  t.equal(first.machines.size, 7);

  const workers = join(dir, 'workers.yaml');
  writeFileSync(workers, readFileSync(workers, 'utf8').replace('hostname: worker1', 'hostname: worker-one'));
  const ok = store.reload();
  t.equal(ok.ok, true);
  t.equal(store.current().machines.get(requireMac('52:54:00:5b:00:11'))?.hostname, 'worker-one');
  t.not(store.current(), first, 'a new set object');

  const good = store.current();
  // Two mistakes in one edit: a duplicate MAC and a typo in a key. Neither half is applied.
  writeFileSync(workers, readFileSync(workers, 'utf8').replace('"52:54:00:5b:00:12"', '"52:54:00:5b:00:01"').replace('role: worker', 'rol: worker'));
  const bad = store.reload();
  t.equal(bad.ok, false);
  if (!bad.ok) t.ok(bad.error.problems.length >= 2, 'all problems reported');
  t.equal(store.current(), good, 'last good set kept');
});

t.test('watch() reloads on change', async (t) => {
  const dir = copyExamples(t);
  const store = new ProfileStore(dir, silentLogger());
  store.open();
  store.watch(20);
  // The watcher does not hold the event loop open (a server's sockets do); this bounded timer does, for the test.
  const guard = setTimeout(() => t.fail('no reload within 5 s'), 5000);
  t.teardown(() => {
    clearTimeout(guard);
    store.close();
  });
  const changed = once(store, 'change');
  writeFileSync(join(dir, 'extra.yaml'), 'profiles:\n  spare:\n    role: none\n    machines: [{ mac: "52:54:00:5b:00:99" }]\n');
  const [set] = (await changed) as [ReturnType<ProfileStore['current']>];
  t.equal(set.machines.get(requireMac('52:54:00:5b:00:99'))?.profile, 'spare');

  const rejected = once(store, 'rejected');
  writeFileSync(join(dir, 'extra.yaml'), 'profiles:\n  spare: [oops\n');
  await rejected;
  t.equal(store.current(), set, 'kept');
});
