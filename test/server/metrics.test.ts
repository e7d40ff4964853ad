import t from 'tap';
import { Metrics } from '../../server/metrics.js';

t.test('label sets name one series whatever their key order; values are escaped', async (t) => {
  const m = new Metrics();
  const c = m.counter('x_total', 'x');
  c.inc({ route: 'ipxe', status: '200' });
  c.inc({ status: '200', route: 'ipxe' }, 2);
  c.inc({ route: 'a"b\\c\nd', status: '500' });
  t.equal(c.get({ route: 'ipxe', status: '200' }), 3);
  t.equal(c.get({ status: '200', route: 'ipxe' }), 3);
  const text = m.render();
  t.match(text, /^x_total\{route="ipxe",status="200"\} 3$/m);
  t.match(text, /^x_total\{route="a\\"b\\\\c\\nd",status="500"\} 1$/m);
});

t.test('a label value that never repeats does not grow the key cache without bound', async (t) => {
  const m = new Metrics();
  const g = m.gauge('g', 'g');
  for (let i = 0; i < 10_000; i++) g.set(i, { id: String(i) });
  t.equal(g.get({ id: '9999' }), 9999, 'still correct past the cache bound');
});
