/**
 * A minimal Prometheus registry (text exposition format 0.0.4). Counters
 * and gauges with labels; each subsystem gets the registry injected and
 * registers what it counts, so tests can read values without scraping.
 */
type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');
}

/** Exposition keys by raw label text: a series' label sets are few, and building a key sorts and escapes (a few us per call, on the hot path of every DHCP exchange and HTTP request). */
const KEY_CACHE_MAX = 4096;

class Series {
  readonly values = new Map<string, number>();
  private readonly keys = new Map<string, string>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}
  /** labelKey(labels), cached under the labels' raw text in insertion order (so {a,b} and {b,a} are two cache entries of one key). */
  private key(labels: Labels): string {
    let raw = '';
    for (const k in labels) raw += `${k}\u0000${labels[k]}\u0001`;
    let key = this.keys.get(raw);
    if (key === undefined) {
      key = labelKey(labels);
      // Label values are meant to be a small fixed set; if a caller breaks that, stop caching rather than grow without bound.
      if (this.keys.size < KEY_CACHE_MAX) this.keys.set(raw, key);
    }
    return key;
  }
  add(labels: Labels, by: number): void {
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  set(labels: Labels, v: number): void {
    this.values.set(this.key(labels), v);
  }
  get(labels: Labels = {}): number {
    return this.values.get(this.key(labels)) ?? 0;
  }
}

export interface Counter {
  inc(labels?: Labels, by?: number): void;
  /** Mirrors a count kept elsewhere (it must only grow), e.g. a server's own stats. */
  setTotal(value: number, labels?: Labels): void;
  get(labels?: Labels): number;
}

export interface Gauge {
  set(value: number, labels?: Labels): void;
  get(labels?: Labels): number;
}

export class Metrics {
  private readonly series = new Map<string, Series>();
  private readonly collectors: (() => void)[] = [];

  private make(name: string, help: string, type: 'counter' | 'gauge'): Series {
    const existing = this.series.get(name);
    if (existing) {
      if (existing.type !== type) throw new Error(`metric ${name} registered as ${existing.type} and ${type}`);
      return existing;
    }
    const s = new Series(name, help, type);
    this.series.set(name, s);
    return s;
  }

  counter(name: string, help: string): Counter {
    const s = this.make(name, help, 'counter');
    return { inc: (labels = {}, by = 1) => s.add(labels, by), setTotal: (v, labels = {}) => s.set(labels, v), get: (labels = {}) => s.get(labels) };
  }

  gauge(name: string, help: string): Gauge {
    const s = this.make(name, help, 'gauge');
    return { set: (v, labels = {}) => s.set(labels, v), get: (labels = {}) => s.get(labels) };
  }

  /** Runs before each render: for gauges computed from state (leases in use). */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }

  render(): string {
    for (const c of this.collectors) c();
    let out = '';
    for (const s of this.series.values()) {
      out += `# HELP ${s.name} ${s.help}\n# TYPE ${s.name} ${s.type}\n`;
      if (s.values.size === 0 && s.type === 'counter') out += `${s.name} 0\n`;
      for (const [k, v] of s.values) out += `${s.name}${k ? `{${k}}` : ''} ${v}\n`;
    }
    return out;
  }
}
