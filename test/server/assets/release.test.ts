import t from 'tap';
import { compareVersions, isVersion, parsePin, parseVersionTxt, pinMatches, releaseBase, releaseUrl, sha512FromDigests, DEFAULT_BASE_URL } from '../../../server/assets/release.js';
import { AssetError } from '../../../server/assets/errors.js';

t.test('release URLs: template substitution, one trailing slash', async (t) => {
  t.equal(releaseBase(DEFAULT_BASE_URL, 'stable', 'amd64'), 'https://stable.release.flatcar-linux.net/amd64-usr/');
  t.equal(releaseBase('http://127.0.0.1:8/{channel}/{arch}-usr', 'lts', 'arm64'), 'http://127.0.0.1:8/lts/arm64-usr/');
  t.equal(releaseBase('http://mirror/flatcar/', 'beta', 'amd64'), 'http://mirror/flatcar/', 'a plain URL is used as is');
  t.equal(releaseUrl('https://x/amd64-usr/', 'current', 'version.txt'), 'https://x/amd64-usr/current/version.txt');
});

t.test('version.txt: FLATCAR_VERSION, quoted or not; anything else refused', async (t) => {
  const real = 'FLATCAR_BUILD=3975\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=0\nFLATCAR_VERSION=3975.2.0\nFLATCAR_VERSION_ID=3975.2.0\nFLATCAR_BUILD_ID="2024-08-01-0000"\n';
  t.equal(parseVersionTxt(real), '3975.2.0');
  t.equal(parseVersionTxt('FLATCAR_VERSION="4081.2.1"\r\n'), '4081.2.1');
  for (const bad of ['FLATCAR_VERSION=../../etc', 'FLATCAR_VERSION=3975.2', 'FLATCAR_VERSION=3975.2.0+dev', 'FLATCAR_VERSION=', '']) {
    t.throws(() => parseVersionTxt(bad), AssetError, JSON.stringify(bad));
  }
  t.throws(() => parseVersionTxt('COREOS_VERSION=1.2.3'), /no FLATCAR_VERSION= line/);
});

t.test('versions sort numerically', async (t) => {
  t.same(['3975.2.1', '4012.0.0', '3975.10.0', '999.9.9'].sort(compareVersions), ['999.9.9', '3975.2.1', '3975.10.0', '4012.0.0']);
  t.ok(isVersion('3975.2.0'));
  t.notOk(isVersion('current'));
});

t.test('DIGESTS: the SHA512 block, for this file only', async (t) => {
  const sha = (c: string) => c.repeat(128);
  const text = [
    '# MD5 HASH',
    `${'a'.repeat(32)}  flatcar_production_pxe.vmlinuz`,
    '# SHA1 HASH',
    `${'b'.repeat(40)}  flatcar_production_pxe.vmlinuz`,
    '# SHA512 HASH',
    `${sha('C')}  flatcar_production_pxe.vmlinuz`,
    `${sha('d')} *other.bin`,
    '',
  ].join('\n');
  t.equal(sha512FromDigests(text, 'flatcar_production_pxe.vmlinuz'), sha('c'), 'lower-cased');
  t.equal(sha512FromDigests(text, 'other.bin'), sha('d'), 'binary-mode star accepted');
  t.equal(sha512FromDigests(text, 'missing'), null);
  t.equal(sha512FromDigests(`# MD5 HASH\n${sha('e')}  x\n`, 'x'), null, 'a 128-digit line outside the SHA512 block does not count');
});

t.test('pins: fingerprints and key ids, pasted any way', async (t) => {
  const fpr = 'F88CFEDEFF29A5B4D9523864E25D9AED0593B34A';
  t.same(parsePin('f88c fede ff29 a5b4 d952  3864 e25d 9aed 0593 b34a'), { hex: fpr, kind: 'fingerprint' });
  t.same(parsePin('0xE25D9AED0593B34A'), { hex: 'E25D9AED0593B34A', kind: 'keyid' });
  t.throws(() => parsePin('0593B34A'), /16-digit key id; got 8 digits/, 'short ids are too easy to collide');
  t.throws(() => parsePin('xyz'), /not hexadecimal/);
  t.ok(pinMatches(parsePin(fpr), fpr.toLowerCase()));
  t.ok(pinMatches(parsePin('E25D9AED0593B34A'), fpr), 'v4: key id = low 64 bits');
  t.notOk(pinMatches(parsePin('F88CFEDEFF29A5B4'), fpr), 'not the high bits for v4');
  const v6 = 'AB'.repeat(32);
  t.ok(pinMatches(parsePin('ABABABABABABABAB'), v6), 'v6: key id = high 64 bits');
  t.notOk(pinMatches(parsePin(fpr), 'F88CFEDEFF29A5B4D9523864E25D9AED0593B34B'));
});
