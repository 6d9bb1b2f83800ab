// What other tools (unify, an operator updating a template) tell the host's
// VEFS server, and ask it: a change made behind its mounts, so that the
// kernel's caches and the union's cached nodes forget it, and which private
// files VEs hold open for writing, so that such a tool leaves them alone.
import { resolve } from 'node:path';
import { call } from './control.js';
import { serverRunning } from './daemon.js';
import { socketPath } from './state.js';

/** Resolves to the number of mounts that cached something under the paths; 0 when no server runs. */
export async function announceChanges(paths: string[]): Promise<number> {
  if (paths.length === 0 || !(await serverRunning())) return 0;
  return call<number>(socketPath(), { op: 'invalidate', paths: paths.map((p) => resolve(p)) });
}

/** Host paths of private files open for writing through a mount of the kernel binding; [] when no server runs. */
export async function openForWriting(): Promise<string[]> {
  if (!(await serverRunning())) return [];
  return call<string[]>(socketPath(), { op: 'open-for-writing' });
}
