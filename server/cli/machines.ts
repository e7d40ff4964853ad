import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { loadProfileDir } from '../profiles/load.js';
import { DEFAULT_PROFILES_DIR } from './common.js';
import { EXIT, type CliIO } from './io.js';

export const machinesHelp = `swarmboot machines [--profiles DIR] [--json]
  Lists every machine the profiles name: MAC, hostname, profile, role, boot method.
`;

export interface MachineRow {
  mac: string;
  hostname: string;
  profile: string;
  role: string;
  boot: string;
}

export function table(rows: readonly Record<string, string>[], columns: readonly string[]): string {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n';
  return line(columns.map((c) => c.toUpperCase())) + rows.map((r) => line(columns.map((c) => r[c] ?? ''))).join('');
}

export function machinesCommand(args: string[], io: CliIO): number {
  const { values } = parseArgs({
    args,
    options: { profiles: { type: 'string', default: DEFAULT_PROFILES_DIR }, json: { type: 'boolean', default: false } },
    strict: true,
  });
  const set = loadProfileDir(resolve(values.profiles));
  const rows: MachineRow[] = [...set.machines.values()].map((m) => {
    const p = set.profiles.get(m.profile);
    return { mac: m.mac, hostname: m.hostname, profile: m.profile, role: p?.role ?? 'none', boot: p?.boot ?? 'ipxe' };
  });
  if (values.json) io.out(JSON.stringify(rows, null, 2) + '\n');
  else io.out(table(rows as unknown as Record<string, string>[], ['mac', 'hostname', 'profile', 'role', 'boot']));
  return EXIT.ok;
}
