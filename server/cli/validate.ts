import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { loadProfileDir } from '../profiles/load.js';
import { DEFAULT_PROFILES_DIR } from './common.js';
import { EXIT, type CliIO } from './io.js';

export const validateHelp = `swarmboot validate [--profiles DIR]
  Checks every profile file; prints each problem as file:line:col: message.
  Exit 0 when valid, 1 otherwise.
`;

export function validateCommand(args: string[], io: CliIO): number {
  const { values } = parseArgs({ args, options: { profiles: { type: 'string', default: DEFAULT_PROFILES_DIR } }, strict: true });
  try {
    const set = loadProfileDir(resolve(values.profiles));
    for (const w of set.warnings) io.err(w + '\n');
    const roles = [...set.machines.values()].reduce<Record<string, number>>((acc, m) => {
      const role = set.profiles.get(m.profile)?.role ?? 'none';
      acc[role] = (acc[role] ?? 0) + 1;
      return acc;
    }, {});
    const summary = Object.entries(roles).map(([r, n]) => `${n} ${r}`).join(', ');
    io.out(`ok: ${set.files.length} file(s), ${set.profiles.size} profile(s), ${set.machines.size} machine(s)${summary ? ` (${summary})` : ''}\n`);
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(err.message + '\n');
    io.err(`${err.problems.length} problem(s); nothing was applied\n`);
    return EXIT.invalid;
  }
}
