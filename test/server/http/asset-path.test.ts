import t from 'tap';
import { checkAssetPath } from '../../../server/http/asset-path.js';

t.test('accepted paths are normalised root-relative', async (t) => {
  const ok: [string, string][] = [
    ['/flatcar/stable/current/amd64/flatcar_production_pxe.vmlinuz', 'flatcar/stable/current/amd64/flatcar_production_pxe.vmlinuz'],
    ['/ipxe.efi', 'ipxe.efi'],
    ['//a//b', 'a/b'],
    ['/./a/./b', 'a/b'],
    ['/with%20space.txt', 'with space.txt'],
    ['/caf%C3%A9', 'café'],
    ['/a..b/c...', 'a..b/c...'],
  ];
  for (const [raw, want] of ok) t.same(checkAssetPath(raw), { ok: true, path: want }, raw);
});

t.test('refusals, with status and reason', async (t) => {
  const bad: [string, number, RegExp][] = [
    ['/../package.json', 400, /"\.\." segment/],
    ['/a/../b', 400, /"\.\." segment/],
    ['/%2e%2e/package.json', 400, /"\.\." segment/],
    ['/%2E%2E/%2E%2E/etc/passwd', 400, /"\.\." segment/],
    ['/..%2fpackage.json', 400, /encoded slash/],
    ['/a%2Fb', 400, /encoded slash/],
    ['/a%5c..%5cb', 400, /backslash/],
    ['/a\\b', 400, /backslash/],
    ['/a%00.txt', 400, /NUL/],
    ['/a%0d%0aX: y', 400, /control character/],
    ['/%zz', 400, /percent-encoding/],
    ['/%C3', 400, /percent-encoding/],
    ['/' + 'a'.repeat(1100), 400, /longer than/],
    ['/', 404, /assets directory itself/],
    ['', 404, /assets directory itself/],
    ['/flatcar/', 404, /directory/],
    ['/.partial-download', 404, /hidden/],
    ['/flatcar/.git/config', 404, /hidden/],
  ];
  for (const [raw, status, reason] of bad) {
    const v = checkAssetPath(raw);
    t.equal(v.ok, false, raw.slice(0, 40));
    if (!v.ok) {
      t.equal(v.status, status, `${raw.slice(0, 40)} status`);
      t.match(v.reason, reason, `${raw.slice(0, 40)} reason`);
    }
  }
});
