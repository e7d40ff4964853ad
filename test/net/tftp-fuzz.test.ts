/**
 * 100k mutated TFTP packets (test/net/fixtures/tftp-fuzz.ts) thrown at the
 * TFTP port of a running `swarmboot serve`, over a bridge between
 * namespaces this test creates. The server stays up, counts what it could
 * not decode, and afterwards a real client (curl) still fetches a boot
 * binary byte-exact.
 *
 * Needs root, iproute2, curl; skips with the reason otherwise.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLab, missingTools, netnsUnavailable } from '../helpers/netns.js';
import { REPO, startServe, writeProfiles } from './fixtures/swarmboot.js';

const COUNT = Number(process.env.SWARMBOOT_FUZZ_COUNT ?? 100_000);
const SEED = 7;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const skip = netnsUnavailable() ?? missingTools('curl');
if (skip !== null) {
  t.comment(`skipping: ${skip}`);
  t.plan(0, skip);
} else {
  t.setTimeout(300_000);
  t.test(`${COUNT} mutated TFTP packets, then a real fetch`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'swarmboot-net-tftpfuzz-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeProfiles(join(dir, 'profiles'), [{ mac: '52:54:00:00:00:01', hostname: 'legacy1', profile: 'legacy' }]);
    const lab = await createLab(t);
    const sw = await lab.switch();
    const srv = await lab.namespace('server');
    await sw.plug(srv, { address: '10.81.0.1/24' });
    const served = await startServe(srv, { ifname: 'eth0', mode: 'proxy', dir });
    const fuzz = await lab.namespace('fuzzer');
    await sw.plug(fuzz, { address: '10.81.0.2/24' });

    const tsx = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
    const r = await fuzz.exec(process.execPath, ['--import', tsx, join(REPO, 'test/net/fixtures/tftp-fuzz.ts'), '10.81.0.1', '69', String(COUNT), String(SEED)], {
      timeoutMs: 240_000,
    });
    t.equal(r.code, 0, `fuzzer ran ${r.stderr.trim()}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { sent?: number };
    t.equal(summary.sent, COUNT, 'every packet sent');

    t.equal(served.proc.child.exitCode, null, 'the server is still running');
    const malformed = await served.metric('swarmboot_tftp_malformed_total');
    t.ok(malformed > 1000, `undecodable packets counted: ${malformed}`);
    t.ok((await served.metric('swarmboot_tftp_refused_total')) > 0, 'bad requests refused with an error, counted');

    const out = join(dir, 'got');
    const get = await fuzz.exec('curl', ['-sS', '-m', '30', '--tftp-blksize', '1468', '-o', out, 'tftp://10.81.0.1/undionly.kpxe'], { timeoutMs: 40_000 });
    t.equal(get.code, 0, `curl fetched after the fuzzing ${get.stderr}`);
    t.equal(sha(readFileSync(out)), sha(readFileSync(join(dir, 'assets', 'undionly.kpxe'))), 'byte-exact');
    t.notMatch(served.proc.output, /"level":50.*"msg":"(uncaught|internal)/i, 'no internal errors logged');
  });
}
