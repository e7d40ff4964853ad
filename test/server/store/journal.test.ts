import t from 'tap';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { silentLogger, type Logger } from '../../../server/log.js';
import {
  Journal,
  JournalCorruptError,
  encodeLine,
  lockOwnerAlive,
  nodeJournalIo,
  type JournalIo,
  type JournalOptions,
} from '../../../server/store/journal.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'journal');

interface Rec {
  mac: string;
  ip: string;
  state: string;
  expiresAt: number;
  updatedAt: number;
}

/** What the helpers need of a tap test. */
interface HasTeardown {
  teardown(fn: () => void): void;
}

function tmp(t: HasTeardown, fixture?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  if (fixture !== undefined) cpSync(join(FIXTURES, fixture), dir, { recursive: true });
  return dir;
}

/** A logger whose records the test can read. */
function capture(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

/** The files as a crash would leave them: copied, without the lock, without anything still queued in memory. */
function crashCopy(t: HasTeardown, dir: string): string {
  const copy = tmp(t);
  for (const f of readdirSync(dir)) if (!f.endsWith('.lock')) cpSync(join(dir, f), join(copy, f));
  return copy;
}

const open = <T>(dir: string, opts: Partial<JournalOptions<T>> = {}) =>
  Journal.open<T>(dir, 'leases', { log: silentLogger(), ...opts });

/** Resolves once no background compaction runs (a crash copy taken meanwhile could pair files from two moments). */
async function idle(j: Journal<unknown>): Promise<void> {
  while (j.stats().compacting) await new Promise((r) => setImmediate(r));
}

/** Opens, reads the whole state, closes. */
async function peek<T>(dir: string): Promise<Record<string, T>> {
  const j = await open<T>(dir);
  const state = Object.fromEntries(j.state);
  await j.close();
  return state;
}

t.test('put, delete, reopen', async (t) => {
  const dir = tmp(t);
  const j = await open<{ n: number }>(dir);
  t.equal(j.size, 0);
  await j.put('a', { n: 1 });
  await j.put('b', { n: 2 });
  await j.put('a', { n: 3 });
  t.equal(await j.delete('b'), true);
  t.equal(await j.delete('nope'), false, 'deleting an absent key writes nothing');
  t.same(j.get('a'), { n: 3 });
  t.equal(j.stats().journalRecords, 4);
  await j.close();
  await j.close(); // idempotent
  t.notOk(existsSync(join(dir, 'leases.lock')), 'lock released');
  await t.rejects(j.put('c', { n: 0 }), { code: 'E_JOURNAL_CLOSED' });

  const again = await open<{ n: number }>(dir);
  t.same([...again.state], [['a', { n: 3 }]]);
  await again.close();
});

t.test('reads see a change at once; the promise says when it is durable', async (t) => {
  const dir = tmp(t);
  const j = await open<number>(dir);
  const p = j.put('k', 1);
  t.equal(j.get('k'), 1);
  await p;
  t.equal((await peek<number>(crashCopy(t, dir))).k, 1, 'an awaited put is in the files');
  await j.close();
});

t.test('values that do not survive JSON are refused before they change anything', async (t) => {
  const dir = tmp(t);
  const j = await open<unknown>(dir);
  await t.rejects(j.put('u', undefined), { code: 'E_JOURNAL_VALUE' });
  await t.rejects(j.put('b', 10n), { code: 'E_JOURNAL_VALUE' });
  t.equal(j.size, 0);
  await j.put('ok', 'value with "quotes"\nand a newline');
  await j.close();
  t.equal((await peek<string>(dir)).ok, 'value with "quotes"\nand a newline');
  await t.rejects(Journal.open(dir, '../evil', { log: silentLogger() }), { code: 'E_JOURNAL_VALUE' });
});

t.test('the format: crc32, a space, JSON, newline', async (t) => {
  const dir = tmp(t);
  const j = await open<number>(dir, { lock: false });
  await j.put('x', 7);
  await j.close();
  t.equal(readFileSync(join(dir, 'leases.journal'), 'utf8'), encodeLine({ t: 'journal', v: 1, gen: 0 }) + encodeLine({ s: 1, k: 'x', v: 7 }));
  t.match(encodeLine({ a: 1 }), /^[0-9a-f]{8} \{"a":1\}\n$/);
});

t.test('putMany: one promise for many records, durable when it resolves, nothing set when a value is refused', async (t) => {
  const dir = tmp(t);
  const c = countingIo();
  const j = await open<{ n: number }>(dir, { io: c.io });
  const base = c.syncs();
  const p = j.putMany(Array.from({ length: 100 }, (_, i) => [`k${i}`, { n: i }] as const));
  t.same(j.get('k99'), { n: 99 }, 'reads see them at once');
  await p;
  t.ok(c.syncs() - base <= 2, `100 records, ${c.syncs() - base} fdatasyncs`);
  t.equal(Object.keys(await peek(crashCopy(t, dir))).length, 100, 'all in the files once it resolved');
  await t.rejects(j.putMany([['ok', { n: 1 }], ['bad', 10n as unknown as { n: number }]]), { code: 'E_JOURNAL_VALUE' });
  t.equal(j.get('ok'), undefined, 'the good one was not set either');
  await j.putMany([]);
  t.equal(j.stats().journalRecords, 100);
  await j.close();
});

t.test('a batch of multi-byte values: each line checksummed over its UTF-8 bytes', async (t) => {
  const dir = tmp(t);
  const j = await open<string>(dir, { lock: false });
  const values = ['ascii', 'naïve', 'Ελληνικά', '漢字 and 🐳', 'line\nbreak "quoted"'];
  await Promise.all(values.map((v, i) => j.put(`k${i}`, v)));
  await j.close();
  const expected = encodeLine({ t: 'journal', v: 1, gen: 0 }) + values.map((v, i) => encodeLine({ s: i + 1, k: `k${i}`, v })).join('');
  t.equal(readFileSync(join(dir, 'leases.journal'), 'utf8'), expected, 'byte for byte what encodeLine gives');
  t.same(Object.values(await peek<string>(dir)), values);
});

t.test('a v1 store (committed fixture) still opens', async (t) => {
  const j = await open<Rec>(tmp(t, 'v1'));
  t.same([...j.state.keys()].sort(), ['10.0.0.10', '10.0.0.12']);
  t.equal(j.get('10.0.0.10')?.state, 'released');
  t.equal(j.stats().generation, 3);
  t.equal(j.stats().journalRecords, 3);
  await j.close();
});

t.test('compaction', async (t) => {
  t.test('explicit: snapshot written, journal restarted, state unchanged', async (t) => {
    const dir = tmp(t);
    const j = await open<number>(dir, { compactEvery: 0 });
    for (let i = 0; i < 10; i++) await j.put(`k${i % 4}`, i);
    await j.delete('k0');
    await j.compact();
    t.equal(j.stats().generation, 1);
    t.equal(j.stats().journalRecords, 0);
    t.equal(j.stats().compactions, 1);
    t.equal(readFileSync(join(dir, 'leases.journal'), 'utf8'), encodeLine({ t: 'journal', v: 1, gen: 1 }));
    await j.put('k9', 9);
    const copy = crashCopy(t, dir);
    await j.close();
    const again = await open<number>(copy);
    t.same(Object.fromEntries(again.state), { k1: 9, k2: 6, k3: 7, k9: 9 });
    t.equal(again.stats().generation, 1);
    await again.close();
  });

  t.test('automatic, every N records, puts racing it keep their order', async (t) => {
    const dir = tmp(t);
    const j = await open<number>(dir, { compactEvery: 50 });
    const puts: Promise<void>[] = [];
    for (let i = 0; i < 500; i++) puts.push(j.put(`k${i % 7}`, i));
    await Promise.all(puts);
    await j.flush();
    await idle(j); // compactions run in the background
    t.ok(j.stats().compactions >= 1, `compacted ${j.stats().compactions} times`);
    const copy = crashCopy(t, dir);
    await j.close();
    const again = await open<number>(copy);
    for (let k = 0; k < 7; k++) t.equal(again.get(`k${k}`), 493 + ((k - 493 % 7 + 7) % 7));
    await again.close();
  });

  t.test('automatic compaction waits for half as many records as there are keys', async (t) => {
    const dir = tmp(t);
    const j = await open<number>(dir, { compactEvery: 10 });
    // 100 new keys: compacting every 10 records would rewrite the growing state ten times.
    // (Waiting for each background compaction keeps the cuts where the counts put them.)
    for (let i = 0; i < 100; i++) {
      await j.put(`k${i}`, i);
      await idle(j);
    }
    t.equal(j.stats().compactions, 4, 'at 10, 20, 40 and 80 keys: the state doubles between snapshots');
    t.equal(j.stats().journalRecords, 20);
    // Rewrites of the same keys: the next comes once the journal holds 50 records (half of 100 keys).
    for (let i = 0; i < 29; i++) {
      await j.put(`k${i}`, -i);
      await idle(j);
    }
    t.equal(j.stats().compactions, 4);
    await j.put('k29', -29);
    await idle(j);
    t.equal(j.stats().compactions, 5);
    t.equal(j.stats().journalRecords, 0);
    await j.close();
    t.equal((await peek<number>(dir)).k29, -29);
  });

  t.test('on open, when the journal is long', async (t) => {
    const dir = tmp(t);
    const j = await open<number>(dir, { compactEvery: 0 });
    for (let i = 0; i < 30; i++) await j.put('k', i);
    await j.close();
    const again = await open<number>(dir, { compactEvery: 20 });
    t.equal(again.stats().generation, 1);
    t.equal(again.get('k'), 29);
    await again.close();
  });

  t.test('interrupted between the two renames (fixture): the stale journal is ignored', async (t) => {
    const dir = tmp(t, 'interrupted-compaction');
    const { log, lines } = capture();
    const j = await open<Rec>(dir, { log });
    t.equal(j.get('10.0.0.1')?.state, 'released');
    t.equal(j.stats().generation, 1);
    t.notOk(existsSync(join(dir, 'leases.journal.tmp')), 'leftover temp file removed');
    t.ok(lines.some((l) => String(l.msg).includes('predates the snapshot')));
    await j.put('10.0.0.2', { mac: 'm', ip: '10.0.0.2', state: 'bound', expiresAt: 1, updatedAt: 1 });
    await j.close();
    const again = await open<Rec>(dir);
    t.same([...again.state.keys()], ['10.0.0.1', '10.0.0.2']);
    await again.close();
  });

  t.test('a failure before the snapshot rename leaves the journal working', async (t) => {
    const dir = tmp(t);
    const io: JournalIo = {
      ...nodeJournalIo,
      openAppend: (path, o) => (path.endsWith('.snapshot.tmp') ? Promise.reject(new Error('ENOSPC (fake)')) : nodeJournalIo.openAppend(path, o)),
    };
    const j = await open<number>(dir, { io, compactEvery: 0 });
    await j.put('a', 1);
    await t.rejects(j.compact(), { message: 'ENOSPC (fake)' });
    await j.put('b', 2);
    await j.close();
    t.same(await peek<number>(dir), { a: 1, b: 2 });
  });

  t.test('automatic compaction failing is logged and retried later, not fatal', async (t) => {
    const dir = tmp(t);
    let fail = true;
    const io: JournalIo = {
      ...nodeJournalIo,
      openAppend: (path, o) => (fail && path.endsWith('.snapshot.tmp') ? Promise.reject(new Error('ENOSPC (fake)')) : nodeJournalIo.openAppend(path, o)),
    };
    const { log, lines } = capture();
    const j = await open<number>(dir, { io, compactEvery: 5, log });
    for (let i = 0; i < 6; i++) await j.put(`k${i}`, i);
    await idle(j);
    t.ok(lines.some((l) => l.msg === 'automatic compaction failed'));
    t.equal(j.stats().compactions, 0);
    fail = false;
    for (let i = 0; i < 3; i++) await j.put(`k${i}`, i);
    await idle(j);
    t.equal(j.stats().compactions, 0, 'not again at once');
    for (let i = 3; i < 6; i++) await j.put(`k${i}`, i);
    await idle(j);
    t.equal(j.stats().compactions, 1, 'retried after another compactEvery records');
    await j.close();
  });

  t.test('a failure after the snapshot rename is not fatal: the old journal carries on next to it', async (t) => {
    // The snapshot names the journal and record it is based on, so the old journal is not stale
    // (test/server/store/journal-compaction.test.ts covers each step).
    const dir = tmp(t);
    let fail = false;
    const io: JournalIo = { ...nodeJournalIo, syncDir: (d) => (fail ? Promise.reject(new Error('EIO (fake)')) : nodeJournalIo.syncDir(d)) };
    const j = await open<number>(dir, { io, compactEvery: 0 });
    await j.put('a', 1);
    fail = true;
    await t.rejects(j.compact(), { message: 'EIO (fake)' });
    fail = false;
    await j.put('b', 2);
    t.same(await peek<number>(crashCopy(t, dir)), { a: 1, b: 2 }, 'a crash now: new snapshot + the old journal after its cut');
    await j.close();
    t.same(await peek<number>(dir), { a: 1, b: 2 });
  });
});

t.test('torn tails are dropped, the file truncated, and appending goes on', async (t) => {
  for (const fixture of ['torn-tail', 'garbage-tail']) {
    const dir = tmp(t, fixture);
    const before = readFileSync(join(dir, 'leases.journal'));
    const { log, lines } = capture();
    const j = await open<Rec>(dir, { log });
    const kept = fixture === 'torn-tail' ? ['10.0.0.1', '10.0.0.2'] : ['10.0.0.1'];
    t.same([...j.state.keys()], kept, `${fixture}: acknowledged records kept`);
    const warn = lines.find((l) => String(l.msg).startsWith('dropping torn tail'));
    t.ok(warn, `${fixture}: logged`);
    t.ok(readFileSync(join(dir, 'leases.journal')).length < before.length, `${fixture}: truncated`);
    await j.put('10.0.0.5', { mac: 'm', ip: '10.0.0.5', state: 'bound', expiresAt: 1, updatedAt: 1 });
    await j.close();
    const again = await open<Rec>(dir);
    t.same([...again.state.keys()], [...kept, '10.0.0.5'], `${fixture}: reopens cleanly`);
    await again.close();
  }
});

t.test('corruption in the middle fails loudly, naming file and line', async (t) => {
  const dir = tmp(t, 'corrupt-middle');
  const err = await open<Rec>(dir).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof JournalCorruptError);
  const c = err as JournalCorruptError;
  t.equal(c.code, 'E_JOURNAL_CORRUPT');
  t.equal(c.file, join(dir, 'leases.journal'));
  t.equal(c.line, 3);
  t.match(c.message, `${join(dir, 'leases.journal')}:3: checksum mismatch`);
  t.notOk(existsSync(join(dir, 'leases.lock')), 'a failed open releases the lock');

  t.test('quarantine mode keeps the rest, sets the file aside, logs each bad record', async (t) => {
    const q = tmp(t, 'corrupt-middle');
    const original = readFileSync(join(q, 'leases.journal'));
    const { log, lines } = capture();
    const j = await open<Rec>(q, { log, onCorrupt: 'quarantine', now: () => 1234 });
    t.same([...j.state.keys()], ['10.0.0.1', '10.0.0.3']);
    t.same(readFileSync(join(q, 'leases.journal.corrupt-1234')), original, 'damaged file preserved');
    t.ok(lines.some((l) => l.level === 50 && l.line === 3 && l.why === 'checksum mismatch'));
    t.equal(j.stats().generation, 1, 'compacted into a clean snapshot');
    await j.close();
    t.same(Object.keys(await peek<Rec>(q)), ['10.0.0.1', '10.0.0.3'], 'opens normally afterwards');
  });
});

