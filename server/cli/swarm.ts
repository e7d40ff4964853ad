/**
 * `swarmboot swarm status|rotate-tokens`: asks the running server (its HTTP
 * API), since the swarm state lives in that process. Tokens are never
 * printed: status does not receive them, and rotate-tokens only asks the
 * leader's reconciler to rotate them.
 */
import { parseArgs } from 'node:util';
import { table } from './machines.js';
import { EXIT, UsageError, type CliIO } from './io.js';
import type { SwarmStatus } from '../swarm/rendezvous.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

export const swarmHelp = `swarmboot swarm status [--api URL] [--json]
  What the running server knows of the swarm: phase, init lease, managers,
  each node's role, ID and state as last reported, the leader's last
  reconcile. No tokens are shown.
swarmboot swarm rotate-tokens [--api URL] [--which worker|manager|both]
  Asks the server to have the swarm leader rotate the join tokens (both by
  default) on its next reconcile run (within ~30 s); new joiners then get
  the new ones. Accepted only from the server's own host (loopback).
  --api defaults to ${DEFAULT_API_URL}.
`;

async function call(base: string, path: string, init: RequestInit = {}): Promise<{ status: number; text: string }> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new UnreachableError(`cannot reach the swarmboot server at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message} (is \`swarmboot serve\` running? --api URL)`);
  }
  return { status: res.status, text: await res.text() };
}

class UnreachableError extends Error {}

const dash = (v: string | number | null | undefined): string => (v === null || v === undefined || v === '' ? '-' : String(v));

/** The human-readable status: a header block, then one row per node. */
export function formatStatus(s: SwarmStatus): string {
  let out = `phase:     ${s.phase}\n`;
  if (s.lease !== null) out += `lease:     ${s.lease.hostname} (${s.lease.mac}) until ${s.lease.until}${s.lease.expired ? ' (expired: the next manager to ask takes over)' : ''}\n`;
  if (s.createdBy !== null) out += `created:   by ${s.createdBy.mac} (node ${dash(s.createdBy.nodeId)}) at ${s.createdBy.at}\n`;
  out += `tokens:    ${s.tokens.worker && s.tokens.manager ? 'stored' : 'none'}\n`;
  out += `managers:  ${s.managers.length === 0 ? '-' : s.managers.join(', ')}\n`;
  out += `rotation:  ${s.rotate === 'none' ? 'none pending' : `${s.rotate} pending`}\n`;
  const r = s.lastReconcile;
  if (r !== null) {
    out += `reconcile: ${r.at} by ${r.hostname}: ${r.nodes} node(s), ${r.managers.length} manager(s), labels set on ${r.labeled}, removed ${r.removed.length === 0 ? 'none' : r.removed.join(', ')}, ${r.keptDown} Down kept, ${r.failed} failure(s)\n`;
  }
  if (s.warning !== null) out += `warning:   ${s.warning}\n`;
  out += '\n';
  const rows = s.nodes.map((n) => ({ mac: n.mac, hostname: n.hostname, role: n.role, state: n.state, event: n.event, 'node id': dash(n.nodeId), addr: dash(n.addr), at: n.at }));
  out += rows.length === 0 ? 'no node has asked or reported yet\n' : table(rows, ['mac', 'hostname', 'role', 'state', 'event', 'node id', 'addr', 'at']);
  return out;
}

export async function swarmCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      api: { type: 'string', default: DEFAULT_API_URL },
      json: { type: 'boolean', default: false },
      which: { type: 'string', default: 'both' },
    },
  });
  if (!/^https?:\/\/[^/\s]+/.test(values.api)) throw new UsageError(`--api must be an http(s) URL, not ${JSON.stringify(values.api)}`);
  try {
    switch (sub) {
      case 'status': {
        const r = await call(values.api, '/api/swarm/status');
        if (r.status !== 200) {
          io.err(`swarmboot swarm status: the server answered ${r.status}: ${r.text.trim()}\n`);
          return EXIT.invalid;
        }
        io.out(values.json ? r.text : formatStatus(JSON.parse(r.text) as SwarmStatus));
        return EXIT.ok;
      }
      case 'rotate-tokens': {
        if (!['worker', 'manager', 'both'].includes(values.which)) throw new UsageError('--which must be worker, manager or both');
        const r = await call(values.api, '/api/swarm/rotate', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ which: values.which }).toString(),
        });
        if (r.status !== 200) {
          io.err(`swarmboot swarm rotate-tokens: the server refused (${r.status}): ${r.text.trim()}\n`);
          return EXIT.invalid;
        }
        const pending = /rotate=(\w+)/.exec(r.text)?.[1] ?? values.which;
        io.out(`rotation requested (${pending}): the swarm leader rotates on its next reconcile run (within ~30 s); \`swarmboot swarm status\` shows it done when no rotation is pending\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(sub === undefined ? 'swarm needs a subcommand: status or rotate-tokens' : `unknown swarm subcommand "${sub}" (status, rotate-tokens)`);
    }
  } catch (err) {
    if (!(err instanceof UnreachableError)) throw err;
    io.err(`swarmboot swarm: ${err.message}\n`);
    return EXIT.invalid;
  }
}
