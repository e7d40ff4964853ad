/**
 * The boot binaries swarmboot hands to firmware (iPXE builds, pxelinux) come
 * from Debian's packages, or from a directory the operator names (a custom
 * iPXE build, an arm64 one). `serve` copies any that are missing into the
 * assets dir (the TFTP root refuses symlinks that leave it, so a copy, not a
 * link), and `assets status` says exactly what is missing and the command
 * that fixes it.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ProfileSet } from '../profiles/types.js';

export interface BootBinary {
  /** Path under the assets dir, as boot decisions (server/boot/decide.ts) name it. */
  readonly name: string;
  /** Where Debian installs it, first found wins. */
  readonly sources: readonly string[];
  /** Debian package providing it, or null when no Debian package for this machine does. */
  readonly pkg: string | null;
  /** Needed only by some profiles (pxelinux boot, other arches). */
  readonly optional: boolean;
  /** What needs it, for messages. */
  readonly purpose: string;
}

export const BOOT_BINARIES: readonly BootBinary[] = [
  { name: 'undionly.kpxe', sources: ['/usr/lib/ipxe/undionly.kpxe'], pkg: 'ipxe', optional: false, purpose: 'BIOS machines (chainloads iPXE)' },
  { name: 'ipxe.efi', sources: ['/usr/lib/ipxe/ipxe.efi'], pkg: 'ipxe', optional: false, purpose: 'x86-64 UEFI machines' },
  { name: 'snponly.efi', sources: ['/usr/lib/ipxe/snponly.efi'], pkg: 'ipxe', optional: true, purpose: 'x86-64 UEFI profiles with efi_binary: snponly.efi' },
  { name: 'ipxe.pxe', sources: ['/usr/lib/ipxe/ipxe.pxe'], pkg: 'ipxe', optional: true, purpose: 'BIOS machines already running iPXE' },
  { name: 'pxelinux.0', sources: ['/usr/lib/PXELINUX/pxelinux.0'], pkg: 'pxelinux', optional: true, purpose: 'BIOS profiles with boot: pxelinux' },
  { name: 'ldlinux.c32', sources: ['/usr/lib/syslinux/modules/bios/ldlinux.c32'], pkg: 'syslinux-common', optional: true, purpose: 'BIOS profiles with boot: pxelinux' },
  { name: 'syslinux.efi', sources: ['/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi'], pkg: 'syslinux-efi', optional: true, purpose: 'UEFI profiles with boot: pxelinux' },
  { name: 'ldlinux.e64', sources: ['/usr/lib/syslinux/modules/efi64/ldlinux.e64'], pkg: 'syslinux-common', optional: true, purpose: 'UEFI profiles with boot: pxelinux' },
  // Debian ships no arm64 iPXE build in the amd64 `ipxe` package; these paths are where an arm64 host's package or a local build would put it.
  { name: 'arm64/ipxe.efi', sources: ['/usr/lib/ipxe/arm64-efi/ipxe.efi', '/usr/lib/ipxe/ipxe-arm64.efi'], pkg: null, optional: true, purpose: 'ARM64 UEFI machines' },
  { name: 'arm64/snponly.efi', sources: ['/usr/lib/ipxe/arm64-efi/snponly.efi', '/usr/lib/ipxe/snponly-arm64.efi'], pkg: null, optional: true, purpose: 'ARM64 UEFI machines (firmware NIC driver)' },
];

export interface MissingBinary {
  readonly name: string;
  readonly pkg: string | null;
  readonly optional: boolean;
  readonly purpose: string;
  /** A command (or two) that fixes it. */
  readonly fix: string;
}

export interface BootBinaryReport {
  copied: string[];
  missing: MissingBinary[];
}

