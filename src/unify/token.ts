// Random names for a run and for a process's journal lines. Read from
// /dev/urandom rather than taken from node:crypto, whose loading alone costs
// a rerun that finds nothing to do about 7 ms of its start.
import { closeSync, openSync, readSync } from 'node:fs';

/** 16 random hex digits. */
export function randomToken(): string {
  const id = Buffer.alloc(8);
  const fd = openSync('/dev/urandom', 'r');
  try {
    readSync(fd, id);
  } finally {
    closeSync(fd);
  }
  return id.toString('hex');
}