t.test('other damage', async (t) => {
  t.test('a missing record (sequence gap)', async (t) => {
    await t.rejects(open(tmp(t, 'missing-record')), { code: 'E_JOURNAL_CORRUPT', line: 3, message: /sequence jumps from 1 to 3/ });
  });
  t.test('a snapshot without its end record', async (t) => {
    await t.rejects(open(tmp(t, 'truncated-snapshot')), { code: 'E_JOURNAL_CORRUPT', message: /leases\.snapshot:3: snapshot has no end record/ });
  });
  t.test('a journal newer than its snapshot', async (t) => {
    await t.rejects(open(tmp(t, 'orphan-journal')), { code: 'E_JOURNAL_CORRUPT', line: 1, message: /generation 2 but .* is missing/ });
    const dir = tmp(t, 'v1');
    writeFileSync(join(dir, 'leases.journal'), encodeLine({ t: 'journal', v: 1, gen: 4 }));
    await t.rejects(open(dir), { message: /generation 4 but .* is generation 3/ });
  });
  t.test('a damaged header is never guessed around', async (t) => {
    const dir = tmp(t, 'v1');
    writeFileSync(join(dir, 'leases.journal'), 'junk\n');
    await t.rejects(open(dir, { onCorrupt: 'quarantine' }), { code: 'E_JOURNAL_CORRUPT', line: 1 });
    const dir2 = tmp(t, 'v1');
    writeFileSync(join(dir2, 'leases.snapshot'), encodeLine({ t: 'snapshot', v: 99, gen: 1, n: 0 }));
    await t.rejects(open(dir2), { message: /unsupported snapshot header/ });
  });
  t.test('a value the decoder rejects', async (t) => {
    const dir = tmp(t, 'v1');
    const decode = (raw: unknown, key: string): Rec => {
      if (key === '10.0.0.12') throw new Error('no such thing');
      return raw as Rec;
    };
    await t.rejects(open(dir, { decode }), { line: 2, message: /value for "10.0.0.12" rejected: no such thing/ });
  });
  t.test('a bad snapshot line, quarantined', async (t) => {
    const dir = tmp(t, 'v1');
    const text = readFileSync(join(dir, 'leases.snapshot'), 'utf8').replace('52:54:00:00:00:02', '52:54:00:00:00:09');
    writeFileSync(join(dir, 'leases.snapshot'), text);
    await t.rejects(open(dir), { code: 'E_JOURNAL_CORRUPT', line: 3 });
    const j = await open<Rec>(dir, { onCorrupt: 'quarantine', now: () => 5 });
    t.ok(existsSync(join(dir, 'leases.snapshot.corrupt-5')));
    t.same([...j.state.keys()].sort(), ['10.0.0.10', '10.0.0.12']);
    await j.close();
  });
});

