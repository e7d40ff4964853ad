/**
 * Swarm rendezvous state on disk: one JSON document, `swarm.json` in the
 * state dir, mode 0600 because it holds the join tokens.
 *
 * Crash-safe by replacement: write `swarm.json.tmp`, fsync it, rename it
 * over `swarm.json`, fsync the directory. A crash leaves either the old or
 * the new file, never half of one; a stray temp file is removed at load.
 * The state is small and changes a few times per node boot, so a
 * synchronous whole-file write per change is cheap and keeps "replied" and
 * "saved" in order.
 *
 * A file that does not parse is an error, not an empty state: forgetting
 * that a swarm exists would let swarmboot elect a second first manager.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SwarmbootError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import type { NodeRecord, NodeState, ReconcileSummary, SwarmPhase, SwarmState, SwarmStateStore, SwarmTokens } from './rendezvous.js';

export const SWARM_STATE_FILE = 'swarm.json';
const MODE = 0o600;

export class SwarmStateError extends SwarmbootError {
  constructor(message: string) {
    super('E_SWARM_STATE', 500, message);
  }
}

/** The file-backed store serve uses. */
export class FileSwarmStore implements SwarmStateStore {
  readonly file: string;
  private readonly tmp: string;
  private readonly log: Logger;

  constructor(
    readonly dir: string,
    log: Logger,
  ) {
    this.file = join(dir, SWARM_STATE_FILE);
    this.tmp = `${this.file}.tmp`;
    this.log = log.child({ subsystem: 'swarm-store' });
  }

  load(): SwarmState | null {
    if (existsSync(this.tmp)) {
      // A save that crashed before its rename: the real file is the truth.
      unlinkSync(this.tmp);
      this.log.warn({ file: this.tmp }, 'removed an unfinished swarm state write');
    }
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const mode = statSync(this.file).mode & 0o777;
    if (mode !== MODE) {
      chmodSync(this.file, MODE);
      this.log.warn({ file: this.file, was: mode.toString(8) }, 'swarm state file holds join tokens: permissions reset to 0600');
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      // V8's message quotes the text around the error, which may be a token: keep only the position.
      const at = /position (\d+)/.exec((err as Error).message)?.[1];
      bad(this.file, at === undefined ? 'JSON' : `byte ${at}`, 'not valid JSON');
    }
    return parseSwarmState(raw, this.file);
  }

