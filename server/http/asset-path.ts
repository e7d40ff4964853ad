/**
 * Which /assets/ URL paths may name a file. Pure: the raw (still
 * percent-encoded) path below the mount point in, a root-relative path or a
 * refusal out. The asset route then resolves symlinks and checks, on the
 * opened file, that it is a regular file inside the root.
 *
 * Each segment is decoded on its own, so an encoded slash (`%2F`) shows up
 * as a segment containing `/` and is refused instead of becoming a separator.
 * Names that only an attacker or a confused client sends are refused, not
 * repaired: `..` even where it would stay inside, `\`, NUL and other control
 * characters. Dot-files are not served: the asset fetcher keeps partial
 * downloads under dot-names until they are verified.
 */

export type AssetPathVerdict =
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly status: 400 | 404; readonly reason: string };

const MAX_PATH = 1024;

function refuse(status: 400 | 404, reason: string): AssetPathVerdict {
  return { ok: false, status, reason };
}

export function checkAssetPath(raw: string): AssetPathVerdict {
  if (raw.length > MAX_PATH) return refuse(400, `path longer than ${MAX_PATH} characters`);
  const kept: string[] = [];
  for (const encoded of raw.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(encoded);
    } catch {
      return refuse(400, 'malformed percent-encoding');
    }
    if (seg.includes('\0')) return refuse(400, 'NUL byte in path');
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(seg)) return refuse(400, 'control character in path');
    if (seg.includes('/')) return refuse(400, 'encoded slash in path');
    if (seg.includes('\\')) return refuse(400, 'backslash in path');
    if (seg === '..') return refuse(400, '".." segment in path');
    if (seg === '' || seg === '.') continue;
    if (seg.startsWith('.')) return refuse(404, 'hidden files are not served');
    kept.push(seg);
  }
  if (kept.length === 0) return refuse(404, 'the assets directory itself is not listed');
  if (raw.endsWith('/')) return refuse(404, 'path ends with "/" (a directory)');
  return { ok: true, path: kept.join('/') };
}
