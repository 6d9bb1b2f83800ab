// One unify job at a time on a host: flock on $VEFS_STATE_DIR/unify.lock.
// The kernel drops the lock with the holder's last descriptor, so a crashed
// or killed job never leaves the host locked.
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { native, C, type NativeError } from '../../native/index.js';
import { stateDir } from '../vefs/state.js';
import { UnifyError } from './errors.js';

export const jobLockPath = (): string => join(stateDir(), 'unify.lock');

/** Takes the job lock or says who holds it; answers the release. */
export function takeJobLock(): () => void {
  mkdirSync(stateDir(), { recursive: true });
  const path = jobLockPath();
  const fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600);
  try {
    native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
  } catch (err) {
    closeSync(fd);
    if ((err as NativeError).code !== 'EAGAIN') throw err;
    const pid = readFileSync(path, 'utf8').trim();
    throw new UnifyError('EBUSY', `another vefs unify is running${pid ? ` (pid ${pid})` : ''}; only one runs at a time`);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  return () => closeSync(fd);
}

/** Whether a unify job holds the lock now (asked by processes that are not one). */
export function jobRunning(): boolean {
  let fd: number;
  try {
    fd = openSync(jobLockPath(), fsc.O_RDONLY);
  } catch (err) {
    if ((err as NativeError).code === 'ENOENT') return false;
    throw err;
  }
  try {
    native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
    return false;
  } catch (err) {
    if ((err as NativeError).code === 'EAGAIN') return true;
    throw err;
  } finally {
    closeSync(fd);
  }
}
