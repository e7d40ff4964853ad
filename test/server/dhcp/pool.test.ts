import t from 'tap';
import { ConfigError } from '../../../server/errors.js';
import type { Mac } from '../../../server/mac.js';
import type { Lease, LeaseView } from '../../../server/dhcp/leases.js';
import {
  allocate,
  checkRequest,
  compilePools,
  intToIp,
  ipToInt,
  parseCidr,
  poolContains,
  selectPool,
  type Pool,
  type PoolConfig,
} from '../../../server/dhcp/pool.js';

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;
const A = '52:54:00:00:00:0a' as Mac;
const B = '52:54:00:00:00:0b' as Mac;
const C = '52:54:00:00:00:0c' as Mac;
const D = '52:54:00:00:00:0d' as Mac;

/** The lease store's read side over a plain list: the newest record per MAC, one record per IP. */
class FakeLeases implements LeaseView {
  private readonly ips = new Map<string, Lease>();
  private readonly macs = new Map<Mac, Lease>();
  constructor(
    public at = NOW,
    leases: Lease[] = [],
  ) {
    for (const l of leases) this.add(l);
  }
  now(): number {
    return this.at;
  }
  get(mac: Mac): Lease | undefined {
    return this.macs.get(mac);
  }
  byIp(ip: string): Lease | undefined {
    return this.ips.get(ip);
  }
  add(l: Lease): this {
    this.ips.set(l.ip, l);
    if (l.mac !== null) this.macs.set(l.mac, l);
    return this;
  }
}

const lease = (mac: Mac | null, ip: string, state: Lease['state'], expiresAt = NOW + HOUR, updatedAt = NOW - 1000): Lease => ({
  mac,
  ip,
  state,
  expiresAt,
  updatedAt,
});

const LAN: PoolConfig = {
  subnet: '10.0.0.0/24',
  range: { start: '10.0.0.10', end: '10.0.0.20' },
  router: '10.0.0.1',
  dns: ['10.0.0.2', '1.1.1.1'],
  domain: 'blades.lan',
  leaseTime: 3600,
};
const RACK2: PoolConfig = { subnet: '10.1.0.0/16', range: { start: '10.1.0.1', end: '10.1.255.254' }, leaseTime: 600 };

function pools(reservations: [Mac, string][] = [], configs: PoolConfig[] = [LAN, RACK2]): readonly Pool[] {
  return compilePools(configs, { reservations: new Map(reservations), serverAddresses: ['10.0.0.5', '10.1.0.1'] });
}

t.test('address helpers', async (t) => {
  t.equal(ipToInt('10.0.0.1'), 0x0a000001);
  t.equal(ipToInt('255.255.255.255'), 0xffffffff);
  for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '1.2.3.4 ', 'a.b.c.d', '']) t.equal(ipToInt(bad), null, bad);
  t.equal(intToIp(0xc0a8010a), '192.168.1.10');
  t.same(parseCidr('10.0.0.0/8'), { network: 0x0a000000, prefix: 8 });
  t.same(parseCidr('0.0.0.0/0'), { network: 0, prefix: 0 });
  t.equal(parseCidr('10.0.0.1/24'), null, 'host bits set');
  t.equal(parseCidr('10.0.0.0/33'), null);
  t.equal(parseCidr('10.0.0.0'), null);
  const [lan] = pools();
  t.ok(poolContains(lan!, '10.0.0.255'));
  t.notOk(poolContains(lan!, '10.0.1.0'));
  t.notOk(poolContains(lan!, 'nonsense'));
});

