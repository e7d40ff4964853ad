/**
 * Background compaction (server/store/journal.ts, "Compaction"): a crash
 * image taken at every step of the protocol recovers every acknowledged
 * change; changes made while it runs are not held up; failures at each step
 * are survived or fatal as the file comment says; the writer and the
 * snapshot work in slices.
 */
import t from 'tap';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pino } from 'pino';
import { silentLogger, type Logger } from '../../../server/log.js';
import {
  Journal,
  SLICE_LINES,
  WRITE_BATCH_RECORDS,
  encodeLine,
  nodeJournalIo,
  type JournalFile,
  type JournalIo,
  type JournalOptions,
} from '../../../server/store/journal.js';

interface HasTeardown {
  teardown(fn: () => void): void;
}

function tmp(t: HasTeardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-compaction-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The files as a crash would leave them: copied, without the lock. Take it only while the journal is paused or idle. */
function crashCopy(t: HasTeardown, dir: string): string {
  const copy = tmp(t);
  for (const f of readdirSync(dir)) if (!f.endsWith('.lock')) cpSync(join(dir, f), join(copy, f));
  return copy;
}

function capture(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

const open = <T>(dir: string, opts: Partial<JournalOptions<T>> = {}) => Journal.open<T>(dir, 'leases', { log: silentLogger(), ...opts });

/** Resolves once no compaction runs. */
async function idle(j: Journal<unknown>): Promise<void> {
  while (j.stats().compacting) await new Promise((r) => setImmediate(r));
}

const lines = (file: string) => readFileSync(file, 'utf8').trim().split('\n');
const header = (file: string) => JSON.parse(lines(file)[0]!.slice(9)) as Record<string, unknown>;

/**
 * The real file system with every operation labelled (`open leases.snapshot.tmp`,
 * `append leases.journal.tmp`, `datasync ...`, `rename ...`, `syncDir`): a
 * test can pause before the nth call of one label, make one fail, or read
 * the log of appends.
 */
function steppedIo() {
  let armed: { label: string; nth: number; seen: number; reached: () => void; release: Promise<void> } | null = null;
  const failing = new Map<string, number>();
  const appends: { label: string; lines: number }[] = [];
  const open = new Set<{ name: string }>();
  async function gate(label: string): Promise<void> {
    const left = failing.get(label);
    if (left !== undefined) {
      if (left <= 1) failing.delete(label);
      else failing.set(label, left - 1);
      throw Object.assign(new Error(`${label}: ENOSPC (fake)`), { code: 'ENOSPC' });
    }
    if (armed !== null && armed.label === label && ++armed.seen === armed.nth) {
      const a = armed;
      armed = null;
      a.reached();
      await a.release;
    }
  }
  const io: JournalIo = {
    ...nodeJournalIo,
    async openAppend(path, o) {
      await gate(`open ${basename(path)}`);
      const f = await nodeJournalIo.openAppend(path, o);
      // Named by what the file is now: the new journal is `leases.journal.tmp` until renamed.
      const named = { name: basename(path) };
      open.add(named);
      const file: JournalFile = {
        async append(data) {
          await gate(`append ${named.name}`);
          appends.push({ label: `append ${named.name}`, lines: data.toString('utf8').split('\n').length - 1 });
          await f.append(data);
        },
        async datasync() {
          await gate(`datasync ${named.name}`);
          await f.datasync();
        },
        close: () => (open.delete(named), f.close()),
      };
      return file;
    },
    async rename(from, to) {
      await gate(`rename ${basename(from)}`);
      await nodeJournalIo.rename(from, to);
      for (const f of open) if (f.name === basename(from)) f.name = basename(to);
    },
    async syncDir(d) {
      await gate('syncDir');
      await nodeJournalIo.syncDir(d);
    },
  };
  return {
    io,
    appends,
    /** Pauses before the `nth` call of `label` (counted from now). */
    pauseAt(label: string, nth = 1): { reached: Promise<void>; release: () => void } {
      let release!: () => void;
      let reached!: () => void;
      const r = new Promise<void>((res) => (reached = res));
      armed = { label, nth, seen: 0, reached, release: new Promise<void>((res) => (release = res)) };
      return { reached: r, release };
    },
    /** Makes the next `times` calls of `label` fail with ENOSPC. */
    fail(label: string, times = 1): void {
      failing.set(label, times);
    },
  };
}

/**
 * What the journal was told and what it acknowledged, per key; values only
 * grow, so "at least the last acknowledged value, at most the last issued"
 * is the whole crash contract. `null` is a delete.
 */
class Model {
  private n = 0;
  readonly issued = new Map<string, number | null>();
  readonly acked = new Map<string, number | null>();
  constructor(private readonly j: Journal<number>) {}
  // The journal resolves in the order changes were made, so the last to resolve is the newest acknowledged.
  put(key: string): Promise<void> {
    const v = ++this.n;
    this.issued.set(key, v);
    return this.j.put(key, v).then(() => void this.acked.set(key, v));
  }
  del(key: string): Promise<void> {
    this.issued.set(key, null);
    return this.j.delete(key).then(() => void this.acked.set(key, null));
  }
  /** What was acknowledged up to now: take it just before a crash copy while changes are still in flight. */
  frozen(): (state: ReadonlyMap<string, number>) => string[] {
    const acked = new Map(this.acked);
    return (state) => this.check(state, acked);
  }
  /** Problems with a recovered state; [] when it keeps the contract. */
  check(state: ReadonlyMap<string, number>, ackedThen: ReadonlyMap<string, number | null> = this.acked): string[] {
    const bad: string[] = [];
    for (const [key, issued] of this.issued) {
      const got = state.get(key);
      const acked = ackedThen.get(key);
      if (acked === undefined) continue; // nothing acknowledged: anything issued may or may not be there
      if (acked === null) {
        if (got !== undefined && (issued === null || got > issued)) bad.push(`${key}: deleted (acknowledged), recovered ${got}`);
      } else if (got === undefined ? issued !== null : got < acked || (issued !== null && got > issued)) {
        bad.push(`${key}: acknowledged ${acked}, last issued ${String(issued)}, recovered ${String(got)}`);
      }
    }
    for (const key of state.keys()) if (!this.issued.has(key)) bad.push(`${key}: never written`);
    return bad;
  }
}

/** Opens a crash copy (twice: recovery may rewrite files, and what it wrote must open too); returns the state, generation and log. */
async function recoverCopy(copy: string): Promise<{ state: Map<string, number>; generation: number; log: string[]; files: string[] }> {
  const { log, lines: logged } = capture();
  const j = await open<number>(copy, { log });
  const state = new Map(j.state);
  const generation = j.stats().generation;
  await j.close();
  const files = readdirSync(copy).sort();
  const again = await open<number>(copy);
  if (JSON.stringify([...again.state]) !== JSON.stringify([...state])) throw new Error('second open differs from the first');
  await again.close();
  return { state, generation, log: logged.map((l) => String(l.msg)), files };
}

const KEYS = 3000;

/** A store with a generation 1 snapshot of KEYS keys, then some journal records (generation 1) before the compaction under test. */
async function seeded(t: HasTeardown, io: JournalIo) {
  const dir = tmp(t);
  const j = await open<number>(dir, { io, compactEvery: 0 });
  const m = new Model(j);
  const first: Promise<void>[] = [];
  for (let i = 0; i < KEYS; i++) first.push(m.put(`k${i}`));
  first.push(m.put('doomed'), m.put('doomed-later'));
  await Promise.all(first);
  await j.compact();
  await Promise.all([m.put('k1'), m.put('k2'), m.del('doomed'), m.put('new-before-cut')]);
  return { dir, j, m };
}

/**
 * Every step of a compaction, as a place to pause it: `where` is what a
 * crash there leaves on disk ('old': old snapshot + journal 1; 'based': new
 * snapshot + journal 1; 'new': new snapshot + journal 2); `writer` says the
 * writer itself is paused (appends wait).
 */
const STEPS: { label: string; nth?: number; what: string; where: 'old' | 'based' | 'new'; writer?: boolean }[] = [
  { label: 'open leases.snapshot.tmp', what: 'cut taken, snapshot not started', where: 'old' },
  { label: 'append leases.snapshot.tmp', nth: 3, what: 'snapshot half written', where: 'old' },
  { label: 'datasync leases.snapshot.tmp', what: 'snapshot written, not synced', where: 'old' },
  { label: 'rename leases.snapshot.tmp', what: 'snapshot synced, not renamed', where: 'old' },
  { label: 'syncDir', what: 'snapshot renamed, directory not synced', where: 'based' },
  { label: 'open leases.journal.tmp', what: 'snapshot in place, new journal not started', where: 'based' },
  { label: 'datasync leases.journal.tmp', what: 'new journal holds the tail so far, not synced', where: 'based' },
  { label: 'datasync leases.journal.tmp', nth: 2, what: 'writer paused, rest of the tail written', where: 'based', writer: true },
  { label: 'rename leases.journal.tmp', what: 'new journal synced, not renamed', where: 'based', writer: true },
  { label: 'syncDir', nth: 2, what: 'new journal renamed, directory not synced', where: 'new', writer: true },
];

t.test('a crash at every step of a compaction recovers every acknowledged change', async (t) => {
  for (const step of STEPS) {
    await t.test(step.what, async (t) => {
      const s = steppedIo();
      const { dir, j, m } = await seeded(t, s.io);
      const gate = s.pauseAt(step.label, step.nth);
      const compacted = j.compact();
      await gate.reached;
      // Changes while it is paused: after the cut, so they are in the tail (journal 1, then journal 2).
      const during: Promise<void>[] = [m.put('k3'), m.put('new-during'), m.del('doomed-later')];
      for (let i = 0; i < 40; i++) during.push(m.put(`k${i % 8}`));
      if (!step.writer) {
        await Promise.all(during);
        t.ok(j.stats().compacting, 'changes made during the compaction were acknowledged before it finished');
      }
      const crashed = await recoverCopy(crashCopy(t, dir));
      t.same(m.check(crashed.state), [], 'every acknowledged change recovered, nothing invented');
      t.equal(crashed.generation, step.where === 'old' ? 1 : 2, `recovered ${step.where === 'old' ? 'the old' : 'the new'} snapshot`);
      const finished = crashed.log.some((l) => l.startsWith('interrupted compaction finished'));
      t.equal(finished, step.where === 'based', step.where === 'based' ? 'replayed journal 1 after the cut, rewrote it as journal 2' : 'no journal rewrite needed');
      t.notOk(crashed.files.some((f) => f.endsWith('.tmp')), 'temporary files removed');

      gate.release();
      await compacted;
      await Promise.all(during);
      t.equal(j.stats().generation, 2);
      t.equal(j.stats().journalRecords, during.length, 'the new journal holds what came after the cut');
      t.same(header(join(dir, 'leases.journal')), { t: 'journal', v: 1, gen: 2 });
      t.match(lines(join(dir, 'leases.journal'))[1], /^[0-9a-f]{8} \{"s":1,/, 'numbered from 1');
      await Promise.all([m.put('k9'), m.put('after')]);
      const later = await recoverCopy(crashCopy(t, dir));
      t.same(m.check(later.state), []);
      await j.close();
      t.same(m.check((await recoverCopy(dir)).state), [], 'after close');
    });
  }
});

t.test('a crash at every step while changes are still being written', async (t) => {
  // The same steps, but the crash image is taken while puts keep arriving rather than after they settled.
  for (const step of STEPS) {
    const s = steppedIo();
    const { dir, j, m } = await seeded(t, s.io);
    const gate = s.pauseAt(step.label, step.nth);
    const compacted = j.compact();
    const racing: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) racing.push(m.put(`k${(i * 7) % KEYS}`));
    await gate.reached;
    const check = m.frozen();
    const crashed = await recoverCopy(crashCopy(t, dir));
    t.same(check(crashed.state), [], `${step.what}: every change acknowledged before the crash recovered`);
    gate.release();
    await Promise.all([compacted, ...racing]);
    await j.close();
  }
});

t.test('recovery of hand-made files', async (t) => {
  const snap = (gen: number, base: object | undefined, entries: [string, number][], v = base === undefined ? 1 : 2) =>
    encodeLine({ t: 'snapshot', v, gen, n: entries.length, ...(base === undefined ? {} : { base }) }) +
    entries.map(([k, val]) => encodeLine({ k, v: val })).join('') +
    encodeLine({ t: 'end', n: entries.length });
  const journal = (gen: number, recs: object[]) => encodeLine({ t: 'journal', v: 1, gen }) + recs.map((r, i) => encodeLine({ s: i + 1, ...r })).join('');
  // Journal 1: a, b, then (after the cut at 2) c and a delete of b.
  const j1 = journal(1, [{ k: 'a', v: 1 }, { k: 'b', v: 1 }, { k: 'c', v: 1 }, { k: 'b', d: true }]);
  // The snapshot holds a newer a than record 1 (it was put again, queued at the cut): record 1 must not be replayed over it.
  const s2 = snap(2, { gen: 1, seq: 2 }, [['a', 5], ['b', 1]]);

  t.test('snapshot based on journal 1, next to journal 1: only the records after the cut, then journal 2', async (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'leases.snapshot'), s2);
    writeFileSync(join(dir, 'leases.journal'), j1);
    const { log, lines: logged } = capture();
    const j = await open<number>(dir, { log });
    t.same(Object.fromEntries(j.state), { a: 5, c: 1 });
    t.equal(j.stats().generation, 2);
    t.equal(j.stats().journalRecords, 2);
    t.ok(logged.some((l) => String(l.msg).startsWith('compaction was interrupted after its snapshot')));
    t.equal(readFileSync(join(dir, 'leases.journal'), 'utf8'), journal(2, [{ k: 'c', v: 1 }, { k: 'b', d: true }]), 'the compaction finished: journal 2');
    await j.put('d', 1);
    await j.close();
    const again = await open<number>(dir);
    t.same(Object.fromEntries(again.state), { a: 5, c: 1, d: 1 });
    await again.close();
  });

  t.test('the same snapshot next to journal 2: all of it', async (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'leases.snapshot'), s2);
    writeFileSync(join(dir, 'leases.journal'), journal(2, [{ k: 'a', v: 6 }]));
    const j = await open<number>(dir);
    t.same(Object.fromEntries(j.state), { a: 6, b: 1 });
    await j.close();
  });

  t.test('next to an older journal that is not its base: stale, ignored', async (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'leases.snapshot'), s2);
    writeFileSync(join(dir, 'leases.journal'), journal(0, [{ k: 'zombie', v: 1 }]));
    const { log, lines: logged } = capture();
    const j = await open<number>(dir, { log });
    t.same(Object.fromEntries(j.state), { a: 5, b: 1 });
    t.ok(logged.some((l) => String(l.msg).includes('predates the snapshot')));
    await j.close();
  });

  t.test('next to a newer journal: corruption', async (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'leases.snapshot'), s2);
    writeFileSync(join(dir, 'leases.journal'), journal(3, []));
    await t.rejects(open(dir), { code: 'E_JOURNAL_CORRUPT', message: /generation 3 but .* is generation 2/ });
  });

  t.test('a base journal that lost records the snapshot holds (power cut under fsync never): the snapshot stands', async (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'leases.snapshot'), snap(2, { gen: 1, seq: 5 }, [['a', 5]]));
    writeFileSync(join(dir, 'leases.journal'), journal(1, [{ k: 'a', v: 1 }]));
    const j = await open<number>(dir);
    t.same(Object.fromEntries(j.state), { a: 5 });
    await j.put('b', 1);
    await j.close();
    const again = await open<number>(dir);
    t.same(Object.fromEntries(again.state), { a: 5, b: 1 }, 'appends after it are not mistaken for records the snapshot holds');
    await again.close();
  });

  t.test('headers that do not add up are refused', async (t) => {
    for (const [why, text] of [
      ['version 2 without base', snap(2, undefined, [], 2)],
      ['version 1 with a base', snap(2, { gen: 1, seq: 0 }, [], 1)],
      ['a base that is not older', snap(2, { gen: 2, seq: 0 }, [])],
      ['a base without seq', snap(2, { gen: 1 }, [])],
    ] as const) {
      const dir = tmp(t);
      writeFileSync(join(dir, 'leases.snapshot'), text);
      writeFileSync(join(dir, 'leases.journal'), journal(2, []));
      await t.rejects(open(dir), { code: 'E_JOURNAL_CORRUPT', message: /unsupported snapshot header/ }, why);
    }
  });
});

