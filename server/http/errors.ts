/**
 * The HTTP layer's own errors and the one express error handler. Every
 * refusal reaches a client as its status and one `code: message` line of
 * text/plain; blades print that on their console, so it must say why.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { SwarmbootError } from '../errors.js';
import type { Logger } from '../log.js';

/** A SwarmbootError that also sets response headers (Allow, Content-Range). */
export class HttpError extends SwarmbootError {
  readonly headers: Readonly<Record<string, string>>;
  constructor(code: string, status: number, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(code, status, message);
    this.headers = headers;
  }
}

export class NotFoundError extends HttpError {
  constructor(message: string) {
    super('E_NOT_FOUND', 404, message);
  }
}

export class MethodNotAllowedError extends HttpError {
  constructor(method: string, allow: readonly string[]) {
    super('E_METHOD', 405, `method ${method} not allowed here (allowed: ${allow.join(', ')})`, { Allow: allow.join(', ') });
  }
}

export class RangeNotSatisfiableError extends HttpError {
  constructor(size: number) {
    super('E_RANGE', 416, `range not satisfiable: the file has ${size} bytes`, { 'Content-Range': `bytes */${size}` });
  }
}

export class PreconditionFailedError extends HttpError {
  constructor(message: string) {
    super('E_PRECONDITION', 412, message);
  }
}

/** Multi-line messages (a ConfigError lists every problem) collapse to one line for a console. */
export function oneLine(message: string): string {
  const lines = message.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length <= 1) return lines[0] ?? '';
  return `${lines[0]} (and ${lines.length - 1} more line(s); see the server log)`;
}

/** What express itself (router, URI decoding) throws: an Error with a 4xx `status` meant to be shown. */
function exposedHttpStatus(err: unknown): number | null {
  if (!(err instanceof Error)) return null;
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  const expose = (err as { expose?: unknown }).expose;
  if (typeof status === 'number' && status >= 400 && status < 500 && expose !== false) return status;
  return null;
}

function sendPlain(res: ServerResponse, status: number, text: string, headers: Readonly<Record<string, string>> = {}): void {
  // Drop whatever the route had set for the response it meant to send (ETag, Content-Range...).
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const body = text + '\n';
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.end(body);
}

/** Unknown routes. */
export const notFoundHandler: RequestHandler = (req) => {
  throw new NotFoundError(`no route for ${req.method} ${req.path}`);
};

/**
 * Sends `err` as the response, in the one form every refusal takes, and
 * returns the status sent; the response must not have started. Refusals
 * (4xx) were logged once, with their reasons, where they were decided;
 * here they are only sent. A 5xx that is not a SwarmbootError is a bug:
 * the client gets "internal error" and the log gets the stack.
 */
export function sendError(log: Logger, req: IncomingMessage, res: ServerResponse, err: unknown): number {
  // express keeps the URL as received in originalUrl (req.url loses a mount prefix); the boot lane has only req.url.
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url;
  if (err instanceof SwarmbootError) {
    if (err.status >= 500) log.error({ err, code: err.code, method: req.method, url }, err.message);
    else log.debug({ code: err.code, status: err.status, method: req.method, url }, err.message);
    sendPlain(res, err.status, `${err.code}: ${oneLine(err.message)}`, err instanceof HttpError ? err.headers : {});
    return err.status;
  }
  const status = exposedHttpStatus(err);
  if (status !== null) {
    log.debug({ status, method: req.method, url, reason: (err as Error).message }, 'request refused by express');
    sendPlain(res, status, `E_HTTP: ${oneLine((err as Error).message)}`);
    return status;
  }
  log.error({ err, method: req.method, url }, 'internal error');
  sendPlain(res, 500, 'internal error');
  return 500;
}

/** express's error handler: sendError, unless the body had started. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      // Mid-body: the only honest signal left is to cut the connection.
      log.warn({ err, method: req.method, url: req.originalUrl }, 'error after the response started; connection closed');
      next(err);
      return;
    }
    sendError(log, req, res, err);
  };
}