t.test('compilePools', async (t) => {
  const [lan, rack2] = pools([[A, '10.0.0.50'], [B, '10.1.2.3'], [C, '192.168.9.9']]);
  t.equal(lan!.subnet, '10.0.0.0/24');
  t.equal(lan!.netmask, '255.255.255.0');
  t.equal(intToIp(lan!.broadcast), '10.0.0.255');
  t.equal(lan!.leaseTime, 3600);
  t.same(lan!.dns, ['10.0.0.2', '1.1.1.1']);
  t.equal(lan!.domain, 'blades.lan');
  t.same(
    [...lan!.excluded].map(([n, why]) => `${intToIp(n)} ${why}`),
    [
      '10.0.0.0 the network address',
      '10.0.0.255 the broadcast address',
      "10.0.0.5 the server's own address 10.0.0.5",
      '10.0.0.1 the router 10.0.0.1',
      '10.0.0.2 the DNS server 10.0.0.2',
    ],
  );
  t.same([...lan!.reservations.keys()], [A], 'only reservations inside the subnet');
  t.same([...rack2!.reservations.keys()], [B]);
  t.equal(rack2!.netmask, '255.255.0.0');
  t.ok(Object.isFrozen(lan));

  const bad = (configs: PoolConfig[], reservations: [Mac, string][] = [], servers: string[] = []): string[] => {
    try {
      compilePools(configs, { reservations: new Map(reservations), serverAddresses: servers });
    } catch (err) {
      t.ok(err instanceof ConfigError);
      return (err as ConfigError).problems.map((p) => `${p.pointer}: ${p.message}`);
    }
    t.fail('expected a ConfigError');
    return [];
  };
  t.same(bad([{ ...LAN, subnet: '10.0.0.1/24' }]), ['/dhcp/pools/0/subnet: "10.0.0.1/24" is not a network in CIDR form (like 10.0.0.0/24, host bits zero)']);
  t.same(bad([{ ...LAN, subnet: '10.0.0.0/31' }]), ['/dhcp/pools/0/subnet: 10.0.0.0/31 leaves no addresses to hand out (prefix at most /30)']);
  t.same(bad([{ ...LAN, range: { start: '10.0.1.1', end: '10.0.0.2x' } }]), [
    '/dhcp/pools/0/range/start: "10.0.1.1" is not an address in 10.0.0.0/24',
    '/dhcp/pools/0/range/end: "10.0.0.2x" is not an address in 10.0.0.0/24',
  ]);
  t.same(bad([{ ...LAN, range: { start: '10.0.0.20', end: '10.0.0.10' } }]), ['/dhcp/pools/0/range: range start 10.0.0.20 is after its end 10.0.0.10']);
  t.same(bad([{ ...LAN, leaseTime: 0 }]), ['/dhcp/pools/0/leaseTime: lease time must be a positive whole number of seconds']);
  t.same(bad([{ ...LAN, router: '10.0.1.1' }]), ['/dhcp/pools/0/router: router "10.0.1.1" is not a host address in 10.0.0.0/24']);
  t.same(bad([{ ...LAN, dns: ['x'] }]), ['/dhcp/pools/0/dns/0: DNS server "x" is not an IPv4 address']);
  t.same(bad([LAN, { ...RACK2, subnet: '10.0.0.0/16', range: { start: '10.0.1.1', end: '10.0.1.9' } }]), [
    '/dhcp/pools/1/subnet: 10.0.0.0/16 overlaps 10.0.0.0/24 (pool 0); a request must map to one pool',
  ]);
  t.same(bad([LAN], [[A, '10.0.0.1']]), ['/dhcp/pools/0: reservation for 52:54:00:00:00:0a: 10.0.0.1 is the router 10.0.0.1']);
  t.same(bad([LAN], [[A, '10.0.0.30'], [B, '10.0.0.30']]), ['/dhcp/pools/0: 10.0.0.30 is reserved for both 52:54:00:00:00:0a and 52:54:00:00:00:0b']);
  t.same(bad([LAN], [[A, 'ten']]), ['/dhcp/pools: reservation for 52:54:00:00:00:0a: "ten" is not an IPv4 address']);
  t.same(bad([LAN], [], ['10.0.0.300']), ['/dhcp/pools: server address "10.0.0.300" is not an IPv4 address']);

  // Problems are located by the caller's locator (YamlDocument.problem fits).
  try {
    compilePools([{ ...LAN, leaseTime: -1 }], { pointer: '/pools', problem: (pointer, message) => ({ file: 'swarmboot.yaml', line: 7, col: 3, pointer, message }) });
    t.fail('expected a ConfigError');
  } catch (err) {
    t.match((err as Error).message, /^swarmboot\.yaml:7:3: lease time .* \(at \/pools\/0\/leaseTime\)$/);
  }
});

