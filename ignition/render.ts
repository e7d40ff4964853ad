/**
 * One machine's Ignition config, as a pure function of its RenderContext
 * and the swarm script text. The caller serialises once with
 * serializeIgnition, whose output is byte-stable so it can be hashed,
 * cached and served with an ETag.
 */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../server/errors.js';
import type { RenderContext } from '../server/profiles/types.js';
import {
  IGNITION_VERSION,
  type IgnitionConfig,
  type IgnitionFile,
  type IgnitionLink,
  type IgnitionUnit,
} from './types.js';
import {
  DOCKER_UNIT_PATH,
  DOCKER_WANTS_LINK,
  HOSTNAME_PATH,
  RECONCILE_SERVICE_NAME,
  RECONCILE_TIMER_NAME,
  SWARM_ENV_PATH,
  SWARM_SCRIPT_PATH,
  SWARM_UNIT_NAME,
  reconcileEnabled,
  reconcileService,
  reconcileTimer,
  swarmEnabled,
  swarmEnv,
  swarmUnit,
} from './units.js';

const MODE_0644 = 0o644;
const MODE_0755 = 0o755;
const MODE_0600 = 0o600;

/**
 * Bytes RFC 2397/2396 lets stand unescaped in a data URL, minus `+`, `?`,
 * `#`, `%`: Ignition decodes with a strict RFC 2396 unescaper but parses
 * the URL with Go's net/url first, which would split at `?` and `#`.
 * Keeping `/`, `:`, `=`, `,` and friends literal keeps the goldens readable.
 */