t.test('the lock', async (t) => {
  const dir = tmp(t);
  const j = await open<number>(dir);
  t.match(readFileSync(join(dir, 'leases.lock'), 'utf8'), new RegExp(`^${process.pid} \\d+\n$`), 'pid and start time');
  await t.rejects(open(dir), { code: 'E_JOURNAL_LOCKED', message: /this process/ });
  await j.close();

  const dir2 = tmp(t);
  writeFileSync(join(dir2, 'leases.lock'), '999999\n');
  const { log, lines } = capture();
  const k = await open<number>(dir2, { log, isAlive: () => false });
  t.ok(lines.some((l) => String(l.msg).startsWith('removing stale lock')));
  await k.close();
  writeFileSync(join(dir2, 'leases.lock'), '4242 77\n');
  await t.rejects(open(dir2, { isAlive: (o) => o.pid === 4242 && o.start === '77' }), { code: 'E_JOURNAL_LOCKED', message: /running process 4242/ });
});

t.test('lockOwnerAlive: a dead pid, a reused pid, a live one', async (t) => {
  const mine = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
  const start = mine.slice(mine.lastIndexOf(')') + 2).split(' ')[19]!;
  t.equal(lockOwnerAlive({ pid: process.pid, start }), true);
  t.equal(lockOwnerAlive({ pid: process.pid, start: null }), true, 'an old lock without start time: trust the pid');
  t.equal(lockOwnerAlive({ pid: process.pid, start: String(Number(start) + 1) }), false, 'same pid, other process (container restart)');
  t.equal(lockOwnerAlive({ pid: 2 ** 22 + 1, start: null }), false, 'no such process');
});

