/**
 * Acceptance: what `assets fetch` installs is what `serve` hands out. Fetch
 * from the fake release server into an assets dir, then start the real HTTP
 * app and TFTP server on 127.0.0.1 over that dir and read the kernel and
 * initrd back, byte for byte, through the `current` link (as a profile that
 * follows the channel names them) and through the pinned path.
 */
import t from 'tap';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fetchFlatcar } from '../../../server/assets/fetch.js';
import { createTftpServer } from '../../../server/tftp/index.js';
import { decodePacket, encodePacket } from '../../../server/tftp/packet.js';
import { silentLogger } from '../../../server/log.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL, flatcarKernelPath, flatcarInitrdPath, endpoints } from '../../../server/boot/layout.js';
import { startFixture } from '../../helpers/http-fixture.js';
import { generateTestKey, startReleaseServer } from '../../helpers/release-server.js';

/** A lock-step TFTP client (blksize 1468, as firmware asks for), enough to read one file. */
async function tftpGet(port: number, file: string): Promise<Buffer> {
  const sock = createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const chunks: Buffer[] = [];
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`TFTP ${file}: timed out`)), 10_000);
      let expect = 1;
      let blksize = 512;
      sock.on('message', (raw, rinfo) => {
        const p = decodePacket(raw);
        if (p.op === 'ERROR') {
          clearTimeout(timer);
          reject(new Error(`TFTP ${file}: error ${p.code} ${p.message}`));
        } else if (p.op === 'OACK') {
          blksize = Number(p.options.find((o) => o.name.toLowerCase() === 'blksize')?.value ?? 512);
          sock.send(encodePacket({ op: 'ACK', block: 0 }), rinfo.port, '127.0.0.1');
        } else if (p.op === 'DATA') {
          if (p.block === (expect & 0xffff)) {
            chunks.push(Buffer.from(p.data));
            expect++;
          }
          sock.send(encodePacket({ op: 'ACK', block: p.block }), rinfo.port, '127.0.0.1');
          if (p.data.length < blksize) {
            clearTimeout(timer);
            resolve(Buffer.concat(chunks));
          }
        }
      });
      sock.send(encodePacket({ op: 'RRQ', filename: file, mode: 'octet', options: [{ name: 'blksize', value: '1468' }] }), port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

t.test('fetched release is served over HTTP and TFTP, byte-exact, via current and pinned paths', async (t) => {
  const http = await startFixture(t);
  const srv = await startReleaseServer(t);
  const key = await generateTestKey();
  const keyFile = join(http.dir, 'key.asc');
  writeFileSync(keyFile, key.armored);
  const payload = { [FLATCAR_KERNEL]: randomBytes(200_000), [FLATCAR_INITRD]: randomBytes(700_001) };
  await srv.publish({ channel: 'stable', arch: 'amd64', version: '3975.2.0', files: payload, key, current: true });

  const r = await fetchFlatcar({ assetsDir: http.assetsDir, channel: 'stable', arch: 'amd64', version: 'current', baseUrl: srv.baseUrl, signingKey: keyFile, fingerprint: key.fingerprint });
  t.equal(r.version, '3975.2.0');

  const tftp = await createTftpServer({ bind: { address: '127.0.0.1', port: 0 }, root: http.assetsDir, log: silentLogger() });
  t.teardown(() => tftp.close());
  const port = tftp.address().port;

  for (const version of ['current', '3975.2.0']) {
    const img = { channel: 'stable', version, arch: 'amd64' } as const;
    for (const [path, want] of [
      [flatcarKernelPath(img), payload[FLATCAR_KERNEL]],
      [flatcarInitrdPath(img), payload[FLATCAR_INITRD]],
    ] as const) {
      const viaHttp = await http.request(endpoints.asset(path));
      t.equal(viaHttp.status, 200, `HTTP ${path}`);
      t.ok(want !== undefined && viaHttp.body.equals(want), `HTTP ${path} byte-exact`);
      const viaTftp = await tftpGet(port, path);
      t.ok(want !== undefined && viaTftp.equals(want), `TFTP ${path} byte-exact`);
    }
  }
  // The manifest and any .part stay private: the HTTP route refuses dot-files.
  const hidden = await http.request(endpoints.asset('flatcar/stable/3975.2.0/amd64/.swarmboot-verified.json'));
  t.equal(hidden.status, 404);
});
