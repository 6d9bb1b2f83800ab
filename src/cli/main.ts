#!/usr/bin/env node
// vefs: one binary, thin over the library. Each command parses its options
// strictly (an unknown option is an error), calls one library function and
// prints what happened; errors print one line naming the problem and exit 1
// (2 for a usage error).
//
// A command's modules load only when it runs: Node 20 loads ES modules at
// about a millisecond each, and a unify from cron should not pay for the
// server's client (node:net, node:child_process), nor a status check for
// the FUSE bindings, the bench harness or the runtime.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { socketPath, logPath } from '../vefs/state.js';
import { VefsError } from '../vefs/vefs-error.js';
import type { MountRequest } from '../vefs/config.js';
import type { BindingName, MountConfig } from '../vefs/types.js';
import type { Status } from '../vefs/control.js';

const USAGE = `usage: vefs <command> [options]

  mount --template DIR[:DIR...] --private DIR [--work DIR] [--binding kernel|fuse-native]
        [--foreground] MOUNTPOINT
        Mount a VE root: template layers (topmost first) under a private tree.
        --binding: how VEFS talks to the kernel; default kernel (its own FUSE
        protocol with passthrough I/O; see README), or $VEFS_BINDING.
        The host's VEFS server carries the mount (started if none runs; log in
        $VEFS_STATE_DIR/server.log, default /var/lib/vefs). --foreground serves
        it from this process instead, until interrupted.
  umount MOUNTPOINT   Unmount, also when the server has died.
  status [--json]     The server's mounts, pid and memory (--json: also each kernel-binding
                      mount's passthrough state, node IDs and requests served).
  invalidate PATH...  Files in a template or private tree changed behind the mounts (a
                      template update): every mount over them forgets what it cached.
  shutdown            Unmount everything and stop the server.
  demo [--dir DIR]    Build a busybox template, mount a VE root over it, change it,
                      show the template untouched and the private tree, unmount.
  bench [--quick] [--groups G,..] [--backends B,..] [--runs N] [--out DIR] [--dir DIR]
                      Benchmark VE roots: VEFS against raw, overlayfs, fuse-overlayfs, unionfs-fuse.
  unify [--template DIR].. [--dry-run] [--json] [--quiet] [--index FILE] [--min-size BYTES]
        [--exclude PATTERN].. [--ignore-mtime] [--revert] ROOT...
                      Hard-link identical files across VE trees, immutable; 'vefs unify --help'.
  template create|list|remove ...
                      VE templates; 'vefs template help'.
  ve create|set|start|exec|enter|stop|restart|status|list|mount|umount|destroy ...
                      Run VEs on VEFS roots, isolated and limited; 'vefs ve help'.
  help                This text.
`;

class UsageError extends VefsError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

function parse<T extends ParseArgsConfig['options']>(args: string[], options: T, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument(s), got ${parsed.positionals.length}`);
  }
  return parsed;
}

async function mountCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    template: { type: 'string', multiple: true },
    private: { type: 'string' },
    work: { type: 'string' },
    binding: { type: 'string' },
    foreground: { type: 'boolean' },
  }, 1);
  if (!values.template) throw new UsageError('--template DIR[:DIR...] is required');
  if (!values.private) throw new UsageError('--private DIR is required');
  const [{ BINDINGS }, { mountpointPath }] = await Promise.all([import('../vefs/config.js'), import('../vefs/umount.js')]);
  if (values.binding !== undefined && !(BINDINGS as string[]).includes(values.binding)) {
    throw new UsageError(`--binding must be one of ${BINDINGS.join(', ')}, not '${values.binding}'`);
  }
  // The server has its own working directory: every path is made absolute here.
  const request: MountRequest = {
    templates: values.template.flatMap((t) => t.split(':')).filter(Boolean).map((t) => resolve(t)),
    privateDir: resolve(values.private),
    workDir: values.work === undefined ? undefined : resolve(values.work),
    mountpoint: await mountpointPath(positionals[0]),
    binding: values.binding as BindingName | undefined,
  };
  if (values.foreground) return foreground(request);
  const [{ ensureServer }, { call }] = await Promise.all([import('../vefs/daemon.js'), import('../vefs/control.js')]);
  await ensureServer();
  const config = await call<MountConfig>(socketPath(), { op: 'mount', request });
  console.log(`mounted ${config.mountpoint} (templates ${config.templates.join(':')}, private ${config.privateDir})`);
}

async function foreground(request: MountRequest): Promise<void> {
  const { MountServer } = await import('../vefs/server.js');
  const server = new MountServer((m) => console.error(m));
  const config = await server.mount(request);
  console.error(`serving ${config.mountpoint} in the foreground; interrupt to unmount`);
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
  });
  await server.unmountAll();
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case 'mount':
      return mountCommand(args);
    case 'umount': {
      const { positionals } = parse(args, {}, 1);
      const { umount } = await import('../vefs/umount.js');
      const how = await umount(positionals[0]);
      console.log(how === 'server' ? `unmounted ${positionals[0]}` : `detached ${positionals[0]} (its server was gone)`);
      return;
    }
    case 'status': {
      const { values } = parse(args, { json: { type: 'boolean' } }, 0);
      const { call } = await import('../vefs/control.js');
      const s = await call<Status>(socketPath(), { op: 'status' }).catch(() => {
        throw new VefsError('ESRCH', `no VEFS server answers on ${socketPath()}`);
      });
      if (values.json) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log(`server pid ${s.pid}, RSS ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB, ${s.mounts.length} mount(s), log ${logPath()}`);
      for (const m of s.mounts) console.log(`  ${m.mountpoint}  binding=${m.binding} templates=${m.templates.join(':')} private=${m.privateDir}`);
      return;
    }
    case 'invalidate': {
      const { positionals } = parseArgs({ args, allowPositionals: true, strict: true });
      if (positionals.length === 0) throw new UsageError('invalidate needs at least one PATH');
      const { announceChanges } = await import('../vefs/changes.js');
      const told = await announceChanges(positionals);
      console.log(`${told} mount(s) told`);
      return;
    }
    case 'shutdown': {
      parse(args, {}, 0);
      const { call } = await import('../vefs/control.js');
      await call(socketPath(), { op: 'shutdown' }).catch(() => {
        throw new VefsError('ESRCH', `no VEFS server answers on ${socketPath()}`);
      });
      return;
    }
    case 'server':
      parse(args, {}, 0);
      return (await import('../vefs/daemon.js')).runServer();
    case 'demo': {
      const { values } = parse(args, { dir: { type: 'string' } }, 0);
      return (await import('./demo.js')).demo(values.dir);
    }
    case 'bench':
      return (await import('./bench.js')).benchCommand(args);
    case 'unify':
      return (await import('./unify.js')).unifyCommand(args);
    case 've':
      return (await import('./ve.js')).veCommand(args);
    case 'template':
      return (await import('./template.js')).templateCommand(args);
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    case undefined:
      throw new UsageError('no command given');
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const usage = err instanceof UsageError;
  console.error(`vefs: ${(err as Error).message ?? err}`);
  if (usage) console.error(`run 'vefs help' for usage`);
  process.exit(usage ? 2 : 1);
});
