/**
 * What swarmboot has observed of each machine: its boot trail (every step it
 * served, timestamped), its current IP, and what its swarm script last
 * reported. The one owner of that state; DHCP, TFTP, HTTP and the swarm API
 * report into it, `swarmboot machines` and GET /api/machines read it.
 *
 * Persisted through the journal with fsync 'never': it is an observation
 * log, so surviving kill -9 (the kernel has the bytes) is enough, and it must
 * not slow a boot storm down with fsyncs. Memory is authoritative; a machine
 * whose observation changed is written at most once per flush interval
 * (one DORA records four steps: one write, not four, each with the trail).
 * A kill -9 loses at most the last interval of observations.
 */
import { Journal } from '../store/journal.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';

export type TrailStep =
  | 'dhcp-discover'
  | 'dhcp-offer'
  | 'dhcp-request'
  | 'dhcp-ack'
  | 'dhcp-nak'
  | 'dhcp-release'
  | 'dhcp-decline'
  | 'proxy-offer'
  | 'tftp'
  | 'ipxe-script'
  | 'kernel'
  | 'initrd'
  | 'ignition'
  | 'oem'
  | 'pxelinux-config'
  | 'swarm';

export interface TrailEntry {
  at: number;
  step: TrailStep;
  /** File name, URL path, or swarm event. */
  detail?: string;
  ip?: string;
}

export interface SwarmReport {
  event: string;
  role?: string;
  nodeId?: string;
  addr?: string;
  at: number;
}

export interface MachineObservation {
  mac: Mac;
  ip?: string;
  lastStep?: TrailStep;
  lastDetail?: string;
  lastSeen: number;
  trail: TrailEntry[];
  swarm?: SwarmReport;
}

/** Steps kept per machine: enough for a few whole boots. */
export const TRAIL_LENGTH = 64;

export class MachineStates {
  private readonly current = new Map<Mac, MachineObservation>();
  private readonly dirty = new Set<Mac>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly journal: Journal<MachineObservation>,
    private readonly now: () => number,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {
    for (const [k, v] of journal.state) this.current.set(k as Mac, v);
  }

  static async open(dir: string, opts: { log: Logger; now?: () => number; flushMs?: number }): Promise<MachineStates> {
    const journal = await Journal.open<MachineObservation>(dir, 'machines', { log: opts.log, fsync: 'never', compactEvery: 50_000 });
    return new MachineStates(journal, opts.now ?? Date.now, opts.log.child({ subsystem: 'machines' }), opts.flushMs ?? 500);
  }

  get(mac: Mac): MachineObservation | undefined {
    return this.current.get(mac);
  }

  all(): MachineObservation[] {
    return [...this.current.values()];
  }

  /** Records one step. Never throws: losing an observation must not fail a boot. */
  record(mac: Mac, step: TrailStep, extra: { detail?: string; ip?: string } = {}): void {
    const at = this.now();
    const prev = this.current.get(mac);
    const entry: TrailEntry = { at, step, ...(extra.detail !== undefined ? { detail: extra.detail } : {}), ...(extra.ip !== undefined ? { ip: extra.ip } : {}) };
    const trail = prev?.trail ?? [];
    trail.push(entry);
    if (trail.length > TRAIL_LENGTH) trail.splice(0, trail.length - TRAIL_LENGTH);
    this.current.set(mac, {
      ...(prev ?? { mac }),
      mac,
      ...(extra.ip !== undefined ? { ip: extra.ip } : {}),
      lastStep: step,
      ...(extra.detail !== undefined ? { lastDetail: extra.detail } : {}),
      lastSeen: at,
      trail,
    });
    this.markDirty(mac);
  }

  reportSwarm(mac: Mac, report: Omit<SwarmReport, 'at'>): void {
    const prev = this.current.get(mac);
    const at = this.now();
    this.current.set(mac, { ...(prev ?? { mac, lastSeen: at, trail: [] }), mac, swarm: { ...report, at } });
    this.record(mac, 'swarm', { detail: report.event });
  }

  private markDirty(mac: Mac): void {
    this.dirty.add(mac);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes every changed observation now. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const macs = [...this.dirty];
    this.dirty.clear();
    await Promise.all(
      macs.map((mac) => {
        const obs = this.current.get(mac);
        if (obs === undefined) return Promise.resolve();
        // A copy: the in-memory trail keeps growing after this write is queued.
        return this.journal.put(mac, { ...obs, trail: [...obs.trail] }).catch((err: unknown) => this.log.error({ err, mac }, 'could not persist a machine observation'));
      }),
    );
  }

  async close(): Promise<void> {
    await this.flush();
    await this.journal.close();
  }
}
