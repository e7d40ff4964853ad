import t from 'tap';
import { literalLookup, udpSocket } from '../../server/udp.js';

t.test('literalLookup answers IP literals at once and hands names to dns.lookup', async (t) => {
  let sync: [string, number] | null = null;
  literalLookup('10.0.0.1', 4, (err, address, family) => {
    t.equal(err, null);
    sync = [address, family];
  });
  t.same(sync, ['10.0.0.1', 4], 'IPv4 literal, synchronously');
  literalLookup('::1', 6, (_e, address, family) => {
    sync = [address, family];
  });
  t.same(sync, ['::1', 6], 'IPv6 literal, synchronously');
  const named = await new Promise<[string, number]>((resolve, reject) => literalLookup('localhost', 4, (err, address, family) => (err ? reject(err) : resolve([address, family]))));
  t.equal(named[1], 4, 'a name still resolves (through dns.lookup)');
});

t.test('a udpSocket sends to a literal on loopback', async (t) => {
  const a = udpSocket('udp4');
  const b = udpSocket('udp4');
  t.teardown(() => {
    a.close();
    b.close();
  });
  await new Promise<void>((r) => a.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => b.bind(0, '127.0.0.1', () => r()));
  const got = new Promise<string>((resolve) => b.once('message', (m) => resolve(m.toString())));
  a.send(Buffer.from('hello'), b.address().port, '127.0.0.1');
  t.equal(await got, 'hello');
});
