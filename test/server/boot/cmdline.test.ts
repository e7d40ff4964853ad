import t from 'tap';
import { kernelCommandLine, KERNEL_COMMAND_LINE_MAX, requireServerUrl, serverUrlProblem } from '../../../server/boot/cmdline.js';
import { kernelArgProblem } from '../../../server/boot/kernel-args.js';
import { ConfigError } from '../../../server/errors.js';
import { fixtureNames, fixtures, withContext, withProfile } from '../../helpers/render-fixtures.js';

t.test('url delivery over iPXE: initrd name, first boot, config URL, then cluster and profile args', async (t) => {
  t.same(kernelCommandLine(fixtures['manager-url'], 'ipxe'), [
    'initrd=flatcar_production_pxe_image.cpio.gz',
    'flatcar.first_boot=1',
    'ignition.config.url=http://10.0.0.1:8080/ignition?mac=52-54-00-00-00-01',
    'console=tty0',
    'console=ttyS0,115200n8',
    'flatcar.autologin=ttyS0',
  ]);
});

t.test('oem delivery over iPXE names both initrds and points Ignition at the embedded config', async (t) => {
  t.same(kernelCommandLine(fixtures['worker-oem'], 'ipxe'), [
    'initrd=flatcar_production_pxe_image.cpio.gz',
    'initrd=oem.cpio.gz',
    'flatcar.first_boot=1',
    'ignition.config.url=oem:///config.ign',
    'console=tty0',
    'console=ttyS0,115200n8',
  ]);
});

t.test('pxelinux adds its own initrd= so the list has none', async (t) => {
  t.same(kernelCommandLine(fixtures['pxelinux-oem'], 'pxelinux'), [
    'flatcar.first_boot=1',
    'ignition.config.url=oem:///config.ign',
    'console=tty0',
    'console=ttyS0,115200n8',
    'flatcar.autologin=tty0',
  ]);
  const url = kernelCommandLine(fixtures['manager-url'], 'pxelinux');
  t.notOk(url.some((a) => a.startsWith('initrd=')));
  t.equal(url[0], 'flatcar.first_boot=1');
});

t.test('every argument is one clean token; operator arguments pass kernelArgProblem', async (t) => {
  for (const name of fixtureNames) {
    for (const method of ['ipxe', 'pxelinux'] as const) {
      const args = kernelCommandLine(fixtures[name], method);
      const ctx = fixtures[name];
      const operator = [...ctx.cluster.kernelArgs, ...ctx.profile.kernelArgs];
      t.same(args.slice(args.length - operator.length), operator, `${name}/${method}: operator args last, in order`);
      for (const a of args) {
        t.notMatch(a, /[\s"'`\\#]|\$\{/, `${name}/${method}: ${a}`);
        if (!operator.includes(a)) t.not(kernelArgProblem(a), null, `${a} is reserved for swarmboot, so no profile can repeat it`);
      }
    }
  }
});

t.test('refuses a server URL that would break the boot line', async (t) => {
  for (const bad of ['http://10.0.0.1 :8080', 'http://10.0.0.1:8080/', 'http://a"b', "http://a'b", 'http://a\nb', 'http://a/${x}', 'http://a/#x', 'http://a/x&&y', 'ftp://a', '10.0.0.1:8080', 'http://']) {
    t.not(serverUrlProblem(bad), null, JSON.stringify(bad));
    t.throws(() => kernelCommandLine(withContext('manager-url', { serverUrl: bad }), 'ipxe'), ConfigError, `kernel line refuses ${JSON.stringify(bad)}`);
  }
  t.throws(() => requireServerUrl('http://boot server:8080'), { code: 'E_CONFIG', message: /whitespace.*server_url/s });
  for (const good of ['http://10.0.0.1:8080', 'https://boot.lab.example/swarmboot', 'http://[fd00::1]:8080']) {
    t.equal(serverUrlProblem(good), null, good);
  }
  // oem delivery puts no server URL on the kernel line, so it does not care.
  t.ok(kernelCommandLine(withContext('worker-oem', { serverUrl: 'http://a b' }), 'pxelinux'));
});

t.test('refuses operator arguments that kernelArgProblem rejects, naming where they came from', async (t) => {
  t.throws(() => kernelCommandLine(withProfile('manager-url', { kernelArgs: ['ignition.config.url=http://evil/'] }), 'ipxe'), {
    code: 'E_CONFIG',
    message: /profile manager \(profiles\/profiles\.yaml:10\)/,
  });
  t.throws(() => kernelCommandLine(withProfile('manager-url', { kernelArgs: ['a b'] }), 'ipxe'), ConfigError);
  const ctx = fixtures['manager-url'];
  t.throws(() => kernelCommandLine({ ...ctx, cluster: { ...ctx.cluster, kernelArgs: ['x=${y}'] } }, 'ipxe'), { message: /cluster lab kernel_args/ });
});

t.test('refuses a command line the kernel would truncate', async (t) => {
  const long = Array.from({ length: 2 }, (_, i) => `x${i}=${'a'.repeat(1000)}`);
  t.throws(() => kernelCommandLine(withProfile('manager-url', { kernelArgs: long }), 'ipxe'), { code: 'E_CONFIG', message: new RegExp(`keeps only ${KERNEL_COMMAND_LINE_MAX - 1}`) });
  // Just under the limit still renders.
  const budget = KERNEL_COMMAND_LINE_MAX - 1 - 256;
  const base = kernelCommandLine(fixtures['manager-url'], 'ipxe').join(' ').length;
  const first = `y=${'b'.repeat(800)}`;
  const fits = [...fixtures['manager-url'].profile.kernelArgs, first, `x=${'a'.repeat(budget - base - first.length - 2 - 2)}`];
  t.equal(kernelCommandLine(withProfile('manager-url', { kernelArgs: fits }), 'ipxe').join(' ').length, budget);
  t.throws(() => kernelCommandLine(withProfile('manager-url', { kernelArgs: [...fits, 'z'] }), 'ipxe'), { code: 'E_CONFIG' }, 'a longer line does not');
});
