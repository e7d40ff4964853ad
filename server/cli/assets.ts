/**
 * `swarmboot assets fetch|status|prune|binaries`. Parses flags, runs the
 * server/assets functions, prints human lines (a progress bar on a TTY).
 * Exit 0 ok, 1 when a fetch failed or status finds something missing,
 * 2 for usage errors.
 */
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { loadProfileDir } from '../profiles/load.js';
import type { FlatcarArch, FlatcarChannel, ProfileSet } from '../profiles/types.js';
import { AssetError } from '../assets/errors.js';
import { fetchFlatcar, type FetchEvent } from '../assets/fetch.js';
import { ARCHES, CHANNELS, DEFAULT_BASE_URL, DEFAULT_FINGERPRINT, DEFAULT_SIGNING_KEY_URL } from '../assets/release.js';
import { barProgress, formatBytes, lineProgress, noProgress, type ProgressSink } from '../assets/progress.js';
import { assetsStatus, formatStatus } from '../assets/status.js';
import { applyPrune, planPrune } from '../assets/prune.js';
import { installBootBinaries } from '../assets/boot-binaries.js';
import { DEFAULT_PROFILES_DIR } from './common.js';
import { EXIT, UsageError, processIO, type CliIO } from './io.js';

export const DEFAULT_ASSETS_DIR = 'assets';

export const assetsHelp = `swarmboot assets fetch [--channel stable|beta|alpha|lts] [--version current|X.Y.Z] [--arch amd64|arm64]
                      [--base-url URL] [--signing-key FILE|URL] [--fingerprint FPR] [--assets DIR]
                      [--progress auto|bar|lines|none]
  Downloads a Flatcar release's PXE kernel and initrd, checks each detached
  signature against the signing key pinned by --fingerprint and the SHA-512 in
  DIGESTS, and only then moves them to DIR/flatcar/<channel>/<version>/<arch>/.
  "current" is resolved through version.txt and pinned; flatcar/<channel>/current/<arch>
  then links to it. Interrupted downloads resume; a second run downloads nothing.
  Defaults: --base-url ${DEFAULT_BASE_URL} ({channel}, {arch} substituted)
            --signing-key ${DEFAULT_SIGNING_KEY_URL}
            --fingerprint ${DEFAULT_FINGERPRINT} (Flatcar's key id; confirm the full
            40-digit fingerprint the first fetch prints, out of band, and pin that)
swarmboot assets status [--assets DIR] [--profiles DIR] [--json]
  What is present, verified or not, which profiles use which release, and the
  command that fixes anything missing. Exit 1 when the profiles lack something.
swarmboot assets prune --keep N [--assets DIR] [--profiles DIR] [--dry-run]
  Per channel and arch keeps the N newest releases, the current link's target
  and every version a profile pins; deletes the rest.
swarmboot assets binaries [--assets DIR] [--from DIR]
  Copies iPXE and pxelinux binaries into the assets dir from DIR (a custom or
  arm64 build, as DIR/<name>, DIR/arm64/ipxe.efi) or Debian's packages.
`;

/** A CLI io that may say whether stderr is a terminal (tests pass isTTY: false). */
type AssetsIO = CliIO & { readonly isTTY?: boolean };

