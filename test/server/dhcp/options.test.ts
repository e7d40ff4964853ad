/**
 * The hand-written IPv4 parser against the regular expression it replaced
 * (canonical dotted quads only), on edge cases and on random strings.
 */
import t from 'tap';
import { ipAt, parseIpv4 } from '../../../server/dhcp/options.js';

const CANONICAL = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** What the expression-based parser gave: the number, or -1. */
function reference(ip: string): number {
  const m = CANONICAL.exec(ip);
  if (m === null) return -1;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return -1;
    n = n * 256 + octet;
  }
  return n;
}

t.test('parseIpv4: canonical dotted quads only', async (t) => {
  const cases: [string, number][] = [
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['10.0.0.1', 0x0a000001],
    ['192.168.100.200', 0xc0a864c8],
    ['1.2.3.04', -1],
    ['01.2.3.4', -1],
    ['1.2.3.256', -1],
    ['1.2.3', -1],
    ['1.2.3.4.5', -1],
    ['1..3.4', -1],
    ['.1.2.3', -1],
    ['1.2.3.', -1],
    [' 1.2.3.4', -1],
    ['1.2.3.4\n', -1],
    ['1.2.3.4a', -1],
    ['1.2.3.1000', -1],
    ['', -1],
    ['::ffff:1.2.3.4', -1],
  ];
  for (const [ip, want] of cases) {
    t.equal(parseIpv4(ip), want, JSON.stringify(ip));
    t.equal(parseIpv4(ip), reference(ip), `${JSON.stringify(ip)} as before`);
  }
});

t.test('parseIpv4 agrees with the expression on random strings', async (t) => {
  const alphabet = '0123456789.0123456789.x ';
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  let disagreements = 0;
  for (let k = 0; k < 20_000; k++) {
    let s = '';
    const len = rand(17);
    for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
    if (parseIpv4(s) !== reference(s)) disagreements++;
  }
  for (let k = 0; k < 2_000; k++) {
    const ip = [rand(300), rand(300), rand(300), rand(300)].join('.');
    if (parseIpv4(ip) !== reference(ip)) disagreements++;
  }
  t.equal(disagreements, 0);
});

t.test('ipAt: the unspecified address is one shared string, others are built', async (t) => {
  t.equal(ipAt(Buffer.alloc(4), 0), '0.0.0.0');
  t.equal(ipAt(Buffer.from([10, 0, 0, 1]), 0), '10.0.0.1');
  t.equal(ipAt(Buffer.from([9, 0, 0, 0, 1]), 1), '0.0.0.1');
});
