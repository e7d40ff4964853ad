/**
 * The server config: one YAML file (optional), validated like the profiles
 * (file:line:col errors), then overridden by command-line flags, then
 * resolved against the machine (interface addresses). The result is frozen
 * and is all `serve` needs to wire the servers.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces, totalmem, type NetworkInterfaceInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { isIPv4 } from 'node:net';
import { ConfigError, type Problem } from '../errors.js';
import { parseYaml } from './yaml.js';
import { compileSchema, schemaProblems } from './schema.js';
import { packageFile } from '../paths.js';
import { parseDuration } from '../profiles/load.js';
import type { PoolConfig } from '../dhcp/pool.js';

export type DhcpMode = 'full' | 'proxy' | 'off';

export interface ServerConfig {
  readonly configFile?: string;
  readonly interface: string;
  readonly address: string;
  /** The interface's subnet, CIDR. */
  readonly subnet: string;
  readonly profilesDir: string;
  readonly assetsDir: string;
  readonly stateDir: string;
  readonly logLevel: string;
  readonly http: {
    readonly address: string;
    readonly port: number;
    readonly secretsToLeasedIpOnly: boolean;
    /** Budget of the in-memory asset cache (server/http/asset-cache.ts), bytes; 0 = off. */
    readonly assetCacheBytes: number;
  };
  readonly tftp: {
    readonly enabled: boolean;
    readonly address: string;
    readonly port: number;
    readonly blksizeCap: number;
    readonly maxTransfers: number;
    readonly timeoutMs: number;
    readonly retries: number;
  };
  readonly dhcp: {
    readonly mode: DhcpMode;
    readonly replyDelayMs: number;
    /** How a lease is made durable before its ACK (see dhcp.lease_sync in config.schema.json). */
    readonly leaseSync: 'fsync' | 'write';
    readonly leaseSyncIntervalMs: number;
    readonly pools: readonly PoolConfig[];
  };
}

/** Flags that override the file (tests and quick starts use them). */
export interface ConfigFlags {
  interface?: string;
  address?: string;
  dhcp?: string;
  pool?: string;
  httpPort?: number;
  tftpPort?: number;
  profiles?: string;
  assets?: string;
  state?: string;
}

interface RawConfig {
  interface?: string;
  address?: string;
  profiles: string;
  assets: string;
  state: string;
  log_level: string;
  http: { address: string; port: number; secrets_to_leased_ip_only: boolean; asset_cache_mib?: number };
  tftp: { enabled: boolean; address?: string; port: number; blksize_cap: number; max_transfers: number; timeout: string; retries: number };
  dhcp: {
    mode: DhcpMode;
    reply_delay: string;
    lease_time: string;
    lease_sync: 'fsync' | 'write';
    lease_sync_interval: string;
    dns?: string[];
    domain?: string;
    pools?: { subnet?: string; range: string; router?: string; dns?: string[]; domain?: string; lease_time?: string }[];
  };
}

export type InterfaceTable = NodeJS.Dict<NetworkInterfaceInfo[]>;

export const CONFIG_SCHEMA_FILE = 'server/config/config.schema.json';
export const EXAMPLE_CONFIG_FILE = 'server/config/example.yaml';

let validator: ReturnType<typeof compileSchema> | undefined;

const MiB = 1024 * 1024;

/** The asset cache's default budget: 1 GiB (a Flatcar kernel and initrd, with room), but never more than a quarter of the machine's memory. */
export function defaultAssetCacheMiB(totalMemBytes: number): number {
  return Math.min(1024, Math.floor(totalMemBytes / 4 / MiB));
}

