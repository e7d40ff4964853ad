/**
 * Hand-built RenderContexts for the Ignition renderer's tests, shaped like
 * what the profile loader produces (server/profiles/types.ts), so the
 * renderer can be tested without YAML.
 */
import { parseMac, type Mac } from '../../server/mac.js';
import type {
  Cluster,
  Machine,
  Profile,
  RenderContext,
  Role,
  SwarmSettings,
} from '../../server/profiles/types.js';

export function mac(text: string): Mac {
  const m = parseMac(text);
  if (m === null) throw new Error(`fixture MAC ${text} does not parse`);
  return m;
}

const KEY_ADMIN = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKd0tJbpJ8Qm1HzqkP0mPz2yq3uJ6hQdQwZLkYb6nYxM admin@example.org';
const KEY_OPS = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq7Hc4zR0n9bV1k2sYq5W8oXr3eTfUa6LpGd1cJh0Ns ops@example.org';

export const automaticSwarm: SwarmSettings = {
  mode: 'automatic',
  leaveLastManager: false,
  removeDownAfter: 3600,
  initTimeout: 120,
};

export const staticSwarm: SwarmSettings = {
  mode: 'static',
  managers: ['10.0.0.2:2377', '10.0.0.3:2377'],
  tokens: {
    worker: 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx',
    manager: 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2',
  },
};

export function makeCluster(over: Partial<Cluster> = {}): Cluster {
  return {
    name: 'lab',
    serverUrl: 'http://10.0.0.1:8080',
    flatcar: { channel: 'stable', version: '4081.2.0', arch: 'amd64' },
    sshAuthorizedKeys: [KEY_ADMIN],
    kernelArgs: ['console=tty0', 'console=ttyS0'],
    ignition: 'url',
    swarm: automaticSwarm,
    unknownMachines: { policy: 'ignore' },
    ...over,
  };
}

export function makeProfile(role: Role, over: Partial<Profile> = {}): Profile {
  return {
    name: role === 'none' ? 'plain' : `${role}s`,
    role,
    boot: 'ipxe',
    efiBinary: 'ipxe.efi',
    forceIpxe: false,
    flatcar: { channel: 'stable', version: '4081.2.0', arch: 'amd64' },
    ignition: 'url',
    labels: {},
    kernelArgs: [],
    // The admin key again: the renderer must list it once.
    sshAuthorizedKeys: [KEY_OPS, KEY_ADMIN],
    units: [],
    files: [],
    source: { file: 'profiles/lab.yaml', line: 10 },
    ...over,
  };
}

export function makeMachine(macText: string, hostname: string, profile: string): Machine {
  return { mac: mac(macText), hostname, profile, labels: {}, known: true, source: { file: 'profiles/lab.yaml', line: 40 } };
}

export function makeContext(cluster: Cluster, profile: Profile, machine: Machine): RenderContext {
  return {
    cluster,
    profile,
    machine,
    serverUrl: 'http://10.0.0.1:8080',
    swarmSecret: '9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c',
  };
}

const extrasProfile = makeProfile('worker', {
  name: 'gpu-workers',
  files: [
    {
      path: '/etc/sysctl.d/90-swarm.conf',
      mode: 0o644,
      contents: '# raise for overlay networks\nnet.ipv4.neigh.default.gc_thresh3 = 16384\n',
      overwrite: true,
    },
    {
      path: '/opt/bin/hello',
      mode: 0o755,
      contents: '#!/bin/sh\necho "héllo, 100% $USER" | tr a-z A-Z # <ok> & [done]?\n',
      overwrite: false,
    },
  ],
  units: [
    {
      name: 'node-exporter.service',
      enabled: true,
      contents: '[Unit]\nDescription=Prometheus node exporter\nAfter=docker.service\nRequires=docker.service\n\n[Service]\nExecStart=/usr/bin/docker run --rm --name node-exporter --net=host prom/node-exporter\nExecStop=/usr/bin/docker stop node-exporter\n\n[Install]\nWantedBy=multi-user.target\n',
      dropins: [],
    },
    {
      name: 'docker.service',
      dropins: [{ name: '10-opts.conf', contents: '[Service]\nEnvironment="DOCKER_OPTS=--log-opt max-size=10m"\n' }],
    },
    { name: 'update-engine.service', mask: true, dropins: [] },
  ],
});

/** name -> context; each has a golden file test/golden/ignition/<name>.json. */
export const ignitionFixtures: ReadonlyArray<{ readonly name: string; readonly ctx: RenderContext }> = [
  {
    name: 'manager',
    ctx: makeContext(makeCluster(), makeProfile('manager'), makeMachine('52:54:00:00:00:01', 'blade01', 'managers')),
  },
  {
    name: 'worker',
    ctx: makeContext(makeCluster(), makeProfile('worker'), makeMachine('52:54:00:00:00:02', 'blade02', 'workers')),
  },
  {
    name: 'none',
    ctx: makeContext(makeCluster(), makeProfile('none'), makeMachine('52:54:00:00:00:03', 'storage01', 'plain')),
  },
  {
    name: 'static-manager',
    ctx: makeContext(
      makeCluster({ swarm: staticSwarm }),
      makeProfile('manager'),
      makeMachine('52:54:00:00:00:04', 'blade04', 'managers'),
    ),
  },
  {
    name: 'extras',
    ctx: makeContext(
      makeCluster({ swarm: { ...automaticSwarm, leaveLastManager: true } }),
      extrasProfile,
      makeMachine('52:54:00:00:00:05', 'gpu01', 'gpu-workers'),
    ),
  },
];
