/**
 * The query reader the boot lane uses instead of express's parser: it must
 * decode as node:querystring does, so both entrances read a MAC alike.
 */
import t from 'tap';
import { parse } from 'node:querystring';
import { queryValues } from '../../../server/http/request.js';

t.test('queryValues decodes like node:querystring', async (t) => {
  const cases = ['/ipxe?mac=52-54-00-12-34-56', '/ipxe?mac=52%3A54%3A00%3A12%3A34%3A56', '/x?a=1&mac=1&mac=2', '/x?mac', '/x?mac=', '/x?ma%63=1', '/x?mac=a+b', '/x?mac=%zz', '/x?&&mac=1&', '/x?mac=1#frag', '/x'];
  for (const url of cases) {
    const q = url.indexOf('?');
    const hash = url.indexOf('#');
    const want = q < 0 ? undefined : parse(url.slice(q + 1, hash < 0 ? undefined : hash))['mac'];
    const got = queryValues(url, 'mac');
    t.same(got, want === undefined ? [] : Array.isArray(want) ? want : [want], url);
  }
});
