/**
 * One error registry (fastify-style): every error swarmboot raises on purpose
 * carries a stable `code` and the HTTP status the express handler maps it to.
 * Anything else reaching a boundary is a bug and is reported as 500.
 */
export class SwarmbootError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

/** One located problem in an operator-written file. */
export interface Problem {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
  pointer: string; // JSON pointer into the document, '' for the root
  message: string;
}

export function formatProblem(p: Problem): string {
  const where = p.pointer === '' ? '' : ` (at ${p.pointer})`;
  return `${p.file}:${p.line}:${p.col}: ${p.message}${where}`;
}

/** Config or profiles failed validation; carries every problem found, not just the first. */
export class ConfigError extends SwarmbootError {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[], summary?: string) {
    super('E_CONFIG', 500, summary ?? problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

/** A MAC (or other key) that no profile serves. */
export class NoMatchError extends SwarmbootError {
  constructor(message: string) {
    super('E_NO_MATCH', 404, message);
  }
}

/** Caller input we refuse: a malformed MAC, a bad query, a bad flag. */
export class BadRequestError extends SwarmbootError {
  constructor(message: string) {
    super('E_BAD_REQUEST', 400, message);
  }
}

/** The caller is not entitled to this (wrong IP for a secret-bearing payload, bad swarm secret). */
export class ForbiddenError extends SwarmbootError {
  constructor(message: string) {
    super('E_FORBIDDEN', 403, message);
  }
}

/** Bytes off the wire that do not decode. Counted and dropped, never fatal. */
export class DecodeError extends SwarmbootError {
  constructor(message: string) {
    super('E_DECODE', 400, message);
  }
}