/** Wraps the real io and counts fdatasyncs; `failSync` makes them fail. */
function countingIo(): { io: JournalIo; syncs: () => number; failSync: (on: boolean) => void } {
  let syncs = 0;
  let fail = false;
  const io: JournalIo = {
    ...nodeJournalIo,
    async openAppend(path, o) {
      const f = await nodeJournalIo.openAppend(path, o);
      return {
        ...f,
        async datasync() {
          if (fail) throw new Error('EIO (fake)');
          syncs += 1;
          await f.datasync();
        },
      };
    },
  };
  return { io, syncs: () => syncs, failSync: (on) => (fail = on) };
}

t.test('fsync policies', async (t) => {
  t.test("'always': one fdatasync per change", async (t) => {
    const c = countingIo();
    const j = await open<number>(tmp(t), { io: c.io, fsync: 'always' });
    const base = c.syncs();
    await Promise.all(Array.from({ length: 20 }, (_, i) => j.put(`k${i}`, i)));
    t.equal(c.syncs() - base, 20);
    t.equal(j.stats().fsyncs, 20);
    await j.close();
  });
  t.test("'batch': concurrent changes share fdatasyncs (group commit)", async (t) => {
    const c = countingIo();
    const j = await open<number>(tmp(t), { io: c.io, fsync: 'batch' });
    const base = c.syncs();
    await Promise.all(Array.from({ length: 200 }, (_, i) => j.put(`k${i}`, i)));
    t.ok(c.syncs() - base <= 2, `200 puts, ${c.syncs() - base} fdatasyncs`);
    // Changes made while a sync is in flight ride the next one.
    const first = j.put('a', 1);
    await Promise.resolve();
    await Promise.resolve();
    const rest = Array.from({ length: 50 }, (_, i) => j.put(`b${i}`, i));
    await Promise.all([first, ...rest]);
    t.ok(c.syncs() - base <= 4);
    await j.close();
  });
  t.test("'batch' with syncIntervalMs: fdatasyncs that far apart, changes spread over the interval share one", async (t) => {
    const c = countingIo();
    const dir = tmp(t);
    const j = await open<number>(dir, { io: c.io, syncIntervalMs: 60 });
    const base = c.syncs();
    await j.put('first', 0);
    t.equal(c.syncs() - base, 1, 'after a quiet spell, no waiting');
    const started = performance.now();
    const puts: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      puts.push(j.put(`k${i}`, i));
      await new Promise((r) => setTimeout(r, 3));
    }
    await Promise.all(puts);
    t.ok(performance.now() - started >= 50, 'the next sync waited for the interval');
    t.ok(c.syncs() - base <= 3, `10 changes 3 ms apart, ${c.syncs() - base - 1} more fdatasyncs`);
    t.equal(Object.keys(await peek<number>(crashCopy(t, dir))).length, 11, 'each resolved only once on disk');
    await j.close();
  });
  t.test("'never': no fdatasync until flush()", async (t) => {
    const c = countingIo();
    const dir = tmp(t);
    const j = await open<number>(dir, { io: c.io, fsync: 'never' });
    const base = c.syncs();
    for (let i = 0; i < 10; i++) await j.put(`k${i}`, i);
    t.equal(c.syncs() - base, 0);
    t.equal(j.get('k9'), 9);
    t.equal(Object.keys(await peek<number>(crashCopy(t, dir))).length, 10, 'written (survives kill -9) though not synced');
    await j.flush();
    t.equal(c.syncs() - base, 1);
    await j.flush();
    t.equal(c.syncs() - base, 1, 'nothing new, no sync');
    await j.close();
  });
});

