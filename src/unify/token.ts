// Names a run makes up: its temporary names, and random tokens for a run and
// for a process's journal lines, read from /dev/urandom rather than taken
// from node:crypto, whose loading alone costs a rerun that finds nothing to
// do about 7 ms of its start.
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

/** A run's temporary names, `<prefix><n>` with n counting up through the run. */
export class TempNames {
  private n = 0;

  constructor(readonly prefix: string) {}

  next(): string {
    return `${this.prefix}${++this.n}`;
  }

  /** Numbers for `count` names made elsewhere (the addon): the first is returned. */
  reserve(count: number): number {
    const first = this.n + 1;
    this.n += count;
    return first;
  }
}
