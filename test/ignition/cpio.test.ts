import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { dumpNewc, gunzip, gzipDeterministic, readNewc, writeNewc, S_IFDIR, S_IFLNK, S_IFREG, type CpioEntry } from '../../ignition/cpio.js';
import { DecodeError, SwarmbootError } from '../../server/errors.js';
import { matchGolden } from '../helpers/golden.js';

const hasCpio = spawnSync('cpio', ['--version']).status === 0;
const noCpio = hasCpio ? false : 'GNU cpio not installed (apt-get install cpio)';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-cpio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function cpio(args: string[], input: Buffer, cwd: string): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync('cpio', args, { input, cwd, timeout: 10_000 });
  return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), status: r.status };
}

const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
const file = (name: string, data: string | Buffer, mode = 0o644): CpioEntry => ({
  name,
  mode: S_IFREG | mode,
  data: Buffer.isBuffer(data) ? data : Buffer.from(data),
});

const sample: CpioEntry[] = [
  dir('etc'),
  file('etc/hostname', 'blade-01\n'),
  file('etc/motd', ''),
  { name: 'etc/localtime', mode: S_IFLNK | 0o777, data: Buffer.from('../usr/share/zoneinfo/UTC') },
  dir('opt'),
  file('opt/run.sh', '#!/bin/sh\necho hi\n', 0o755),
];

t.test('header layout of a single file', async (t) => {
  const buf = writeNewc([file('ab', 'xyz')]);
  const header = buf.toString('latin1', 0, 110);
  t.equal(header.slice(0, 6), '070701');
  const fields = header.slice(6).match(/.{8}/g) ?? [];
  t.equal(fields.length, 13);
  // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
  t.same(fields, ['00000001', '000081A4', '00000000', '00000000', '00000001', '00000000', '00000003', '00000000', '00000000', '00000000', '00000000', '00000003', '00000000']);
  // 110 + "ab\0" = 113, padded to 116; data "xyz" padded to 4.
  t.equal(buf.toString('latin1', 110, 116), 'ab\0\0\0\0');
  t.equal(buf.toString('latin1', 116, 120), 'xyz\0');
  t.equal(buf.toString('latin1', 120, 126), '070701');
  t.equal(buf.toString('latin1', 120 + 110, 120 + 110 + 11), 'TRAILER!!!\0');
  t.equal(buf.length % 512, 0, 'padded to 512-byte blocks like GNU cpio and gen_init_cpio');
  t.ok(buf.subarray(120 + 124).every((b) => b === 0), 'padding is zeros');
});

t.test('round trip keeps names, modes, data, order; numbers inodes from 1', async (t) => {
  const records = readNewc(writeNewc(sample, { mtime: 1_700_000_000 }));
  t.same(records.map((r) => r.name), sample.map((e) => e.name));
  t.same(records.map((r) => r.mode), sample.map((e) => e.mode));
  t.same(records.map((r) => r.data.toString()), sample.map((e) => (e.data ?? Buffer.alloc(0)).toString()));
  t.same(records.map((r) => r.ino), [1, 2, 3, 4, 5, 6]);
  t.same(records.map((r) => r.nlink), [2, 1, 1, 1, 2, 1], 'nlink 2 for directories, 1 otherwise');
  t.ok(records.every((r) => r.mtime === 1_700_000_000 && r.uid === 0 && r.gid === 0));
  const owned = readNewc(writeNewc([{ ...file('x', 'y'), uid: 500, gid: 0xffffffff }]));
  t.equal(owned[0]?.uid, 500);
  t.equal(owned[0]?.gid, 0xffffffff);
});

t.test('byte-identical output for identical input, mtime 0 by default', async (t) => {
  const a = writeNewc(sample);
  t.ok(a.equals(writeNewc(sample.map((e) => ({ ...e })))));
  t.ok(readNewc(a).every((r) => r.mtime === 0));
  matchGolden(t, 'cpio/sample.txt', dumpNewc(a));
});

