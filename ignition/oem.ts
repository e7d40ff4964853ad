/**
 * The oem initrd: a gzip'd newc archive holding only the machine's Ignition
 * config at usr/share/oem/config.ign. The kernel unpacks it over the
 * Flatcar PXE initramfs, and Flatcar's PXE setup reads it from there (the
 * 2017 seed's method, for firmware that cannot fetch a config by URL).
 */
import { SwarmbootError } from '../server/errors.js';
import { OEM_CONFIG_PATH } from '../server/boot/layout.js';
import { gzipDeterministic, writeNewc, S_IFDIR, S_IFREG, type CpioEntry } from './cpio.js';

/** The uncompressed archive: each parent directory of OEM_CONFIG_PATH (the kernel creates none), then the file. */
export function oemEntries(ignitionJson: string): CpioEntry[] {
  const parts = OEM_CONFIG_PATH.split('/');
  const dirs = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
  return [
    ...dirs.map((name): CpioEntry => ({ name, mode: S_IFDIR | 0o755 })),
    { name: OEM_CONFIG_PATH, mode: S_IFREG | 0o644, data: Buffer.from(ignitionJson, 'utf8') },
  ];
}

/**
 * Same config in, same bytes out (per Node build), so callers may cache by
 * content and use a digest as ETag. A config that is not a JSON object would
 * only fail much later, on the blade's console, so refuse it here.
 */
export function renderOem(ignitionJson: string): Buffer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(ignitionJson);
  } catch (err) {
    throw new SwarmbootError('E_OEM_CONFIG', 500, `oem initrd: Ignition config is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SwarmbootError('E_OEM_CONFIG', 500, 'oem initrd: Ignition config must be a JSON object');
  }
  return gzipDeterministic(writeNewc(oemEntries(ignitionJson)));
}