export interface BootBinaryOptions {
  /** Searched before the Debian paths, as `<dir>/<name>` (so `<dir>/arm64/ipxe.efi`). */
  readonly searchDirs?: readonly string[];
  /** Quoted into fix commands (`--assets DIR`). */
  readonly assetsArg?: string;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function sourcesOf(bin: BootBinary, opts: BootBinaryOptions): string[] {
  return [...(opts.searchDirs ?? []).map((d) => join(d, bin.name)), ...bin.sources];
}

export function fixFor(bin: BootBinary, opts: BootBinaryOptions = {}): string {
  const assets = opts.assetsArg !== undefined ? ` --assets ${opts.assetsArg}` : '';
  const copy = `swarmboot assets binaries${assets}`;
  if (bin.pkg !== null) return `apt-get install ${bin.pkg} && ${copy}   (serve also copies it at start)`;
  return `build or obtain ${bin.name.split('/').pop() ?? bin.name} for this arch, put it at DIR/${bin.name}, then: ${copy} --from DIR`;
}

function missingOf(bin: BootBinary, opts: BootBinaryOptions): MissingBinary {
  return { name: bin.name, pkg: bin.pkg, optional: bin.optional, purpose: bin.purpose, fix: fixFor(bin, opts) };
}

/** Copies missing boot binaries into `assetsDir` from the search dirs or Debian's locations. Idempotent. */
export function installBootBinaries(assetsDir: string, table: readonly BootBinary[] = BOOT_BINARIES, opts: BootBinaryOptions = {}): BootBinaryReport {
  const report: BootBinaryReport = { copied: [], missing: [] };
  for (const bin of table) {
    const dest = join(assetsDir, bin.name);
    if (isFile(dest)) continue;
    const src = sourcesOf(bin, opts).find(isFile);
    if (src === undefined) {
      report.missing.push(missingOf(bin, opts));
      continue;
    }
    mkdirSync(dirname(dest), { recursive: true });
    // Through a temp name: a TFTP client must never get half a binary.
    const tmp = join(dirname(dest), `.${bin.name.split('/').pop() ?? 'bin'}.${process.pid}.tmp`);
    copyFileSync(src, tmp);
    renameSync(tmp, dest);
    report.copied.push(bin.name);
  }
  return report;
}

export interface BinaryStatus {
  readonly name: string;
  readonly present: boolean;
  /** Where it could be copied from now, when not present. */
  readonly available: string | null;
  readonly optional: boolean;
  /** Profiles that need it (empty when no profiles were given or none does). */
  readonly neededBy: readonly string[];
  readonly purpose: string;
  readonly fix: string | null;
}

/**
 * Which profiles need a binary. ipxe.efi counts for pxelinux profiles too:
 * UEFI machines fall back to it when syslinux.efi is absent (decide.ts).
 */
export function profilesNeeding(bin: BootBinary, set: ProfileSet): string[] {
  const out: string[] = [];
  for (const p of set.profiles.values()) {
    const arm = p.flatcar.arch === 'arm64';
    const need =
      bin.name === 'pxelinux.0' || bin.name === 'ldlinux.c32' || bin.name === 'syslinux.efi' || bin.name === 'ldlinux.e64'
        ? p.boot === 'pxelinux'
        : bin.name.startsWith('arm64/')
          ? arm && bin.name.endsWith(p.efiBinary)
          : bin.name === 'snponly.efi'
            ? !arm && p.efiBinary === 'snponly.efi'
            : bin.name === 'ipxe.pxe'
              ? false
              : bin.name === 'undionly.kpxe'
                ? !arm && p.boot === 'ipxe'
                : !arm;
    if (need) out.push(p.name);
  }
  return out;
}

/** What is there, what is not, and the fix; copies nothing. */
export function bootBinaryStatus(assetsDir: string, set: ProfileSet | null, table: readonly BootBinary[] = BOOT_BINARIES, opts: BootBinaryOptions = {}): BinaryStatus[] {
  return table.map((bin) => {
    const present = isFile(join(assetsDir, bin.name));
    const available = present ? null : (sourcesOf(bin, opts).find(isFile) ?? null);
    const fix = present ? null : available !== null ? `swarmboot assets binaries${opts.assetsArg !== undefined ? ` --assets ${opts.assetsArg}` : ''}   (serve also copies it at start)` : fixFor(bin, opts);
    return { name: bin.name, present, available, optional: bin.optional, neededBy: set ? profilesNeeding(bin, set) : [], purpose: bin.purpose, fix };
  });
}
