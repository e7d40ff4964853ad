import t from 'tap';
import { renderPxelinuxConfig, renderPxelinuxDefault } from '../../../server/boot/pxelinux.js';
import { kernelCommandLine } from '../../../server/boot/cmdline.js';
import { fixtures, withProfile, type FixtureName } from '../../helpers/render-fixtures.js';
import { matchGolden } from '../../helpers/golden.js';

const amd64: FixtureName[] = ['pxelinux-oem', 'manager-url', 'worker-oem'];

for (const name of amd64) {
  t.test(`${name}: golden config`, async (t) => {
    const cfg = renderPxelinuxConfig(fixtures[name]);
    matchGolden(t, `pxelinux/${name}.cfg`, cfg);
    const lines = cfg.split('\n');
    t.equal(lines.filter((l) => /^\s*label /.test(l)).length, 1);
    t.ok(lines.includes('default flatcar'));
    const append = lines.find((l) => l.startsWith('  append ')) ?? '';
    t.equal(append, `  append ${kernelCommandLine(fixtures[name], 'pxelinux').join(' ')}`);
    t.notMatch(append, /initrd=/, 'pxelinux adds initrd= itself');
  });
}

t.test('initrd line lists the Flatcar image, then the per-MAC oem initrd for oem delivery', async (t) => {
  t.match(renderPxelinuxConfig(fixtures['pxelinux-oem']), '\n  initrd flatcar/stable/3975.2.2/amd64/flatcar_production_pxe_image.cpio.gz,oem/52-54-00-00-00-03.cpio.gz\n');
  t.match(renderPxelinuxConfig(fixtures['manager-url']), '\n  initrd flatcar/stable/3975.2.2/amd64/flatcar_production_pxe_image.cpio.gz\n');
  t.match(renderPxelinuxConfig(fixtures['manager-url']), '\n  kernel flatcar/stable/3975.2.2/amd64/flatcar_production_pxe.vmlinuz\n');
});

t.test('refuses arm64 (pxelinux is a BIOS loader) and control characters in names', async (t) => {
  t.throws(() => renderPxelinuxConfig(fixtures['arm64-url']), { code: 'E_CONFIG', message: /pxelinux boots only amd64/ });
  t.throws(() => renderPxelinuxConfig(withProfile('pxelinux-oem', { name: 'a\nlabel evil' })), { code: 'E_RENDER' });
});

t.test('default config boots nothing from the network', async (t) => {
  const cfg = renderPxelinuxDefault();
  matchGolden(t, 'pxelinux/default.cfg', cfg);
  t.notMatch(cfg, /^\s*(kernel|linux|initrd|append|config)\b/m, 'no kernel, initrd or chained config');
  t.match(cfg, /^\s*localboot 0$/m);
  t.match(cfg, /not known to swarmboot/);
  t.match(cfg, /^default local$/m);
});