t.test('failures', async (t) => {
  t.test('snapshot write fails (full disk): the old journal carries on, the next compaction works', async (t) => {
    const s = steppedIo();
    const { dir, j, m } = await seeded(t, s.io);
    s.fail('append leases.snapshot.tmp');
    await t.rejects(j.compact(), { code: 'ENOSPC' });
    t.notOk(existsSync(join(dir, 'leases.snapshot.tmp')), 'no large useless file left on a full disk');
    t.equal(j.stats().generation, 1);
    t.equal(j.stats().compactions, 1, 'the failed one is not counted');
    await m.put('k5');
    await j.compact();
    t.equal(j.stats().generation, 2);
    await j.close();
    t.same(m.check((await recoverCopy(dir)).state), []);
  });

  for (const [label, what] of [
    ['syncDir', 'directory fsync after the snapshot rename'],
    ['open leases.journal.tmp', 'creating the new journal (full disk)'],
    ['datasync leases.journal.tmp', 'syncing the new journal'],
  ] as const) {
    t.test(`${what} fails: not fatal, the old journal carries on next to the new snapshot`, async (t) => {
      const s = steppedIo();
      const { dir, j, m } = await seeded(t, s.io);
      s.fail(label);
      await t.rejects(j.compact(), { code: 'ENOSPC' });
      t.notOk(existsSync(join(dir, 'leases.journal.tmp')));
      t.same(header(join(dir, 'leases.snapshot')), { t: 'snapshot', v: 2, gen: 2, n: KEYS + 2, base: { gen: 1, seq: 4 } });
      t.same(header(join(dir, 'leases.journal')), { t: 'journal', v: 1, gen: 1 }, 'journal 1 still in use');
      await Promise.all([m.put('k1'), m.del('doomed-later'), m.put('after-failure')]);
      t.equal(j.stats().journalRecords, 3, 'counted from the new snapshot');
      const crashed = await recoverCopy(crashCopy(t, dir));
      t.same(m.check(crashed.state), [], 'a crash now recovers everything (new snapshot + journal 1 after its cut)');
      // The next compaction skips generation 2's journal: snapshot 3, based on journal 1.
      const gate = s.pauseAt('open leases.journal.tmp');
      const next = j.compact();
      await gate.reached;
      t.same(header(join(dir, 'leases.snapshot')), { t: 'snapshot', v: 2, gen: 3, n: KEYS + 2, base: { gen: 1, seq: 7 } });
      gate.release();
      await next;
      t.same(header(join(dir, 'leases.journal')), { t: 'journal', v: 1, gen: 3 });
      await j.close();
      t.same(m.check((await recoverCopy(dir)).state), []);
    });
  }

  t.test('the journal rename fails: fatal (the name may already point at the new file)', async (t) => {
    const s = steppedIo();
    const { dir, j, m } = await seeded(t, s.io);
    s.fail('rename leases.journal.tmp');
    await t.rejects(j.compact(), { code: 'E_JOURNAL_IO' });
    await t.rejects(m.put('k1'), { code: 'E_JOURNAL_IO' });
    await j.close();
    t.same(m.check((await recoverCopy(dir)).state), []);
  });

  t.test('the directory fsync after the journal rename fails: fatal', async (t) => {
    const s = steppedIo();
    const { dir, j, m } = await seeded(t, s.io);
    const gate = s.pauseAt('syncDir');
    const compacted = j.compact();
    await gate.reached;
    s.fail('syncDir');
    gate.release();
    await t.rejects(compacted, { code: 'E_JOURNAL_IO' });
    await t.rejects(m.put('k1'), { code: 'E_JOURNAL_IO' });
    await j.close();
    t.same(m.check((await recoverCopy(dir)).state), []);
  });

  t.test('a journal write fails during a compaction: the snapshot is not put in place', async (t) => {
    const s = steppedIo();
    const { dir, j, m } = await seeded(t, s.io);
    const gate = s.pauseAt('datasync leases.snapshot.tmp');
    const compacted = j.compact();
    await gate.reached;
    s.fail('append leases.journal');
    await t.rejects(m.put('k1'), { code: 'E_JOURNAL_IO' });
    gate.release();
    await t.rejects(compacted, { code: 'E_JOURNAL_IO' });
    t.equal(header(join(dir, 'leases.snapshot')).gen, 1, 'old snapshot still in place');
    await j.close();
    t.same(m.check((await recoverCopy(dir)).state), []);
  });
});

