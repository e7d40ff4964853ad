/**
 * Golden-file comparison: `matchGolden(t, 'ignition/manager.json', text)`
 * compares with test/golden/ignition/manager.json. Run with
 * UPDATE_GOLDEN=1 to (re)write the files, then review the diff in git.
 */
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden');

/** The part of tap's Test this helper uses (tap types the message as a rest tuple, so keep it required). */
interface Asserter {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  fail(message: string): unknown;
}

export function matchGolden(t: Asserter, name: string, actual: string | Buffer): void {
  const file = join(GOLDEN_DIR, name);
  const text = Buffer.isBuffer(actual) ? actual.toString('utf8') : actual;
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
    if (process.env.UPDATE_GOLDEN !== '1' && process.env.CI) {
      t.fail(`golden file missing: test/golden/${name} (run with UPDATE_GOLDEN=1 and commit it)`);
      return;
    }
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  t.equal(text, readFileSync(file, 'utf8'), `matches golden test/golden/${name}`);
}
