/**
 * The benchmark topology: one namespace for the servers, one for the
 * clients, joined by a single veth pair (no bridge in the path), private
 * addresses only. Built on test/helpers/netns.ts, which also cleans up on
 * exit and on SIGINT/SIGTERM; `close()` does it on the normal path.
 */
import { createLab, netnsUnavailable, missingTools, type Lab, type Netns } from '../../test/helpers/netns.js';

export const NET = {
  /** A /16 so a 60k-client perfdhcp run fits one pool. */
  prefix: 16,
  server: '10.88.0.1',
  client: '10.88.255.250',
  /** perfdhcp pool: 63,488 addresses. */
  bigPool: { start: '10.88.2.0', end: '10.88.249.255' },
  /** Storm pool: the client namespace owns these addresses in advance, so a simulated blade can speak from its leased IP. */
  stormPool: { start: '10.88.1.1', end: '10.88.1.254' },
} as const;

export interface BenchLab {
  lab: Lab;
  srv: Netns;
  cli: Netns;
  /** Interface name inside each namespace. */
  ifname: string;
  close(): Promise<void>;
}

/** Why the benchmarks cannot run here, or null. */
export function benchUnavailable(...tools: string[]): string | null {
  return netnsUnavailable() ?? missingTools('ip', 'curl', ...tools);
}

export async function createBenchLab(): Promise<BenchLab> {
  const teardowns: (() => void | Promise<void>)[] = [];
  const shim = { teardown: (fn: () => void | Promise<void>) => void teardowns.push(fn) };
  const lab = await createLab(shim, { prefix: 'sbb' });
  const srv = await lab.namespace('srv');
  const cli = await lab.namespace('cli');
  await lab.link(srv, cli, { a: { ifname: 'eth0', address: `${NET.server}/${NET.prefix}` }, b: { ifname: 'eth0', address: `${NET.client}/${NET.prefix}` } });
  // Limited broadcast (255.255.255.255) needs a route out of the interface in both directions.
  await srv.ip('route', 'add', 'default', 'dev', 'eth0');
  await cli.ip('route', 'add', 'default', 'dev', 'eth0');
  return {
    lab,
    srv,
    cli,
    ifname: 'eth0',
    close: async () => {
      for (const fn of teardowns.reverse()) await fn();
    },
  };
}

/** Adds every address of start..end (same /24) to the client's interface as /32s, in one `ip -batch`. */
export async function ownAddresses(ns: Netns, ifname: string, start: string, end: string): Promise<void> {
  const a = start.split('.').map(Number);
  const b = end.split('.').map(Number);
  const lines: string[] = [];
  for (let i = a[3] ?? 0; i <= (b[3] ?? 0); i++) lines.push(`addr add ${a[0]}.${a[1]}.${a[2]}.${i}/32 dev ${ifname}`);
  await ns.run('ip', ['-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: 30_000 });
}