const DATA_URL_LITERAL = /^[A-Za-z0-9\-_.!~*'()/:=,;@$&]$/;

/** RFC 2397 `data:,` URL with percent-encoding (UTF-8 bytes), as Ignition decodes it. */
export function dataUrl(text: string): string {
  let out = 'data:,';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && DATA_URL_LITERAL.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function file(path: string, mode: number, contents: string, overwrite = true): IgnitionFile {
  return { path, overwrite, mode, contents: { source: dataUrl(contents) } };
}

/** Cluster keys first, then the profile's, each once. */
function authorizedKeys(ctx: RenderContext): string[] {
  return [...new Set([...ctx.cluster.sshAuthorizedKeys, ...ctx.profile.sshAuthorizedKeys])];
}

/**
 * Ignition rejects a config naming one path twice, and a profile unit named
 * like swarmboot's would silently replace it. Every path the config makes
 * on disk (files, links, units and their drop-ins under
 * /etc/systemd/system) is claimed once; the second claim is an error
 * naming both owners.
 */
class PathClaims {
  private readonly owners = new Map<string, string>();
  constructor(private readonly ctx: RenderContext) {}

  claim(path: string, owner: string): void {
    const key = posix.normalize(path).replace(/(.)\/+$/, '$1');
    const prior = this.owners.get(key);
    if (prior !== undefined) {
      const src = this.ctx.profile.source;
      const message = `${key} is written twice: by ${prior} and by ${owner}; Ignition rejects duplicate paths`;
      throw new ConfigError(
        [{ file: src.file, line: src.line, col: 1, pointer: '', message }],
        `machine ${this.ctx.machine.mac} (${this.ctx.machine.hostname}, profile ${this.ctx.profile.name}): ${message}`,
      );
    }
    this.owners.set(key, owner);
  }
}

const unitPath = (name: string): string => `/etc/systemd/system/${name}`;

export function renderIgnition(ctx: RenderContext, swarmScript: string): IgnitionConfig {
  const claims = new PathClaims(ctx);
  const files: IgnitionFile[] = [];
  const links: IgnitionLink[] = [];
  const units: IgnitionUnit[] = [];

  files.push(file(HOSTNAME_PATH, MODE_0644, `${ctx.machine.hostname}\n`));
  claims.claim(HOSTNAME_PATH, 'swarmboot (hostname)');

  // docker.service itself is left to the image (and to a profile's
  // drop-ins): the link is what starts it at boot on Flatcar >= 3761.
  links.push({ path: DOCKER_WANTS_LINK, target: DOCKER_UNIT_PATH, hard: false, overwrite: true });
  claims.claim(DOCKER_WANTS_LINK, 'swarmboot (docker.service at boot)');

  if (swarmEnabled(ctx)) {
    files.push(file(SWARM_SCRIPT_PATH, MODE_0755, swarmScript));
    claims.claim(SWARM_SCRIPT_PATH, 'swarmboot (swarm script)');
    files.push(file(SWARM_ENV_PATH, MODE_0600, swarmEnv(ctx)));
    claims.claim(SWARM_ENV_PATH, 'swarmboot (swarm environment)');
    units.push({ name: SWARM_UNIT_NAME, enabled: true, contents: swarmUnit() });
    claims.claim(unitPath(SWARM_UNIT_NAME), 'swarmboot (swarm unit)');
    if (reconcileEnabled(ctx)) {
      // The service is started by the timer only: enabling it would be a no-op (no [Install]).
      units.push({ name: RECONCILE_SERVICE_NAME, contents: reconcileService() });
      claims.claim(unitPath(RECONCILE_SERVICE_NAME), 'swarmboot (reconcile service)');
      units.push({ name: RECONCILE_TIMER_NAME, enabled: true, contents: reconcileTimer() });
      claims.claim(unitPath(RECONCILE_TIMER_NAME), 'swarmboot (reconcile timer)');
    }
  }

  ctx.profile.files.forEach((f, i) => {
    files.push(file(f.path, f.mode, f.contents, f.overwrite));
    claims.claim(f.path, `profile ${ctx.profile.name} files[${i}]`);
  });

  ctx.profile.units.forEach((u, i) => {
    const owner = `profile ${ctx.profile.name} units[${i}]`;
    claims.claim(unitPath(u.name), owner);
    u.dropins.forEach((d, j) => claims.claim(unitPath(`${u.name}.d/${d.name}`), `${owner}.dropins[${j}]`));
    const unit: { -readonly [K in keyof IgnitionUnit]: IgnitionUnit[K] } = { name: u.name };
    if (u.enabled !== undefined) unit.enabled = u.enabled;
    if (u.mask !== undefined) unit.mask = u.mask;
    if (u.contents !== undefined) unit.contents = u.contents;
    if (u.dropins.length > 0) unit.dropins = u.dropins.map((d) => ({ name: d.name, contents: d.contents }));
    units.push(unit);
  });

  return {
    ignition: { version: IGNITION_VERSION },
    passwd: { users: [{ name: 'core', sshAuthorizedKeys: authorizedKeys(ctx) }] },
    storage: { files, links },
    systemd: { units },
  };
}

/**
 * Keys in this order when present (readable goldens: a file's path before
 * its contents), any other key after them alphabetically. The order never
 * depends on how the object was built, so equal configs give equal bytes.
 */
const KEY_ORDER = [
  'ignition', 'version', 'passwd', 'storage', 'systemd',
  'name', 'path', 'target', 'hard', 'overwrite', 'mode', 'enabled', 'mask',
  'users', 'files', 'links', 'units', 'sshAuthorizedKeys', 'contents', 'source', 'dropins',
];
const RANK = new Map(KEY_ORDER.map((k, i) => [k, i]));

function compareKeys(a: string, b: string): number {
  const ra = RANK.get(a) ?? KEY_ORDER.length;
  const rb = RANK.get(b) ?? KEY_ORDER.length;
  return ra !== rb ? ra - rb : a < b ? -1 : a > b ? 1 : 0;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort(compareKeys)) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = canonical(v);
    }
    return out;
  }
  return value;
}

/** Deterministic 2-space JSON with a trailing newline. */
export function serializeIgnition(cfg: IgnitionConfig): string {
  return `${JSON.stringify(canonical(cfg), null, 2)}\n`;
}

/** The package root: the nearest directory above this module holding package.json (works from sources and from dist/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** ignition/swarm.sh, read from the package root (not from dist/, which has no copy). */
export function loadSwarmScript(): string {
  return readFileSync(join(packageRoot(), 'ignition', 'swarm.sh'), 'utf8');
}
