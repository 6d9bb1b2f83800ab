// Locks on VEs and templates: flock(2) on a file under locks/. The kernel
// drops a lock with its holder's last descriptor, so a crashed or killed
// command never leaves a VE locked. A command that finds the lock taken is
// refused at once, naming the holder, rather than acting after it.
import { closeSync, mkdirSync, openSync, readFileSync, writeSync, ftruncateSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import { native, C, type NativeError } from '../../native/index.js';
import { RuntimeError } from './errors.js';

export type Release = () => void;

/**
 * Takes the lock at path, exclusive (a command that changes the object) or
 * shared (one that only needs it to stay, as a VE create needs its template).
 */
export function takeLock(path: string, what: string, shared = false): Release {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600);
  try {
    native.flockSync(fd, (shared ? C.LOCK_SH : C.LOCK_EX) | C.LOCK_NB);
  } catch (err) {
    closeSync(fd);
    if ((err as NativeError).code !== 'EAGAIN') throw err;
    const holder = readFileSync(path, 'utf8').trim();
    throw new RuntimeError('EBUSY', `${what} is busy: another vefs command holds its lock${holder ? ` (${holder})` : ''}; try again when it is done`);
  }
  if (!shared) {
    ftruncateSync(fd, 0);
    writeSync(fd, `pid ${process.pid}: vefs ${process.argv.slice(2).join(' ')}`, 0);
  }
  return () => closeSync(fd);
}
