import t from 'tap';
import { negotiate } from '../../../server/tftp/options.js';
import type { TftpOption } from '../../../server/tftp/packet.js';
import { matchGolden } from '../../helpers/golden.js';

const limits = { blksizeCap: 1468, windowsizeCap: 64 };
const size = 67108864;

const opts = (...pairs: Array<[string, string]>): TftpOption[] => pairs.map(([name, value]) => ({ name, value }));

// [case, options] -> golden dump of what is negotiated
const table: Array<[string, TftpOption[]]> = [
  ['no options: plain RFC 1350, no OACK', []],
  ['curl default', opts(['tsize', '0'], ['blksize', '512'], ['timeout', '6'])],
  ['atftp blksize+windowsize', opts(['blksize', '1468'], ['windowsize', '16'])],
  ['blksize above the cap is lowered to it', opts(['blksize', '65464'])],
  ['blksize above the RFC maximum is lowered too', opts(['blksize', '99999'])],
  ['blksize 8 (the minimum) is granted', opts(['blksize', '8'])],
  ['blksize 7 is ignored', opts(['blksize', '7'])],
  ['non-numeric values are ignored', opts(['blksize', '1k'], ['tsize', '-1'], ['windowsize', ' 4'])],
  ['option names are case-insensitive and echoed as sent', opts(['BlkSize', '1024'], ['TSIZE', '0'])],
  ['repeated option: first wins', opts(['blksize', '1024'], ['blksize', '512'])],
  ['timeout 0 ignored (and a repeat stays ignored)', opts(['timeout', '0'], ['timeout', '5'])],
  ['timeout 256 ignored', opts(['timeout', '256'])],
  ['timeout 255 accepted', opts(['timeout', '255'])],
  ['windowsize above the cap is lowered', opts(['windowsize', '65535'])],
  ['windowsize 0 ignored', opts(['windowsize', '0'])],
  ['unknown options only: no OACK', opts(['rollover', '0'], ['multicast', ''], ['utimeout', '100000'])],
  ['unknown options are left out of the OACK', opts(['foo', 'bar'], ['tsize', '0'])],
];

t.test('negotiation table', async (t) => {
  const out = table.map(([what, options]) => {
    const n = negotiate(options, size, limits);
    const oack = n.oack === null ? 'none' : n.oack.map((o) => `${o.name}=${o.value}`).join(' ');
    return [
      `# ${what}`,
      `request: ${options.map((o) => `${o.name}=${JSON.stringify(o.value)}`).join(' ') || '-'}`,
      `blksize=${n.blksize} windowsize=${n.windowsize} timeoutMs=${n.timeoutMs ?? '-'} oack: ${oack}`,
      ...n.ignored.map((i) => `ignored: ${i}`),
    ].join('\n');
  });
  matchGolden(t, 'tftp/negotiation.txt', out.join('\n\n') + '\n');
});

t.test('tsize answers the real size', async (t) => {
  t.same(negotiate(opts(['tsize', '0']), 0, limits).oack, [{ name: 'tsize', value: '0' }]);
  t.same(negotiate(opts(['tsize', '0']), 5368709120, limits).oack, [{ name: 'tsize', value: '5368709120' }], 'sizes over 4 GiB');
});

t.test('caps themselves are clamped to the RFC range', async (t) => {
  t.equal(negotiate(opts(['blksize', '65464']), 1, { blksizeCap: 1e9, windowsizeCap: 1 }).blksize, 65464);
  t.equal(negotiate(opts(['blksize', '65464']), 1, { blksizeCap: 1, windowsizeCap: 1 }).blksize, 8);
  t.equal(negotiate(opts(['windowsize', '9']), 1, { blksizeCap: 512, windowsizeCap: 0 }).windowsize, 1);
});
