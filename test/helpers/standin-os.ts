/**
 * The stand-in OS the VM tests and the lab boot in place of Flatcar (no
 * Flatcar download is possible in CI): a Debian kernel and a busybox-static
 * initramfs whose init (test/fixtures/standin/init.sh) prints what the blade
 * received on the serial console and powers off.
 *
 * The Debian packages are fetched with apt-get and unpacked with dpkg-deb
 * into a gitignored cache (.cache/standin at the repo root); the initramfs
 * is packed with swarmboot's own newc writer, so the cpio the kernel
 * unpacks is also a check of that writer. Both are installed under the
 * Flatcar asset names, so the server path the VMs take is the production one.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipDeterministic, writeNewc, type CpioEntry } from '../../ignition/cpio.js';
import { flatcarInitrdPath, flatcarKernelPath } from '../../server/boot/layout.js';
import type { FlatcarImage } from '../../server/profiles/types.js';

const run = promisify(execFile);

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const STANDIN_CACHE = join(REPO_ROOT, '.cache/standin');
const FIXTURES = join(REPO_ROOT, 'test/fixtures/standin');

/** Every line the stand-in init reports starts with this. */
export const STANDIN_MARK = 'swarmboot-standin:';

/**
 * The kernel flavours tried, in order: "cloud" is half the size and boots
 * faster under TCG (fewer drivers probing); both build virtio as modules.
 */
const KERNEL_META_PACKAGES = ['linux-image-cloud-amd64', 'linux-image-amd64'] as const;
/** virtio-net and what it needs; the load order comes from each module's own depends= list. */
export const NET_MODULES = ['virtio_pci', 'virtio_net'] as const;

export interface StandinOs {
  /** Path of the Debian vmlinuz. */
  readonly kernel: string;
  /** Path of the gzip'd newc initramfs. */
  readonly initrd: string;
  readonly kernelVersion: string;
}

export type Say = (line: string) => void;

// ---------------------------------------------------------------- pure parts

/** The `depends=` list from a kernel module's .modinfo section (NUL-separated key=value strings). */
export function modinfoDepends(ko: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const at = ko.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const end = ko.indexOf(0, start);
  const text = ko.toString('latin1', start, end < 0 ? ko.length : end);
  return text === '' ? [] : text.split(',');
}

/** Modules in insmod order: every dependency before what needs it, each once. */
export function moduleLoadOrder(wanted: readonly string[], dependsOf: (name: string) => readonly string[]): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    if (order.includes(name)) return;
    if (visiting.has(name)) throw new Error(`module dependency cycle through ${name}`);
    visiting.add(name);
    for (const dep of dependsOf(name)) visit(dep);
    visiting.delete(name);
    order.push(name);
  };
  for (const name of wanted) visit(name);
  return order;
}

export interface InitramfsParts {
  /** The static busybox binary. */
  readonly busybox: Buffer;
  /** Kernel modules in load order. */
  readonly modules: readonly { readonly name: string; readonly data: Buffer }[];
  readonly init: string;
  readonly udhcpcScript: string;
}

