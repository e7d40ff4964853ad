/**
 * Loads profiles/*.yaml into one validated, frozen ProfileSet, or throws a
 * ConfigError carrying every problem found in every file. Nothing is
 * partially applied: the caller either gets a whole new set or an error.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import { ConfigError, type Problem } from '../errors.js';
import { parseMac, type Mac } from '../mac.js';
import { kernelArgProblem } from '../boot/kernel-args.js';
import { IGNITION_OWN } from '../boot/layout.js';
import { parseYaml, pointerOf, type YamlDocument } from '../config/yaml.js';
import { compileSchema, schemaProblems } from '../config/schema.js';
import { unitProblems } from './unit-check.js';
import { packageFile } from '../paths.js';
import type {
  Cluster,
  FileSpec,
  FlatcarImage,
  Machine,
  Profile,
  ProfileSet,
  SwarmSettings,
  UnitSpec,
  UnknownMachinePolicy,
} from './types.js';

// ---- the YAML shapes, after schema validation and defaults (snake_case, as written) ----
interface RawFlatcar {
  channel?: FlatcarImage['channel'];
  version?: string;
  arch?: FlatcarImage['arch'];
}
interface RawSwarm {
  mode: 'automatic' | 'static' | 'off';
  leave_last_manager: boolean;
  remove_down_after: string;
  init_timeout: string;
  managers?: string[];
  join_tokens?: { worker?: string; manager?: string };
}
interface RawCluster {
  name: string;
  server_url?: string;
  flatcar?: RawFlatcar;
  ssh_authorized_keys: string[];
  kernel_args: string[];
  ignition?: 'url' | 'oem';
  swarm?: RawSwarm;
  unknown_machines: string;
}
interface RawUnit {
  name: string;
  enabled?: boolean;
  mask?: boolean;
  contents?: string;
  dropins: { name: string; contents: string }[];
}
interface RawFile {
  path: string;
  mode: string;
  contents: string;
  overwrite: boolean;
}
interface RawMachine {
  mac: string;
  hostname?: string;
  ip?: string;
  labels?: Record<string, string | number | boolean>;
}
interface RawProfile {
  role: Profile['role'];
  boot: Profile['boot'];
  efi_binary: Profile['efiBinary'];
  force_ipxe: boolean;
  flatcar?: RawFlatcar;
  ignition?: 'url' | 'oem';
  labels?: Record<string, string | number | boolean>;
  kernel_args: string[];
  ssh_authorized_keys: string[];
  units: RawUnit[];
  files: RawFile[];
  machines: RawMachine[];
}
interface RawFile_ {
  cluster?: RawCluster;
  profiles?: Record<string, RawProfile>;
}

export const PROFILE_SCHEMA_FILE = 'profiles/profiles.schema.json';
export const DEFAULT_FLATCAR: FlatcarImage = Object.freeze({ channel: 'stable', version: 'current', arch: 'amd64' });
const DEFAULT_SWARM: RawSwarm = { mode: 'automatic', leave_last_manager: false, remove_down_after: 'never', init_timeout: '120s' };

let validator: ReturnType<typeof compileSchema> | undefined;
function validateProfileFile(doc: YamlDocument): Problem[] {
  validator ??= compileSchema(JSON.parse(readFileSync(packageFile(PROFILE_SCHEMA_FILE), 'utf8')) as object);
  return schemaProblems(validator, doc);
}

/** Seconds in "90s" / "30m" / "24h" / "7d". */
export function parseDuration(text: string): number {
  const m = /^([0-9]+)([smhd])$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    if (value instanceof Map) for (const v of value.values()) deepFreeze(v);
    else for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function labelsOf(raw: Record<string, string | number | boolean> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw ?? {})) out[k] = String(v);
  return out;
}

function mergeFlatcar(base: FlatcarImage, over: RawFlatcar | undefined): FlatcarImage {
  return { channel: over?.channel ?? base.channel, version: over?.version ?? base.version, arch: over?.arch ?? base.arch };
}

