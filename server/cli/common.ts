import { resolve } from 'node:path';
import { loadProfileDir } from '../profiles/load.js';
import { loadServerKey } from '../swarm/secret.js';
import { BootService } from '../boot/service.js';
import type { ProfileSet } from '../profiles/types.js';

export const DEFAULT_PROFILES_DIR = 'profiles';
export const DEFAULT_STATE_DIR = 'state';

/** Options shared by the commands that read profiles. */
export const profileOptions = {
  profiles: { type: 'string', default: DEFAULT_PROFILES_DIR },
  state: { type: 'string', default: DEFAULT_STATE_DIR },
  'server-url': { type: 'string' },
} as const;

export function openBootService(values: { profiles: string; state: string; 'server-url'?: string | undefined }): { set: ProfileSet; boot: BootService } {
  const set = loadProfileDir(resolve(values.profiles));
  const boot = new BootService({
    profiles: () => set,
    // The same key serve uses, so a rendered config carries the secret the server will accept.
    serverKey: loadServerKey(resolve(values.state)),
    ...(values['server-url'] !== undefined ? { serverUrlOverride: values['server-url'] } : {}),
  });
  return { set, boot };
}
