/**
 * `assets status`: what is in the assets dir, whether swarmboot verified it,
 * which profiles boot which release, and for anything missing the exact
 * command that fixes it. Read-only; the report is data first (for --json and
 * tests), text second.
 */
import type { FlatcarImage, ProfileSet } from '../profiles/types.js';
import { bootBinaryStatus, type BinaryStatus, type BootBinary, type BootBinaryOptions } from './boot-binaries.js';
import { ARCHES, CHANNELS, PXE_FILES } from './release.js';
import { checkRelease, listReleases, readCurrent, releaseDir, type ReleaseState } from './store.js';
import { formatBytes } from './progress.js';

export interface ReleaseStatus {
  readonly channel: string;
  readonly version: string;
  readonly arch: string;
  readonly state: ReleaseState;
  readonly current: boolean;
  readonly sizes: Readonly<Record<string, number>>;
  readonly keyFingerprint: string | null;
  readonly verifiedAt: string | null;
  readonly problems: readonly string[];
  readonly partial: readonly string[];
  /** Profiles booting this release (directly or through `current`). */
  readonly usedBy: readonly string[];
}

export interface ProfileNeed {
  /** `channel/version/arch` as the profiles say it. */
  readonly image: FlatcarImage;
  /** The version it resolves to on disk (through the current link), or null. */
  readonly resolved: string | null;
  readonly state: ReleaseState | 'missing';
  readonly profiles: readonly string[];
  readonly fix: string | null;
}

export interface AssetsStatus {
  readonly assetsDir: string;
  readonly releases: readonly ReleaseStatus[];
  readonly currents: readonly { readonly channel: string; readonly arch: string; readonly version: string }[];
  /** null when no profiles could be read (profileError says why). */
  readonly needs: readonly ProfileNeed[] | null;
  readonly profileError: string | null;
  readonly binaries: readonly BinaryStatus[];
  /** True when everything the profiles need is present and verified. */
  readonly ok: boolean;
}

export interface StatusOptions {
  /** The --assets argument as typed, quoted into fix commands. */
  readonly assetsArg?: string;
  readonly binaries?: BootBinaryOptions;
  /** Defaults to BOOT_BINARIES (tests pass their own, independent of this machine's packages). */
  readonly binaryTable?: readonly BootBinary[];
}

function key(img: FlatcarImage): string {
  return `${img.channel}/${img.version}/${img.arch}`;
}

/** Every distinct Flatcar image the profiles (and the cluster default) ask for, with who asks. */
export function imagesOf(set: ProfileSet): { image: FlatcarImage; profiles: string[] }[] {
  const byKey = new Map<string, { image: FlatcarImage; profiles: string[] }>();
  for (const p of set.profiles.values()) {
    const k = key(p.flatcar);
    const entry = byKey.get(k) ?? { image: p.flatcar, profiles: [] };
    entry.profiles.push(p.name);
    byKey.set(k, entry);
  }
  return [...byKey.values()].sort((a, b) => key(a.image).localeCompare(key(b.image)));
}

export function fetchCommand(img: FlatcarImage, assetsArg?: string): string {
  return `swarmboot assets fetch --channel ${img.channel} --version ${img.version} --arch ${img.arch}${assetsArg !== undefined ? ` --assets ${assetsArg}` : ''}`;
}

