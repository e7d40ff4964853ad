import t from 'tap';
import { parseMac, requireMac, macHyphen, macFromBytes } from '../../server/mac.js';
import { BadRequestError } from '../../server/errors.js';

t.test('accepts the common forms and normalises once', async (t) => {
  const want = '52:54:00:ab:cd:ef';
  for (const form of ['52:54:00:ab:cd:ef', '52:54:00:AB:CD:EF', '52-54-00-AB-CD-EF', '5254.00ab.cdef', '525400abcdef', ' 52:54:00:ab:cd:ef ', '01-52-54-00-ab-cd-ef']) {
    t.equal(parseMac(form), want, form);
  }
});

t.test('rejects what is not a MAC', async (t) => {
  for (const bad of ['', 'not-a-mac', '52:54:00:ab:cd', '52:54:00:ab:cd:ef:01', '52:54-00:ab:cd:ef', 'g2:54:00:ab:cd:ef', '5254.00ab.cdef.0000', '52:54:00:ab:cd:e']) {
    t.equal(parseMac(bad), null, JSON.stringify(bad));
  }
  t.throws(() => requireMac('nope'), BadRequestError);
});

t.test('other spellings', async (t) => {
  const mac = requireMac('52:54:00:ab:cd:ef');
  t.equal(macHyphen(mac), '52-54-00-ab-cd-ef');
  t.equal(macFromBytes(Buffer.from([0x52, 0x54, 0, 0xab, 0xcd, 0xef, 0, 0])), mac);
  t.throws(() => macFromBytes(Buffer.from([1, 2])), BadRequestError);
});
