/**
 * Is the process that wrote a lock file still running? Shared by the state
 * journal's lock and the asset fetcher's release locks.
 *
 * The pid alone is not enough: in a container the server is pid 1 (or
 * another small number) after every restart, so a lock left by a killed
 * server names a pid that is alive again. A lock therefore records its
 * owner's start time too; a live pid with a different start time is a
 * reused pid.
 */
import { readFileSync } from 'node:fs';

/** Who holds a lock: a pid, and that process's start time (clock ticks since boot, /proc/<pid>/stat field 22) when known. */
export interface LockOwner {
  pid: number;
  start: string | null;
}

/** True when a process with this pid exists (EPERM: it exists, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; count fields after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** This process as a lock file's content: `<pid> <start or ->`. */
export function ownLockLine(): string {
  return `${process.pid} ${procStart(process.pid) ?? '-'}`;
}

/** A lock file's content back as its owner; a bare pid (older locks) has no start time. */
export function parseLockOwner(text: string): LockOwner {
  const [pidText, startText] = text.trim().split(' ');
  return { pid: Number(pidText), start: startText === undefined || startText === '-' ? null : startText };
}

export function lockOwnerAlive(owner: LockOwner): boolean {
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0 || !pidAlive(owner.pid)) return false;
  const start = procStart(owner.pid);
  return owner.start === null || start === null || start === owner.start;
}
