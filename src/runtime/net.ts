// A VE's network: its own namespace always (ve-launch brings its lo up);
// with 'veth', a pair whose VE end is eth0 with the VE's address and a
// default route, and whose host end (vefs<ID>) carries a host route to that
// address only. The pair lives and dies with the VE's namespace: when its
// last process exits the kernel removes both ends and the route.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RuntimeError } from './errors.js';

const run = promisify(execFile);

export type NetMode = 'none' | 'veth';

export interface NetConfig {
  net: NetMode;
  /** ADDR/PREFIX, for veth. */
  ip: string | null;
}

export const hostIfname = (id: number): string => `vefs${id}`;

async function ip(args: string[], what: string, netnsOf?: number): Promise<void> {
  const [file, argv] = netnsOf === undefined ? ['ip', args] : ['nsenter', [`--net=/proc/${netnsOf}/ns/net`, 'ip', ...args]];
  try {
    await run(file, argv);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new RuntimeError('ENET', `${what}: ip ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Connects a started VE (its PID 1's network namespace) to the host. */
export async function connect(id: number, pid: number, net: NetConfig): Promise<void> {
  if (net.net !== 'veth') return;
  const host = hostIfname(id);
  const addr = net.ip!.split('/')[0]!;
  const what = `cannot connect VE ${id}`;
  // A pair left by a VE that died without its namespace going yet would block the name.
  await run('ip', ['link', 'del', host]).catch(() => undefined);
  await ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(pid)], what);
  await ip(['link', 'set', host, 'up'], what);
  await ip(['route', 'add', `${addr}/32`, 'dev', host], what);
  const inside = (args: string[]): Promise<void> => ip(args, what, pid);
  await inside(['addr', 'add', net.ip!, 'dev', 'eth0']);
  await inside(['link', 'set', 'eth0', 'up']);
  await inside(['route', 'add', 'default', 'dev', 'eth0']);
}
