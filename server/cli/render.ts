import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { requireMac } from '../mac.js';
import type { ArtefactKind } from '../boot/service.js';
import { openBootService, profileOptions } from './common.js';
import { UsageError, EXIT, type CliIO } from './io.js';

export const renderHelp = `swarmboot render ignition|ipxe|pxelinux|oem --mac MAC [--profiles DIR] [--state DIR] [--server-url URL] [-o FILE]
  Prints (or writes to FILE) exactly what the server serves that MAC.
  oem is binary (gzip'd cpio): it is only written with -o or to a non-terminal.
`;

const KINDS: readonly ArtefactKind[] = ['ignition', 'ipxe', 'pxelinux', 'oem'];

export function renderCommand(args: string[], io: CliIO & { isTTY?: boolean; outBytes?: (b: Buffer) => void }): number {
  const { values, positionals } = parseArgs({
    args,
    options: { ...profileOptions, mac: { type: 'string' }, output: { type: 'string', short: 'o' } },
    allowPositionals: true,
    strict: true,
  });
  const kind = positionals[0] as ArtefactKind | undefined;
  if (kind === undefined || !KINDS.includes(kind) || positionals.length > 1) {
    throw new UsageError(`render needs one of: ${KINDS.join(', ')}`);
  }
  if (values.mac === undefined) throw new UsageError('render needs --mac MAC');
  const mac = requireMac(values.mac);
  const { boot } = openBootService(values);
  const { body } = boot.render(kind, mac);
  if (values.output !== undefined) {
    writeFileSync(values.output, body);
    return EXIT.ok;
  }
  if (Buffer.isBuffer(body)) {
    if (io.isTTY) throw new UsageError('oem output is binary; use -o FILE or redirect it');
    (io.outBytes ?? ((b: Buffer) => process.stdout.write(b)))(body);
  } else {
    io.out(body.endsWith('\n') ? body : body + '\n');
  }
  return EXIT.ok;
}