function msOf(text: string): number {
  const m = /^([0-9]+)(ms|s)$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function subnetOf(address: string, prefix: number): string {
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return `${intToIp((ipToInt(address) & mask) >>> 0)}/${prefix}`;
}

function inSubnet(ip: string, cidr: string): boolean {
  const [net, p] = cidr.split('/');
  const prefix = Number(p);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return ((ipToInt(ip) & mask) >>> 0) === ((ipToInt(net ?? '') & mask) >>> 0);
}

/** Picks the boot interface: the named one, or the only non-loopback IPv4 one. */
export function resolveInterface(
  table: InterfaceTable,
  name: string | undefined,
  address: string | undefined,
): { name: string; address: string; subnet: string } | string {
  const candidates = Object.entries(table).flatMap(([n, infos]) =>
    (infos ?? []).filter((i) => i.family === 'IPv4' && !i.internal).map((i) => ({ name: n, info: i })),
  );
  const pick = name === undefined ? candidates : candidates.filter((c) => c.name === name);
  if (name !== undefined && pick.length === 0) {
    const known = Object.keys(table).join(', ');
    return `interface "${name}" has no IPv4 address, or is down (interfaces with IPv4 here: ${known || 'none'})`;
  }
  const names = [...new Set(pick.map((c) => c.name))];
  if (names.length === 0) return 'no network interface with an IPv4 address; name one with --interface';
  if (names.length > 1) return `several interfaces have IPv4 addresses (${names.join(', ')}); choose the boot network with --interface or "interface:" in the config`;
  const chosen = address === undefined ? pick[0] : pick.find((c) => c.info.address === address);
  if (!chosen) return `interface ${names[0]} has no address ${address}`;
  const prefix = Number(chosen.info.cidr?.split('/')[1] ?? 24);
  return { name: chosen.name, address: chosen.info.address, subnet: subnetOf(chosen.info.address, prefix) };
}

export function loadServerConfig(
  file: string | undefined,
  flags: ConfigFlags = {},
  env: { interfaces?: () => InterfaceTable; cwd?: string; totalMemBytes?: () => number } = {},
): ServerConfig {
  const cwd = env.cwd ?? process.cwd();
  validator ??= compileSchema(JSON.parse(readFileSync(packageFile(CONFIG_SCHEMA_FILE), 'utf8')) as object);
  const text = file === undefined ? '' : readFileSync(file, 'utf8');
  const where = file ?? '(defaults)';
  const doc = parseYaml(text, where);
  const value = doc.value ?? {};
  const docv = { ...doc, value };
  const problems: Problem[] = schemaProblems(validator, docv);
  if (problems.length > 0) throw new ConfigError(problems);
  const raw = value as RawConfig;
  // Paths in a config file are relative to that file; flags and defaults to the working directory.
  const base = file === undefined ? cwd : dirname(resolve(cwd, file));
  const fromFile = (p: string) => resolve(base, p);
  const fromCwd = (p: string) => resolve(cwd, p);

  const bad = (pointer: string, message: string) => problems.push(doc.problem(pointer, message));
  const flagProblem = (message: string) => problems.push({ file: '(command line)', line: 1, col: 1, pointer: '', message });

  const mode = (flags.dhcp ?? raw.dhcp.mode) as DhcpMode;
  if (!['full', 'proxy', 'off'].includes(mode)) flagProblem(`--dhcp must be full, proxy or off (got ${JSON.stringify(flags.dhcp)})`);

  const iface = resolveInterface((env.interfaces ?? networkInterfaces)(), flags.interface ?? raw.interface, flags.address ?? raw.address);
  if (typeof iface === 'string') {
    if (mode !== 'off' || flags.interface !== undefined || raw.interface !== undefined) {
      flags.interface !== undefined || file === undefined ? flagProblem(iface) : bad('/interface', iface);
    }
  }
  const ifc = typeof iface === 'string' ? { name: '', address: '0.0.0.0', subnet: '0.0.0.0/0' } : iface;

  const leaseTime = parseDuration(raw.dhcp.lease_time);
  let pools: PoolConfig[] = [];
  if (flags.pool !== undefined) {
    const m = /^([0-9.]+)-([0-9.]+)$/.exec(flags.pool);
    if (!m || !isIPv4(m[1] ?? '') || !isIPv4(m[2] ?? '')) flagProblem(`--pool must be START-END, e.g. 10.0.0.100-10.0.0.199 (got ${flags.pool})`);
    else {
      pools = [{ subnet: ifc.subnet, range: { start: m[1]!, end: m[2]! }, router: ifc.address, leaseTime, ...(raw.dhcp.dns ? { dns: raw.dhcp.dns } : {}), ...(raw.dhcp.domain ? { domain: raw.dhcp.domain } : {}) }];
    }
  } else {
    pools = (raw.dhcp.pools ?? []).map((p, i) => {
      const [start = '', end = ''] = p.range.split('-');
      const subnet = p.subnet ?? ifc.subnet;
      for (const [ip, key] of [[start, 'range'], [end, 'range'], [p.router, 'router']] as const) {
        if (ip !== undefined && !isIPv4(ip)) bad(`/dhcp/pools/${i}/${key}`, `${ip} is not an IPv4 address`);
        else if (ip !== undefined && !inSubnet(ip, subnet)) bad(`/dhcp/pools/${i}/${key}`, `${ip} is outside the pool's subnet ${subnet}`);
      }
      if (isIPv4(start) && isIPv4(end) && ipToInt(start) > ipToInt(end)) bad(`/dhcp/pools/${i}/range`, `range starts after it ends (${p.range})`);
      const dns = p.dns ?? raw.dhcp.dns;
      const domain = p.domain ?? raw.dhcp.domain;
      return {
        subnet,
        range: { start, end },
        ...(p.router !== undefined ? { router: p.router } : {}),
        ...(dns ? { dns } : {}),
        ...(domain ? { domain } : {}),
        leaseTime: p.lease_time ? parseDuration(p.lease_time) : leaseTime,
      };
    });
  }
  if (mode === 'full' && pools.length === 0) {
    flagProblem('full DHCP mode needs an address pool: "dhcp.pools" in the config, or --pool START-END');
  }
  for (const [name, port] of [['--http-port', flags.httpPort], ['--tftp-port', flags.tftpPort]] as const) {
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) flagProblem(`${name} must be a port number 0-65535`);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const cfg: ServerConfig = {
    ...(file !== undefined ? { configFile: resolve(cwd, file) } : {}),
    interface: ifc.name,
    address: ifc.address,
    subnet: ifc.subnet,
    profilesDir: flags.profiles !== undefined ? fromCwd(flags.profiles) : fromFile(raw.profiles),
    assetsDir: flags.assets !== undefined ? fromCwd(flags.assets) : fromFile(raw.assets),
    stateDir: flags.state !== undefined ? fromCwd(flags.state) : fromFile(raw.state),
    logLevel: raw.log_level,
    http: {
      address: raw.http.address,
      port: flags.httpPort ?? raw.http.port,
      secretsToLeasedIpOnly: raw.http.secrets_to_leased_ip_only,
      assetCacheBytes: (raw.http.asset_cache_mib ?? defaultAssetCacheMiB(env.totalMemBytes?.() ?? totalmem())) * MiB,
    },
    tftp: {
      enabled: raw.tftp.enabled,
      address: raw.tftp.address ?? ifc.address,
      port: flags.tftpPort ?? raw.tftp.port,
      blksizeCap: raw.tftp.blksize_cap,
      maxTransfers: raw.tftp.max_transfers,
      timeoutMs: msOf(raw.tftp.timeout),
      retries: raw.tftp.retries,
    },
    dhcp: { mode, replyDelayMs: msOf(raw.dhcp.reply_delay), leaseSync: raw.dhcp.lease_sync, leaseSyncIntervalMs: msOf(raw.dhcp.lease_sync_interval), pools },
  };
  return Object.freeze(cfg);
}

/** The commented example printed by `swarmboot config example`; a test keeps it valid. */
export function exampleConfig(): string {
  return readFileSync(packageFile(EXAMPLE_CONFIG_FILE), 'utf8');
}
