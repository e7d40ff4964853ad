/**
 * Per-request bookkeeping shared by the routes and the metrics middleware:
 * which route answered (a fixed label set, never the raw URL, so a scanner
 * cannot blow up the metric's cardinality) and how many body bytes went out.
 * Kept beside the response in a WeakMap rather than in res.locals, which
 * express types as `any`.
 */
import type { Request, Response } from 'express';
import type { Mac } from '../mac.js';
import { requireMac } from '../mac.js';
import { BadRequestError } from '../errors.js';

export type RouteLabel = 'boot.ipxe' | 'ipxe' | 'ignition' | 'oem' | 'assets' | 'healthz' | 'metrics' | 'api' | 'unmatched';

interface Note {
  route: RouteLabel;
  bytes: number;
}

const notes = new WeakMap<Response, Note>();

export function note(res: Response): Note {
  let n = notes.get(res);
  if (!n) {
    n = { route: 'unmatched', bytes: 0 };
    notes.set(res, n);
  }
  return n;
}

export function setRoute(res: Response, route: RouteLabel): void {
  note(res).route = route;
}

export function addBytes(res: Response, n: number): void {
  note(res).bytes += n;
}

/** The peer's address; IPv4-mapped IPv6 (dual-stack listeners) shown as plain IPv4, as DHCP leases hold it. */
export function remoteIp(req: Request): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** `?mac=` in any form parseMac takes; exactly one. */
export function macParam(req: Request): Mac {
  const v: unknown = req.query['mac'];
  if (v === undefined) throw new BadRequestError('missing ?mac= (e.g. ?mac=52-54-00-12-34-56)');
  if (typeof v !== 'string') throw new BadRequestError('give exactly one ?mac=');
  return requireMac(v);
}

/**
 * Writes a fully rendered body with its length, or just the headers for
 * HEAD. Content-Length always describes the body a GET would get.
 */
export function sendBody(req: Request, res: Response, status: number, contentType: string, body: string | Buffer): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.status(status);
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