t.test('padding: every header lands on a 4-byte boundary for all name and data sizes', async (t) => {
  // Names of length 1..4 give 110 + namesize (name + NUL) = 0,1,2,3 mod 4; each with data sizes 0..4.
  const entries: CpioEntry[] = [];
  for (let len = 1; len <= 4; len++) {
    for (let size = 0; size <= 4; size++) entries.push(file(String.fromCharCode(0x61 + size).repeat(len), Buffer.alloc(size, 0x41 + size)));
  }
  const residues = new Set(entries.map((e) => (110 + Buffer.byteLength(e.name) + 1) % 4));
  t.same([...residues].sort(), [0, 1, 2, 3], 'names cover every residue of 110+namesize mod 4');
  const buf = writeNewc(entries);
  const records = readNewc(buf);
  t.equal(records.length, entries.length);
  for (const [i, r] of records.entries()) {
    t.equal(r.offset % 4, 0, `${r.name} header aligned`);
    t.ok(r.data.equals(entries[i]?.data ?? Buffer.alloc(0)), `${r.name} data intact`);
  }
});

t.test('GNU cpio lists and extracts what we write, padding edge cases included', { skip: noCpio }, async (t) => {
  const entries: CpioEntry[] = [dir('d')];
  for (const n of ['a', 'bb', 'ccc', 'dddd']) {
    for (let size = 0; size <= 4; size++) entries.push(file(`d/${n}${size}`, Buffer.alloc(size, 0x30 + size)));
  }
  entries.push(...sample);
  const buf = writeNewc(entries);
  const work = tempDir(t);
  const listed = cpio(['-t', '--quiet'], buf, work);
  t.equal(listed.status, 0, listed.stderr);
  t.same(listed.stdout.trim().split('\n'), entries.map((e) => e.name), 'cpio -t lists every entry in order');

  const out = join(work, 'out');
  mkdirSync(out);
  const ex = cpio(['-idm', '--quiet', '--no-absolute-filenames'], buf, out);
  t.equal(ex.status, 0, ex.stderr);
  t.equal(ex.stderr, '', 'no warnings (a misaligned header shows up as "junk" here)');
  for (const e of entries) {
    const path = join(out, e.name);
    const type = e.mode & 0o170000;
    if (type === S_IFREG) {
      t.ok(readFileSync(path).equals(e.data ?? Buffer.alloc(0)), `${e.name} contents`);
      t.equal(statSync(path).mode & 0o7777, e.mode & 0o7777, `${e.name} permissions`);
      t.equal(statSync(path).mtimeMs, 0, `${e.name} mtime`);
    } else if (type === S_IFDIR) {
      t.ok(statSync(path).isDirectory(), `${e.name} is a directory`);
    }
  }
});

t.test('readNewc reads what GNU cpio writes', { skip: noCpio }, async (t) => {
  const work = tempDir(t);
  mkdirSync(join(work, 'usr/share/oem'), { recursive: true });
  writeFileSync(join(work, 'usr/share/oem/config.ign'), '{"ignition":{"version":"3.3.0"}}');
  const list = Buffer.from('usr\nusr/share\nusr/share/oem\nusr/share/oem/config.ign\n');
  const r = spawnSync('cpio', ['-o', '-H', 'newc', '--quiet', '--renumber-inodes', '--owner=0:0'], { input: list, cwd: work, timeout: 10_000 });
  t.equal(r.status, 0, r.stderr.toString());
  const records = readNewc(r.stdout);
  t.same(records.map((x) => x.name), ['usr', 'usr/share', 'usr/share/oem', 'usr/share/oem/config.ign']);
  t.equal(records[3]?.data.toString(), '{"ignition":{"version":"3.3.0"}}');
  t.equal((records[0]?.mode ?? 0) & 0o170000, S_IFDIR);
});

t.test('concatenated archives read as one sequence, as the kernel unpacks them', async (t) => {
  const a = writeNewc([dir('usr')]);
  const b = writeNewc([file('usr/x', 'one')]);
  t.same(readNewc(Buffer.concat([a, b])).map((r) => r.name), ['usr', 'usr/x']);
  // Each gzip'd archive stays independently valid, and gunzip of the concatenation is the concatenation.
  const gz = Buffer.concat([gzipDeterministic(a), gzipDeterministic(b)]);
  t.same(readNewc(gunzipSync(gz)).map((r) => r.name), ['usr', 'usr/x']);
});

