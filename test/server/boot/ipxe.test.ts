import t, { type Test } from 'tap';
import { renderBootScript, renderIpxeScript } from '../../../server/boot/ipxe.js';
import { endpoints } from '../../../server/boot/layout.js';
import { fixtureNames, fixtures, withContext } from '../../helpers/render-fixtures.js';
import { matchGolden } from '../../helpers/golden.js';
import type { Mac } from '../../../server/mac.js';

/** Checks that hold for any iPXE script we emit: shebang, every goto has its label, only ${base}/${netX/...} expand. */
function checkScript(t: Test, script: string, label: string): void {
  const lines = script.split('\n');
  t.equal(lines[0], '#!ipxe', `${label}: iPXE shebang first`);
  t.ok(script.endsWith('\n') && !script.includes('\r'), `${label}: LF line endings, final newline`);
  const labels = new Set(lines.filter((l) => l.startsWith(':')).map((l) => l.slice(1)));
  for (const m of script.matchAll(/goto (\S+)/g)) t.ok(labels.has(m[1] ?? ''), `${label}: label ${m[1]} exists`);
  for (const m of script.matchAll(/\$\{([^}]*)\}/g)) t.match(m[1], /^(base|netX\/mac(:hexhyp)?)$/, `${label}: expands only known settings`);
}

function kernelLine(script: string): string[] {
  const line = script.split('\n').find((l) => l.startsWith('kernel '));
  return (line ?? '').split(' ');
}

for (const name of fixtureNames) {
  t.test(`${name}: golden script`, async (t) => {
    const script = renderIpxeScript(fixtures[name]);
    matchGolden(t, `ipxe/${name}.ipxe`, script);
    checkScript(t, script, name);
  });
}

t.test('every initrd= on the kernel line has a matching initrd --name, and the other way round', async (t) => {
  for (const name of fixtureNames) {
    const script = renderIpxeScript(fixtures[name]);
    const onKernel = kernelLine(script).filter((a) => a.startsWith('initrd=')).map((a) => a.slice('initrd='.length));
    const loaded = [...script.matchAll(/^initrd --name (\S+) /gm)].map((m) => m[1]);
    t.ok(onKernel.length > 0, `${name}: names at least one initrd`);
    t.same(loaded, onKernel, `${name}: same initrds, same order`);
  }
  t.same(kernelLine(renderIpxeScript(fixtures['worker-oem'])).filter((a) => a.startsWith('initrd=')), ['initrd=flatcar_production_pxe_image.cpio.gz', 'initrd=oem.cpio.gz']);
});

t.test('kernel and initrds come from the profile image; oem initrd only for oem delivery', async (t) => {
  const arm = renderIpxeScript(fixtures['arm64-url']);
  t.match(arm, 'kernel ${base}/assets/flatcar/stable/current/arm64/flatcar_production_pxe.vmlinuz ');
  t.match(arm, 'initrd --name flatcar_production_pxe_image.cpio.gz ${base}/assets/flatcar/stable/current/arm64/flatcar_production_pxe_image.cpio.gz ');
  t.notMatch(arm, 'oem.cpio.gz');
  const worker = renderIpxeScript(fixtures['worker-oem']);
  t.match(worker, `initrd --name oem.cpio.gz \${base}${endpoints.oem(fixtures['worker-oem'].machine.mac)} || goto failed`);
  t.match(worker, 'set base http://10.0.0.1:8080\n');
  for (const name of fixtureNames) {
    const commands = renderIpxeScript(fixtures[name]).split('\n').filter((l) => /^(kernel|initrd|boot)\b/.test(l));
    t.ok(commands.every((l) => l.endsWith(' || goto failed')), `${name}: every load and boot step is checked`);
  }
});

t.test('refuses names with line breaks and bad server URLs', async (t) => {
  const ctx = fixtures['manager-url'];
  t.throws(() => renderIpxeScript({ ...ctx, machine: { ...ctx.machine, hostname: 'x\nchain http://evil/' } }), { code: 'E_RENDER' });
  t.throws(() => renderIpxeScript(withContext('worker-oem', { serverUrl: 'http://a b' })), { code: 'E_CONFIG' });
});

t.test('generic boot script chains to the per-MAC script of the booting NIC', async (t) => {
  const script = renderBootScript('http://10.0.0.1:8080');
  matchGolden(t, 'ipxe/boot.ipxe', script);
  checkScript(t, script, 'boot.ipxe');
  const route = endpoints.ipxe('52:54:00:00:00:01' as Mac).replace('52-54-00-00-00-01', '${netX/mac:hexhyp}');
  const chains = script.split('\n').filter((l) => l.startsWith('chain '));
  t.equal(chains.length, 2, 'one try and one retry');
  t.ok(chains.every((l) => l === `chain \${base}${route} || goto ${l === chains[0] ? 'retry' : 'failed'}`));
  t.match(script, /\nexit 1\n$/, 'gives up to the firmware rather than loop');
  t.throws(() => renderBootScript('http://10.0.0.1:8080/'), { code: 'E_CONFIG' });
});
