/**
 * `assets prune --keep N`: per channel and arch, keep the N newest releases
 * and delete the rest, but never one that is booted now: the target of a
 * `current` link, or a version a profile pins. The plan is computed first
 * (pure over the listing) so --dry-run prints exactly what would go.
 */
import type { ProfileSet } from '../profiles/types.js';
import { AssetError } from './errors.js';
import { compareVersions } from './release.js';
import { listReleases, lockRelease, readCurrent, removeRelease, type InstalledRelease } from './store.js';

export interface PruneDecision {
  readonly release: InstalledRelease;
  readonly keep: boolean;
  readonly why: string;
}

export function planPrune(assetsDir: string, keepN: number, set: ProfileSet | null): PruneDecision[] {
  if (!Number.isInteger(keepN) || keepN < 1) throw new RangeError('--keep must be a whole number >= 1');
  const pinned = new Set<string>();
  for (const p of set?.profiles.values() ?? []) if (p.flatcar.version !== 'current') pinned.add(`${p.flatcar.channel}/${p.flatcar.version}/${p.flatcar.arch}`);

  const groups = new Map<string, InstalledRelease[]>();
  for (const r of listReleases(assetsDir)) {
    const g = `${r.channel}/${r.arch}`;
    groups.set(g, [...(groups.get(g) ?? []), r]);
  }
  const out: PruneDecision[] = [];
  for (const releases of groups.values()) {
    const newestFirst = [...releases].sort((a, b) => compareVersions(b.version, a.version));
    newestFirst.forEach((r, i) => {
      const current = readCurrent(assetsDir, r.channel, r.arch);
      const why =
        i < keepN ? `one of the ${keepN} newest` : r.version === current ? `target of flatcar/${r.channel}/current/${r.arch}` : pinned.has(`${r.channel}/${r.version}/${r.arch}`) ? 'pinned by a profile' : null;
      out.push({ release: r, keep: why !== null, why: why ?? `older than the ${keepN} newest` });
    });
  }
  return out;
}

export interface PruneResult {
  readonly removed: readonly InstalledRelease[];
  /** Releases that were to go but a running fetch holds. */
  readonly busy: readonly InstalledRelease[];
}

export function applyPrune(plan: readonly PruneDecision[]): PruneResult {
  const removed: InstalledRelease[] = [];
  const busy: InstalledRelease[] = [];
  for (const d of plan) {
    if (d.keep) continue;
    let unlock: () => void;
    try {
      unlock = lockRelease(d.release.dir);
    } catch (err) {
      if (err instanceof AssetError && err.code === 'E_ASSET_BUSY') {
        busy.push(d.release);
        continue;
      }
      throw err;
    }
    try {
      removeRelease(d.release.dir);
      removed.push(d.release);
    } catch (err) {
      unlock();
      throw err;
    }
  }
  return { removed, busy };
}
