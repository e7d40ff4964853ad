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
 *
 * A boot storm dirties thousands of machines per interval, each with a trail
 * of up to TRAIL_LENGTH steps: serialising them all at once blocks the event
 * loop for tens of ms (DHCP replies wait), so a flush hands them to the
 * journal FLUSH_SLICE at a time, with a turn of the event loop in between.
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

/** Machines serialised per turn of the event loop during a flush. */
export const FLUSH_SLICE = 256;

/** One machine's observation, and whether it changed since it was last written. */
interface Slot {
  readonly obs: MachineObservation;
  dirty: boolean;
}

export class MachineStates {
  private readonly current = new Map<Mac, Slot>();
  /** The slots with dirty set: a flag and a list, as a DHCP exchange records four steps and only the first needs queueing. */
  private dirty: Slot[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The last flush started: each waits for the one before, whose slots it may still be writing. */
  private flushing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly journal: Journal<MachineObservation>,
    private readonly now: () => number,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {
    for (const [k, v] of journal.state) this.current.set(k as Mac, { obs: v, dirty: false });
  }

  static async open(dir: string, opts: { log: Logger; now?: () => number; flushMs?: number }): Promise<MachineStates> {
    const journal = await Journal.open<MachineObservation>(dir, 'machines', { log: opts.log, fsync: 'never', compactEvery: 50_000 });
    return new MachineStates(journal, opts.now ?? Date.now, opts.log.child({ subsystem: 'machines' }), opts.flushMs ?? 500);
  }

  get(mac: Mac): MachineObservation | undefined {
    return this.current.get(mac)?.obs;
  }

  all(): MachineObservation[] {
    return Array.from(this.current.values(), (slot) => slot.obs);
  }

  /** Records one step. Never throws: losing an observation must not fail a boot. */
  record(mac: Mac, step: TrailStep, extra: { detail?: string; ip?: string } = {}): void {
    const at = this.now();
    const entry: TrailEntry = { at, step };
    if (extra.detail !== undefined) entry.detail = extra.detail;
    if (extra.ip !== undefined) entry.ip = extra.ip;
    let slot = this.current.get(mac);
    if (slot === undefined) {
      const obs: MachineObservation = {
        mac,
        ...(extra.ip !== undefined ? { ip: extra.ip } : {}),
        lastStep: step,
        ...(extra.detail !== undefined ? { lastDetail: extra.detail } : {}),
        lastSeen: at,
        trail: [entry],
      };
      slot = { obs, dirty: false };
      this.current.set(mac, slot);
    } else {
      // Updated in place (this class owns the objects).
      const obs = slot.obs;
      const trail = obs.trail;
      trail.push(entry);
      if (trail.length > TRAIL_LENGTH) trail.splice(0, trail.length - TRAIL_LENGTH);
      if (extra.ip !== undefined) obs.ip = extra.ip;
      obs.lastStep = step;
      if (extra.detail !== undefined) obs.lastDetail = extra.detail;
      obs.lastSeen = at;
    }
    this.markDirty(slot);
  }

  reportSwarm(mac: Mac, report: Omit<SwarmReport, 'at'>): void {
    const swarm: SwarmReport = { ...report, at: this.now() };
    const slot = this.current.get(mac);
    if (slot === undefined) this.current.set(mac, { obs: { mac, lastSeen: swarm.at, trail: [], swarm }, dirty: false });
    else slot.obs.swarm = swarm;
    this.record(mac, 'swarm', { detail: report.event });
  }

  private markDirty(slot: Slot): void {
    if (slot.dirty) return;
    slot.dirty = true;
    this.dirty.push(slot);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes every changed observation; resolves once all that were changed when it was called are written. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    // Chained: a flush called while an earlier one is still slicing must also wait for the slots that one holds.
    const run = this.flushing.then(() => this.writeDirty());
    this.flushing = run;
    return run;
  }

  private async writeDirty(): Promise<void> {
    const slots = this.dirty;
    this.dirty = [];
    const writes: Promise<void>[] = [];
    let failed: unknown = null;
    for (let i = 0; i < slots.length; i += FLUSH_SLICE) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      // A slot stays dirty until its slice is serialised: a step recorded meanwhile joins this write, not
      // another (one record per machine per flush). The journal serialises each value now and keeps the
      // live object, so its snapshots carry the newest observations.
      const changed = slots.slice(i, i + FLUSH_SLICE).map((slot): [Mac, MachineObservation] => {
        slot.dirty = false;
        return [slot.obs.mac, slot.obs];
      });
      writes.push(this.journal.putMany(changed).catch((err: unknown) => void (failed ??= err)));
    }
    await Promise.all(writes);
    if (failed !== null) this.log.error({ err: failed, machines: slots.length }, 'could not persist machine observations');
  }

  async close(): Promise<void> {
    await this.flush();
    await this.journal.close();
  }
}
