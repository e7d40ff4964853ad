/**
 * Test payloads: random bytes (so no layer can compress them), made once
 * per size in the cache and hard-linked into each server's root (linked,
 * not symlinked: swarmboot refuses symlinks that leave its root).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, linkSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CACHE } from './servers.js';

export const MiB = 1024 * 1024;

/** A cached file of `size` random bytes. */
export function payload(size: number): string {
  const dir = join(CACHE, 'files');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `random-${size}.bin`);
  if (existsSync(file) && statSync(file).size === size) return file;
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  const chunk = randomBytes(Math.min(size, 4 * MiB));
  // Fresh random bytes every chunk would cost seconds for 256 MiB; a 4 MiB period is still incompressible for gzip/deflate windows.
  for (let done = 0; done < size; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, size - done));
  closeSync(fd);
  renameSync(tmp, file);
  return file;
}

/** Puts `src` at `dest` (hard link, else copy), creating directories. */
export function place(src: string, dest: string): void {
  mkdirSync(dirname(dest), { recursive: true });
  if (existsSync(dest)) return;
  try {
    linkSync(src, dest);
  } catch {
    copyFileSync(src, dest);
  }
}