export function assetsStatus(assetsDir: string, set: ProfileSet | null, profileError: string | null = null, opts: StatusOptions = {}): AssetsStatus {
  const currents: { channel: string; arch: string; version: string }[] = [];
  for (const channel of CHANNELS) {
    for (const arch of ARCHES) {
      const v = readCurrent(assetsDir, channel, arch);
      if (v !== null) currents.push({ channel, arch, version: v });
    }
  }
  const isCurrent = (c: string, a: string, v: string) => currents.some((x) => x.channel === c && x.arch === a && x.version === v);

  let needs: ProfileNeed[] | null = null;
  const users = new Map<string, string[]>();
  if (set !== null) {
    needs = imagesOf(set).map(({ image, profiles }) => {
      const resolved = image.version === 'current' ? readCurrent(assetsDir, image.channel, image.arch) : image.version;
      const check = resolved === null ? null : checkRelease(releaseDir(assetsDir, { ...image, version: resolved }));
      const state = check === null || check.missing.length === PXE_FILES.length ? 'missing' : check.state;
      if (resolved !== null) {
        const k = `${image.channel}/${resolved}/${image.arch}`;
        users.set(k, [...(users.get(k) ?? []), ...profiles]);
      }
      // An unverified release needs fetch too: it re-verifies (and downloads only what fails).
      const fix = state === 'verified' ? null : fetchCommand(image, opts.assetsArg);
      return { image, resolved, state, profiles, fix };
    });
  }

  const releases: ReleaseStatus[] = listReleases(assetsDir).map((r) => ({
    channel: r.channel,
    version: r.version,
    arch: r.arch,
    state: r.check.state,
    current: isCurrent(r.channel, r.arch, r.version),
    sizes: r.check.files,
    keyFingerprint: r.check.manifest?.keyFingerprint ?? null,
    verifiedAt: r.check.manifest?.verifiedAt ?? null,
    problems: r.check.problems,
    partial: r.check.partial,
    usedBy: users.get(`${r.channel}/${r.version}/${r.arch}`) ?? [],
  }));

  const binaries = bootBinaryStatus(assetsDir, set, opts.binaryTable, { ...opts.binaries, ...(opts.assetsArg !== undefined ? { assetsArg: opts.assetsArg } : {}) });
  const binariesOk = binaries.every((b) => b.present || (b.optional && b.neededBy.length === 0));
  const ok = (needs ?? []).every((n) => n.state === 'verified') && binariesOk && profileError === null;
  return { assetsDir, releases, currents, needs, profileError, binaries, ok };
}

function sizes(s: Readonly<Record<string, number>>): string {
  const parts = Object.entries(s).map(([n, b]) => `${n.endsWith('.vmlinuz') ? 'kernel' : 'initrd'} ${formatBytes(b)}`);
  return parts.join(', ');
}

export function formatStatus(s: AssetsStatus): string {
  const lines: string[] = [`assets: ${s.assetsDir}`, '', 'Flatcar releases:'];
  if (s.releases.length === 0) lines.push('  (none)');
  for (const r of s.releases) {
    const cur = r.current ? ' (current)' : '';
    const state = r.state === 'verified' ? `verified ${r.verifiedAt ?? ''} key ${r.keyFingerprint ?? '?'}` : `${r.state.toUpperCase()}: ${r.problems.join('; ')}`;
    lines.push(`  ${r.channel}/${r.version}/${r.arch}${cur}  ${state}`);
    if (Object.keys(r.sizes).length > 0) lines.push(`      ${sizes(r.sizes)}`);
    if (r.partial.length > 0) lines.push(`      interrupted download: ${r.partial.join(', ')} (the next fetch resumes it)`);
    lines.push(`      used by: ${r.usedBy.length > 0 ? r.usedBy.join(', ') : '-'}`);
  }
  for (const c of s.currents) lines.push(`  link flatcar/${c.channel}/current/${c.arch} -> ${c.version}`);

  lines.push('', 'Profiles:');
  if (s.needs === null) lines.push(`  not read: ${s.profileError ?? 'no profiles'}`);
  else {
    if (s.profileError !== null) lines.push(`  ${s.profileError}`);
    for (const n of s.needs) {
      const via = n.image.version === 'current' ? ` -> ${n.resolved ?? '(no current link)'}` : '';
      const state = n.state === 'verified' ? 'ok' : n.state.toUpperCase();
      lines.push(`  ${n.profiles.join(', ')}: flatcar ${key(n.image)}${via}  ${state}`);
      if (n.fix !== null) lines.push(`      fix: ${n.fix}`);
    }
  }

  lines.push('', 'Boot binaries:');
  for (const b of s.binaries) {
    const need = b.neededBy.length > 0 ? ` (needed by ${b.neededBy.join(', ')})` : b.optional ? ' (optional)' : ' (required)';
    lines.push(`  ${b.name.padEnd(18)} ${b.present ? 'present' : 'MISSING'}${b.present ? '' : need}  ${b.purpose}`);
    if (!b.present && b.fix !== null && (!b.optional || b.neededBy.length > 0)) lines.push(`      fix: ${b.fix}`);
  }
  lines.push('', s.ok ? 'ok: everything the profiles need is present and verified' : 'NOT READY: see the fixes above');
  return lines.join('\n') + '\n';
}

/**
 * The Flatcar releases the profiles need that are not present and verified,
 * each with its fix command: for `serve` to log at start and on reload.
 */
export function unmetNeeds(assetsDir: string, set: ProfileSet, opts: StatusOptions = {}): ProfileNeed[] {
  return (assetsStatus(assetsDir, set, null, { ...opts, binaryTable: [] }).needs ?? []).filter((n) => n.state !== 'verified');
}
