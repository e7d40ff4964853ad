/**
 * `swarmboot assets ...` in-process (server/cli/assets.ts), against the fake
 * release server: exit codes, what is printed, progress on and off a TTY.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { assetsCommand, assetsHelp } from '../../../server/cli/assets.js';
import { UsageError } from '../../../server/cli/io.js';
import { main, registerCommand } from '../../../server/cli/index.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL } from '../../../server/boot/layout.js';
import { generateTestKey, startReleaseServer, plantRelease } from '../../helpers/release-server.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(args: string[], isTTY = false): Promise<Run> {
  let out = '';
  let err = '';
  const code = await assetsCommand(args, { out: (s) => void (out += s), err: (s) => void (err += s), isTTY } as Parameters<typeof assetsCommand>[1]);
  return { code, out, err };
}

t.test('fetch: plain lines off a TTY, a \\r bar on one; rerun says up to date; failures exit 1 and name the code', async (t) => {
  const srv = await startReleaseServer(t);
  const key = await generateTestKey();
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-cli-assets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'key.asc');
  writeFileSync(keyFile, key.armored);
  const payload = { [FLATCAR_KERNEL]: randomBytes(100_000), [FLATCAR_INITRD]: randomBytes(300_000) };
  await srv.publish({ channel: 'stable', arch: 'amd64', version: '3975.2.0', files: payload, key, current: true });
  const assets = join(dir, 'assets');
  const common = ['--assets', assets, '--base-url', srv.baseUrl, '--signing-key', keyFile, '--fingerprint', key.fingerprint];

  const first = await run(['fetch', ...common]);
  t.equal(first.code, 0, first.err);
  t.equal(first.out, 'flatcar stable/3975.2.0/amd64: fetched and verified, 400000 payload bytes transferred\n');
  t.match(first.err, /stable\/amd64: version 3975.2.0 \(current, from http:\/\/127\.0\.0\.1:\d+\/stable\/amd64-usr\/current\/version.txt\)/);
  t.match(first.err, new RegExp(`signing key ${key.fingerprint} from ${keyFile.replaceAll('/', '\\/')}`));
  t.match(first.err, /flatcar_production_pxe_image.cpio.gz {2}100% {2}293\.0 KiB \/ 293\.0 KiB {2}\S+ \S*B\/s {2}ETA \S+\n/);
  t.match(first.err, /flatcar_production_pxe.vmlinuz: good signature \(key [0-9A-F]{16}\) and SHA-512/);
  t.match(first.err, /flatcar\/stable\/current\/amd64 -> 3975.2.0\n/);
  t.notMatch(first.err, /\r/, 'no redraws when not a terminal');

  const again = await run(['fetch', ...common]);
  t.equal(again.out, 'flatcar stable/3975.2.0/amd64: up to date, 0 payload bytes transferred\n');
  t.match(again.err, /already verified: .*; nothing to download/);

  await srv.publish({ channel: 'stable', arch: 'amd64', version: '4081.2.0', files: payload, key, current: true });
  const bar = await run(['fetch', ...common, '--version', '4081.2.0'], true);
  t.equal(bar.code, 0);
  t.match(bar.err, /\r\x1b\[2Kflatcar_production_pxe.vmlinuz {2}\[#+\.*\]/, 'bar redrawn in place');

  const keyid = await run(['fetch', ...common.slice(0, -1), key.keyId, '--version', '4081.2.0', '--channel', 'stable']);
  t.equal(keyid.code, 0);

  srv.remove('/stable/amd64-usr/4081.2.0/flatcar_production_pxe.vmlinuz.sig');
  rmSync(join(assets, 'flatcar/stable/4081.2.0'), { recursive: true });
  const failed = await run(['fetch', ...common, '--version', '4081.2.0']);
  t.equal(failed.code, 1);
  t.match(failed.err, /swarmboot assets fetch: E_ASSET_SIGNATURE_MISSING: .*\.sig is missing/);
  t.match(failed.err, /installed assets are unchanged\n$/);

  const keyOnly = await run(['fetch', ...common.slice(0, -1), 'E25D9AED0593B34A']);
  t.equal(keyOnly.code, 1);
  t.match(keyOnly.err, /E_ASSET_KEY: .*does not match the pinned keyid E25D9AED0593B34A/);
});

t.test('usage errors are thrown for the dispatcher to print (exit 2)', async (t) => {
  const err = await run(['fetch', '--channel', 'nightly']).catch((e: unknown) => e);
  t.type(err, UsageError);
  t.match(err, { message: /--channel must be one of stable, beta, alpha, lts/ });
  await t.rejects(run(['fetch', '--arch', 'riscv']), /--arch must be one of amd64, arm64/);
  await t.rejects(run(['prune']), /--keep N is required/);
  await t.rejects(run(['prune', '--keep', '0']), /whole number >= 1/);
  await t.rejects(run(['frobnicate']), /unknown subcommand/);
  await t.rejects(run([]), /fetch, status, prune or binaries/);
  await t.rejects(run(['fetch', '--bogus']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
  t.match(assetsHelp, /swarmboot assets fetch .*--fingerprint FPR/s);
});

t.test('status, prune and binaries', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmboot-cli-assets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const assets = join(dir, 'assets');
  const profiles = join(dir, 'profiles');
  mkdirSync(profiles);
  writeFileSync(join(profiles, 'p.yaml'), 'cluster:\n  name: c\n  flatcar: { channel: stable, version: 2.0.0, arch: amd64 }\nprofiles:\n  w:\n    role: worker\n    machines: [{ mac: "52:54:00:00:00:01" }]\n');
  for (const v of ['1.0.0', '2.0.0', '3.0.0', '4.0.0']) plantRelease(assets, 'stable', v, 'amd64');

  const status = await run(['status', '--assets', assets, '--profiles', profiles, '--json']);
  const parsed = JSON.parse(status.out) as { releases: { version: string; usedBy: string[] }[]; needs: { state: string }[] };
  t.same(parsed.releases.map((r) => [r.version, r.usedBy]), [['1.0.0', []], ['2.0.0', ['w']], ['3.0.0', []], ['4.0.0', []]]);
  t.same(parsed.needs.map((n) => n.state), ['verified']);
  // ipxe.efi etc. are not in this temp assets dir, so it is not ready (exit 1), and says how to fix it.
  const text = await run(['status', '--assets', assets, '--profiles', profiles]);
  t.equal(text.code, 1);
  t.match(text.out, /undionly.kpxe +MISSING \(needed by w\).*\n {6}fix: .*swarmboot assets binaries --assets /);

  const broken = await run(['status', '--assets', assets, '--profiles', join(dir, 'nope')]);
  t.match(broken.out, /not read: no profiles directory/);
  t.equal(broken.code, 1);

  const dry = await run(['prune', '--keep', '1', '--assets', assets, '--profiles', profiles, '--dry-run']);
  t.equal(dry.out, [
    'keep   stable/4.0.0/amd64  (one of the 1 newest)',
    'would remove stable/3.0.0/amd64  (older than the 1 newest)',
    'keep   stable/2.0.0/amd64  (pinned by a profile)',
    'would remove stable/1.0.0/amd64  (older than the 1 newest)',
    '',
  ].join('\n'));
  t.ok(existsSync(join(assets, 'flatcar/stable/1.0.0')), 'dry run removes nothing');
  const pruned = await run(['prune', '--keep', '1', '--assets', assets, '--profiles', profiles]);
  t.match(pruned.out, /removed 2 release\(s\)\n$/);
  t.notOk(existsSync(join(assets, 'flatcar/stable/1.0.0')));
  t.ok(existsSync(join(assets, 'flatcar/stable/2.0.0')));

  const from = join(dir, 'bins');
  mkdirSync(join(from, 'arm64'), { recursive: true });
  for (const n of ['undionly.kpxe', 'ipxe.efi', 'arm64/ipxe.efi']) writeFileSync(join(from, n), n);
  const bins = await run(['binaries', '--assets', assets, '--from', from]);
  t.equal(bins.code, 0, 'required ones present');
  t.match(bins.out, /copied undionly.kpxe\ncopied ipxe.efi\n/);
  t.match(bins.out, /copied arm64\/ipxe.efi\n/);
});

t.test('through the dispatcher (as the lead registers it): usage errors exit 2 with the help', async (t) => {
  registerCommand('assets', assetsCommand, assetsHelp);
  let err = '';
  let out = '';
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s), isTTY: false };
  t.equal(await main(['assets', 'fetch', '--channel', 'nightly'], io), 2);
  t.match(err, /swarmboot assets: --channel must be one of/);
  t.equal(await main(['assets', '--help'], io), 0);
  t.match(out, /swarmboot assets prune --keep N/);
});
