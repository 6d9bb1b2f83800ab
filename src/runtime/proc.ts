// A process as the host sees it in /proc: whether a recorded PID 1 still
// runs. A pid alone is not enough (the kernel reuses numbers, and a dead
// PID 1 whose parent has not reaped it yet is a zombie): a VE's PID 1 is the
// pair (pid, start time).
import { readFileSync } from 'node:fs';

/** The start time (clock ticks since boot) of a living process, null if it is gone or a zombie. */
export function startTime(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  return Number(fields[19]);
}

export function alive(pid: number | null, start: number | null): boolean {
  return pid !== null && start !== null && startTime(pid) === start;
}
