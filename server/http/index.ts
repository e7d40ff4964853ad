export { createHttpApp, startHttpServer, type HttpDeps, type RunningHttpServer } from './app.js';
export { listMachines, machineView, machineDetail, type MachineView, type MachineDetail } from './machines.js';
