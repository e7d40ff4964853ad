/**
 * Which TFTP file names are served. Pure: the name as the client sent it
 * in, a root-relative path (or a refusal with the TFTP error code and the
 * reason for the log) out. The server then joins the path to the root and
 * checks, on the opened file, that symlinks did not lead out of it.
 *
 * Firmware and pxelinux ask for both `pxelinux.0` and `/pxelinux.0`, so a
 * leading `/` means "the root" (FACTS: normalise as if rooted at `/`). Names
 * that only an attacker or a confused client sends are refused outright
 * instead of being repaired: `..` even when it would stay inside, `\`,
 * `%xx` escapes (TFTP has no escaping, so these would be literal bytes that
 * some other layer might decode), control characters and non-ASCII.
 */
import { ERROR_CODE } from './packet.js';
import { sep } from 'node:path';

export type PathVerdict =
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly code: number; readonly reason: string };

const MAX_NAME = 255;

function refuse(code: number, reason: string): PathVerdict {
  return { ok: false, code, reason };
}

export function checkTftpPath(requested: string): PathVerdict {
  const denied = ERROR_CODE.ACCESS;
  if (requested.length === 0) return refuse(ERROR_CODE.NOT_FOUND, 'empty file name');
  if (requested.length > MAX_NAME) return refuse(denied, `file name longer than ${MAX_NAME} characters`);
  if (requested.includes('\0')) return refuse(denied, 'NUL byte in file name');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(requested)) return refuse(denied, 'control character in file name');
  if (/[^\x20-\x7e]/.test(requested)) return refuse(denied, 'non-ASCII character in file name');
  if (requested.includes('\\')) return refuse(denied, 'backslash in file name');
  if (requested.includes('%')) return refuse(denied, 'percent sign in file name (no escapes are decoded)');
  const segments = requested.split('/');
  if (segments.includes('..')) return refuse(denied, '".." segment in file name');
  const kept = segments.filter((s) => s !== '' && s !== '.');
  if (kept.length === 0) return refuse(ERROR_CODE.NOT_FOUND, 'file name names the root directory');
  if (requested.endsWith('/')) return refuse(ERROR_CODE.NOT_FOUND, 'file name ends with "/" (a directory)');
  return { ok: true, path: kept.join('/') };
}

/** True when `target` is `root` or below it; both must already be real (symlink-free) absolute paths. */
export function isWithin(root: string, target: string): boolean {
  if (target === root) return true;
  const prefix = root.endsWith(sep) ? root : root + sep;
  return target.startsWith(prefix);
}
