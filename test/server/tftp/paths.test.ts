import t from 'tap';
import { checkTftpPath, isWithin } from '../../../server/tftp/paths.js';

const NOT_FOUND = 1;
const ACCESS = 2;

// [requested, expected path | [error code, reason fragment]]
const table: Array<[string, string | [number, string]]> = [
  ['pxelinux.0', 'pxelinux.0'],
  ['/pxelinux.0', 'pxelinux.0'],
  ['//pxelinux.0', 'pxelinux.0'],
  ['./pxelinux.0', 'pxelinux.0'],
  ['pxelinux.cfg//01-aa-bb-cc-dd-ee-ff', 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff'],
  ['/flatcar/stable/current/amd64/flatcar_production_pxe.vmlinuz', 'flatcar/stable/current/amd64/flatcar_production_pxe.vmlinuz'],
  ['oem/aa-bb-cc-dd-ee-ff.cpio.gz', 'oem/aa-bb-cc-dd-ee-ff.cpio.gz'],
  ['a/./b', 'a/b'],
  ['name with space', 'name with space'],
  ['...', '...'], // only the exact segment ".." is special
  ['..foo', '..foo'],
  ['', [NOT_FOUND, 'empty']],
  ['/', [NOT_FOUND, 'root directory']],
  ['.', [NOT_FOUND, 'root directory']],
  ['dir/', [NOT_FOUND, 'directory']],
  ['..', [ACCESS, '".."']],
  ['../etc/passwd', [ACCESS, '".."']],
  ['/../etc/passwd', [ACCESS, '".."']],
  ['a/../b', [ACCESS, '".."']], // would stay inside, still refused
  ['a/b/../../..', [ACCESS, '".."']],
  ['/etc/passwd', 'etc/passwd'], // absolute: rooted at the TFTP root, not the host's /
  ['..\\windows\\win.ini', [ACCESS, 'backslash']],
  ['pxelinux.cfg\\default', [ACCESS, 'backslash']],
  ['%2e%2e/etc/passwd', [ACCESS, 'percent']],
  ['%2E%2E%2Fetc', [ACCESS, 'percent']],
  ['file%00.txt', [ACCESS, 'percent']],
  ['file\0.txt', [ACCESS, 'NUL']],
  ['file\n', [ACCESS, 'control']],
  ['file\x7f', [ACCESS, 'control']],
  ['caf\u00e9', [ACCESS, 'non-ASCII']],
  ['\u2024\u2024/etc', [ACCESS, 'non-ASCII']], // one-dot leaders that look like ".."
  ['a'.repeat(256), [ACCESS, 'longer than']],
];

for (const [requested, want] of table) {
  t.test(JSON.stringify(requested.length > 40 ? `${requested.slice(0, 20)}...` : requested), async (t) => {
    const v = checkTftpPath(requested);
    if (typeof want === 'string') {
      t.same(v, { ok: true, path: want });
    } else {
      t.equal(v.ok, false, 'refused');
      if (!v.ok) {
        t.equal(v.code, want[0], 'error code');
        t.match(v.reason, want[1], 'reason');
      }
    }
  });
}

t.test('isWithin', async (t) => {
  t.ok(isWithin('/srv/tftp', '/srv/tftp'));
  t.ok(isWithin('/srv/tftp', '/srv/tftp/a/b'));
  t.ok(isWithin('/srv/tftp/', '/srv/tftp/a'));
  t.notOk(isWithin('/srv/tftp', '/srv/tftp2/a'), 'a sibling with a common prefix is outside');
  t.notOk(isWithin('/srv/tftp', '/srv'));
  t.notOk(isWithin('/srv/tftp', '/etc/passwd'));
});
