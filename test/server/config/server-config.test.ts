import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerConfig, resolveInterface, exampleConfig, type InterfaceTable } from '../../../server/config/server-config.js';
import { ConfigError } from '../../../server/errors.js';

const info = (address: string, cidr: string, internal = false) => ({ address, netmask: '', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal, cidr });
const oneNic: InterfaceTable = { lo: [info('127.0.0.1', '127.0.0.1/8', true)], eth1: [info('10.0.0.1', '10.0.0.1/24')] };
const twoNics: InterfaceTable = { ...oneNic, eth0: [info('192.168.1.5', '192.168.1.5/24')] };
const dir = mkdtempSync(join(tmpdir(), 'swarmboot-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};
const problems = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return '';
};

t.test('embedded defaults: proxy DHCP on the only interface, ports 8080/69, dirs under cwd', async (t) => {
  const c = loadServerConfig(undefined, {}, { interfaces: () => oneNic, cwd: '/srv/sb' });
  t.match(c, { interface: 'eth1', address: '10.0.0.1', subnet: '10.0.0.0/24', profilesDir: '/srv/sb/profiles', assetsDir: '/srv/sb/assets', stateDir: '/srv/sb/state' });
  t.match(c.dhcp, { mode: 'proxy', replyDelayMs: 0, leaseSync: 'fsync', leaseSyncIntervalMs: 5, pools: [] });
  t.match(c.http, { port: 8080, secretsToLeasedIpOnly: true });
  t.match(c.tftp, { address: '10.0.0.1', port: 69, blksizeCap: 1468, maxTransfers: 64, timeoutMs: 1000, retries: 5, enabled: true });
  t.ok(Object.isFrozen(c));
});

t.test('refuses to guess between several interfaces', async (t) => {
  t.match(problems(() => loadServerConfig(undefined, {}, { interfaces: () => twoNics })), /several interfaces .* --interface/);
  t.equal(loadServerConfig(undefined, { interface: 'eth0' }, { interfaces: () => twoNics }).address, '192.168.1.5');
  t.match(problems(() => loadServerConfig(undefined, { interface: 'eth9' }, { interfaces: () => twoNics })), /interface "eth9" has no IPv4 address/);
  t.equal(typeof resolveInterface({}, undefined, undefined), 'string');
});

t.test('flags: --dhcp full --pool derives subnet and router from the interface', async (t) => {
  const c = loadServerConfig(undefined, { dhcp: 'full', pool: '10.0.0.100-10.0.0.150', httpPort: 0, tftpPort: 6969 }, { interfaces: () => oneNic });
  t.same(c.dhcp.pools, [{ subnet: '10.0.0.0/24', range: { start: '10.0.0.100', end: '10.0.0.150' }, router: '10.0.0.1', leaseTime: 3600 }]);
  t.equal(c.http.port, 0);
  t.equal(c.tftp.port, 6969);
  t.match(problems(() => loadServerConfig(undefined, { dhcp: 'full' }, { interfaces: () => oneNic })), /full DHCP mode needs an address pool/);
  t.match(problems(() => loadServerConfig(undefined, { dhcp: 'sometimes' }, { interfaces: () => oneNic })), /--dhcp must be full, proxy or off/);
  t.match(problems(() => loadServerConfig(undefined, { pool: '10.0.0.9' }, { interfaces: () => oneNic })), /--pool must be START-END/);
});

t.test('a config file: paths relative to it, pools checked, errors located', async (t) => {
  const f = write('ok.yaml', 'interface: eth1\nprofiles: ../p\ndhcp:\n  mode: full\n  dns: [10.0.0.53]\n  pools:\n    - range: 10.0.0.100-10.0.0.199\n      router: 10.0.0.1\n      lease_time: 2h\n');
  const c = loadServerConfig(f, {}, { interfaces: () => twoNics });
  t.equal(c.profilesDir, join(dir, '..', 'p'));
  t.same(c.dhcp.pools, [{ subnet: '10.0.0.0/24', range: { start: '10.0.0.100', end: '10.0.0.199' }, router: '10.0.0.1', dns: ['10.0.0.53'], leaseTime: 7200 }]);
  const bad = write('bad.yaml', 'interface: eth1\nhttp:\n  prot: 80\ndhcp:\n  mode: full\n  pools:\n    - range: 10.0.1.10-10.0.0.5\n');
  const msg = problems(() => loadServerConfig(bad, {}, { interfaces: () => twoNics }));
  t.match(msg, /bad\.yaml:3:3: unknown key "prot"/);
  const bad2 = write('bad2.yaml', 'interface: eth1\ndhcp:\n  mode: full\n  pools:\n    - range: 10.0.1.10-10.0.0.5\n');
  t.match(problems(() => loadServerConfig(bad2, {}, { interfaces: () => twoNics })), /bad2\.yaml:5:14: 10\.0\.1\.10 is outside the pool's subnet 10\.0\.0\.0\/24/);
  const sync = write('sync.yaml', 'interface: eth1\ndhcp:\n  lease_sync: write\n  lease_sync_interval: 0ms\n');
  t.match(loadServerConfig(sync, {}, { interfaces: () => twoNics }).dhcp, { leaseSync: 'write', leaseSyncIntervalMs: 0 });
  const badSync = write('bad-sync.yaml', 'interface: eth1\ndhcp:\n  lease_sync: sometimes\n');
  t.match(problems(() => loadServerConfig(badSync, {}, { interfaces: () => twoNics })), /bad-sync\.yaml:3:15: .*fsync.*write/);
});

t.test('the shipped example is valid and documents every top-level key', async (t) => {
  const f = write('example.yaml', exampleConfig());
  const c = loadServerConfig(f, {}, { interfaces: () => twoNics });
  t.equal(c.interface, 'eth1');
  for (const key of ['interface', 'address', 'profiles', 'assets', 'state', 'log_level', 'http', 'tftp', 'dhcp', 'secrets_to_leased_ip_only', 'blksize_cap', 'reply_delay', 'lease_sync', 'lease_sync_interval', 'pools']) {
    t.match(exampleConfig(), new RegExp(`\\b${key}:`), key);
  }
});
