import t from 'tap';
import { BootService } from '../../../server/boot/service.js';
import { loadProfiles } from '../../../server/profiles/load.js';
import { requireMac } from '../../../server/mac.js';
import { NoMatchError } from '../../../server/errors.js';
import type { ProfileSet } from '../../../server/profiles/types.js';

const cluster = (extra = '') => `cluster:\n  name: lab\n  server_url: http://10.0.0.1:8080/\n${extra}`;
const profiles = 'profiles:\n  w:\n    role: worker\n    machines: [{ mac: "52:54:00:00:00:01", hostname: w1 }]\n';
const set = (extra = '') => loadProfiles([{ file: 'c.yaml', text: cluster(extra) }, { file: 'p.yaml', text: profiles }]);
const key = Buffer.alloc(32, 7);

t.test('known, unknown-ignored, unknown-with-default-profile', async (t) => {
  const s1 = set();
  const boot = new BootService({ profiles: () => s1, serverKey: key });
  t.equal(boot.machine(requireMac('52:54:00:00:00:01'))?.hostname, 'w1');
  t.equal(boot.context(requireMac('52:54:00:00:00:99')), null);
  t.throws(() => boot.ipxe(requireMac('52:54:00:00:00:99')), NoMatchError);

  const s2 = set('  unknown_machines: w\n');
  const boot2 = new BootService({ profiles: () => s2, serverKey: key });
  const m = boot2.machine(requireMac('52:54:00:00:00:99'));
  t.match(m, { hostname: 'w-000099', profile: 'w', known: false });
});

t.test('server URL: override > cluster.server_url > fallback; trailing slash dropped', async (t) => {
  const s = set();
  t.equal(new BootService({ profiles: () => s, serverKey: key }).serverUrl(), 'http://10.0.0.1:8080');
  t.equal(new BootService({ profiles: () => s, serverKey: key, serverUrlOverride: 'http://o:1' }).serverUrl(), 'http://o:1');
  const bare = loadProfiles([{ file: 'c.yaml', text: 'cluster: { name: lab }\n' }]);
  t.equal(new BootService({ profiles: () => bare, serverKey: key, serverUrlFallback: 'http://f:2/' }).serverUrl(), 'http://f:2');
  t.throws(() => new BootService({ profiles: () => bare, serverKey: key }).serverUrl(), /no server URL/);
});

t.test('renders are cached per profile set and invalidated by a reload', async (t) => {
  let current: ProfileSet = set();
  const boot = new BootService({ profiles: () => current, serverKey: key });
  const mac = requireMac('52:54:00:00:00:01');
  const a = boot.ignition(mac);
  t.equal(boot.ignition(mac), a, 'same object from cache');
  t.match(a.etag, /^"[A-Za-z0-9_-]{27}"$/);
  current = set('  ssh_authorized_keys: ["ssh-ed25519 AAAA test"]\n');
  const b = boot.ignition(mac);
  t.not(b.etag, a.etag, 'new set, new render');
  t.ok(b.body.includes('ssh-ed25519 AAAA test'));
  const oem = boot.oem(mac);
  t.equal(oem.body[0], 0x1f);
  t.equal(boot.oem(mac), oem);
});

t.test('the Ignition carries this machine secret, and only this one', async (t) => {
  const s = loadProfiles([{ file: 'c.yaml', text: cluster() }, { file: 'p.yaml', text: profiles.replace(']', ', { mac: "52:54:00:00:00:02" }]') }]);
  const boot = new BootService({ profiles: () => s, serverKey: key });
  const c1 = boot.requireContext(requireMac('52:54:00:00:00:01'));
  const c2 = boot.requireContext(requireMac('52:54:00:00:00:02'));
  t.not(c1.swarmSecret, c2.swarmSecret);
  const ign1 = boot.ignition(requireMac('52:54:00:00:00:01')).body;
  t.ok(ign1.includes(c1.swarmSecret));
  t.notOk(ign1.includes(c2.swarmSecret));
});
