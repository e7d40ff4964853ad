import t from 'tap';
import { decodePacket, encodePacket, dumpPacket, errorPacket, OPCODE, ERROR_CODE, type TftpPacket } from '../../../server/tftp/packet.js';
import { DecodeError } from '../../../server/errors.js';
import { matchGolden } from '../../helpers/golden.js';

// Requests captured on 127.0.0.1 from the Debian 12 clients (first datagram each sent).
const captured: Array<[string, string]> = [
  ['curl 7.88 (default)', '00017078656c696e75782e30006f63746574007473697a65003000626c6b73697a65003531320074696d656f7574003600'],
  ['curl 7.88 --tftp-blksize 1468', '00017078656c696e75782e30006f63746574007473697a65003000626c6b73697a6500313436380074696d656f7574003600'],
  ['atftp 0.8 --option blksize/windowsize/tsize', '00016c646c696e75782e633332006f63746574007473697a65003000626c6b73697a6500313436380077696e646f7773697a6500313600'],
  ['tftp-hpa 5.2 -m binary', '0001756e64696f6e6c792e6b707865006f6374657400'],
];

t.test('captured client requests decode and round-trip', async (t) => {
  const lines: string[] = [];
  for (const [who, hex] of captured) {
    const bytes = Buffer.from(hex, 'hex');
    const p = decodePacket(bytes);
    lines.push(`# ${who}`, dumpPacket(p));
    t.equal(encodePacket(p).toString('hex'), hex, `${who}: encode(decode(x)) === x`);
  }
  matchGolden(t, 'tftp/captured-requests.txt', lines.join('\n') + '\n');
});

t.test('every packet kind round-trips', async (t) => {
  const packets: TftpPacket[] = [
    { op: 'RRQ', filename: 'pxelinux.0', mode: 'octet', options: [] },
    { op: 'RRQ', filename: '/boot/x', mode: 'netascii', options: [{ name: 'BLKSIZE', value: '1468' }] },
    { op: 'WRQ', filename: 'upload.bin', mode: 'octet', options: [{ name: 'tsize', value: '1234' }] },
    { op: 'DATA', block: 1, data: Buffer.from('hello') },
    { op: 'DATA', block: 65535, data: Buffer.alloc(0) },
    { op: 'ACK', block: 0 },
    { op: 'ACK', block: 65535 },
    { op: 'ERROR', code: 2, message: 'Access violation' },
    { op: 'ERROR', code: 0, message: '' },
    { op: 'OACK', options: [{ name: 'blksize', value: '1468' }, { name: 'tsize', value: '67108864' }] },
    { op: 'OACK', options: [] },
  ];
  const lines: string[] = [];
  for (const p of packets) {
    const bytes = encodePacket(p);
    lines.push(`${dumpPacket(p)}\n  ${bytes.toString('hex')}`);
    const back = decodePacket(bytes);
    t.same(back.op === 'DATA' ? { ...back, data: Buffer.from(back.data) } : back, p, dumpPacket(p));
  }
  matchGolden(t, 'tftp/packets.txt', lines.join('\n') + '\n');
});

t.test('decoder details', async (t) => {
  const rrq = decodePacket(Buffer.from('\x00\x01File\x00OcTeT\x00blksize\x001468\x00', 'latin1'));
  t.same(rrq, { op: 'RRQ', filename: 'File', mode: 'octet', options: [{ name: 'blksize', value: '1468' }] }, 'mode is case-insensitive, name kept');
  const half = decodePacket(Buffer.from('\x00\x01f\x00octet\x00blksize\x00', 'latin1'));
  t.same(half.op === 'RRQ' && half.options, [], 'a trailing option without a value is ignored');
  const ack = decodePacket(Buffer.from([0, 4, 1, 2, 0xff]));
  t.same(ack, { op: 'ACK', block: 258 }, 'bytes after an ACK are ignored');
  const err = decodePacket(Buffer.from('\x00\x05\x00\x01no nul', 'latin1'));
  t.same(err, { op: 'ERROR', code: 1, message: 'no nul' }, 'ERROR without a NUL keeps its text');
  const latin = decodePacket(Buffer.from([0, 1, 0xe9, 0, 0x6f, 0x63, 0x74, 0x65, 0x74, 0]));
  t.equal(latin.op === 'RRQ' && latin.filename, '\u00e9', 'non-ASCII bytes survive (the path check refuses them)');
  t.equal(errorPacket(ERROR_CODE.NOT_FOUND).toString('latin1'), '\x00\x05\x00\x01File not found\x00', 'RFC text by default');
  t.same(OPCODE, { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 }, 'opcodes from the tftp package match RFC 1350/2347');
  t.same(ERROR_CODE, { UNDEFINED: 0, NOT_FOUND: 1, ACCESS: 2, ILLEGAL_OP: 4, UNKNOWN_TID: 5, OPTION_REFUSED: 8 }, 'error codes match RFC 1350/2347');
});

t.test('malformed packets throw DecodeError', async (t) => {
  const bad: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from([0])],
    ['unknown opcode 0', Buffer.from([0, 0, 0, 0])],
    ['unknown opcode 9', Buffer.from([0, 9, 0, 1])],
    ['RRQ without NUL after name', Buffer.from('\x00\x01pxelinux.0', 'latin1')],
    ['RRQ without mode', Buffer.from('\x00\x01pxelinux.0\x00', 'latin1')],
    ['RRQ mode without NUL', Buffer.from('\x00\x01pxelinux.0\x00octet', 'latin1')],
    ['RRQ bad mode', Buffer.from('\x00\x01pxelinux.0\x00binary\x00', 'latin1')],
    ['WRQ bad mode', Buffer.from('\x00\x02x\x00\x00', 'latin1')],
    ['short DATA', Buffer.from([0, 3, 0])],
    ['short ACK', Buffer.from([0, 4, 0])],
    ['short ERROR', Buffer.from([0, 5, 0])],
  ];
  for (const [what, bytes] of bad) {
    t.throws(() => decodePacket(bytes), DecodeError, what);
  }
});
