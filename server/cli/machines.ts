import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { loadProfileDir } from '../profiles/load.js';
import { DEFAULT_PROFILES_DIR } from './common.js';
import { EXIT, type CliIO } from './io.js';

export const DEFAULT_API = 'http://127.0.0.1:8080';

export const machinesHelp = `swarmboot machines [--profiles DIR] [--json] [--api URL | --offline]
  Lists every machine the profiles name: MAC, hostname, profile, role, boot
  method, and, from the running server (--api, default ${DEFAULT_API}), its IP,
  last boot step and last swarm report (role, node ID, state).
`;

export interface SwarmView {
  event: string;
  role?: string;
  nodeId?: string;
  addr?: string;
  at: string;
}

export interface MachineRow {
  mac: string;
  hostname: string;
  profile: string;
  role: string;
  boot: string;
  ip: string | null;
  lastStep: string | null;
  lastSeen: string | null;
  swarm: SwarmView | null;
}

interface ApiRow {
  mac: string;
  ip: string | null;
  lastStep: string | null;
  lastSeen: string | null;
  swarm: SwarmView | null;
}

export function table(rows: readonly Record<string, string>[], columns: readonly string[]): string {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n';
  return line(columns.map((c) => c.toUpperCase())) + rows.map((r) => line(columns.map((c) => r[c] ?? ''))).join('');
}

/** The running server's observations, or a reason why there are none. */
async function observations(api: string): Promise<Map<string, ApiRow> | string> {
  try {
    const res = await fetch(`${api.replace(/\/+$/, '')}/api/machines`, { signal: AbortSignal.timeout(1500) });
    if (!res.ok) return `${api} answered ${res.status}`;
    const rows = (await res.json()) as ApiRow[];
    return new Map(rows.map((r) => [r.mac, r]));
  } catch (err) {
    return `no server at ${api} (${(err as Error).message})`;
  }
}

export async function machinesCommand(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      profiles: { type: 'string', default: DEFAULT_PROFILES_DIR },
      json: { type: 'boolean', default: false },
      api: { type: 'string', default: DEFAULT_API },
      offline: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const set = loadProfileDir(resolve(values.profiles));
  const seen = values.offline ? 'offline' : await observations(values.api);
  if (typeof seen === 'string' && !values.offline) io.err(`swarmboot machines: ${seen}; showing profiles only\n`);
  const rows: MachineRow[] = [...set.machines.values()].map((m) => {
    const p = set.profiles.get(m.profile);
    const o = typeof seen === 'string' ? undefined : seen.get(m.mac);
    return {
      mac: m.mac,
      hostname: m.hostname,
      profile: m.profile,
      role: p?.role ?? 'none',
      boot: p?.boot ?? 'ipxe',
      ip: o?.ip ?? null,
      lastStep: o?.lastStep ?? null,
      lastSeen: o?.lastSeen ?? null,
      swarm: o?.swarm ?? null,
    };
  });
  if (values.json) {
    io.out(JSON.stringify(rows, null, 2) + '\n');
    return EXIT.ok;
  }
  const cells = rows.map((r) => ({
    mac: r.mac,
    hostname: r.hostname,
    profile: r.profile,
    role: r.role,
    boot: r.boot,
    ip: r.ip ?? '-',
    'last step': r.lastStep ?? '-',
    swarm: r.swarm ? [r.swarm.event, r.swarm.role, r.swarm.nodeId?.slice(0, 12)].filter(Boolean).join(' ') : '-',
  }));
  io.out(table(cells, ['mac', 'hostname', 'profile', 'role', 'boot', 'ip', 'last step', 'swarm']));
  return EXIT.ok;
}
