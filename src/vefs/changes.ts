// What other tools (unify, an operator updating a template) tell the host's
// VEFS server, and ask it: a change made behind its mounts, so that the
// kernel's caches and the union's cached nodes forget it, and which private
// files VEs hold open for writing, so that such a tool leaves them alone.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { socketPath } from './state.js';

/**
 * The control client, or null when no server answers. Without the socket file no server can answer (a
 * connect would fail with ENOENT), so a unify on a host where none runs loads no client modules at all.
 */
async function client(): Promise<typeof import('./control.js') | null> {
  if (!existsSync(socketPath())) return null;
  const [control, { serverRunning }] = await Promise.all([import('./control.js'), import('./daemon.js')]);
  return (await serverRunning()) ? control : null;
}

/** Resolves to the number of mounts that cached something under the paths; 0 when no server runs. */
export async function announceChanges(paths: string[]): Promise<number> {
  const control = paths.length === 0 ? null : await client();
  if (control === null) return 0;
  return control.call<number>(socketPath(), { op: 'invalidate', paths: paths.map((p) => resolve(p)) });
}

/** Host paths of private files open for writing through a mount of the kernel binding; [] when no server runs. */
export async function openForWriting(): Promise<string[]> {
  const control = await client();
  if (control === null) return [];
  return control.call<string[]>(socketPath(), { op: 'open-for-writing' });
}
