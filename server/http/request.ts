/**
 * Per-request bookkeeping shared by the routes and the metrics middleware:
 * which route answered (a fixed label set, never the raw URL, so a scanner
 * cannot blow up the metric's cardinality) and how many body bytes went out.
 * Kept beside the response in a WeakMap rather than in res.locals, which
 * express types as `any`. Everything here takes Node's own request and
 * response types (express's extend them), so the boot lane in front of
 * express (./boot.ts) shares it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { unescape } from 'node:querystring';
import type { Mac } from '../mac.js';
import { requireMac } from '../mac.js';
import { BadRequestError } from '../errors.js';

export type RouteLabel = 'boot.ipxe' | 'ipxe' | 'ignition' | 'oem' | 'assets' | 'healthz' | 'metrics' | 'api' | 'unmatched';

interface Note {
  route: RouteLabel;
  bytes: number;
}

const notes = new WeakMap<ServerResponse, Note>();

export function note(res: ServerResponse): Note {
  let n = notes.get(res);
  if (!n) {
    n = { route: 'unmatched', bytes: 0 };
    notes.set(res, n);
  }
  return n;
}

export function setRoute(res: ServerResponse, route: RouteLabel): void {
  note(res).route = route;
}

export function addBytes(res: ServerResponse, n: number): void {
  note(res).bytes += n;
}

/** The peer's address; IPv4-mapped IPv6 (dual-stack listeners) shown as plain IPv4, as DHCP leases hold it. */
export function remoteIp(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** One query component as node:querystring (express's "simple" parser) decodes it: `+` is a space, bad escapes stay as they are. */
function decodeComponent(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  return unescape(s.replace(/\+/g, ' '));
}

/** Every value of `name` in the query part of `url` (a request target such as `/ipxe?mac=...`), in order. */
export function queryValues(url: string, name: string): string[] {
  const q = url.indexOf('?');
  const out: string[] = [];
  if (q < 0) return out;
  const hash = url.indexOf('#', q);
  for (const part of url.slice(q + 1, hash < 0 ? url.length : hash).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (decodeComponent(eq < 0 ? part : part.slice(0, eq)) === name) out.push(eq < 0 ? '' : decodeComponent(part.slice(eq + 1)));
  }
  return out;
}

/** `?mac=` in any form parseMac takes; exactly one. Read from the raw URL, so it works with or without express. */
export function macParam(req: IncomingMessage): Mac {
  const values = queryValues(req.url ?? '', 'mac');
  const v = values[0];
  if (v === undefined) throw new BadRequestError('missing ?mac= (e.g. ?mac=52-54-00-12-34-56)');
  if (values.length > 1) throw new BadRequestError('give exactly one ?mac=');
  return requireMac(v);
}

/**
 * Writes a fully rendered body with its length, or just the headers for
 * HEAD. Content-Length always describes the body a GET would get.
 */
export function sendBody(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string | Buffer): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', buf.length);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  addBytes(res, buf.length);
  res.end(buf);
}