t.test('one compaction at a time; compact() during one gets a cut after it; close() waits', async (t) => {
  const s = steppedIo();
  const { dir, j, m } = await seeded(t, s.io);
  const gate = s.pauseAt('rename leases.snapshot.tmp');
  const first = j.compact();
  await gate.reached;
  await m.put('k1');
  const second = j.compact();
  await new Promise((r) => setTimeout(r, 20));
  t.equal(j.stats().compactions, 2, 'the second has not started');
  gate.release();
  await first;
  await second;
  t.equal(j.stats().compactions, 3);
  t.equal(j.stats().generation, 3);
  t.equal(j.stats().journalRecords, 0, 'the second cut came after the put');
  t.equal(lines(join(dir, 'leases.journal')).length, 1);

  const closing = s.pauseAt('datasync leases.snapshot.tmp');
  const third = j.compact();
  await closing.reached;
  let closed = false;
  const done = j.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(closed, 'close() waits for the running compaction');
  closing.release();
  await third;
  await done;
  t.same(header(join(dir, 'leases.journal')), { t: 'journal', v: 1, gen: 4 });
  t.same(m.check((await recoverCopy(dir)).state), []);
});

t.test('automatic compaction runs beside the writer', async (t) => {
  const s = steppedIo();
  const dir = tmp(t);
  const j = await open<number>(dir, { io: s.io, compactEvery: 100 });
  const m = new Model(j);
  const gate = s.pauseAt('rename leases.snapshot.tmp');
  for (let i = 0; i < 100; i++) await m.put(`k${i}`);
  await gate.reached;
  t.ok(j.stats().compacting, 'triggered by the 100th record');
  for (let i = 0; i < 50; i++) await m.put(`k${i}`);
  t.equal(j.stats().journalRecords, 50, 'counted from the cut');
  gate.release();
  await idle(j);
  t.equal(j.stats().compactions, 1);
  t.equal(lines(join(dir, 'leases.journal')).length, 51, 'the records after the cut moved to the new journal');
  await j.close();
  t.same(m.check((await recoverCopy(dir)).state), []);
});

