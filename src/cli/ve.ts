// `vefs ve ...` and the option parsing `vefs template` shares: strict
// options (an unknown one is a usage error, exit 2), one runtime call, one
// line of what happened. `vefs ve exec` exits with its command's status.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseCpus, parseIpPrefix, parseMemory, parseNet, parsePids } from '../runtime/ids.js';
import {
  createVe, destroyVe, execVe, findVe, listVes, mountVe, restartVe, Runtime, setVe, startVe, stopVe, umountVe, veStatus,
  type VeOptions, type VeStatus,
} from '../runtime/ve.js';
import { VefsError } from '../vefs/vefs-error.js';

export const VE_USAGE = `usage: vefs ve <command> [--root DIR] ...   (state in --root, $VEFS_ROOT or /var/lib/vefs)

  create ID --template NAME [--name N] [--hostname H] [--memory SIZE] [--pids N] [--cpus FRACTION]
            [--net none|veth --ip ADDR/PREFIX]
                        A new VE (ID from 101 up) on a template; limits default to none,
                        the network to none (its own namespace with lo only).
  set ID [same options] Change settings ('unlimited' lifts a limit); limits apply to a
                        running VE at once, a hostname or network at its next start.
  start ID | stop ID [--timeout SECONDS] | restart ID [--timeout SECONDS]
  exec ID -- CMD [ARG...]   Run a command inside; exits with its status.
  enter ID              A shell inside, on a terminal.
  status ID [--json] | list [--json]
  mount ID | umount ID  Only the root filesystem, for maintenance from the host.
  destroy ID [--force]  Remove a stopped VE (--force stops it first); the template stays.
ID may also be a VE's name.
`;

export class UsageError extends VefsError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses strictly, with --root always allowed; exactly `positionals` positionals unless `rest`. */
export function parseCommand<T extends Options>(args: string[], options: T, positionals: number, rest = false) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, root: { type: 'string' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const n = parsed.positionals.length;
  if (rest ? n <= positionals : n !== positionals) {
    throw new UsageError(rest ? 'a command to run is required (after --)' : `expected ${positionals} argument(s), got ${n}`);
  }
  return parsed;
}

/** Opens the runtime of --root, runs fn, and closes it whatever happens. */
export async function withRuntime<T>(root: string | undefined, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = new Runtime(root);
  try {
    return await fn(rt);
  } finally {
    rt.close();
  }
}

const SETTINGS = {
  name: { type: 'string' }, hostname: { type: 'string' }, memory: { type: 'string' }, pids: { type: 'string' }, cpus: { type: 'string' },
  net: { type: 'string' }, ip: { type: 'string' },
} as const;

function settings(v: { name?: string; hostname?: string; memory?: string; pids?: string; cpus?: string; net?: string; ip?: string }): VeOptions {
  return {
    ...(v.name !== undefined ? { name: v.name } : {}),
    ...(v.hostname !== undefined ? { hostname: v.hostname } : {}),
    ...(v.memory !== undefined ? { memory: parseMemory(v.memory) } : {}),
    ...(v.pids !== undefined ? { pids: parsePids(v.pids) } : {}),
    ...(v.cpus !== undefined ? { cpus: parseCpus(v.cpus) } : {}),
    ...(v.net !== undefined ? { net: parseNet(v.net) } : {}),
    ...(v.ip !== undefined ? { ip: parseIpPrefix(v.ip) } : {}),
  };
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function limitsText(s: VeStatus): string {
  const l = s.limits;
  return `memory ${l.memory === null ? 'unlimited' : mib(l.memory)}, pids ${l.pids ?? 'unlimited'}, cpus ${l.cpus ?? 'unlimited'}`;
}

function printStatus(s: VeStatus): void {
  console.log(`VE ${s.id}${s.name ? ` (${s.name})` : ''}: ${s.state}${s.pid ? `, PID 1 is host pid ${s.pid}` : ''}`);
  console.log(`  template ${s.template}, hostname ${s.hostname}, root ${s.root} (${s.storage})`);
  if (s.storage === 'lost') console.log('  WARNING: no VEFS server serves this root any more: stop the VE and start it again');
  console.log(`  limits: ${limitsText(s)}; network: ${s.net.net === 'veth' ? `veth, ${s.net.ip}` : 'none (lo only)'}`);
  if (s.state === 'running') {
    console.log(`  processes ${s.processes}, memory ${mib(s.memoryBytes)}, cpu ${s.cpuSeconds.toFixed(2)} s (cgroup ${s.cgroup}); `
      + `limits hit: ${s.oomKills} OOM kill(s), ${s.forksRefused} fork(s) refused`);
  }
  console.log(`  private tree ${mib(s.diskBytes)} on disk, log ${s.log}`);
}

function timeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`--timeout ${text} is not a number of seconds`);
  return Number(text);
}

/** Usage errors exit 2 with the usage hint, as the other commands' do. */
export async function usageExits(command: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`vefs ${command}: ${err.message}`);
    console.error(`run 'vefs ${command} help' for usage`);
    process.exit(2);
  }
}

