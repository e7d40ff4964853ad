/**
 * Hand-built RenderContexts shaped like what the profile loader produces, so
 * renderer tests do not depend on the loader. One per boot path that matters:
 * a manager fed Ignition by URL, a worker fed it by an oem initrd, an old BIOS
 * blade on pxelinux (the 2017 seed's method), and an arm64 machine.
 */
import { requireMac } from '../../server/mac.js';
import type { Cluster, FlatcarImage, Machine, Profile, RenderContext } from '../../server/profiles/types.js';

export const SERVER_URL = 'http://10.0.0.1:8080';

const stable: FlatcarImage = { channel: 'stable', version: '3975.2.2', arch: 'amd64' };
const arm64: FlatcarImage = { channel: 'stable', version: 'current', arch: 'arm64' };

export const cluster: Cluster = {
  name: 'lab',
  serverUrl: SERVER_URL,
  flatcar: stable,
  sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyOnlyForTestsXXXXXXXXXXXXXXXXXXXX ops@lab'],
  kernelArgs: ['console=tty0', 'console=ttyS0,115200n8'],
  ignition: 'url',
  swarm: { mode: 'automatic', leaveLastManager: false, removeDownAfter: 3600, initTimeout: 120 },
  unknownMachines: { policy: 'ignore' },
};

function profile(name: string, line: number, over: Partial<Profile>): Profile {
  return {
    name,
    role: 'worker',
    boot: 'ipxe',
    efiBinary: 'ipxe.efi',
    forceIpxe: false,
    flatcar: stable,
    ignition: 'url',
    labels: {},
    kernelArgs: [],
    sshAuthorizedKeys: [],
    units: [],
    files: [],
    source: { file: 'profiles/profiles.yaml', line },
    ...over,
  };
}

export const profiles = {
  manager: profile('manager', 10, {
    role: 'manager',
    labels: { tier: 'control' },
    kernelArgs: ['flatcar.autologin=ttyS0'],
  }),
  worker: profile('worker', 20, {
    efiBinary: 'snponly.efi',
    ignition: 'oem',
    labels: { tier: 'compute' },
  }),
  legacy: profile('legacy', 30, {
    boot: 'pxelinux',
    ignition: 'oem',
    kernelArgs: ['flatcar.autologin=tty0'],
  }),
  arm: profile('arm', 40, {
    flatcar: arm64,
    // arm64 servers talk on the PL011/SBSA UART, not ttyS0.
    kernelArgs: ['console=ttyAMA0,115200'],
  }),
} as const satisfies Record<string, Profile>;

function machine(mac: string, hostname: string, p: Profile, line: number): Machine {
  return {
    mac: requireMac(mac),
    hostname,
    profile: p.name,
    labels: { ...p.labels, rack: 'r1' },
    known: true,
    source: { file: 'profiles/machines.yaml', line },
  };
}

function context(p: Profile, m: Machine, secretByte: string): RenderContext {
  return { cluster, profile: p, machine: m, serverUrl: SERVER_URL, swarmSecret: secretByte.repeat(32) };
}

/** Keyed by the name used for golden files (test/golden/<kind>/<name>.*). */
export const fixtures = {
  'manager-url': context(profiles.manager, machine('52:54:00:00:00:01', 'blade-01', profiles.manager, 3), '01'),
  'worker-oem': context(profiles.worker, machine('52:54:00:00:00:02', 'blade-02', profiles.worker, 7), '02'),
  'pxelinux-oem': context(profiles.legacy, machine('52:54:00:00:00:03', 'blade-03', profiles.legacy, 11), '03'),
  'arm64-url': context(profiles.arm, machine('52:54:00:00:00:04', 'arm-01', profiles.arm, 15), '04'),
} as const satisfies Record<string, RenderContext>;

export type FixtureName = keyof typeof fixtures;

export const fixtureNames = Object.keys(fixtures) as FixtureName[];

/** A copy of a fixture with some fields replaced, for error-path tests. */
export function withContext(name: FixtureName, over: Partial<RenderContext>): RenderContext {
  return { ...fixtures[name], ...over };
}

export function withProfile(name: FixtureName, over: Partial<Profile>): RenderContext {
  const ctx = fixtures[name];
  return { ...ctx, profile: { ...ctx.profile, ...over } };
}
