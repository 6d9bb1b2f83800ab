// Where the host's VEFS server keeps its control socket, pid file and log.
// VEFS_STATE_DIR moves all of them (tests give each suite its own server).
import { join } from 'node:path';

export function stateDir(): string {
  return process.env.VEFS_STATE_DIR ?? '/var/lib/vefs';
}

export const socketPath = (): string => join(stateDir(), 'server.sock');
export const logPath = (): string => join(stateDir(), 'server.log');
export const pidPath = (): string => join(stateDir(), 'server.pid');
/** Held by the running server for its whole life (flock). */
export const serverLockPath = (): string => join(stateDir(), 'server.lock');
/** Held by a client while it starts a server, so that racing clients start one between them. */
export const startLockPath = (): string => join(stateDir(), 'server-start.lock');
export const holderSocketPath = (): string => join(stateDir(), 'holder.sock');
/** Per kernel-binding mount: its config and its node ID journal, for a server that takes over. */
export const sessionsDir = (): string => join(stateDir(), 'sessions');
