import t from 'tap';
import { barProgress, formatBytes, formatDuration, formatProgress, lineProgress } from '../../../server/assets/progress.js';

const MiB = 1024 * 1024;

t.test('sizes and durations', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(450 * MiB), '450.0 MiB');
  t.equal(formatBytes(3 * 1024 * MiB), '3.0 GiB');
  t.equal(formatDuration(7), '0:07');
  t.equal(formatDuration(125), '2:05');
  t.equal(formatDuration(3725), '1:02:05');
  t.equal(formatDuration(Infinity), '--:--');
});

t.test('the bar line: size, percent, rate over this run only, ETA', async (t) => {
  // Resumed at 100 MiB; 50 MiB more in 5 s = 10 MiB/s; 250 MiB left = 25 s.
  t.equal(
    formatProgress({ name: 'initrd', done: 150 * MiB, total: 400 * MiB, start: 100 * MiB, elapsedMs: 5000 }, 10),
    'initrd  [####......]  37%  150.0 MiB / 400.0 MiB  10.0 MiB/s  ETA 0:25',
  );
  t.equal(formatProgress({ name: 'k', done: 0, total: 10 * MiB, start: 0, elapsedMs: 0 }, 4), 'k  [....]   0%  0 B / 10.0 MiB  -- B/s  ETA --:--');
  t.equal(formatProgress({ name: 'k', done: 10 * MiB, total: 10 * MiB, start: 0, elapsedMs: 1000 }, 4), 'k  [####] 100%  10.0 MiB / 10.0 MiB  10.0 MiB/s  ETA 0:00');
  t.equal(formatProgress({ name: 'k', done: 2 * MiB, total: null, start: 0, elapsedMs: 1000 }), 'k  2.0 MiB  2.0 MiB/s', 'unknown total: no bar, no ETA');
  t.equal(formatProgress({ name: 'k', done: MiB, total: 4 * MiB, start: 0, elapsedMs: 1000 }, 0), 'k   25%  1.0 MiB / 4.0 MiB  1.0 MiB/s  ETA 0:03', 'width 0: no bar');
});

t.test('terminal bar redraws in place, throttled; plain lines only at quarters', async (t) => {
  let clock = 0;
  const out: string[] = [];
  const bar = barProgress((s) => out.push(s), () => clock, 100);
  bar.start('f', 0, 100);
  for (let i = 1; i <= 100; i++) {
    clock += 10;
    bar.update(i, 100);
  }
  bar.finish();
  t.ok(out.every((s, i) => (i === out.length - 1 ? s === '\n' : s.startsWith('\r\x1b[2K'))), 'each redraw returns to the line start');
  t.ok(out.length >= 10 && out.length <= 13, `throttled to about one per 100 ms (${out.length})`);

  const lines: string[] = [];
  const plain = lineProgress((s) => lines.push(s), () => clock);
  plain.start('f', 0, 100);
  for (let i = 1; i <= 100; i++) plain.update(i, 100);
  plain.finish();
  t.equal(lines.length, 5, 'start, 25%, 50%, 75%, done');
  t.ok(lines.every((l) => l.endsWith('\n') && !l.includes('\r')));
});
