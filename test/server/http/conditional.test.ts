import t from 'tap';
import { evaluatePreconditions, ifRangeAllows, parseEntityTags, parseRange, strongMatch, weakMatch } from '../../../server/http/conditional.js';

const ETAG = '"abc-1"';
const MTIME = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
const v = { etag: ETAG, lastModifiedMs: MTIME };
const httpDate = (ms: number) => new Date(ms).toUTCString();

t.test('Range per RFC 9110 14.1.2: first bytes, suffix, open-ended, clamps, refusals', async (t) => {
  const size = 10_000;
  const cases: [string | undefined, unknown][] = [
    [undefined, { kind: 'full' }],
    ['bytes=0-499', { kind: 'partial', start: 0, end: 499 }],
    ['bytes=-500', { kind: 'partial', start: 9500, end: 9999 }],
    ['bytes=100-', { kind: 'partial', start: 100, end: 9999 }],
    ['bytes=9000-20000', { kind: 'partial', start: 9000, end: 9999 }],
    ['bytes=-20000', { kind: 'partial', start: 0, end: 9999 }],
    ['bytes=9999-9999', { kind: 'partial', start: 9999, end: 9999 }],
    ['BYTES = 1-2', { kind: 'partial', start: 1, end: 2 }],
    ['bytes=1-2,', { kind: 'partial', start: 1, end: 2 }],
    ['bytes=10000-', { kind: 'unsatisfiable' }],
    ['bytes=20000-30000', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=0-1,5-6', { kind: 'full' }], // multi-range: whole file, documented
    ['bytes=5-1', { kind: 'full' }], // invalid: ignored
    ['bytes=abc', { kind: 'full' }],
    ['bytes=1', { kind: 'full' }],
    ['items=0-1', { kind: 'full' }],
    ['bytes=', { kind: 'full' }],
    ['bytes=0x1-2', { kind: 'full' }],
  ];
  for (const [h, want] of cases) t.same(parseRange(h, size), want, String(h));
  t.same(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' }, 'empty file: any int range is unsatisfiable');
  t.same(parseRange('bytes=-5', 0), { kind: 'full' }, 'empty file: suffix range gets the (empty) whole');
});

t.test('entity tags: lists, weak tags, commas inside tags, malformed', async (t) => {
  t.same(parseEntityTags(' "a" , W/"b",,"c,d" '), [
    { weak: false, opaque: 'a' },
    { weak: true, opaque: 'b' },
    { weak: false, opaque: 'c,d' },
  ]);
  t.equal(parseEntityTags('*'), '*');
  t.equal(parseEntityTags('abc'), null);
  t.equal(parseEntityTags('"a" "b"'), null);
  t.equal(parseEntityTags('"a'), null);
  t.ok(strongMatch(`"x", ${ETAG}`, ETAG));
  t.notOk(strongMatch(`W/${ETAG}`, ETAG), 'strong comparison refuses weak tags');
  t.ok(weakMatch(`W/${ETAG}`, ETAG), 'weak comparison ignores W/');
  t.ok(weakMatch('*', ETAG));
  t.notOk(weakMatch('"other"', ETAG));
  t.notOk(weakMatch('garbage', ETAG));
});

t.test('preconditions in the order of RFC 9110 13.2.2', async (t) => {
  const ev = (h: Parameters<typeof evaluatePreconditions>[1], method = 'GET') => evaluatePreconditions(method, h, v);
  t.equal(ev({}), 'proceed');
  t.equal(ev({ ifNoneMatch: ETAG }), 'not-modified');
  t.equal(ev({ ifNoneMatch: ETAG }, 'HEAD'), 'not-modified');
  t.equal(ev({ ifNoneMatch: ETAG }, 'POST'), 'failed');
  t.equal(ev({ ifNoneMatch: '"stale"' }), 'proceed');
  t.equal(ev({ ifNoneMatch: '*' }), 'not-modified');
  t.equal(ev({ ifModifiedSince: httpDate(MTIME) }), 'not-modified', 'same second');
  t.equal(ev({ ifModifiedSince: httpDate(MTIME - 2000) }), 'proceed');
  t.equal(ev({ ifModifiedSince: 'not a date' }), 'proceed');
  t.equal(ev({ ifNoneMatch: '"stale"', ifModifiedSince: httpDate(MTIME) }), 'proceed', 'If-None-Match wins over If-Modified-Since');
  t.equal(ev({ ifMatch: ETAG }), 'proceed');
  t.equal(ev({ ifMatch: '"stale"' }), 'failed');
  t.equal(ev({ ifMatch: '*' }), 'proceed');
  t.equal(ev({ ifUnmodifiedSince: httpDate(MTIME - 2000) }), 'failed');
  t.equal(ev({ ifUnmodifiedSince: httpDate(MTIME) }), 'proceed');
  t.equal(ev({ ifMatch: ETAG, ifUnmodifiedSince: httpDate(MTIME - 2000) }), 'proceed', 'If-Match wins over If-Unmodified-Since');
  t.equal(evaluatePreconditions('GET', { ifModifiedSince: httpDate(MTIME) }, { etag: ETAG }), 'proceed', 'no Last-Modified: dates ignored');
});

t.test('If-Range: strong ETag or exact date, else the whole file', async (t) => {
  t.ok(ifRangeAllows(undefined, v));
  t.ok(ifRangeAllows(ETAG, v));
  t.notOk(ifRangeAllows('"stale"', v));
  t.notOk(ifRangeAllows(`W/${ETAG}`, v), 'weak tags never validate a range');
  t.notOk(ifRangeAllows(`${ETAG}, "x"`, v), 'a list is not a validator');
  t.ok(ifRangeAllows(httpDate(MTIME), v));
  t.notOk(ifRangeAllows(httpDate(MTIME + 1000), v));
  t.notOk(ifRangeAllows('yesterday', v));
});
