import t from 'tap';
import { startFixture, T0 } from '../../helpers/http-fixture.js';
import { matchGolden } from '../../helpers/golden.js';
import { listMachines, machineDetail } from '../../../server/http/machines.js';
import { loadProfileDir } from '../../../server/profiles/load.js';
import { BootService } from '../../../server/boot/service.js';
import { packageFile } from '../../../server/paths.js';
import { requireMac } from '../../../server/mac.js';
import type { MachineObservation } from '../../../server/state/machines.js';

const set = loadProfileDir(packageFile('profiles'));
const boot = new BootService({ profiles: () => set, serverKey: Buffer.alloc(32, 7), serverUrlOverride: 'http://10.0.0.1:8080' });
const machineOf = (mac: Parameters<typeof boot.machine>[0]) => boot.machine(mac, set);

const MGR1 = requireMac('52:54:00:5b:00:01');
const STRANGER = requireMac('52:54:00:ff:00:01');
const observations: MachineObservation[] = [
  {
    mac: MGR1,
    ip: '10.0.0.101',
    lastStep: 'swarm',
    lastDetail: 'joined',
    lastSeen: T0 + 9000,
    trail: [
      { at: T0, step: 'dhcp-discover' },
      { at: T0 + 1000, step: 'dhcp-ack', ip: '10.0.0.101' },
      { at: T0 + 2000, step: 'ipxe-script', ip: '10.0.0.101' },
      { at: T0 + 3000, step: 'kernel', detail: 'flatcar/stable/current/amd64/flatcar_production_pxe.vmlinuz', ip: '10.0.0.101' },
      { at: T0 + 9000, step: 'swarm', detail: 'joined' },
    ],
    swarm: { event: 'joined', role: 'manager', nodeId: 'n1abc', addr: '10.0.0.101', at: T0 + 9000 },
  },
  { mac: STRANGER, lastStep: 'dhcp-discover', lastSeen: T0 + 500, trail: [{ at: T0 + 500, step: 'dhcp-discover' }] },
];

t.test('the list: every listed machine plus every observed one, sorted by MAC (golden)', async (t) => {
  const rows = listMachines(set, observations, machineOf);
  t.equal(rows.length, 8);
  t.same(
    rows.map((r) => r.mac),
    [...rows.map((r) => r.mac)].sort(),
  );
  for (const r of rows) t.same(Object.keys(r).sort(), ['boot', 'hostname', 'ip', 'known', 'lastSeen', 'lastStep', 'mac', 'profile', 'role', 'swarm']);
  t.match(rows.find((r) => r.mac === STRANGER), { known: false, hostname: null, profile: null, role: null, lastStep: 'dhcp-discover' });
  matchGolden(t, 'http/machines.json', JSON.stringify(rows, null, 2) + '\n');
  matchGolden(t, 'http/machine-mgr1.json', JSON.stringify(machineDetail(set, MGR1, observations[0], machineOf), null, 2) + '\n');
});

t.test('an unknown machine served by the unknown_machines policy shows its synthesised profile', async (t) => {
  const withPolicy = { ...set, cluster: { ...set.cluster, unknownMachines: { policy: 'profile' as const, profile: 'worker' } } };
  const b = new BootService({ profiles: () => withPolicy, serverKey: Buffer.alloc(32, 7) });
  const rows = listMachines(withPolicy, observations, (m) => b.machine(m, withPolicy));
  t.match(rows.find((r) => r.mac === STRANGER), { known: false, hostname: 'worker-ff0001', profile: 'worker', role: 'worker', boot: 'ipxe' });
});

t.test('GET /api/machines and /api/machines/:mac', async (t) => {
  const f = await startFixture(t);
  f.machines.record(requireMac('52:54:00:5b:00:11'), 'dhcp-ack', { ip: '10.0.0.111' });
  f.machines.record(STRANGER, 'dhcp-discover');
  const list = await f.request('/api/machines');
  t.equal(list.status, 200);
  t.equal(list.headers['content-type'], 'application/json; charset=utf-8');
  const rows = JSON.parse(list.text) as { mac: string; ip: string | null; lastSeen: string | null; known: boolean }[];
  t.equal(rows.length, 8);
  t.match(rows.find((r) => r.mac === '52:54:00:5b:00:11'), { ip: '10.0.0.111', lastSeen: new Date(T0).toISOString(), known: true });
  t.match(rows.find((r) => r.mac === STRANGER), { known: false });
  t.match(rows.find((r) => r.mac === MGR1), { lastSeen: null, ip: null });

  const one = await f.request('/api/machines/52-54-00-5B-00-11');
  t.equal(one.status, 200);
  t.match(JSON.parse(one.text), { mac: '52:54:00:5b:00:11', hostname: 'worker1', trail: [{ step: 'dhcp-ack', ip: '10.0.0.111', at: new Date(T0).toISOString() }] });
  t.same(JSON.parse((await f.request(`/api/machines/${MGR1}`)).text).trail, [], 'listed, never seen: empty trail');
  const missing = await f.request('/api/machines/52:54:00:99:99:99');
  t.equal(missing.status, 404);
  t.match(missing.text, /^E_NOT_FOUND: machine 52:54:00:99:99:99 is neither listed in the profiles nor observed\n$/);
  const bad = await f.request('/api/machines/nope');
  t.equal(bad.status, 400);
  t.match(bad.text, /^E_BAD_REQUEST: not a MAC address: "nope"\n$/);
});