t.test('slices', async (t) => {
  t.test('the snapshot is serialised in slices of at most SLICE_LINES', async (t) => {
    const s = steppedIo();
    const dir = tmp(t);
    const j = await open<number>(dir, { io: s.io, compactEvery: 0 });
    await j.putMany(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i] as const));
    // A timer set now fires while the compaction runs, not after: the event loop gets turns.
    let compacted = false;
    let timerFiredFirst = false;
    setTimeout(() => (timerFiredFirst = !compacted), 0);
    s.appends.length = 0;
    await j.compact();
    compacted = true;
    const snapshot = s.appends.filter((a) => a.label === 'append leases.snapshot.tmp').map((a) => a.lines);
    t.ok(snapshot.length >= 2 + Math.ceil(5000 / SLICE_LINES), `${snapshot.length} appends: header, slices, end`);
    t.ok(snapshot.every((n) => n <= SLICE_LINES), 'each slice within the cap');
    t.equal(snapshot.reduce((a, b) => a + b, 0), 5002);
    t.ok(timerFiredFirst);
    await j.close();
  });

  t.test('a large putMany is written in batches of at most WRITE_BATCH_RECORDS, one fdatasync for all', async (t) => {
    const s = steppedIo();
    const dir = tmp(t);
    let syncs = 0;
    const io: JournalIo = {
      ...s.io,
      async openAppend(path, o) {
        const f = await s.io.openAppend(path, o);
        return { ...f, datasync: () => ((syncs += 1), f.datasync()) };
      },
    };
    const j = await open<number>(dir, { io, compactEvery: 0 });
    s.appends.length = 0;
    const base = syncs;
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 0);
    await j.putMany(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i] as const));
    clearInterval(ticker);
    const writes = s.appends.filter((a) => a.label === 'append leases.journal').map((a) => a.lines);
    t.ok(writes.length >= Math.ceil(5000 / WRITE_BATCH_RECORDS), `${writes.length} writes`);
    t.ok(writes.every((n) => n <= WRITE_BATCH_RECORDS));
    t.equal(syncs - base, 1, 'group commit: one fdatasync covers the batches');
    t.ok(ticks >= 1, 'timers ran between the batches');
    await j.close();
    const again = await open<number>(dir);
    t.equal(again.size, 5000);
    await again.close();
  });
});
