/**
 * What swarmboot has observed of each machine: its boot trail (every step it
 * served, timestamped), its current IP, and what its swarm script last
 * reported. The one owner of that state; DHCP, TFTP, HTTP and the swarm API
 * report into it, `swarmboot machines` and GET /api/machines read it.
 *
 * Persisted through the journal with fsync 'never': it is an observation
 * log, so surviving kill -9 (the kernel has the bytes) is enough, and it must
 * not slow a boot storm down with fsyncs.
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
  private constructor(
    private readonly journal: Journal<MachineObservation>,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {}

  static async open(dir: string, opts: { log: Logger; now?: () => number }): Promise<MachineStates> {
    const journal = await Journal.open<MachineObservation>(dir, 'machines', { log: opts.log, fsync: 'never', compactEvery: 5000 });
    return new MachineStates(journal, opts.now ?? Date.now, opts.log.child({ subsystem: 'machines' }));
  }

  get(mac: Mac): MachineObservation | undefined {
    return this.journal.get(mac);
  }

  all(): MachineObservation[] {
    return [...this.journal.state.values()];
  }

  /** Records one step. Never throws: losing an observation must not fail a boot. */
  record(mac: Mac, step: TrailStep, extra: { detail?: string; ip?: string } = {}): void {
    const at = this.now();
    const prev = this.journal.get(mac);
    const entry: TrailEntry = { at, step, ...(extra.detail !== undefined ? { detail: extra.detail } : {}), ...(extra.ip !== undefined ? { ip: extra.ip } : {}) };
    const trail = [...(prev?.trail ?? []), entry].slice(-TRAIL_LENGTH);
    const next: MachineObservation = {
      ...(prev ?? { mac }),
      mac,
      ...(extra.ip !== undefined ? { ip: extra.ip } : {}),
      lastStep: step,
      ...(extra.detail !== undefined ? { lastDetail: extra.detail } : {}),
      lastSeen: at,
      trail,
    };
    this.journal.put(mac, next).catch((err: unknown) => this.log.error({ err, mac }, 'could not persist a boot-trail step'));
  }

  reportSwarm(mac: Mac, report: Omit<SwarmReport, 'at'>): void {
    const prev = this.journal.get(mac);
    const at = this.now();
    const next: MachineObservation = { ...(prev ?? { mac, lastSeen: at, trail: [] }), mac, swarm: { ...report, at } };
    this.journal.put(mac, next).catch((err: unknown) => this.log.error({ err, mac }, 'could not persist a swarm report'));
    this.record(mac, 'swarm', { detail: report.event });
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}