function isTTY(io: AssetsIO): boolean {
  if (io.isTTY !== undefined) return io.isTTY;
  return io === processIO && process.stderr.isTTY === true;
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`);
  return value as T;
}

/** Profiles for status/prune: absent dir is fine (no needs), a broken one is reported, not fatal. */
function readProfiles(dir: string, explicit: boolean): { set: ProfileSet | null; error: string | null } {
  if (!existsSync(dir)) return { set: null, error: explicit ? `no profiles directory ${dir}` : `no profiles directory ${dir} (pass --profiles DIR)` };
  try {
    return { set: loadProfileDir(dir), error: null };
  } catch (err) {
    if (err instanceof ConfigError) return { set: null, error: `profiles in ${dir} do not validate (swarmboot validate --profiles ${dir}):\n${err.message}` };
    throw err;
  }
}

export async function assetsCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'fetch':
      return fetchSub(rest, io);
    case 'status':
      return statusSub(rest, io);
    case 'prune':
      return pruneSub(rest, io);
    case 'binaries':
      return binariesSub(rest, io);
    default:
      throw new UsageError(sub === undefined ? 'which one: fetch, status, prune or binaries?' : `unknown subcommand "${sub}" (fetch, status, prune, binaries)`);
  }
}

async function fetchSub(args: string[], io: AssetsIO): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      channel: { type: 'string', default: 'stable' },
      version: { type: 'string', default: 'current' },
      arch: { type: 'string', default: 'amd64' },
      'base-url': { type: 'string', default: DEFAULT_BASE_URL },
      'signing-key': { type: 'string', default: DEFAULT_SIGNING_KEY_URL },
      fingerprint: { type: 'string', default: DEFAULT_FINGERPRINT },
      assets: { type: 'string', default: DEFAULT_ASSETS_DIR },
      progress: { type: 'string', default: 'auto' },
      'idle-timeout': { type: 'string' },
    },
  });
  const channel = oneOf<FlatcarChannel>('channel', values.channel, CHANNELS);
  const arch = oneOf<FlatcarArch>('arch', values.arch, ARCHES);
  const mode = oneOf('progress', values.progress, ['auto', 'bar', 'lines', 'none'] as const);
  const idle = values['idle-timeout'] !== undefined ? Number(values['idle-timeout']) : undefined;
  if (idle !== undefined && !(idle > 0)) throw new UsageError('--idle-timeout must be a positive number of seconds');
  const write = (s: string) => io.err(s);
  const sink: ProgressSink = mode === 'none' ? noProgress : mode === 'bar' || (mode === 'auto' && isTTY(io)) ? barProgress(write) : lineProgress(write);
  const say = (s: string) => io.err(s + '\n');

  const onEvent = (e: FetchEvent): void => {
    switch (e.kind) {
      case 'resolved':
        say(`${channel}/${arch}: version ${e.version}${values.version === 'current' ? ` (current, from ${e.url})` : ''}`);
        break;
      case 'up-to-date':
        say(`already verified: ${e.dir}; nothing to download`);
        break;
      case 'key':
        say(`signing key ${e.fingerprint} from ${e.source}`);
        if (e.pinnedBy === 'keyid') say(`  pinned by key id only; confirm this fingerprint out of band, then pin it: --fingerprint ${e.fingerprint}`);
        break;
      case 'download-start':
        if (e.from > 0) say(`resuming ${e.file} at ${formatBytes(e.from)}`);
        sink.start(e.file, e.from, e.total);
        break;
      case 'download-progress':
        sink.update(e.done, e.total);
        break;
      case 'download-done':
        sink.finish();
        break;
      case 'reused':
        say(`${e.file}: ${e.why}`);
        break;
      case 'verified':
        say(`${e.file}: good signature (key ${e.signer}) and SHA-512`);
        break;
      case 'installed':
        say(`installed ${e.dir}`);
        break;
      case 'current':
        say(`${e.link} -> ${e.version}${e.previous !== null ? ` (was ${e.previous})` : ''}`);
        break;
    }
  };

  try {
    const r = await fetchFlatcar({
      assetsDir: resolve(values.assets),
      channel,
      arch,
      version: values.version,
      baseUrl: values['base-url'],
      signingKey: values['signing-key'],
      fingerprint: values.fingerprint,
      onEvent,
      ...(idle !== undefined ? { idleTimeoutMs: idle * 1000 } : {}),
    });
    io.out(`flatcar ${r.channel}/${r.version}/${r.arch}: ${r.alreadyVerified ? 'up to date' : 'fetched and verified'}, ${r.transferred} payload bytes transferred\n`);
    return EXIT.ok;
  } catch (err) {
    sink.finish();
    if (!(err instanceof AssetError)) throw err;
    io.err(`swarmboot assets fetch: ${err.code}: ${err.message}\n`);
    io.err(err.code === 'E_ASSET_TRUNCATED' ? 'installed assets are unchanged; run the same command again to resume\n' : 'installed assets are unchanged\n');
    return EXIT.invalid;
  }
}

function statusSub(args: string[], io: CliIO): number {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      assets: { type: 'string' },
      profiles: { type: 'string' },
      json: { type: 'boolean', default: false },
      from: { type: 'string', multiple: true },
    },
  });
  const { set, error } = readProfiles(resolve(values.profiles ?? DEFAULT_PROFILES_DIR), values.profiles !== undefined);
  const status = assetsStatus(resolve(values.assets ?? DEFAULT_ASSETS_DIR), set, error, {
    ...(values.assets !== undefined ? { assetsArg: values.assets } : {}),
    binaries: { searchDirs: (values.from ?? []).map((d) => resolve(d)) },
  });
  io.out(values.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status));
  return status.ok ? EXIT.ok : EXIT.invalid;
}

function pruneSub(args: string[], io: CliIO): number {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      keep: { type: 'string' },
      assets: { type: 'string', default: DEFAULT_ASSETS_DIR },
      profiles: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    },
  });
  if (values.keep === undefined) throw new UsageError('--keep N is required');
  const keep = Number(values.keep);
  if (!/^[0-9]+$/.test(values.keep) || keep < 1) throw new UsageError('--keep must be a whole number >= 1');
  const { set, error } = readProfiles(resolve(values.profiles ?? DEFAULT_PROFILES_DIR), values.profiles !== undefined);
  // Without readable profiles we cannot know which versions are pinned: refuse rather than guess.
  if (error !== null && values.profiles !== undefined) {
    io.err(`swarmboot assets prune: ${error}\n`);
    return EXIT.invalid;
  }
  if (error !== null) io.err(`note: ${error}; only the current links protect releases\n`);
  const plan = planPrune(resolve(values.assets), keep, set);
  for (const d of plan) io.out(`${d.keep ? 'keep  ' : values['dry-run'] ? 'would remove' : 'remove'} ${d.release.channel}/${d.release.version}/${d.release.arch}  (${d.why})\n`);
  if (values['dry-run']) return EXIT.ok;
  const result = applyPrune(plan);
  for (const b of result.busy) io.err(`skipped ${b.channel}/${b.version}/${b.arch}: a fetch is writing it\n`);
  io.out(`removed ${result.removed.length} release(s)\n`);
  return EXIT.ok;
}

function binariesSub(args: string[], io: CliIO): number {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      assets: { type: 'string' },
      from: { type: 'string', multiple: true },
    },
  });
  const report = installBootBinaries(resolve(values.assets ?? DEFAULT_ASSETS_DIR), undefined, {
    searchDirs: (values.from ?? []).map((d) => resolve(d)),
    ...(values.assets !== undefined ? { assetsArg: values.assets } : {}),
  });
  for (const c of report.copied) io.out(`copied ${c}\n`);
  let required = 0;
  for (const m of report.missing) {
    if (!m.optional) required++;
    io.err(`${m.optional ? 'optional' : 'MISSING'} ${m.name} (${m.purpose}): ${m.fix}\n`);
  }
  return required > 0 ? EXIT.invalid : EXIT.ok;
}
