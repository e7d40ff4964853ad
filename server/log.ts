/**
 * Loggers are created here once and passed down; subsystems take a
 * `Logger` and make children (`log.child({ subsystem: 'dhcp', mac })`).
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

export interface LogOptions {
  level?: string;
  /** Where lines go; stderr by default so stdout stays clean for CLI output. */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.SWARMBOOT_LOG_LEVEL ?? 'info';
  return pino({ level, base: { app: 'swarmboot' } }, opts.destination ?? pino.destination(2));
}

/** A logger that drops everything: for pure tests and CLI paths that must print only their output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
