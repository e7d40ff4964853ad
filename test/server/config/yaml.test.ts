import t from 'tap';
import { parseYaml, pointerOf } from '../../../server/config/yaml.js';
import { ConfigError } from '../../../server/errors.js';

const text = [
  'a: 1', //                    line 1
  'b:', //                      line 2
  '  - x', //                   line 3
  "  - {c: 'q', 'd/e': z}", //  line 4
  'list:', //                   line 6
  '  - name: one',
  '    deep: { k: v }',
  '',
].join('\n');

t.test('maps JSON pointers to where keys and values start', async (t) => {
  const d = parseYaml(text, 'f.yaml');
  t.same(d.locate('/a'), { line: 1, col: 4 });
  t.same(d.locate('/a', { key: true }), { line: 1, col: 1 });
  t.same(d.locate('/b/0'), { line: 3, col: 5 });
  t.same(d.locate('/b/1/c', { key: true }), { line: 4, col: 6 });
  t.same(d.locate(pointerOf('b', 1, 'd/e'), { key: true }), { line: 4, col: 15 });
  t.same(d.locate('/list/0/deep/k'), { line: 7, col: 16 });
  // A pointer to something absent falls back to the nearest ancestor that exists.
  t.same(d.locate('/list/0/missing'), { line: 6, col: 5 });
  t.same(d.problem('/a', 'msg'), { file: 'f.yaml', line: 1, col: 4, pointer: '/a', message: 'msg' });
});

t.test('syntax errors become a located ConfigError', async (t) => {
  const err = t.throws(() => parseYaml('a: 1\na: 2\n', 'dup.yaml')) as ConfigError;
  t.ok(err instanceof ConfigError);
  t.match(err.problems[0], { file: 'dup.yaml', line: 2, col: 1, message: /duplicated mapping key/ });
});

t.test('YAML 1.2 core schema: yes stays a string, 0644 is not octal', async (t) => {
  const d = parseYaml('a: yes\nb: 0644\nc: 0o644\n', 'x.yaml');
  t.same(d.value, { a: 'yes', b: 644, c: 420 });
});