/** Packs the stand-in root: pure, so the same parts give the same bytes (and the same cache file). */
export function buildStandinInitramfs(parts: InitramfsParts): Buffer {
  const dir = (name: string): CpioEntry => ({ name, mode: 0o040755 });
  const file = (name: string, data: Buffer, mode = 0o100644): CpioEntry => ({ name, mode, data });
  const entries: CpioEntry[] = [
    dir('bin'),
    file('bin/busybox', parts.busybox, 0o100755),
    { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
    dir('etc'),
    file('etc/udhcpc.script', Buffer.from(parts.udhcpcScript), 0o100755),
    file('etc/modules-order', Buffer.from(parts.modules.map((m) => m.name).join('\n') + '\n')),
    dir('lib'),
    dir('lib/modules'),
    ...parts.modules.map((m) => file(`lib/modules/${m.name}.ko`, m.data)),
    file('init', Buffer.from(parts.init), 0o100755),
  ];
  return gzipDeterministic(writeNewc(entries));
}

export interface StandinReport {
  /** The init ran (the kernel booted and unpacked the initramfs). */
  readonly booted: boolean;
  readonly kernel: string | null;
  readonly mac: string | null;
  readonly ip: string | null;
  /** SHA-256 of /usr/share/oem/config.ign; null when absent. */
  readonly oemSha256: string | null;
  /** ignition.config.url from /proc/cmdline; null when none. */
  readonly configUrl: string | null;
  /** SHA-256 of what configUrl returned (or of the oem file an oem:/// URL names). */
  readonly urlSha256: string | null;
  readonly errors: readonly string[];
  /** The init reached its end (it powers off next). */
  readonly done: boolean;
}

/**
 * Reads the stand-in's report lines out of a serial log. Firmware and
 * kernel output around them is ignored; a line cut short by the VM dying
 * simply does not count.
 */
export function parseStandinLog(text: string): StandinReport {
  const fields = new Map<string, string>();
  const errors: string[] = [];
  let booted = false;
  let done = false;
  for (const raw of text.split(/\r?\n/)) {
    const at = raw.indexOf(STANDIN_MARK);
    if (at < 0) continue;
    const rest = raw.slice(at + STANDIN_MARK.length).trim();
    if (rest.startsWith('boot')) booted = true;
    if (rest === 'done') done = true;
    for (const word of rest.split(/\s+/)) {
      const eq = word.indexOf('=');
      if (eq <= 0) continue;
      const key = word.slice(0, eq);
      const value = word.slice(eq + 1);
      if (key === 'error' || key === 'insmod-failed') errors.push(`${key}=${value}`);
      else fields.set(key, value);
    }
  }
  const hex = (k: string): string | null => {
    const v = fields.get(k);
    return v !== undefined && /^[0-9a-f]{64}$/.test(v) ? v : null;
  };
  const url = fields.get('url');
  return {
    booted,
    kernel: fields.get('kernel') ?? null,
    mac: fields.get('mac') ?? null,
    ip: fields.get('ip') ?? null,
    oemSha256: hex('oem-sha256'),
    configUrl: url === undefined || url === 'none' ? null : url,
    urlSha256: hex('url-sha256'),
    errors,
    done,
  };
}

// ---------------------------------------------------------- fetch and build

function newestDeb(dir: string, pattern: RegExp): string | undefined {
  if (!existsSync(dir)) return undefined;
  const hits = readdirSync(dir).filter((n) => pattern.test(n));
  hits.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const last = hits.at(-1);
  return last === undefined ? undefined : join(dir, last);
}

async function aptDownload(pkg: string, into: string, say: Say): Promise<void> {
  mkdirSync(into, { recursive: true });
  try {
    await run('apt-get', ['download', '-qq', pkg], { cwd: into, timeout: 300_000 });
  } catch {
    // A fresh machine has no package lists (or stale ones naming removed versions).
    say(`apt-get download ${pkg} failed; running apt-get update once and retrying`);
    await run('apt-get', ['update', '-qq'], { timeout: 300_000 });
    await run('apt-get', ['download', '-qq', pkg], { cwd: into, timeout: 300_000 });
  }
}

/** The versioned kernel package a meta package currently points at, e.g. linux-image-6.1.0-56-cloud-amd64. */
async function kernelPackageOf(meta: string): Promise<string | undefined> {
  const lookup = async (): Promise<string | undefined> => {
    try {
      const { stdout } = await run('apt-cache', ['depends', meta], { timeout: 60_000 });
      return /Depends: (linux-image-[0-9][^\s]*)/.exec(stdout)?.[1];
    } catch {
      return undefined;
    }
  };
  const known = await lookup();
  if (known !== undefined) return known;
  // A fresh machine may have no package lists yet.
  await run('apt-get', ['update', '-qq'], { timeout: 300_000 }).catch(() => undefined);
  return lookup();
}

const KERNEL_DEB = /^linux-image-[0-9][0-9.]*-[0-9]+-(cloud-)?amd64_.*_amd64\.deb$/;
const BUSYBOX_DEB = /^busybox-static_.*_amd64\.deb$/;
const APT_ARCHIVES = '/var/cache/apt/archives';

async function findOrFetchDeb(pattern: RegExp, debs: string, archives: string | null, fetch: () => Promise<void>): Promise<string> {
  const have = newestDeb(debs, pattern) ?? (archives === null ? undefined : newestDeb(archives, pattern));
  if (have !== undefined) return have;
  await fetch();
  const got = newestDeb(debs, pattern);
  if (got === undefined) throw new Error(`download finished but no file matching ${pattern} in ${debs}`);
  return got;
}

async function unpack(deb: string, into: string): Promise<void> {
  const tmp = `${into}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await run('dpkg-deb', ['-x', deb, tmp], { timeout: 300_000 });
  rmSync(into, { recursive: true, force: true });
  renameSync(tmp, into);
}

function findFile(root: string, name: string): string | undefined {
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, entry.name);
    if (entry.isDirectory()) {
      const hit = findFile(p, name);
      if (hit !== undefined) return hit;
    } else if (entry.name === name) {
      return p;
    }
  }
  return undefined;
}

/**
 * Fetches (once) and builds the stand-in OS under `cacheDir`. Debs already
 * in the cache or in apt's archive (`aptArchives`, null to ignore it) are
 * reused, so a second run needs no network. Throws with the reason when a
 * package cannot be had.
 */
export async function prepareStandin(opts: { cacheDir?: string; say?: Say; aptArchives?: string | null } = {}): Promise<StandinOs> {
  const cache = opts.cacheDir ?? STANDIN_CACHE;
  const say = opts.say ?? (() => {});
  const debs = join(cache, 'debs');
  mkdirSync(debs, { recursive: true });

  const archives = opts.aptArchives === undefined ? APT_ARCHIVES : opts.aptArchives;
  const kernelDeb = await findOrFetchDeb(KERNEL_DEB, debs, archives, async () => {
    for (const meta of KERNEL_META_PACKAGES) {
      const pkg = await kernelPackageOf(meta);
      if (pkg === undefined) continue;
      say(`downloading ${pkg} (stand-in kernel)`);
      await aptDownload(pkg, debs, say);
      return;
    }
    throw new Error(`no Debian kernel package found (tried ${KERNEL_META_PACKAGES.join(', ')}); is apt configured?`);
  });
  const busyboxDeb = await findOrFetchDeb(BUSYBOX_DEB, debs, archives, async () => {
    say('downloading busybox-static (stand-in userland)');
    await aptDownload('busybox-static', debs, say);
  });

  const unpackOnce = async (deb: string): Promise<string> => {
    const dir = join(cache, 'root', deb.split('/').pop()!.replace(/\.deb$/, ''));
    if (!existsSync(dir)) {
      say(`unpacking ${deb}`);
      await unpack(deb, dir);
    }
    return dir;
  };
  const kernelRoot = await unpackOnce(kernelDeb);
  const busyboxRoot = await unpackOnce(busyboxDeb);

  const boot = join(kernelRoot, 'boot');
  const vmlinuz = readdirSync(boot).find((n) => n.startsWith('vmlinuz-'));
  if (vmlinuz === undefined) throw new Error(`${kernelDeb} has no boot/vmlinuz-*`);
  const kernelVersion = vmlinuz.slice('vmlinuz-'.length);
  const modRoot = join(kernelRoot, 'lib/modules', kernelVersion);
  const modulePath = (name: string): string => {
    const p = findFile(modRoot, `${name}.ko`) ?? findFile(modRoot, `${name.replace(/_/g, '-')}.ko`);
    if (p === undefined) throw new Error(`kernel module ${name}.ko not found under ${modRoot}`);
    return p;
  };
  const order = moduleLoadOrder(NET_MODULES, (name) => modinfoDepends(readFileSync(modulePath(name))));

  const busyboxBin = join(busyboxRoot, 'bin/busybox');
  const image = buildStandinInitramfs({
    busybox: readFileSync(busyboxBin),
    modules: order.map((name) => ({ name, data: readFileSync(modulePath(name)) })),
    init: readFileSync(join(FIXTURES, 'init.sh'), 'utf8'),
    udhcpcScript: readFileSync(join(FIXTURES, 'udhcpc.script'), 'utf8'),
  });
  const digest = createHash('sha256').update(image).digest('hex').slice(0, 16);
  const initrd = join(cache, `standin-${kernelVersion}-${digest}.cpio.gz`);
  if (!existsSync(initrd) || statSync(initrd).size !== image.length) writeFileSync(initrd, image);
  // Builds from older init scripts or kernels are of no further use.
  for (const name of readdirSync(cache)) {
    if (/^standin-.*\.cpio\.gz$/.test(name) && join(cache, name) !== initrd) rmSync(join(cache, name), { force: true });
  }
  return { kernel: join(boot, vmlinuz), initrd, kernelVersion };
}

/** Copies the stand-in into `assetsDir` under the asset names the profiles' Flatcar image resolves to. */
export function installStandin(os: StandinOs, assetsDir: string, img: FlatcarImage): { kernel: string; initrd: string } {
  const kernel = join(assetsDir, flatcarKernelPath(img));
  const initrd = join(assetsDir, flatcarInitrdPath(img));
  mkdirSync(dirname(kernel), { recursive: true });
  copyFileSync(os.kernel, kernel);
  copyFileSync(os.initrd, initrd);
  return { kernel, initrd };
}