/** The *.yaml / *.yml files of a directory, sorted so load order (and so messages) are stable. */
export function profileFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new ConfigError([{ file: dir, line: 1, col: 1, pointer: '', message: `cannot read the profiles directory: ${(err as Error).message}` }]);
  }
  return names.filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort().map((n) => join(dir, n));
}

export interface LoadInput {
  file: string;
  text: string;
}

/** Loads every profile file of `dir`. */
export function loadProfileDir(dir: string): ProfileSet {
  const files = profileFiles(dir);
  if (files.length === 0) {
    throw new ConfigError([{ file: dir, line: 1, col: 1, pointer: '', message: 'no profile files (*.yaml) in this directory' }]);
  }
  return loadProfiles(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })));
}

/** Pure core of loading: file texts in, ProfileSet out (or ConfigError with every problem). */
export function loadProfiles(inputs: readonly LoadInput[]): ProfileSet {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const docs: { doc: YamlDocument; raw: RawFile_; clean: (pointer: string) => boolean }[] = [];

  for (const input of inputs) {
    let doc: YamlDocument;
    try {
      doc = parseYaml(input.text, input.file);
    } catch (err) {
      if (err instanceof ConfigError) {
        problems.push(...err.problems);
        continue;
      }
      throw err;
    }
    if (doc.value === null || doc.value === undefined) doc = { ...doc, value: {} };
    const found = validateProfileFile(doc);
    problems.push(...found);
    // Keep going with the parts of a file that did pass the schema, so one run reports
    // duplicate MACs and bad units too, not only the first layer of mistakes.
    if (doc.value !== null && typeof doc.value === 'object' && !Array.isArray(doc.value)) {
      const bad = found.map((f) => f.pointer);
      docs.push({ doc, raw: doc.value as RawFile_, clean: (ptr) => !bad.some((b) => b === ptr || b.startsWith(ptr + '/') || ptr.startsWith(b + '/')) });
    }
  }

  // ---- the cluster section: exactly one ----
  const clusterDocs = docs.filter((d) => d.raw.cluster !== undefined);
  if (clusterDocs.length > 1) {
    const first = clusterDocs[0]!;
    const at = first.doc.locate('/cluster', { key: true });
    for (const extra of clusterDocs.slice(1)) {
      problems.push(extra.doc.problem('/cluster', `a second "cluster" section; the first is at ${first.doc.file}:${at.line}`, { key: true }));
    }
  }
  const clusterDoc = clusterDocs[0];
  if (clusterDoc === undefined) {
    problems.push({
      file: inputs[0]?.file ?? '(profiles)',
      line: 1,
      col: 1,
      pointer: '',
      message: 'no "cluster" section in any profile file: exactly one file must have one (with at least `name`)',
    });
  }

  // A cluster section that failed the schema is replaced by defaults so profiles can still be checked against something.
  const clusterOk = clusterDoc !== undefined && clusterDoc.clean('/cluster');
  const rawCluster: RawCluster =
    clusterOk && clusterDoc.raw.cluster ? clusterDoc.raw.cluster : { name: 'swarm', ssh_authorized_keys: [], kernel_args: [], unknown_machines: 'ignore' };
  const cdoc = clusterOk ? clusterDoc.doc : undefined;
  const cp = (ptr: string, msg: string, key = false) => {
    if (cdoc) problems.push(cdoc.problem(ptr, msg, { key }));
  };
  // Checked item by item even when other cluster keys are broken, so one run shows these too.
  const rawArgs = clusterDoc?.raw.cluster?.kernel_args;
  if (clusterDoc && Array.isArray(rawArgs)) {
    rawArgs.forEach((arg, i) => {
      const ptr = pointerOf('cluster', 'kernel_args', i);
      if (!clusterDoc.clean(ptr)) return;
      const why = kernelArgProblem(arg);
      if (why) problems.push(clusterDoc.doc.problem(ptr, why));
    });
  }
  const rawSwarm = { ...DEFAULT_SWARM, ...(rawCluster.swarm ?? {}) };
  let swarm: SwarmSettings;
  if (rawSwarm.mode === 'static') {
    if (!rawSwarm.managers) cp('/cluster/swarm', 'static swarm mode needs "managers" (addresses of existing managers)');
    if (!rawSwarm.join_tokens) cp('/cluster/swarm', 'static swarm mode needs "join_tokens" (worker and/or manager)');
    swarm = {
      mode: 'static',
      managers: (rawSwarm.managers ?? []).map((m) => (/:[0-9]+$/.test(m) ? m : `${m}:2377`)),
      tokens: { ...rawSwarm.join_tokens },
    };
  } else if (rawSwarm.mode === 'automatic') {
    for (const key of ['managers', 'join_tokens'] as const) {
      if (rawSwarm[key] !== undefined) cp(`/cluster/swarm/${key}`, `"${key}" is only used in static mode (swarmboot hands out tokens in automatic mode)`, true);
    }
    swarm = {
      mode: 'automatic',
      leaveLastManager: rawSwarm.leave_last_manager,
      removeDownAfter: rawSwarm.remove_down_after === 'never' ? null : parseDuration(rawSwarm.remove_down_after),
      initTimeout: parseDuration(rawSwarm.init_timeout),
    };
  } else {
    swarm = { mode: 'off' };
  }

  const unknownMachines: UnknownMachinePolicy =
    rawCluster.unknown_machines === 'ignore' ? { policy: 'ignore' } : { policy: 'profile', profile: rawCluster.unknown_machines };

  const cluster: Cluster = {
    name: rawCluster.name,
    ...(rawCluster.server_url !== undefined ? { serverUrl: rawCluster.server_url.replace(/\/+$/, '') } : {}),
    flatcar: mergeFlatcar(DEFAULT_FLATCAR, rawCluster.flatcar),
    sshAuthorizedKeys: rawCluster.ssh_authorized_keys,
    kernelArgs: rawCluster.kernel_args,
    ignition: rawCluster.ignition ?? 'url',
    swarm,
    unknownMachines,
  };

  // ---- profiles and machines, across files ----
  const profiles = new Map<string, Profile>();
  const profileAt = new Map<string, string>();
  const machines = new Map<Mac, Machine>();
  const macAt = new Map<Mac, string>();
  const hostAt = new Map<string, string>();
  const ipAt = new Map<string, string>();
  const ownPaths = new Set<string>([IGNITION_OWN.hostname, IGNITION_OWN.swarmScript, IGNITION_OWN.swarmEnv, IGNITION_OWN.dockerWantsLink]);

  for (const { doc, raw, clean } of docs) {
    if (!clean('/profiles')) {
      // Still look at the machines of profiles whose own shape is broken: their MACs and hostnames are worth checking now.
      for (const [name, rp] of Object.entries(raw.profiles ?? {})) {
        const base = pointerOf('profiles', name);
        if (!rp || typeof rp !== 'object') continue;
        if (clean(base)) {
          buildProfile(doc, name, rp, clean);
          continue;
        }
        buildProfile(doc, name, rp, clean, { checkOnly: true });
        if (Array.isArray(rp.machines) && clean(`${base}/machines`)) {
          rp.machines.forEach((rm, i) => addMachine(doc, `${base}/machines/${i}`, rm, name, {}));
        }
      }
      continue;
    }
    for (const [name, rp] of Object.entries(raw.profiles ?? {})) buildProfile(doc, name, rp, clean);
  }

  function addMachine(doc: YamlDocument, mp: string, rm: RawMachine, profileName: string, profileLabels: Record<string, string>): void {
    const p = (ptr: string, msg: string) => problems.push(doc.problem(ptr, msg));
    const mac = parseMac(rm.mac);
    if (mac === null) {
      p(`${mp}/mac`, `${JSON.stringify(rm.mac)} is not a MAC address (use aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF or aabb.ccdd.eeff)`);
      return;
    }
    const at = `${doc.file}:${doc.locate(`${mp}/mac`).line}`;
    if (macAt.has(mac)) {
      p(`${mp}/mac`, `MAC ${mac} is listed twice; the other is at ${macAt.get(mac)}`);
      return;
    }
    macAt.set(mac, at);
    if (rm.ip !== undefined) {
      if (!isIPv4(rm.ip)) p(`${mp}/ip`, `${JSON.stringify(rm.ip)} is not an IPv4 address`);
      else if (ipAt.has(rm.ip)) p(`${mp}/ip`, `address ${rm.ip} is reserved twice; the other is at ${ipAt.get(rm.ip)}`);
      else ipAt.set(rm.ip, at);
    }
    const hostname = rm.hostname ?? defaultHostname(profileName, mac);
    if (hostAt.has(hostname)) p(rm.hostname ? `${mp}/hostname` : `${mp}/mac`, `hostname "${hostname}" is used twice; the other is at ${hostAt.get(hostname)}`);
    else hostAt.set(hostname, at);
    machines.set(mac, {
      mac,
      hostname,
      ...(rm.ip !== undefined ? { ip: rm.ip } : {}),
      profile: profileName,
      labels: { ...profileLabels, ...labelsOf(rm.labels) },
      known: true,
      source: { file: doc.file, line: doc.locate(mp).line },
    });
  }

  /** Checks one profile; with checkOnly (its shape failed the schema) runs the checks its clean parts allow and registers nothing but the name. */
  function buildProfile(doc: YamlDocument, name: string, rp: RawProfile, clean: (ptr: string) => boolean, opts: { checkOnly?: boolean } = {}): void {
    {
      const base = pointerOf('profiles', name);
      const here = `${doc.file}:${doc.locate(base, { key: true }).line}`;
      const p = (ptr: string, msg: string, key = false) => problems.push(doc.problem(ptr, msg, { key }));
      if (profileAt.has(name)) {
        p(base, `profile "${name}" is defined twice; the other is at ${profileAt.get(name)}`, true);
        return;
      }
      profileAt.set(name, here);

      // Items that failed the schema are skipped here (already reported); the rest are checked in full.
      const part = <T,>(key: string, value: T[] | undefined): (T | undefined)[] =>
        Array.isArray(value) ? value.map((v, i) => (clean(`${base}/${key}/${i}`) ? v : undefined)) : [];
      part('kernel_args', rp.kernel_args).forEach((arg, i) => {
        if (arg === undefined) return;
        const why = kernelArgProblem(arg);
        if (why) p(`${base}/kernel_args/${i}`, why);
      });

      const unitNames = new Set<string>();
      const units: UnitSpec[] = part('units', rp.units).flatMap((u, i): UnitSpec[] => {
        if (u === undefined) return [];
        const up = `${base}/units/${i}`;
        if (unitNames.has(u.name)) p(`${up}/name`, `unit "${u.name}" is listed twice in this profile`);
        unitNames.add(u.name);
        if ([IGNITION_OWN.swarmUnit, IGNITION_OWN.reconcileService, IGNITION_OWN.reconcileTimer].includes(u.name as never)) {
          p(`${up}/name`, `unit "${u.name}" is swarmboot's own; give your unit another name`);
        }
        if (u.contents !== undefined) {
          for (const why of unitProblems(u.contents, { enabled: u.enabled === true })) p(`${up}/contents`, `unit ${u.name}: ${why}`);
        } else if (u.enabled === true && u.dropins.length === 0 && !u.mask) {
          // Enabling a unit Flatcar already ships is fine (e.g. docker.socket); nothing to check here.
        }
        if (u.mask && u.enabled) p(`${up}/mask`, `unit ${u.name} cannot be both masked and enabled`);
        u.dropins.forEach((d, j) => {
          for (const why of unitProblems(d.contents, { enabled: false, dropin: true })) p(`${up}/dropins/${j}/contents`, `drop-in ${d.name}: ${why}`);
        });
        return [{
          name: u.name,
          ...(u.enabled !== undefined ? { enabled: u.enabled } : {}),
          ...(u.mask !== undefined ? { mask: u.mask } : {}),
          ...(u.contents !== undefined ? { contents: u.contents } : {}),
          dropins: u.dropins.map((d) => ({ name: d.name, contents: d.contents })),
        }];
      });

      const filePaths = new Set<string>();
      const files: FileSpec[] = part('files', rp.files).flatMap((f, i): FileSpec[] => {
        if (f === undefined) return [];
        const fp = `${base}/files/${i}/path`;
        const norm = f.path.replace(/\/+/g, '/');
        if (norm.split('/').includes('..') || norm.split('/').includes('.')) p(fp, `path ${JSON.stringify(f.path)} must not contain "." or ".." segments`);
        if (ownPaths.has(norm)) p(fp, `path ${norm} is written by swarmboot itself (Ignition rejects duplicate paths)`);
        if (filePaths.has(norm)) p(fp, `path ${norm} is listed twice in this profile`);
        filePaths.add(norm);
        return [{ path: norm, mode: parseInt(f.mode, 8), contents: f.contents, overwrite: f.overwrite }];
      });

      if (opts.checkOnly) return;
      const profile: Profile = {
        name,
        role: rp.role,
        boot: rp.boot,
        efiBinary: rp.efi_binary,
        forceIpxe: rp.force_ipxe,
        flatcar: mergeFlatcar(cluster.flatcar, rp.flatcar),
        ignition: rp.ignition ?? cluster.ignition,
        labels: labelsOf(rp.labels),
        kernelArgs: rp.kernel_args,
        sshAuthorizedKeys: rp.ssh_authorized_keys,
        units,
        files,
        source: { file: doc.file, line: doc.locate(base, { key: true }).line },
      };
      profiles.set(name, profile);

      rp.machines.forEach((rm, i) => addMachine(doc, `${base}/machines/${i}`, rm, name, profile.labels));
    }
  }

  if (unknownMachines.policy === 'profile' && !profiles.has(unknownMachines.profile) && problems.length === 0) {
    cp('/cluster/unknown_machines', `"${unknownMachines.profile}" is neither "ignore" nor a profile name (profiles: ${[...profiles.keys()].join(', ')})`);
  }

  if (swarm.mode === 'static' && cdoc) {
    const roles = new Set([...profiles.values()].map((p) => p.role));
    for (const role of ['worker', 'manager'] as const) {
      if (roles.has(role) && !swarm.tokens[role]) cp('/cluster/swarm/join_tokens', `static swarm mode: a profile has role ${role} but join_tokens.${role} is not set`);
    }
  }

  if (problems.length > 0) {
    problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
    throw new ConfigError(problems);
  }

  if (swarm.mode === 'automatic' && cdoc) {
    const managers = [...machines.values()].filter((m) => profiles.get(m.profile)?.role === 'manager').length;
    const where = cdoc.locate('/cluster/swarm', { key: true });
    const w = (msg: string) => warnings.push({ file: cdoc.file, line: where.line, col: where.col, pointer: '/cluster/swarm', message: msg });
    if (managers === 0 && machines.size > 0) w('no machine has a manager profile: workers will wait for a swarm that never forms');
    else if (managers > 0 && managers < 3) w(`${managers} manager(s): a swarm needs 3 to survive the loss of one`);
    else if (managers > 0 && managers % 2 === 0) w(`${managers} managers: an even count tolerates no more failures than ${managers - 1}; use an odd number`);
  }

  return deepFreeze({
    cluster,
    profiles,
    machines,
    warnings: warnings.map((w) => `${w.file}:${w.line}:${w.col}: warning: ${w.message}`),
    files: inputs.map((i) => i.file),
  });
}

/** "<profile>-<last 6 hex digits of the MAC>": stable across reboots and edits, unique within a rack. */
export function defaultHostname(profile: string, mac: Mac): string {
  return `${profile}-${mac.replace(/:/g, '').slice(6)}`;
}