t.test('after an I/O error the journal refuses changes', async (t) => {
  const c = countingIo();
  const dir = tmp(t);
  const { log, lines } = capture();
  const j = await open<number>(dir, { io: c.io, log });
  await j.put('a', 1);
  c.failSync(true);
  const p1 = j.put('b', 2);
  const p2 = j.put('c', 3);
  await t.rejects(p1, { code: 'E_JOURNAL_IO' });
  await t.rejects(p2, { code: 'E_JOURNAL_IO' });
  await t.rejects(j.put('d', 4), { code: 'E_JOURNAL_IO' });
  await t.rejects(j.delete('a'), { code: 'E_JOURNAL_IO' });
  await t.rejects(j.flush(), { code: 'E_JOURNAL_IO' });
  await t.rejects(j.compact(), { code: 'E_JOURNAL_IO' });
  t.ok(lines.some((l) => l.level === 50));
  await j.close();
  t.notOk(existsSync(join(dir, 'leases.lock')));
});

t.test('close() reports a failed final sync', async (t) => {
  const c = countingIo();
  const j = await open<number>(tmp(t), { io: c.io, fsync: 'never' });
  await j.put('a', 1);
  c.failSync(true);
  await t.rejects(j.close(), { code: 'E_JOURNAL_IO' });
});

t.test('a journal that vanished next to its snapshot is restarted', async (t) => {
  const dir = tmp(t, 'v1');
  rmSync(join(dir, 'leases.journal'));
  const j = await open<Rec>(dir);
  t.same([...j.state.keys()], ['10.0.0.10', '10.0.0.11'], 'the snapshot state');
  t.ok(existsSync(join(dir, 'leases.journal')));
  await j.close();
});

t.test('appending after a crash mid-line does not glue records together', async (t) => {
  const dir = tmp(t);
  const j = await open<number>(dir);
  await j.put('a', 1);
  await j.close();
  appendFileSync(join(dir, 'leases.journal'), '0123abcd {"s":2,"k":"b"');
  const again = await open<number>(dir);
  await again.put('c', 3);
  await again.close();
  t.same(await peek<number>(dir), { a: 1, c: 3 });
});
