/**
 * The Flatcar release server's layout and file formats, as pure functions:
 * URLs, version.txt, DIGESTS, version ordering and signing-key pins. No
 * network, no fs; the fetcher calls these with what it downloaded.
 */
import type { FlatcarArch, FlatcarChannel } from '../profiles/types.js';
import { FLATCAR_INITRD, FLATCAR_KERNEL } from '../boot/layout.js';
import { AssetError } from './errors.js';

export const CHANNELS: readonly FlatcarChannel[] = ['stable', 'beta', 'alpha', 'lts'];
export const ARCHES: readonly FlatcarArch[] = ['amd64', 'arm64'];

/** The two PXE payloads a Flatcar boot needs, in download order (small one first: a 404 shows up early). */
export const PXE_FILES: readonly string[] = [FLATCAR_KERNEL, FLATCAR_INITRD];

/** `{channel}` and `{arch}` are substituted, so one setting serves every channel and arch (mirrors too). */
export const DEFAULT_BASE_URL = 'https://{channel}.release.flatcar-linux.net/{arch}-usr/';

/** Where Flatcar publishes its image signing key (FACTS.md). The key rotates yearly: hence a setting. */
export const DEFAULT_SIGNING_KEY_URL = 'https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc';

/**
 * The pin for that key. Only the 64-bit key id is documented here, so that is
 * the default; a key id pin is accepted but reported as weaker than a full
 * fingerprint, and the fetch prints the full fingerprint so the operator can
 * confirm it out of band and pin it with --fingerprint.
 */
export const DEFAULT_FINGERPRINT = 'E25D9AED0593B34A';

const VERSION_RE = /^[0-9]+\.[0-9]+\.[0-9]+$/;

export function isVersion(text: string): boolean {
  return VERSION_RE.test(text);
}

/** Newest first is `sort(compareVersions).reverse()`; numeric per component, so 4012.0.0 > 3975.2.1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The release directory URL for one channel/arch, with a trailing slash. */
export function releaseBase(template: string, channel: FlatcarChannel, arch: FlatcarArch): string {
  const url = template.replaceAll('{channel}', channel).replaceAll('{arch}', arch);
  return url.endsWith('/') ? url : url + '/';
}

/** `<base><version>/<file>`; version is `current` or X.Y.Z. */
export function releaseUrl(base: string, version: string, file: string): string {
  return `${base}${version}/${file}`;
}

/**
 * FLATCAR_VERSION from version.txt (shell-style KEY=VALUE lines). The value
 * becomes a directory name, so anything but X.Y.Z is refused here rather
 * than trusted.
 */
export function parseVersionTxt(text: string, source = 'version.txt'): string {
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*FLATCAR_VERSION\s*=\s*["']?([^"'\s]*)["']?\s*$/.exec(line);
    if (!m) continue;
    const v = m[1] ?? '';
    if (!isVersion(v)) throw new AssetError('E_ASSET_VERSION', `${source}: FLATCAR_VERSION=${JSON.stringify(v)} is not a version of the form X.Y.Z`);
    return v;
  }
  throw new AssetError('E_ASSET_VERSION', `${source} has no FLATCAR_VERSION= line`);
}

/**
 * The SHA-512 for `file` from a DIGESTS file: blocks headed `# MD5 HASH`,
 * `# SHA1 HASH`, `# SHA512 HASH`..., each followed by md5sum-style lines
 * (`<hex>  <name>`, `*` marks binary mode). Returns lower-case hex or null.
 */
export function sha512FromDigests(text: string, file: string): string | null {
  let block = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const header = /^#\s*([A-Za-z0-9-]+)\s+HASH\s*$/i.exec(line);
    if (header) {
      block = (header[1] ?? '').toUpperCase().replace('-', '');
      continue;
    }
    if (block !== 'SHA512') continue;
    const m = /^([0-9a-fA-F]{128})\s+\*?(\S+)$/.exec(line);
    if (m && (m[2] === file || m[2]?.split('/').pop() === file)) return (m[1] ?? '').toLowerCase();
  }
  return null;
}

/** A signing-key pin: a full fingerprint (v4: 40 hex, v6: 64 hex) or a 64-bit key id (16 hex). */
export interface KeyPin {
  readonly hex: string;
  readonly kind: 'fingerprint' | 'keyid';
}

/** Accepts the forms people paste: spaces, colons, a 0x prefix, any case. */
export function parsePin(text: string): KeyPin {
  const hex = text.replace(/^0x/i, '').replace(/[\s:]/g, '').toUpperCase();
  if (!/^[0-9A-F]+$/.test(hex)) throw new AssetError('E_ASSET_KEY', `--fingerprint ${JSON.stringify(text)} is not hexadecimal`);
  if (hex.length === 40 || hex.length === 64) return { hex, kind: 'fingerprint' };
  if (hex.length === 16) return { hex, kind: 'keyid' };
  throw new AssetError('E_ASSET_KEY', `--fingerprint must be a 40- or 64-digit fingerprint or a 16-digit key id; got ${hex.length} digits`);
}

/**
 * True when `fingerprint` is the pinned key: equal, or for a key id pin, its
 * key id (a v4 key id is the fingerprint's low 64 bits, a v6 one its high 64).
 */
export function pinMatches(pin: KeyPin, fingerprint: string): boolean {
  const fpr = fingerprint.toUpperCase();
  if (pin.kind === 'fingerprint') return fpr === pin.hex;
  return fpr.length === 64 ? fpr.startsWith(pin.hex) : fpr.endsWith(pin.hex);
}