t.test('selectPool: relays by giaddr, direct requests by the receiving interface', async (t) => {
  const ps = pools();
  const cases: [string, { giaddr?: string | null; ifaceAddr?: string | null }, string | null][] = [
    ['relayed into rack 2', { giaddr: '10.1.0.254', ifaceAddr: '10.0.0.5' }, '10.1.0.0/16'],
    ['direct on the LAN', { giaddr: '0.0.0.0', ifaceAddr: '10.0.0.5' }, '10.0.0.0/24'],
    ['direct, giaddr absent', { ifaceAddr: '10.1.0.1' }, '10.1.0.0/16'],
    ['giaddr null', { giaddr: null, ifaceAddr: '10.0.0.5' }, '10.0.0.0/24'],
    ['relay from an unknown subnet', { giaddr: '172.16.0.1', ifaceAddr: '10.0.0.5' }, null],
    ['interface outside every pool', { ifaceAddr: '192.168.1.1' }, null],
    ['no address at all', {}, null],
    ['garbage', { ifaceAddr: 'eth0' }, null],
  ];
  for (const [name, at, want] of cases) t.equal(selectPool(ps, at)?.subnet ?? null, want, name);
});

t.test('allocate', async (t) => {
  const [lan] = pools([[A, '10.0.0.50'], [C, '10.0.0.12']]);
  const pool = lan!;
  interface Case {
    name: string;
    mac: Mac;
    leases?: Lease[];
    requested?: string;
    at?: number;
    want: { ip: string; source: string; note?: string } | { ip: null; reason: RegExp };
  }
  const cases: Case[] = [
    { name: 'empty pool: the lowest address', mac: B, want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'reservation, outside the range but in the subnet', mac: A, want: { ip: '10.0.0.50', source: 'reservation' } },
    { name: 'reservation inside the range', mac: C, leases: [lease(C, '10.0.0.15', 'bound')], want: { ip: '10.0.0.12', source: 'reservation' } },
    {
      name: 'reservation held by another client: a dynamic address meanwhile',
      mac: A,
      leases: [lease(B, '10.0.0.50', 'bound')],
      want: { ip: '10.0.0.10', source: 'free', note: 'reserved address unavailable: 10.0.0.50 is leased to 52:54:00:00:00:0b' },
    },
    { name: 'its bound lease', mac: B, leases: [lease(B, '10.0.0.17', 'bound')], requested: '10.0.0.11', want: { ip: '10.0.0.17', source: 'current' } },
    { name: 'its offer', mac: B, leases: [lease(B, '10.0.0.18', 'offered')], want: { ip: '10.0.0.18', source: 'current' } },
    { name: 'its released lease, still free', mac: B, leases: [lease(B, '10.0.0.19', 'released', NOW - HOUR)], want: { ip: '10.0.0.19', source: 'current' } },
    { name: 'its expired lease, still free', mac: B, leases: [lease(B, '10.0.0.19', 'bound', NOW - 1)], want: { ip: '10.0.0.19', source: 'current' } },
    {
      name: 'its previous address went to someone else: the requested one',
      mac: B,
      leases: [lease(B, '10.0.0.19', 'released', NOW - HOUR, NOW - 2 * HOUR), lease(A, '10.0.0.19', 'bound')],
      requested: '10.0.0.16',
      want: { ip: '10.0.0.16', source: 'requested' },
    },
    { name: 'its lease outside the range (config changed)', mac: B, leases: [lease(B, '10.0.0.100', 'bound')], want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'requested, free', mac: B, requested: '10.0.0.14', want: { ip: '10.0.0.14', source: 'requested' } },
    { name: 'requested outside the range', mac: B, requested: '10.0.0.99', want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'requested in another subnet', mac: B, requested: '10.1.0.9', want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'requested, not an address', mac: B, requested: 'x', want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'requested, leased to another', mac: B, leases: [lease(A, '10.0.0.14', 'bound')], requested: '10.0.0.14', want: { ip: '10.0.0.10', source: 'free' } },
    { name: 'requested, reserved for another', mac: B, requested: '10.0.0.12', want: { ip: '10.0.0.10', source: 'free' } },
    {
      name: 'skips held, offered, quarantined and reserved addresses',
      mac: B,
      leases: [lease(A, '10.0.0.10', 'bound'), lease(C, '10.0.0.11', 'offered'), lease(null, '10.0.0.13', 'declined')],
      want: { ip: '10.0.0.14', source: 'free' },
    },
    {
      name: 'its own declined address is not offered back during the quarantine',
      mac: B,
      leases: [lease(B, '10.0.0.10', 'declined')],
      want: { ip: '10.0.0.11', source: 'free' },
    },
    {
      name: 'a quarantine that ended frees the address',
      mac: B,
      leases: [lease(A, '10.0.0.10', 'declined', NOW - 1)],
      requested: '10.0.0.10',
      want: { ip: '10.0.0.10', source: 'requested' },
    },
    {
      name: 'never-used addresses before addresses others had',
      mac: B,
      leases: [lease(A, '10.0.0.10', 'released', NOW - HOUR)],
      want: { ip: '10.0.0.11', source: 'free' },
    },
  ];
  for (const c of cases) {
    const view = new FakeLeases(c.at ?? NOW, c.leases ?? []);
    const got = allocate(pool, view, c.mac, c.requested);
    if (c.want.ip === null) {
      t.equal(got.ip, null, c.name);
      if (got.ip === null) t.match(got.reason, c.want.reason, c.name);
    } else {
      t.same(got, c.want, c.name);
    }
  }

  t.test('server, router, network and broadcast are skipped when the range covers them', async (t) => {
    const [whole] = compilePools([{ subnet: '192.168.7.0/29', range: { start: '192.168.7.0', end: '192.168.7.7' }, router: '192.168.7.1', leaseTime: 60 }], {
      serverAddresses: ['192.168.7.2'],
    });
    const view = new FakeLeases();
    const got: string[] = [];
    for (let i = 0; i < 10; i++) {
      const mac = `52:54:00:00:01:${i.toString(16).padStart(2, '0')}` as Mac;
      const a = allocate(whole!, view, mac);
      if (a.ip === null) {
        t.match(a.reason, /pool 192\.168\.7\.0\/29 is full: all 8 addresses of 192\.168\.7\.0-192\.168\.7\.7/);
        break;
      }
      got.push(a.ip);
      view.add(lease(mac, a.ip, 'bound'));
    }
    t.same(got, ['192.168.7.3', '192.168.7.4', '192.168.7.5', '192.168.7.6']);
  });

  t.test('a full pool: null with a reason; stale addresses are reused oldest first', async (t) => {
    const view = new FakeLeases();
    const macs = Array.from({ length: 11 }, (_, i) => `52:54:00:00:02:${i.toString(16).padStart(2, '0')}` as Mac);
    // 10.0.0.12 is reserved for C, so the range 10..20 has 10 dynamic addresses.
    for (const mac of macs.slice(0, 10)) {
      const a = allocate(pool, view, mac);
      t.not(a.ip, null);
      view.add(lease(mac, a.ip!, 'bound'));
    }
    const full = allocate(pool, view, macs[10]!);
    t.same(full, { ip: null, reason: 'pool 10.0.0.0/24 is full: all 11 addresses of 10.0.0.10-10.0.0.20 are in use, reserved, excluded or quarantined' });
    const withNote = allocate(pool, view.add(lease(B, '10.0.0.50', 'bound')), A);
    t.match(withNote, { ip: null, reason: /are in use.*; reserved address unavailable: 10\.0\.0\.50 is leased to 52:54:00:00:00:0b/ });
    // Two leases expire, the older-updated one is handed out first.
    view.add(lease(macs[3]!, '10.0.0.14', 'bound', NOW - 1, NOW - 5000));
    view.add(lease(macs[7]!, '10.0.0.18', 'released', NOW - 1, NOW - 9000));
    t.same(allocate(pool, view, macs[10]!), { ip: '10.0.0.18', source: 'free' });
  });
});

