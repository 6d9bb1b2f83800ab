// The host's mount table, read from /proc/self/mountinfo.
import { readFile } from 'node:fs/promises';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

// mountinfo escapes space, tab, newline and backslash as octal.
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export async function readMounts(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter(Boolean).map((line) => {
    const [pre, post] = line.split(' - ');
    const fields = pre.split(' ');
    const [fstype, source] = post.split(' ');
    return { mountpoint: unescape(fields[4]), fstype, source: unescape(source) };
  });
}

/** The mount that holds path (longest mountpoint prefix; the last one mounted wins). */
export function mountOf(mounts: MountEntry[], path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = m.mountpoint === '/' || path === m.mountpoint || path.startsWith(`${m.mountpoint}/`);
    if (inside && (!best || m.mountpoint.length >= best.mountpoint.length)) best = m;
  }
  return best;
}

export const VEFS_FSTYPE = 'fuse.vefs';
