/**
 * GET /api/machines[/:mac]: what the profiles say about each machine joined
 * with what swarmboot has seen of it. The view is a pure function of the
 * profile set, the observations and the boot service's machine lookup, so
 * its JSON shape is tested against a golden file.
 */
import express, { type Request, type Response, type Router } from 'express';
import type { BootMethod, Machine, ProfileSet, Role } from '../profiles/types.js';
import type { MachineObservation, MachineStates, TrailStep } from '../state/machines.js';
import type { BootService } from '../boot/service.js';
import { requireMac, type Mac } from '../mac.js';
import { NotFoundError } from './errors.js';
import { sendBody, setRoute } from './request.js';

export interface SwarmView {
  event: string;
  role: string | null;
  nodeId: string | null;
  addr: string | null;
  at: string;
}

export interface MachineView {
  mac: Mac;
  hostname: string | null;
  profile: string | null;
  role: Role | null;
  boot: BootMethod | null;
  /** Listed in the profiles (false: synthesised by unknown_machines, or not served at all). */
  known: boolean;
  ip: string | null;
  lastStep: TrailStep | null;
  lastSeen: string | null;
  swarm: SwarmView | null;
}

export interface TrailView {
  at: string;
  step: TrailStep;
  detail?: string;
  ip?: string;
}

export interface MachineDetail extends MachineView {
  trail: TrailView[];
}

/** How a MAC maps to a machine: BootService.machine, which knows the unknown-machine policy. */
export type MachineOf = (mac: Mac) => Machine | null;

const iso = (ms: number): string => new Date(ms).toISOString();

export function machineView(set: ProfileSet, mac: Mac, obs: MachineObservation | undefined, machineOf: MachineOf): MachineView {
  const machine = machineOf(mac);
  const profile = machine ? set.profiles.get(machine.profile) : undefined;
  const swarm = obs?.swarm;
  return {
    mac,
    hostname: machine?.hostname ?? null,
    profile: machine?.profile ?? null,
    role: profile?.role ?? null,
    boot: profile?.boot ?? null,
    known: machine?.known ?? false,
    // What it last used beats what it is meant to have (a fixed address it may not have taken yet).
    ip: obs?.ip ?? machine?.ip ?? null,
    lastStep: obs?.lastStep ?? null,
    lastSeen: obs ? iso(obs.lastSeen) : null,
    swarm: swarm ? { event: swarm.event, role: swarm.role ?? null, nodeId: swarm.nodeId ?? null, addr: swarm.addr ?? null, at: iso(swarm.at) } : null,
  };
}

export function machineDetail(set: ProfileSet, mac: Mac, obs: MachineObservation | undefined, machineOf: MachineOf): MachineDetail {
  return {
    ...machineView(set, mac, obs, machineOf),
    trail: (obs?.trail ?? []).map((e) => ({ at: iso(e.at), step: e.step, ...(e.detail !== undefined ? { detail: e.detail } : {}), ...(e.ip !== undefined ? { ip: e.ip } : {}) })),
  };
}

/** Every listed machine plus every observed one, sorted by MAC (canonical form sorts like the numbers). */
export function listMachines(set: ProfileSet, observations: readonly MachineObservation[], machineOf: MachineOf): MachineView[] {
  const byMac = new Map<Mac, MachineObservation | undefined>();
  for (const mac of set.machines.keys()) byMac.set(mac, undefined);
  for (const obs of observations) byMac.set(obs.mac, obs);
  return [...byMac.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([mac, obs]) => machineView(set, mac, obs, machineOf));
}

export function machinesRouter(deps: { boot: BootService; machines: MachineStates }): Router {
  const router = express.Router();
  const json = (req: Request, res: Response, value: unknown): void => {
    res.setHeader('Cache-Control', 'no-store');
    sendBody(req, res, 200, 'application/json; charset=utf-8', JSON.stringify(value, null, 2) + '\n');
  };

  router.get('/api/machines', (req: Request, res: Response) => {
    setRoute(res, 'api');
    const set = deps.boot.profiles();
    json(req, res, listMachines(set, deps.machines.all(), (mac) => deps.boot.machine(mac, set)));
  });

  router.get('/api/machines/:mac', (req: Request, res: Response) => {
    setRoute(res, 'api');
    const mac = requireMac(String(req.params['mac']));
    const set = deps.boot.profiles();
    const obs = deps.machines.get(mac);
    if (!set.machines.has(mac) && obs === undefined) throw new NotFoundError(`machine ${mac} is neither listed in the profiles nor observed`);
    json(req, res, machineDetail(set, mac, obs, (m) => deps.boot.machine(m, set)));
  });
  return router;
}
