/**
 * The boot binaries swarmboot hands to firmware (iPXE builds, pxelinux) come
 * from Debian's packages. `serve` copies any that are missing from the
 * assets dir (the TFTP root refuses symlinks that leave it, so a copy, not a
 * link), and says exactly what is missing and which package provides it.
 */
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface BootBinary {
  /** Path under the assets dir, as boot decisions name it. */
  readonly name: string;
  /** Where Debian installs it. */
  readonly sources: readonly string[];
  readonly pkg: string;
  /** Needed only by some profiles (pxelinux boot, other arches). */
  readonly optional: boolean;
}

export const BOOT_BINARIES: readonly BootBinary[] = [
  { name: 'undionly.kpxe', sources: ['/usr/lib/ipxe/undionly.kpxe'], pkg: 'ipxe', optional: false },
  { name: 'ipxe.efi', sources: ['/usr/lib/ipxe/ipxe.efi'], pkg: 'ipxe', optional: false },
  { name: 'snponly.efi', sources: ['/usr/lib/ipxe/snponly.efi'], pkg: 'ipxe', optional: true },
  { name: 'ipxe.pxe', sources: ['/usr/lib/ipxe/ipxe.pxe'], pkg: 'ipxe', optional: true },
  { name: 'pxelinux.0', sources: ['/usr/lib/PXELINUX/pxelinux.0'], pkg: 'pxelinux', optional: true },
  { name: 'ldlinux.c32', sources: ['/usr/lib/syslinux/modules/bios/ldlinux.c32'], pkg: 'syslinux-common', optional: true },
];

export interface BootBinaryReport {
  copied: string[];
  missing: { name: string; pkg: string; optional: boolean }[];
}

/** Copies missing boot binaries into `assetsDir` from their Debian locations. Idempotent. */
export function installBootBinaries(assetsDir: string, table: readonly BootBinary[] = BOOT_BINARIES): BootBinaryReport {
  const report: BootBinaryReport = { copied: [], missing: [] };
  for (const bin of table) {
    const dest = join(assetsDir, bin.name);
    if (existsSync(dest) && statSync(dest).isFile()) continue;
    const src = bin.sources.find((s) => existsSync(s));
    if (src === undefined) {
      report.missing.push({ name: bin.name, pkg: bin.pkg, optional: bin.optional });
      continue;
    }
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(src, dest);
    report.copied.push(bin.name);
  }
  return report;
}
