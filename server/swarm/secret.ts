/**
 * Per-machine secrets for swarm rendezvous. One random server key lives in
 * the state dir; each machine's secret is HMAC(key, MAC), so secrets differ
 * per MAC, need no storage of their own, and survive restarts. A leaked
 * Ignition config exposes one machine's secret, not the key.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, renameSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { Mac } from '../mac.js';

export const SERVER_KEY_FILE = 'server.key';

/** Reads the server key, creating it (0600, written atomically) on first use. */
export function loadServerKey(stateDir: string): Buffer {
  const file = join(stateDir, SERVER_KEY_FILE);
  try {
    const hex = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is not a 64-hex-digit key; move it away to create a new one`);
    return Buffer.from(hex, 'hex');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, key.toString('hex') + '\n', { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
  return key;
}

export function machineSecret(serverKey: Buffer, mac: Mac): string {
  return createHmac('sha256', serverKey).update(`swarmboot-swarm:${mac}`).digest('hex');
}

export function checkMachineSecret(serverKey: Buffer, mac: Mac, presented: string): boolean {
  const want = Buffer.from(machineSecret(serverKey, mac), 'utf8');
  const got = Buffer.from(presented, 'utf8');
  return want.length === got.length && timingSafeEqual(want, got);
}
