/**
 * The one owner of the current ProfileSet. A reload either swaps in a whole
 * new validated set or keeps the last good one and says why; readers call
 * current() per request and so never see a half-applied edit.
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { loadProfileDir } from './load.js';
import type { ProfileSet } from './types.js';

export type ReloadResult = { ok: true; set: ProfileSet } | { ok: false; error: ConfigError };

export class ProfileStore extends EventEmitter<{ change: [ProfileSet]; rejected: [ConfigError] }> {
  readonly dir: string;
  private set: ProfileSet | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly load: (dir: string) => ProfileSet;

  constructor(dir: string, log: Logger, opts: { load?: (dir: string) => ProfileSet } = {}) {
    super();
    this.dir = dir;
    this.log = log.child({ subsystem: 'profiles' });
    this.load = opts.load ?? loadProfileDir;
  }

  /** First load: a bad set is fatal here (there is no last good set to keep). */
  open(): ProfileSet {
    const set = this.load(this.dir);
    this.set = set;
    for (const w of set.warnings) this.log.warn({ warning: w }, 'profile warning');
    this.log.info({ dir: this.dir, machines: set.machines.size, profiles: set.profiles.size }, 'profiles loaded');
    return set;
  }

  current(): ProfileSet {
    if (this.set === undefined) throw new Error('ProfileStore.current() before open()');
    return this.set;
  }

  reload(): ReloadResult {
    try {
      const set = this.load(this.dir);
      this.set = set;
      for (const w of set.warnings) this.log.warn({ warning: w }, 'profile warning');
      this.log.info({ machines: set.machines.size, profiles: set.profiles.size }, 'profiles reloaded');
      this.emit('change', set);
      return { ok: true, set };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.log.error({ problems: err.problems.length, errors: err.message.split('\n') }, 'profile edit rejected; keeping the last good set');
      this.emit('rejected', err);
      return { ok: false, error: err };
    }
  }

  /** Reload on any change in the directory, debounced: editors write a file in several steps. */
  watch(debounceMs = 250): void {
    if (this.watcher) return;
    this.watcher = watch(this.dir, { persistent: false }, () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), debounceMs);
    });
    this.watcher.on('error', (err) => this.log.error({ err }, 'profile directory watch failed; use SIGHUP to reload'));
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