export function veCommand(args: string[]): Promise<void> {
  return usageExits('ve', () => ve(args));
}

async function ve(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const { values, positionals } = parseCommand(rest, { template: { type: 'string' }, ...SETTINGS }, 1);
      if (!values.template) throw new UsageError('--template NAME is required');
      const rec = await withRuntime(values.root, (rt) => createVe(rt, positionals[0]!, values.template!, settings(values)));
      console.log(`created VE ${rec.id}${rec.name ? ` (${rec.name})` : ''} on template ${rec.template}, hostname ${rec.hostname}`);
      return;
    }
    case 'set': {
      const { values, positionals } = parseCommand(rest, SETTINGS, 1);
      const opts = settings(values);
      if (Object.keys(opts).length === 0) throw new UsageError('nothing to set');
      const { rec, appliedLive } = await withRuntime(values.root, (rt) => setVe(rt, positionals[0]!, opts));
      console.log(`saved VE ${rec.id}'s settings${appliedLive ? '; limits applied to the running VE' : ''}`
        + `${appliedLive && (opts.hostname ?? opts.net ?? opts.ip) !== undefined ? '; a hostname or network change applies at its next start' : ''}`);
      return;
    }
    case 'start': {
      const { values, positionals } = parseCommand(rest, {}, 1);
      const pid = await withRuntime(values.root, (rt) => startVe(rt, positionals[0]!));
      console.log(`started VE ${positionals[0]}: PID 1 is host pid ${pid}`);
      return;
    }
    case 'stop': {
      const { values, positionals } = parseCommand(rest, { timeout: { type: 'string' } }, 1);
      const how = await withRuntime(values.root, (rt) => stopVe(rt, positionals[0]!, timeout(values.timeout)));
      console.log(how === 'stopped' ? `stopped VE ${positionals[0]}` : `VE ${positionals[0]} had stopped by itself; cleaned up what it left`);
      return;
    }
    case 'restart': {
      const { values, positionals } = parseCommand(rest, { timeout: { type: 'string' } }, 1);
      const pid = await withRuntime(values.root, (rt) => restartVe(rt, positionals[0]!, timeout(values.timeout)));
      console.log(`restarted VE ${positionals[0]}: PID 1 is host pid ${pid}`);
      return;
    }
    case 'exec':
    case 'enter': {
      const enter = sub === 'enter';
      const { values, positionals } = parseCommand(rest, {}, 1, !enter);
      const [ref, ...command] = positionals;
      const code = await withRuntime(values.root, (rt) => execVe(rt, ref!, enter ? ['/bin/sh', '-l'] : command, enter));
      process.exit(code);
    }
    case 'status': {
      const { values, positionals } = parseCommand(rest, { json: { type: 'boolean' } }, 1);
      const s = await withRuntime(values.root, (rt) => veStatus(rt, findVe(rt, positionals[0]!)));
      if (values.json) console.log(JSON.stringify(s, null, 2));
      else printStatus(s);
      return;
    }
    case 'list': {
      const { values } = parseCommand(rest, { json: { type: 'boolean' } }, 0);
      const all = await withRuntime(values.root, (rt) => listVes(rt));
      if (values.json) {
        console.log(JSON.stringify(all, null, 2));
        return;
      }
      console.log('ID     NAME             STATE     PID      PROCS  MEMORY       DISK         TEMPLATE');
      for (const s of all) {
        console.log(`${String(s.id).padEnd(6)} ${(s.name ?? '-').padEnd(16)} ${s.state.padEnd(9)} ${String(s.pid ?? '-').padEnd(8)} `
          + `${String(s.processes).padEnd(6)} ${mib(s.memoryBytes).padEnd(12)} ${mib(s.diskBytes).padEnd(12)} ${s.template}`
          + `${s.storage === 'lost' ? '  (root lost its VEFS server)' : ''}`);
      }
      return;
    }
    case 'mount': {
      const { values, positionals } = parseCommand(rest, {}, 1);
      const mp = await withRuntime(values.root, (rt) => mountVe(rt, positionals[0]!));
      console.log(`mounted VE ${positionals[0]}'s root at ${mp}`);
      return;
    }
    case 'umount': {
      const { values, positionals } = parseCommand(rest, {}, 1);
      await withRuntime(values.root, (rt) => umountVe(rt, positionals[0]!));
      console.log(`unmounted VE ${positionals[0]}'s root`);
      return;
    }
    case 'destroy': {
      const { values, positionals } = parseCommand(rest, { force: { type: 'boolean' } }, 1);
      await withRuntime(values.root, (rt) => destroyVe(rt, positionals[0]!, values.force ?? false));
      console.log(`destroyed VE ${positionals[0]}`);
      return;
    }
    case undefined:
    case 'help':
      process.stdout.write(VE_USAGE);
      if (sub === undefined) throw new UsageError('no ve command given');
      return;
    default:
      throw new UsageError(`unknown ve command '${sub}'`);
  }
}