  save(state: SwarmState): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const body = JSON.stringify(state, null, 2) + '\n';
    // A left-over temp file may have other permissions; start from none.
    if (existsSync(this.tmp)) unlinkSync(this.tmp);
    const fd = openSync(this.tmp, 'wx', MODE);
    try {
      const buf = Buffer.from(body, 'utf8');
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(this.tmp, this.file);
    const dfd = openSync(this.dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

/** In memory, for tests and for tools that must not touch the state dir. */
export class MemorySwarmStore implements SwarmStateStore {
  saves = 0;
  constructor(private state: SwarmState | null = null) {}
  load(): SwarmState | null {
    return this.state === null ? null : structuredClone(this.state);
  }
  save(state: SwarmState): void {
    this.saves++;
    this.state = structuredClone(state);
  }
}

// ---- checking what was read --------------------------------------------------

type Obj = Record<string, unknown>;

function bad(file: string, where: string, what: string): never {
  throw new SwarmStateError(`${file}: ${where}: ${what}; swarmboot will not start without its swarm state. Fix or move the file (moving it forgets the swarm)`);
}

function obj(v: unknown, file: string, where: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(file, where, 'expected an object');
  return v as Obj;
}
function str(v: unknown, file: string, where: string): string {
  if (typeof v !== 'string') bad(file, where, 'expected a string');
  return v;
}
function strOrNull(v: unknown, file: string, where: string): string | null {
  return v === null ? null : str(v, file, where);
}
function num(v: unknown, file: string, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(file, where, 'expected a number');
  return v;
}
function bool(v: unknown, file: string, where: string): boolean {
  if (typeof v !== 'boolean') bad(file, where, 'expected true or false');
  return v;
}
function mac(v: unknown, file: string, where: string): Mac {
  const m = parseMac(str(v, file, where));
  if (m === null) bad(file, where, 'not a MAC address');
  return m;
}
function oneOf<T extends string>(v: unknown, allowed: readonly T[], file: string, where: string): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) bad(file, where, `expected one of ${allowed.join(', ')}`);
  return v as T;
}
function strings(v: unknown, file: string, where: string): string[] {
  if (!Array.isArray(v)) bad(file, where, 'expected a list');
  return v.map((x, i) => str(x, file, `${where}[${i}]`));
}

const PHASES: readonly SwarmPhase[] = ['none', 'initializing', 'active'];
const NODE_STATES: readonly NodeState[] = ['joining', 'initializing', 'active', 'leaving', 'left'];

/** Checks a parsed swarm.json field by field; `file` names it in errors. */
export function parseSwarmState(raw: unknown, file: string): SwarmState {
  const o = obj(raw, file, 'top level');
  if (o.version !== 1) bad(file, 'version', `unsupported version ${JSON.stringify(o.version)} (this swarmboot reads 1)`);
  const phase = oneOf(o.phase, PHASES, file, 'phase');

  const lease = o.lease === null ? null : (() => {
    const l = obj(o.lease, file, 'lease');
    return { mac: mac(l.mac, file, 'lease.mac'), hostname: str(l.hostname, file, 'lease.hostname'), addr: str(l.addr, file, 'lease.addr'), grantedAt: num(l.grantedAt, file, 'lease.grantedAt'), until: num(l.until, file, 'lease.until') };
  })();
  const tokens: SwarmTokens | null = o.tokens === null ? null : (() => {
    const t = obj(o.tokens, file, 'tokens');
    return { worker: str(t.worker, file, 'tokens.worker'), manager: str(t.manager, file, 'tokens.manager') };
  })();
  const createdBy = o.createdBy === null ? null : (() => {
    const c = obj(o.createdBy, file, 'createdBy');
    return { mac: mac(c.mac, file, 'createdBy.mac'), nodeId: strOrNull(c.nodeId, file, 'createdBy.nodeId'), at: num(c.at, file, 'createdBy.at') };
  })();
  const rotate = o.rotate === null ? null : (() => {
    const r = obj(o.rotate, file, 'rotate');
    return { worker: bool(r.worker, file, 'rotate.worker'), manager: bool(r.manager, file, 'rotate.manager'), requestedAt: num(r.requestedAt, file, 'rotate.requestedAt') };
  })();

  const nodes: Record<string, NodeRecord> = {};
  for (const [key, value] of Object.entries(obj(o.nodes, file, 'nodes'))) {
    const w = `nodes["${key}"]`;
    const n = obj(value, file, w);
    const m = mac(n.mac, file, `${w}.mac`);
    if (m !== key) bad(file, w, `keyed by ${key} but holds ${m}`);
    nodes[m] = {
      mac: m,
      role: oneOf(n.role, ['manager', 'worker'] as const, file, `${w}.role`),
      hostname: str(n.hostname, file, `${w}.hostname`),
      addr: strOrNull(n.addr, file, `${w}.addr`),
      nodeId: strOrNull(n.nodeId, file, `${w}.nodeId`),
      state: oneOf(n.state, NODE_STATES, file, `${w}.state`),
      event: str(n.event, file, `${w}.event`),
      at: num(n.at, file, `${w}.at`),
    };
  }

  const lastReconcile: ReconcileSummary | null = o.lastReconcile === null ? null : (() => {
    const r = obj(o.lastReconcile, file, 'lastReconcile');
    const w = 'lastReconcile';
    return {
      at: num(r.at, file, `${w}.at`),
      mac: mac(r.mac, file, `${w}.mac`),
      hostname: str(r.hostname, file, `${w}.hostname`),
      nodeId: strOrNull(r.nodeId, file, `${w}.nodeId`),
      managers: strings(r.managers, file, `${w}.managers`),
      nodes: num(r.nodes, file, `${w}.nodes`),
      labeled: num(r.labeled, file, `${w}.labeled`),
      removed: strings(r.removed, file, `${w}.removed`),
      keptDown: num(r.keptDown, file, `${w}.keptDown`),
      failed: num(r.failed, file, `${w}.failed`),
    };
  })();

  if (phase === 'active' && tokens === null) bad(file, 'tokens', 'phase is active but no tokens are stored');
  if (phase === 'initializing' && lease === null) bad(file, 'lease', 'phase is initializing but no lease is stored');
  return { version: 1, phase, lease, tokens, createdBy, rotate, nodes, lastReconcile };
}
