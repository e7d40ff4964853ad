/**
 * kill -9 while leases are being written: every lease the child printed
 * (it prints only after bind() resolved) must be in the store when the test
 * reopens it, and the store must open (a torn tail is dropped). The kill
 * points vary: early, mid-stream, and during compactions (small
 * compactEvery), under each fsync policy. Compactions run in the background
 * while binds go on, so the later runs, on a store grown to thousands of
 * leases, kill it while a snapshot is being serialised or the journal is
 * being swapped as often as not (each step is also covered deterministically
 * in journal-compaction.test.ts).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Mac } from '../../../server/mac.js';
import { LeaseStore } from '../../../server/dhcp/leases.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'journal', 'crash-child.ts');
const TSX = import.meta.resolve('tsx');

interface Run {
  fsync: 'always' | 'batch' | 'never';
  compactEvery: number;
  inflight: number;
  /** Kill after this many acknowledged leases... */
  killAfter: number;
  /** ...plus this many ms, so the kill lands at an arbitrary point of a write. */
  jitterMs: number;
}

const runs: Run[] = [
  { fsync: 'batch', compactEvery: 10_000, inflight: 64, killAfter: 1, jitterMs: 0 },
  { fsync: 'batch', compactEvery: 250, inflight: 64, killAfter: 1500, jitterMs: 3 },
  { fsync: 'always', compactEvery: 100, inflight: 8, killAfter: 300, jitterMs: 1 },
  { fsync: 'never', compactEvery: 400, inflight: 32, killAfter: 2000, jitterMs: 2 },
  { fsync: 'batch', compactEvery: 50, inflight: 256, killAfter: 800, jitterMs: 0 },
  { fsync: 'batch', compactEvery: 1000, inflight: 128, killAfter: 6000, jitterMs: 7 },
  { fsync: 'never', compactEvery: 1000, inflight: 64, killAfter: 5000, jitterMs: 3 },
  { fsync: 'batch', compactEvery: 500, inflight: 256, killAfter: 4000, jitterMs: 11 },
];

/** Runs the child until `killAfter` acks (+ jitter), SIGKILLs it, returns the acknowledged mac -> ip. */
function runChild(t: { teardown(fn: () => void): void }, dir: string, run: Run): Promise<{ acked: Map<string, string>; start: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`--import=${TSX}`, CHILD, dir, run.fsync, String(run.compactEvery), String(run.inflight)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const acked = new Map<string, string>();
    let start = -1;
    let buffered = '';
    let stderr = '';
    let killing = false;
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not reach ${run.killAfter} acks in time; stderr: ${stderr}`));
    }, 30_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [a, b] = line.split(' ');
        if (a === 'ready') start = Number(b);
        else if (a !== undefined && b !== undefined) acked.set(a, b);
      }
      if (!killing && acked.size >= run.killAfter) {
        killing = true;
        setTimeout(() => child.kill('SIGKILL'), run.jitterMs);
      }
    });
    // 'close', not 'exit': lines the child wrote before dying may still be in the pipe at 'exit'.
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (code ${code}); stderr: ${stderr}`));
      else resolve({ acked, start });
    });
  });
}

t.test('every acknowledged lease survives kill -9', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // All runs share one store: each later child starts from what the last crash left behind.
  const everAcked = new Map<string, string>();
  for (const [i, run] of runs.entries()) {
    const { acked, start } = await runChild(t, dir, run);
    for (const [mac, ip] of acked) everAcked.set(mac, ip);
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const store = await LeaseStore.open(dir, { log });
    let missing = 0;
    for (const [mac, ip] of everAcked) {
      const l = store.get(mac as Mac);
      if (l?.ip !== ip || l.state !== 'bound') {
        missing += 1;
        if (missing <= 5) t.fail(`run ${i}: ${mac} acknowledged with ${ip}, store has ${JSON.stringify(l)}`);
      }
    }
    const torn = lines.find((l) => String(l.msg).startsWith('dropping torn tail'));
    const stale = lines.find((l) => String(l.msg).includes('predates the snapshot'));
    const based = lines.find((l) => String(l.msg).startsWith('interrupted compaction finished'));
    t.equal(missing, 0, `run ${i} (${run.fsync}, compactEvery ${run.compactEvery}): ${acked.size} acked this run, all ${everAcked.size} present` +
      `${torn ? `; torn tail of ${String(torn.droppedBytes)} bytes dropped` : ''}${stale ? '; crash fell between compaction renames' : ''}` +
      `${based ? `; crash fell after a snapshot rename, ${String(based.journalRecords)} records carried into the new journal` : ''}`);
    t.ok(start >= 0, 'child reported ready');
    await store.close();
  }
  t.comment(`store after ${runs.length} crashes: ${readFileSync(join(dir, 'leases.journal')).length} journal bytes`);
});
