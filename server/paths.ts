/**
 * Files that ship with swarmboot (the profile schema, the swarm script,
 * example profiles) are found relative to the package root, which is the
 * nearest directory above this module holding package.json. That works
 * both from sources (tsx, tests) and from the compiled dist/ tree.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('swarmboot: cannot find the package root (no package.json above the code)');
    dir = up;
  }
}

export const PACKAGE_ROOT = findRoot();

export function packageFile(relative: string): string {
  return join(PACKAGE_ROOT, relative);
}
