/**
 * HTTP conditional and range requests (RFC 9110 sections 13 and 14), as pure
 * functions of header values and validators: no request, no response, no fs.
 * The asset and boot routes apply the verdicts.
 *
 * Choices where the RFC leaves room:
 *   - One range per request. A multi-range request gets the whole file (200):
 *     the RFC lets a server ignore Range, no boot client sends several, and
 *     multipart/byteranges is a known amplification vector.
 *   - A Range header that does not parse, or names another unit, is ignored
 *     (200 with the whole file), as section 14.2 asks.
 *   - A suffix range on an empty file is served as the (empty) whole file: a
 *     Content-Range for zero bytes cannot be written.
 */

/** What a response can be validated with. */
export interface Validators {
  /** Strong entity tag, quoted. */
  readonly etag: string;
  /** Last modification, in milliseconds; compared at one-second resolution (HTTP dates have no more). */
  readonly lastModifiedMs?: number;
}

export interface ConditionalHeaders {
  readonly ifMatch?: string | undefined;
  readonly ifNoneMatch?: string | undefined;
  readonly ifModifiedSince?: string | undefined;
  readonly ifUnmodifiedSince?: string | undefined;
}

/** 'proceed' = send the representation; 'not-modified' = 304; 'failed' = 412. */
export type Precondition = 'proceed' | 'not-modified' | 'failed';

interface TagRef {
  readonly weak: boolean;
  readonly opaque: string;
}

/**
 * Parses `"a", W/"b"` into tags and `*` into '*'; null when malformed, which
 * then matches nothing: a bad If-None-Match gets the full response and a bad
 * If-Match gets 412, the safe side both times. Commas may appear inside an
 * opaque tag, so this scans rather than splits.
 */
export function parseEntityTags(value: string): TagRef[] | '*' | null {
  const s = value.trim();
  if (s === '*') return '*';
  const tags: TagRef[] = [];
  let i = 0;
  const skipSpaceAndCommas = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
  };
  skipSpaceAndCommas();
  while (i < s.length) {
    let weak = false;
    if (s.startsWith('W/', i)) {
      weak = true;
      i += 2;
    }
    if (s[i] !== '"') return null;
    const close = s.indexOf('"', i + 1);
    if (close < 0) return null;
    tags.push({ weak, opaque: s.slice(i + 1, close) });
    i = close + 1;
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i < s.length && s[i] !== ',') return null;
    skipSpaceAndCommas();
  }
  return tags;
}

function opaqueOf(etag: string): TagRef | null {
  const tags = parseEntityTags(etag);
  if (tags === null || tags === '*' || tags.length !== 1) return null;
  return tags[0] ?? null;
}

/** Strong comparison (If-Match, If-Range): both tags strong and equal. */
export function strongMatch(list: string, etag: string): boolean {
  const ours = opaqueOf(etag);
  const tags = parseEntityTags(list);
  if (ours === null || tags === null) return false;
  if (tags === '*') return true;
  return !ours.weak && tags.some((t) => !t.weak && t.opaque === ours.opaque);
}

/** Weak comparison (If-None-Match): equal opaque tags, W/ ignored. */
export function weakMatch(list: string, etag: string): boolean {
  const ours = opaqueOf(etag);
  const tags = parseEntityTags(list);
  if (ours === null || tags === null) return false;
  if (tags === '*') return true;
  return tags.some((t) => t.opaque === ours.opaque);
}

/** An HTTP-date in ms, or null when it does not parse (the header is then ignored). */
export function parseHttpDate(value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * The evaluation order of RFC 9110 section 13.2.2, steps 1 to 4, for a
 * representation that exists (If-Match: * therefore passes).
 */
export function evaluatePreconditions(method: string, h: ConditionalHeaders, v: Validators): Precondition {
  const safe = method === 'GET' || method === 'HEAD';
  if (h.ifMatch !== undefined) {
    if (!strongMatch(h.ifMatch, v.etag)) return 'failed';
  } else if (h.ifUnmodifiedSince !== undefined && v.lastModifiedMs !== undefined) {
    const since = parseHttpDate(h.ifUnmodifiedSince);
    if (since !== null && seconds(v.lastModifiedMs) > seconds(since)) return 'failed';
  }
  if (h.ifNoneMatch !== undefined) {
    if (weakMatch(h.ifNoneMatch, v.etag)) return safe ? 'not-modified' : 'failed';
  } else if (safe && h.ifModifiedSince !== undefined && v.lastModifiedMs !== undefined) {
    const since = parseHttpDate(h.ifModifiedSince);
    if (since !== null && seconds(v.lastModifiedMs) <= seconds(since)) return 'not-modified';
  }
  return 'proceed';
}

/**
 * If-Range (section 13.1.5): the Range applies only when the validator still
 * matches. An entity tag must match strongly; a date must equal
 * Last-Modified exactly. Anything else means "send the whole thing".
 */
export function ifRangeAllows(ifRange: string | undefined, v: Validators): boolean {
  if (ifRange === undefined) return true;
  const s = ifRange.trim();
  if (s.startsWith('"') || s.startsWith('W/')) {
    const tags = parseEntityTags(s);
    if (tags === null || tags === '*' || tags.length !== 1) return false;
    return strongMatch(s, v.etag);
  }
  const date = parseHttpDate(s);
  return date !== null && v.lastModifiedMs !== undefined && seconds(date) === seconds(v.lastModifiedMs);
}

export type RangeVerdict =
  | { readonly kind: 'full' }
  /** Inclusive byte positions, as Content-Range writes them. */
  | { readonly kind: 'partial'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

const FULL: RangeVerdict = { kind: 'full' };

/** The Range header against a representation of `size` bytes. */
export function parseRange(header: string | undefined, size: number): RangeVerdict {
  if (header === undefined) return FULL;
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return FULL;
  // List syntax allows empty elements ("bytes=0-1,,"): drop them.
  const specs = header
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length !== 1) return FULL;
  const spec = specs[0] as string;
  const suffix = /^-(\d+)$/.exec(spec);
  if (suffix) {
    const n = Number(suffix[1]);
    if (n === 0) return { kind: 'unsatisfiable' };
    if (size === 0) return FULL;
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 };
  }
  const m = /^(\d+)-(\d*)$/.exec(spec);
  if (!m) return FULL;
  const first = Number(m[1]);
  const last = m[2] === '' ? Infinity : Number(m[2]);
  if (last < first) return FULL; // invalid, so ignored
  if (first >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start: first, end: Math.min(last, size - 1) };
}
