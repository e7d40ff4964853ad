/** A minimal valid Profile for unit tests, with overrides. */
import type { Profile } from '../../server/profiles/types.js';

export function testProfile(over: Partial<Profile> = {}): Profile {
  return {
    name: 'worker',
    role: 'worker',
    boot: 'ipxe',
    efiBinary: 'ipxe.efi',
    forceIpxe: false,
    flatcar: { channel: 'stable', version: 'current', arch: 'amd64' },
    ignition: 'url',
    labels: {},
    kernelArgs: [],
    sshAuthorizedKeys: [],
    units: [],
    files: [],
    source: { file: 'profiles/worker.yaml', line: 1 },
    ...over,
  };
}