t.test('checkRequest', async (t) => {
  const [lan] = pools([[A, '10.0.0.50'], [C, '10.0.0.12']]);
  const pool = lan!;
  const base = [lease(B, '10.0.0.15', 'bound'), lease(null, '10.0.0.16', 'declined'), lease(B, '10.0.0.17', 'offered')];
  const cases: [string, Mac, string, Lease[], string | null][] = [
    ['free, in range', B, '10.0.0.11', [], null],
    ['its own lease', B, '10.0.0.15', [], null],
    ['its own offer', B, '10.0.0.17', [], null],
    ['leased to another', D, '10.0.0.15', [], '10.0.0.15 is leased to 52:54:00:00:00:0b'],
    ['offered to another, asked by a MAC with a free reservation', C, '10.0.0.17', [], '52:54:00:00:00:0c has the reservation 10.0.0.12'],
    ['offered to another', D, '10.0.0.17', [], '10.0.0.17 is offered to 52:54:00:00:00:0b'],
    ['quarantined', B, '10.0.0.16', [], `10.0.0.16 was declined and is quarantined until ${new Date(NOW + 1000).toISOString()}`],
    ['outside the range', B, '10.0.0.99', [], '10.0.0.99 is outside the range 10.0.0.10-10.0.0.20'],
    ['another subnet', B, '10.1.0.5', [], '10.1.0.5 is outside 10.0.0.0/24'],
    ['the router', B, '10.0.0.1', [], '10.0.0.1 is the router 10.0.0.1'],
    ['the server', B, '10.0.0.5', [], "10.0.0.5 is the server's own address 10.0.0.5"],
    ['the broadcast address', B, '10.0.0.255', [], '10.0.0.255 is the broadcast address'],
    ['reserved for another', B, '10.0.0.12', [], '10.0.0.12 is reserved for 52:54:00:00:00:0c'],
    ['its reservation, outside the range', A, '10.0.0.50', [], null],
    ['another address while its reservation is free', A, '10.0.0.11', [], '52:54:00:00:00:0a has the reservation 10.0.0.50'],
    ['another address while its reservation is taken', A, '10.0.0.11', [lease(B, '10.0.0.50', 'bound')], null],
    ['not an address', B, '10.0.0', [], '"10.0.0" is not an IPv4 address'],
  ];
  for (const [name, mac, ip, extra, reason] of cases) {
    const view = new FakeLeases(NOW, [...base.map((l) => (l.state === 'declined' ? { ...l, expiresAt: NOW + 1000 } : l)), ...extra]);
    const got = checkRequest(pool, view, mac, ip);
    t.same(got, reason === null ? { ok: true } : { ok: false, reason }, name);
  }
});

t.test('5,000 MACs get 5,000 distinct addresses in a /19', async (t) => {
  const [big] = compilePools([{ subnet: '10.32.0.0/19', range: { start: '10.32.0.10', end: '10.32.31.250' }, router: '10.32.0.1', leaseTime: 3600 }], {
    serverAddresses: ['10.32.0.2'],
  });
  const view = new FakeLeases();
  const seen = new Set<string>();
  const started = performance.now();
  for (let i = 0; i < 5000; i++) {
    const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac;
    const a = allocate(big!, view, mac);
    if (a.ip === null) {
      t.fail(`no address for MAC ${i}: ${a.reason}`);
      return;
    }
    seen.add(a.ip);
    view.add(lease(mac, a.ip, 'bound'));
  }
  t.equal(seen.size, 5000);
  t.ok(seen.has('10.32.0.10') && !seen.has('10.32.0.1') && !seen.has('10.32.0.2'));
  t.comment(`5,000 allocations in ${Math.round(performance.now() - started)} ms`);
  // The 5,001st MAC a DHCP server sees after a restart is still answered fast: same code path.
  const again = allocate(big!, view, '02:00:00:00:00:00' as Mac);
  t.same(again, { ip: '10.32.0.10', source: 'current' });
});
