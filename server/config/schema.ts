/**
 * ajv, compiled once per schema, with its errors translated into located
 * operator-facing problems ("unknown key "rol"; expected one of: role, boot,
 * ...") instead of ajv's raw "must NOT have additional properties".
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Problem } from '../errors.js';
import { escapePointer, type YamlDocument } from './yaml.js';

export function compileSchema(schema: object): ValidateFunction {
  // useDefaults: the schema is the one place defaults are written down.
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true, verbose: true });
  return ajv.compile(schema);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value);
  return `${typeof value} ${String(value)}`;
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  object: 'a mapping (key: value)',
  array: 'a list',
  boolean: 'true or false',
  number: 'a number',
  integer: 'a whole number',
};

/** Friendlier words for the patterns the schemas use, keyed by the pattern text. */
const PATTERN_WORDS: Record<string, string> = {
  '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$': 'a DNS label: lower-case letters, digits and "-", at most 63 characters, not starting or ending with "-"',
  '^(current|[0-9]+\\.[0-9]+\\.[0-9]+)$': '"current" or a version such as 3975.2.0',
  '^[0-9]+[smhd]$': 'a duration such as 90s, 30m, 24h or 7d',
  '^0?[0-7]{3,4}$': 'an octal mode as a quoted string, e.g. "0644"',
  '^SWMTKN-1-[A-Za-z0-9-]+$': 'a swarm join token (SWMTKN-1-...)',
  '^[A-Za-z0-9:_.@\\\\-]+\\.(service|socket|timer|target|mount|automount|path|slice|swap)$': 'a systemd unit name such as hello.service or backup.timer',
  '^[A-Za-z0-9_.-]+\\.conf$': 'a drop-in file name ending in .conf',
  '^/[^\\u0000]*[^/]$': 'an absolute file path, not ending in "/"',
  '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$': 'an IPv4 address such as 10.0.0.21',
};

function message(e: ErrorObject, doc: YamlDocument): { pointer: string; text: string; key: boolean } | null {
  const value = valueAt(doc.value, e.instancePath);
  const schema = e.parentSchema as { properties?: Record<string, unknown>; description?: string } | undefined;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      const allowed = Object.keys(schema?.properties ?? {});
      return {
        pointer: `${e.instancePath}/${escapePointer(key)}`,
        text: `unknown key "${key}"` + (allowed.length ? `; expected one of: ${allowed.join(', ')}` : ''),
        key: true,
      };
    }
    case 'required':
      return { pointer: e.instancePath, text: `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`, key: false };
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ');
      return { pointer: e.instancePath, text: `must be one of ${allowed} (got ${describe(value)})`, key: false };
    }
    case 'type': {
      const t = String((e.params as { type: string | string[] }).type);
      const words = t.split(',').map((x) => TYPE_WORDS[x] ?? x).join(' or ');
      return { pointer: e.instancePath, text: `must be ${words} (got ${describe(value)})`, key: false };
    }
    case 'pattern': {
      const p = (e.params as { pattern: string }).pattern;
      const want = PATTERN_WORDS[p] ?? schema?.description ?? `text matching ${p}`;
      return { pointer: e.instancePath, text: `${describe(value)} is not valid: expected ${want}`, key: false };
    }
    case 'propertyNames': {
      const name = String((e.params as { propertyName: string }).propertyName);
      return { pointer: `${e.instancePath}/${escapePointer(name)}`, text: `invalid name "${name}"`, key: true };
    }
    case 'anyOf': {
      const branches = Array.isArray(e.schema) ? (e.schema as { const?: unknown; $ref?: string }[]) : [];
      const words = branches.map((b) =>
        b.const !== undefined ? JSON.stringify(b.const) : b.$ref === '#/definitions/duration' ? 'a duration such as 90s, 30m, 24h or 7d' : 'another allowed form',
      );
      return { pointer: e.instancePath, text: `${describe(value)} is not valid: expected ${words.join(' or ') || 'one of the allowed forms'}`, key: false };
    }
    default:
      return { pointer: e.instancePath, text: e.message ?? `fails ${e.keyword}`, key: false };
  }
}

/** Runs `validate` on the document's value and returns every problem, located. */
export function schemaProblems(validate: ValidateFunction, doc: YamlDocument): Problem[] {
  if (validate(doc.value)) return [];
  const out: Problem[] = [];
  const seen = new Set<string>();
  const errors = validate.errors ?? [];
  // Branch errors under anyOf, and the pattern error behind a propertyNames error, repeat what the parent says.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    if (e.keyword === 'if') continue;
    if (e.keyword !== 'anyOf' && anyOfPaths.has(e.instancePath)) continue;
    if (e.schemaPath.includes('/propertyNames/')) continue;
    const m = message(e, doc);
    if (m === null) continue;
    const id = `${m.pointer}\u0000${m.text}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(doc.problem(m.pointer, m.text, { key: m.key }));
  }
  return out;
}
