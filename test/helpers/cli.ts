/** Runs a swarmboot command in-process and captures what it prints. */
import { main } from '../../server/cli/index.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
  bytes: Buffer;
}

export async function runCli(args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const chunks: Buffer[] = [];
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s), outBytes: (b: Buffer) => void chunks.push(b), isTTY: false };
  const code = await main(args, io);
  return { code, out, err, bytes: Buffer.concat(chunks) };
}
