/**
 * YAML with source positions. js-yaml's `load` gives values without
 * locations; its event stream (`parseEvents`) gives offsets. We walk the
 * events once to map every JSON pointer to where its key and value start,
 * so a schema error on /profiles/worker/role can be reported as
 * `workers.yaml:7:11`. Used for profiles and the server config alike.
 */
import { loadAll, parseEvents, getScalarValue, EVENT_ID, YAMLException, CORE_SCHEMA, type Event } from 'js-yaml';
import { ConfigError, type Problem } from '../errors.js';

export interface Located {
  line: number; // 1-based
  col: number; // 1-based
}

export interface YamlDocument {
  readonly file: string;
  readonly value: unknown;
  /** Where the value at `pointer` starts; with `key`, where its key starts. Falls back to the nearest located ancestor. */
  locate(pointer: string, opts?: { key?: boolean }): Located;
  problem(pointer: string, message: string, opts?: { key?: boolean }): Problem;
}

export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointerOf(...segments: (string | number)[]): string {
  return segments.map((s) => '/' + escapePointer(String(s))).join('');
}

interface Frame {
  kind: 'doc' | 'map' | 'seq';
  pointer: string;
  index: number;
  expectKey: boolean;
  key: string | null;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

function offsetToLocated(starts: number[], offset: number): Located {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, col: offset - (starts[lo] ?? 0) + 1 };
}

function eventStart(ev: Event): number {
  switch (ev.type) {
    case EVENT_ID.MAPPING:
    case EVENT_ID.SEQUENCE:
      return ev.tagStart >= 0 ? Math.min(ev.start, ev.tagStart) : ev.start;
    case EVENT_ID.SCALAR: {
      // Quoted scalars' valueStart is inside the quote; block scalars' is on the next line. Prefer the tag/anchor when present.
      const marks = [ev.valueStart, ev.anchorStart, ev.tagStart].filter((n) => n >= 0);
      return marks.length > 0 ? Math.min(...marks) : 0;
    }
    case EVENT_ID.ALIAS:
      return Math.max(0, ev.anchorStart - 1);
    default:
      return -1;
  }
}

function positions(text: string, events: Event[]): { values: Map<string, number>; keys: Map<string, number> } {
  const values = new Map<string, number>();
  const keys = new Map<string, number>();
  const stack: Frame[] = [];
  for (const ev of events) {
    if (ev.type === EVENT_ID.DOCUMENT) {
      stack.push({ kind: 'doc', pointer: '', index: 0, expectKey: false, key: null });
      continue;
    }
    if (ev.type === EVENT_ID.POP) {
      stack.pop();
      continue;
    }
    const parent = stack[stack.length - 1];
    let pointer: string | null = null;
    if (parent === undefined || parent.kind === 'doc') {
      pointer = '';
    } else if (parent.kind === 'seq') {
      pointer = `${parent.pointer}/${parent.index++}`;
    } else if (parent.expectKey) {
      parent.expectKey = false;
      parent.key = ev.type === EVENT_ID.SCALAR ? getScalarValue(text, ev) : null;
      if (parent.key !== null) {
        const p = `${parent.pointer}/${escapePointer(parent.key)}`;
        if (!keys.has(p)) keys.set(p, eventStart(ev));
      }
      // A complex (collection) key: push a frame so its POP balances, but record nothing.
      if (ev.type === EVENT_ID.MAPPING || ev.type === EVENT_ID.SEQUENCE) {
        stack.push({ kind: ev.type === EVENT_ID.MAPPING ? 'map' : 'seq', pointer: '/\u0000', index: 0, expectKey: true, key: null });
      }
      continue;
    } else {
      parent.expectKey = true;
      pointer = parent.key === null ? null : `${parent.pointer}/${escapePointer(parent.key)}`;
    }
    if (pointer !== null && !values.has(pointer)) values.set(pointer, eventStart(ev));
    if (ev.type === EVENT_ID.MAPPING || ev.type === EVENT_ID.SEQUENCE) {
      stack.push({ kind: ev.type === EVENT_ID.MAPPING ? 'map' : 'seq', pointer: pointer ?? '/\u0000', index: 0, expectKey: true, key: null });
    }
  }
  return { values, keys };
}

/** Parses one YAML document. Syntax errors throw ConfigError with the file:line:col js-yaml reports. */
export function parseYaml(text: string, file: string): YamlDocument {
  let value: unknown;
  let events: Event[];
  try {
    // CORE_SCHEMA: YAML 1.2 scalars, so `yes` stays a string and `0644` does not turn octal behind the operator's back.
    // loadAll, not load: js-yaml 5's load rejects an empty file, and an empty (or all-comment) file is a fine thing to have.
    const docs = loadAll(text, { filename: file, schema: CORE_SCHEMA });
    if (docs.length > 1) {
      const second = text.search(/^---/m);
      const line = second < 0 ? 1 : text.slice(0, second).split('\n').length;
      throw new ConfigError([{ file, line, col: 1, pointer: '', message: 'more than one YAML document (---) in one file; use one file per document' }]);
    }
    value = docs[0] ?? null;
    events = parseEvents(text, { filename: file });
  } catch (err) {
    if (err instanceof YAMLException) {
      const mark = err.mark;
      throw new ConfigError([
        { file, line: (mark?.line ?? 0) + 1, col: (mark?.column ?? 0) + 1, pointer: '', message: `YAML syntax: ${err.reason}` },
      ]);
    }
    throw err;
  }
  const starts = lineStarts(text);
  const { values, keys } = positions(text, events);
  const locate = (pointer: string, opts?: { key?: boolean }): Located => {
    let p = pointer;
    for (;;) {
      const off = (opts?.key ? keys.get(p) : undefined) ?? values.get(p) ?? keys.get(p);
      if (off !== undefined && off >= 0) return offsetToLocated(starts, off);
      if (p === '') return { line: 1, col: 1 };
      p = p.slice(0, p.lastIndexOf('/'));
    }
  };
  return {
    file,
    value,
    locate,
    problem: (pointer, message, opts) => ({ file, ...locate(pointer, opts), pointer, message }),
  };
}
