import t from 'tap';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { dumpNewc, gunzip, readNewc } from '../../ignition/cpio.js';
import { oemEntries, renderOem } from '../../ignition/oem.js';
import { OEM_CONFIG_PATH } from '../../server/boot/layout.js';
import { matchGolden } from '../helpers/golden.js';

const hasCpio = spawnSync('cpio', ['--version']).status === 0;
const noCpio = hasCpio ? false : 'GNU cpio not installed (apt-get install cpio)';

// Stands in for the Ignition renderer's output; odd length on purpose (exercises data padding).
const config = JSON.stringify({
  ignition: { version: '3.3.0' },
  passwd: { users: [{ name: 'core', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza test@lab'] }] },
  storage: { files: [{ path: '/etc/hostname', mode: 420, overwrite: true, contents: { source: 'data:,blade-02' } }] },
});

function walk(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    return [relative(root, path), ...(d.isDirectory() ? walk(root, path) : [])];
  });
}

t.test('GNU cpio unpacks exactly three directories and the config', { skip: noCpio }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-oem-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const archive = gunzip(renderOem(config));

  const list = spawnSync('cpio', ['-t', '--quiet'], { input: archive, timeout: 10_000 });
  t.equal(list.status, 0, list.stderr.toString());
  t.same(list.stdout.toString().trim().split('\n'), ['usr', 'usr/share', 'usr/share/oem', 'usr/share/oem/config.ign'], 'cpio -t order');

  const ex = spawnSync('cpio', ['-idmv', '--no-absolute-filenames'], { input: archive, cwd: dir, timeout: 10_000 });
  t.equal(ex.status, 0, ex.stderr.toString());
  t.same(walk(dir).sort(), ['usr', 'usr/share', 'usr/share/oem', 'usr/share/oem/config.ign']);
  for (const d of ['usr', 'usr/share', 'usr/share/oem']) {
    const st = lstatSync(join(dir, d));
    t.ok(st.isDirectory(), `${d} is a directory`);
    t.equal(st.mode & 0o7777, 0o755, `${d} mode 0755`);
  }
  const st = lstatSync(join(dir, OEM_CONFIG_PATH));
  t.ok(st.isFile());
  t.equal(st.mode & 0o7777, 0o644, 'config mode 0644');
  t.equal(readFileSync(join(dir, OEM_CONFIG_PATH), 'utf8'), config, 'file bytes equal the input JSON');
});

t.test('entries follow OEM_CONFIG_PATH, directories first', async (t) => {
  const entries = oemEntries('{}');
  t.same(entries.map((e) => [e.name, e.mode.toString(8)]), [
    ['usr', '40755'],
    ['usr/share', '40755'],
    ['usr/share/oem', '40755'],
    [OEM_CONFIG_PATH, '100644'],
  ]);
  const records = readNewc(gunzip(renderOem(config)));
  t.same(records.map((r) => r.name), entries.map((e) => e.name));
  t.equal(records[3]?.data.toString('utf8'), config);
});

t.test('identical input gives byte-identical output; different input does not', async (t) => {
  const a = renderOem(config);
  t.ok(a.equals(renderOem(String(config))));
  t.notOk(a.equals(renderOem(config.replace('blade-02', 'blade-03'))));
  t.equal(a.subarray(4, 8).readUInt32LE(0), 0, 'gzip mtime 0');
});

t.test('golden listing', async (t) => {
  matchGolden(t, 'cpio/oem.txt', dumpNewc(gunzip(renderOem(config))));
  matchGolden(t, 'cpio/oem-empty-object.txt', dumpNewc(gunzip(renderOem('{}'))));
});

t.test('non-ASCII content is carried as UTF-8 bytes', async (t) => {
  const text = JSON.stringify({ ignition: { version: '3.3.0' }, note: 'ブレード' });
  const records = readNewc(gunzip(renderOem(text)));
  t.ok(records[3]?.data.equals(Buffer.from(text, 'utf8')));
});

t.test('refuses a config that is not a JSON object', async (t) => {
  t.throws(() => renderOem(''), { code: 'E_OEM_CONFIG' });
  t.throws(() => renderOem('{"ignition":'), { code: 'E_OEM_CONFIG' });
  t.throws(() => renderOem('[]'), { code: 'E_OEM_CONFIG' });
  t.throws(() => renderOem('null'), { code: 'E_OEM_CONFIG' });
});
