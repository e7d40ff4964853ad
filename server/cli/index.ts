/**
 * Command dispatch. Each command parses its own flags (node:util parseArgs,
 * strict) and returns an exit code; errors we raise on purpose become a
 * one-line message and exit 2 (usage, unknown MAC) or 1 (invalid input).
 */
import { ConfigError, SwarmbootError } from '../errors.js';
import { validateCommand, validateHelp } from './validate.js';
import { renderCommand, renderHelp } from './render.js';
import { machinesCommand, machinesHelp } from './machines.js';
import { serveCommand, serveHelp, configCommand, configHelp } from './serve.js';
import { swarmCommand, swarmHelp } from './swarm.js';
import { assetsCommand, assetsHelp } from './assets.js';
import { EXIT, UsageError, type CliIO } from './io.js';

type Command = (args: string[], io: CliIO) => number | Promise<number>;

const commands: Record<string, { run: Command; help: string }> = {
  validate: { run: validateCommand, help: validateHelp },
  render: { run: renderCommand, help: renderHelp },
  machines: { run: machinesCommand, help: machinesHelp },
  serve: { run: serveCommand, help: serveHelp },
  config: { run: configCommand, help: configHelp },
  swarm: { run: swarmCommand, help: swarmHelp },
  assets: { run: assetsCommand, help: assetsHelp },
};

/** Lets later modules (serve, swarm, assets) add their commands without this file importing servers. */
export function registerCommand(name: string, run: Command, help: string): void {
  commands[name] = { run, help };
}

export function usage(): string {
  return 'usage: swarmboot <command> [options]\n\n' + Object.values(commands).map((c) => c.help).join('\n');
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.out(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const cmd = commands[name];
  if (!cmd) {
    io.err(`swarmboot: unknown command "${name}"\n\n${usage()}`);
    return EXIT.usage;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    io.out(cmd.help);
    return EXIT.ok;
  }
  try {
    return await cmd.run(rest, io);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(err.message + '\n');
      return EXIT.invalid;
    }
    if (err instanceof UsageError || err instanceof SwarmbootError) {
      io.err(`swarmboot ${name}: ${err.message}\n`);
      return EXIT.usage;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      io.err(`swarmboot ${name}: ${(err as Error).message}\n\n${cmd.help}`);
      return EXIT.usage;
    }
    throw err;
  }
}
