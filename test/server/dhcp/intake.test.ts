import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Fifo, Intake, peekMessageType, type Arrival } from '../../../server/dhcp/intake.js';
import { clientPacket, MessageType } from '../../helpers/dhcp-packets.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/dhcp/', import.meta.url));
const from = { address: '0.0.0.0', port: 68 };
const arrival = (type: number, n: number, port = 67): Arrival => ({ buf: clientPacket({ type, mac: '52:54:00:00:00:01', xid: n }), from, port });

t.test('peekMessageType agrees with the decoder and never throws', async (t) => {
  t.equal(peekMessageType(readFileSync(join(FIXTURES, 'udhcpc-bios-discover.bin'))), MessageType.DISCOVER);
  t.equal(peekMessageType(readFileSync(join(FIXTURES, 'dhclient-efi-x64-request.bin'))), MessageType.REQUEST);
  t.equal(peekMessageType(Buffer.alloc(0)), undefined);
  t.equal(peekMessageType(Buffer.alloc(300)), undefined, 'no cookie');
  const good = clientPacket({ type: MessageType.INFORM, mac: '52:54:00:00:00:01' });
  t.equal(peekMessageType(good), MessageType.INFORM);
  t.equal(peekMessageType(good.subarray(0, 242)), undefined, 'cut inside option 53');
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(good);
    for (let k = 0; k < 8; k++) junk[240 + Math.floor(Math.random() * 60)] = Math.floor(Math.random() * 256);
    peekMessageType(junk.subarray(0, 240 + Math.floor(Math.random() * 70)));
  }
  t.pass('random option bytes handled');
});

t.test('Fifo keeps order across its internal compaction', async (t) => {
  const q = new Fifo<number>();
  for (let i = 0; i < 5000; i++) q.push(i);
  const out: number[] = [];
  for (let i = 0; i < 3000; i++) out.push(q.shift()!);
  for (let i = 5000; i < 6000; i++) q.push(i);
  for (let v = q.shift(); v !== undefined; v = q.shift()) out.push(v);
  t.same(out, Array.from({ length: 6000 }, (_, i) => i));
  t.equal(q.length, 0);
});

t.test('exchange-finishing messages first; oldest DISCOVERs dropped when full', async (t) => {
  const intake = new Intake({ maxFresh: 3, maxUrgent: 2 });
  t.equal(intake.push(arrival(MessageType.DISCOVER, 1)), 0);
  t.equal(intake.push(arrival(MessageType.DISCOVER, 2)), 0);
  t.equal(intake.push(arrival(MessageType.REQUEST, 3)), 0);
  t.equal(intake.push(arrival(MessageType.DISCOVER, 4)), 0);
  t.equal(intake.push(arrival(MessageType.DISCOVER, 5)), 1, 'fresh queue full: oldest dropped');
  t.equal(intake.push(arrival(MessageType.DISCOVER, 6, 4011)), 0, 'port 4011 is always urgent');
  t.equal(intake.push(arrival(MessageType.RELEASE, 7)), 1, 'urgent queue full: oldest dropped');
  t.equal(intake.push({ buf: Buffer.from('garbage'), from, port: 67 }), 1, 'unreadable goes with the DISCOVERs');
  const order: number[] = [];
  for (let a = intake.next(); a !== undefined; a = intake.next()) order.push(a.buf.length > 240 ? a.buf.readUInt32BE(4) : -1);
  t.same(order, [6, 7, 4, 5, -1]);
  t.equal(intake.length, 0);
});
