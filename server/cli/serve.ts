import { parseArgs } from 'node:util';
import { loadServerConfig, exampleConfig, type ConfigFlags } from '../config/server-config.js';
import { createLogger } from '../log.js';
import { EXIT, UsageError, type CliIO } from './io.js';

export const serveHelp = `swarmboot serve [--config FILE] [--interface IF] [--address IP] [--dhcp full|proxy|off]
                [--pool START-END] [--http-port N] [--tftp-port N]
                [--profiles DIR] [--assets DIR] [--state DIR] [--log-level LEVEL]
  Runs DHCP, TFTP and HTTP for the boot network. Flags override the config
  file; without one, the embedded defaults apply (swarmboot config example).
  SIGHUP reloads profiles; SIGTERM/SIGINT stop cleanly.
`;

export const configHelp = `swarmboot config example
  Prints a complete, commented server config.
`;

function port(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n > 65535) throw new UsageError(`--${name} must be a port number 0-65535`);
  return n;
}

export async function serveCommand(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      config: { type: 'string' },
      interface: { type: 'string' },
      address: { type: 'string' },
      dhcp: { type: 'string' },
      pool: { type: 'string' },
      'http-port': { type: 'string' },
      'tftp-port': { type: 'string' },
      profiles: { type: 'string' },
      assets: { type: 'string' },
      state: { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const flags: ConfigFlags = {};
  const set = <K extends keyof ConfigFlags>(k: K, v: ConfigFlags[K] | undefined) => {
    if (v !== undefined) flags[k] = v;
  };
  set('interface', values.interface);
  set('address', values.address);
  set('dhcp', values.dhcp);
  set('pool', values.pool);
  set('httpPort', port('http-port', values['http-port']));
  set('tftpPort', port('tftp-port', values['tftp-port']));
  set('profiles', values.profiles);
  set('assets', values.assets);
  set('state', values.state);
  const cfg = loadServerConfig(values.config, flags);
  const log = createLogger({ level: values['log-level'] ?? cfg.logLevel });
  // Loaded here, not at the top: validate/render should not pay for starting servers.
  const { startSwarmboot } = await import('../serve.js');
  const running = await startSwarmboot(cfg, log);
  io.err(`swarmboot: serving on ${cfg.interface} ${cfg.address} (http ${running.httpPort}, tftp ${running.tftpPort ?? 'off'}, dhcp ${cfg.dhcp.mode})\n`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      // A second signal, or a stuck close, must not keep the process up forever.
      const force = setTimeout(() => {
        log.error('shutdown took longer than 10 s; exiting anyway');
        resolve(EXIT.invalid);
      }, 10_000);
      force.unref();
      running.close().then(
        () => {
          clearTimeout(force);
          log.info('stopped');
          resolve(EXIT.ok);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(EXIT.invalid);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => running.reload());
  });
}

export function configCommand(args: string[], io: CliIO): number {
  if (args[0] !== 'example' || args.length > 1) throw new UsageError('usage: swarmboot config example');
  io.out(exampleConfig());
  return EXIT.ok;
}
