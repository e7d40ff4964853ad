/**
 * npx tsx bench/profile-top.ts FILE.cpuprofile [N]
 *
 * Summarises a V8 CPU profile (from `npm run bench -- NAME --cpu-prof`):
 * the N functions with the most self time, and the N with the most total
 * (inclusive) time, as percentages of all samples. Used to find the hot
 * path BENCHMARKS.md reports on.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
}

export interface Hot {
  name: string;
  selfPct: number;
  totalPct: number;
}

/** Pure: profile in, hottest functions out. */
export function hottest(p: Profile, n: number): { bySelf: Hot[]; byTotal: Hot[] } {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const label = (x: Node) => {
    const f = x.callFrame;
    const file = f.url.replace(/^.*\/(node_modules\/)?/, (m) => (m.includes('node_modules') ? 'nm:' : '')).replace(/^file:\/\//, '');
    return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  for (const s of p.samples) {
    const leaf = byId.get(s);
    if (!leaf) continue;
    self.set(label(leaf), (self.get(label(leaf)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let id: number | undefined = s; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id);
      if (!node) break;
      const l = label(node);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + 1);
    }
  }
  const all = p.samples.length || 1;
  const mk = (m: Map<string, number>, other: Map<string, number>, selfFirst: boolean): Hot[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, v]) => (selfFirst ? { name, selfPct: (100 * v) / all, totalPct: (100 * (other.get(name) ?? 0)) / all } : { name, selfPct: (100 * (other.get(name) ?? 0)) / all, totalPct: (100 * v) / all }));
  return { bySelf: mk(self, total, true), byTotal: mk(total, self, false) };
}

if (process.argv[1]?.endsWith('profile-top.ts')) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: npx tsx bench/profile-top.ts FILE.cpuprofile [N]\n');
    process.exit(2);
  }
  const n = Number(process.argv[3] ?? 25);
  const { bySelf, byTotal } = hottest(JSON.parse(readFileSync(file, 'utf8')) as Profile, n);
  const row = (h: Hot) => `${h.selfPct.toFixed(1).padStart(5)}% self ${h.totalPct.toFixed(1).padStart(5)}% total  ${h.name}`;
  process.stdout.write(`by self time\n${bySelf.map(row).join('\n')}\n\nby total time\n${byTotal.map(row).join('\n')}\n`);
}