t.test('writeNewc refuses bad entries', async (t) => {
  const bad: [string, CpioEntry[]][] = [
    ['empty name', [file('', 'x')]],
    ['absolute', [file('/etc/passwd', 'x')]],
    ['dotdot', [file('a/../b', 'x')]],
    ['bare dotdot', [file('..', 'x')]],
    ['leading dot', [file('./a', 'x')]],
    ['double slash', [file('a//b', 'x')]],
    ['trailing slash', [dir('a/')]],
    ['NUL', [file('a\0b', 'x')]],
    ['trailer name', [file('TRAILER!!!', 'x')]],
    ['duplicate', [file('a', 'x'), file('a', 'y')]],
    ['too long', [file('a'.repeat(4096), 'x')]],
    ['no type bits', [{ name: 'a', mode: 0o644 }]],
    ['device node', [{ name: 'a', mode: 0o020644 }]],
    ['mode overflow', [{ name: 'a', mode: 0o1000000 }]],
    ['fractional mode', [{ name: 'a', mode: 0o100644 + 0.5 }]],
    ['dir with data', [{ ...dir('a'), data: Buffer.from('x') }]],
    ['empty symlink', [{ name: 'a', mode: S_IFLNK | 0o777 }]],
    ['negative uid', [{ ...file('a', 'x'), uid: -1 }]],
    ['huge gid', [{ ...file('a', 'x'), gid: 2 ** 32 }]],
  ];
  for (const [why, entries] of bad) {
    t.throws(() => writeNewc(entries), { code: 'E_CPIO_ENTRY' }, why);
  }
  t.throws(() => writeNewc([], { mtime: -1 }), SwarmbootError, 'negative mtime');
  t.ok(readNewc(writeNewc([])).length === 0, 'an empty archive is just a trailer');
});

t.test('readNewc rejects malformed input with DecodeError', async (t) => {
  const good = writeNewc(sample);
  const trailerAt = good.indexOf('TRAILER!!!') - 110;
  t.throws(() => readNewc(Buffer.alloc(0)), DecodeError, 'empty');
  t.throws(() => readNewc(Buffer.alloc(512)), DecodeError, 'all zeros');
  for (const cut of [50, 110, 113, 200, trailerAt, trailerAt + 115]) {
    t.throws(() => readNewc(good.subarray(0, cut)), DecodeError, `truncated at ${cut}`);
  }
  const badMagic = Buffer.from(good);
  badMagic.write('070707', 0, 'latin1');
  t.throws(() => readNewc(badMagic), { name: 'DecodeError', message: /bad magic/ });
  const badHex = Buffer.from(good);
  badHex.write('0000000G', 6 + 6 * 8, 'latin1');
  t.throws(() => readNewc(badHex), { name: 'DecodeError', message: /filesize/ });
  const noNul = Buffer.from(good);
  noNul[110 + 3] = 0x41; // "etc\0" -> "etcA"
  t.throws(() => readNewc(noNul), { name: 'DecodeError', message: /NUL/ });
  const hugeSize = Buffer.from(good);
  hugeSize.write('FFFFFFFF', 6 + 6 * 8, 'latin1');
  t.throws(() => readNewc(hugeSize), { name: 'DecodeError', message: /runs past the end/ });
  const garbageAfter = Buffer.concat([good, Buffer.from('junk')]);
  t.throws(() => readNewc(garbageAfter), DecodeError, 'non-zero bytes after the trailer that are no archive');
});

t.test('gzipDeterministic: fixed header, stable bytes, round trips', async (t) => {
  const data = writeNewc(sample);
  const gz = gzipDeterministic(data);
  t.equal(gz.subarray(0, 10).toString('hex'), '1f8b0800000000000203', 'magic, deflate, no flags, mtime 0, XFL 2 (level 9), OS 3 (Unix)');
  t.ok(gz.equals(gzipDeterministic(Buffer.from(data))), 'same input, same bytes');
  t.ok(gunzip(gz).equals(data));
  t.throws(() => gunzip(Buffer.from('not gzip')), DecodeError);
});
