// POSIX error semantics: operation × condition → errno, checked on kernel
// overlayfs (the reference) and on VEFS. Each row gets a fresh mount over the
// same template, so a row's setup cannot leak into another row.
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { leftoverMounts, makeScratch, mountOverlay, mountVefs, TimedOut, vefsTarget, withScratch, type MountOptions, type Mounted } from './helpers/mounts.js';
import { describeStep, runWorkload, runWorkloadAs, type Step } from './helpers/workload.js';

const USER = { uid: 1000, gid: 1000 };

export interface ErrnoRow {
  /** Condition in words; with the probe's op it names the test. */
  condition: string;
  /** Run as root on the fresh mount before the probe; every step must succeed. */
  setup?: Step[];
  probe: Step;
  /** Probe as USER instead of root (the mount must honour default_permissions). */
  asUser?: boolean;
  /** An errno code, or 'ok' for the controls that prove a denial is not blanket. */
  expect: string;
}

export const TEMPLATE: Step[] = [
  { op: 'create', args: { path: 'README.txt', data: 'readme\n' } },
  { op: 'create', args: { path: 'secret.txt', data: 'secret\n', mode: 0o600 } },
  { op: 'mkdir', args: { path: 'etc' } },
  { op: 'create', args: { path: 'etc/hosts', data: '127.0.0.1 localhost\n' } },
  { op: 'symlink', args: { target: '../README.txt', path: 'etc/motd' } },
  { op: 'mkdir', args: { path: 'etc/conf.d' } },
  { op: 'create', args: { path: 'etc/conf.d/a.conf', data: 'a\n' } },
  { op: 'create', args: { path: 'etc/conf.d/b.conf', data: 'b\n' } },
  { op: 'mkdir', args: { path: 'empty' } },
  { op: 'mkdir', args: { path: 'deep' } },
  { op: 'mkdir', args: { path: 'deep/a' } },
  { op: 'create', args: { path: 'deep/a/file', data: 'f\n' } },
  { op: 'symlink', args: { target: 'loop-b', path: 'loop-a' } },
  { op: 'symlink', args: { target: 'loop-a', path: 'loop-b' } },
  { op: 'mkdir', args: { path: 'sticky', mode: 0o777 } },
  { op: 'chmod', args: { path: 'sticky', mode: 0o1777 } },
  { op: 'create', args: { path: 'sticky/roots', data: 'r\n' } },
  { op: 'create', args: { path: 'sticky/mine', data: 'm\n' } },
  { op: 'chown', args: { path: 'sticky/mine', uid: USER.uid, gid: USER.gid } },
  { op: 'mkdir', args: { path: 'home' } },
  { op: 'create', args: { path: 'home/notes', data: 'n\n' } },
  { op: 'chown', args: { path: 'home/notes', uid: USER.uid, gid: USER.gid } },
  { op: 'chown', args: { path: 'home', uid: USER.uid, gid: USER.gid } },
  { op: 'mkdir', args: { path: 'closed', mode: 0o700 } },
  { op: 'create', args: { path: 'closed/x', data: 'x\n' } },
];

const LONG = 'n'.repeat(256);

export const ROWS: ErrnoRow[] = [
  { condition: 'missing file', probe: { op: 'read', args: { path: 'nope' } }, expect: 'ENOENT' },
  { condition: 'missing file', probe: { op: 'unlink', args: { path: 'nope' } }, expect: 'ENOENT' },
  { condition: 'missing dir', probe: { op: 'rmdir', args: { path: 'nope' } }, expect: 'ENOENT' },
  { condition: 'missing source', probe: { op: 'rename', args: { from: 'nope', to: 'x' } }, expect: 'ENOENT' },
  { condition: 'lookup through a missing dir', probe: { op: 'stat', args: { path: 'nodir/file' } }, expect: 'ENOENT' },
  { condition: 'create in a missing dir', probe: { op: 'create', args: { path: 'nodir/file', data: '' } }, expect: 'ENOENT' },
  { condition: 'template file the VE deleted', setup: [{ op: 'unlink', args: { path: 'etc/hosts' } }],
    probe: { op: 'read', args: { path: 'etc/hosts' } }, expect: 'ENOENT' },
  { condition: 'below a template dir the VE deleted',
    setup: [{ op: 'unlink', args: { path: 'deep/a/file' } }, { op: 'rmdir', args: { path: 'deep/a' } }],
    probe: { op: 'stat', args: { path: 'deep/a/file' } }, expect: 'ENOENT' },
  { condition: 'template dir renamed away', setup: [{ op: 'rename', args: { from: 'deep/a', to: 'moved' } }],
    probe: { op: 'readdir', args: { path: 'deep/a' } }, expect: 'ENOENT' },
  { condition: 'missing attribute', probe: { op: 'getxattr', args: { path: 'README.txt', name: 'user.nope' } }, expect: 'ENODATA' },

  { condition: 'path through a file', probe: { op: 'read', args: { path: 'README.txt/x' } }, expect: 'ENOTDIR' },
  { condition: 'a file', probe: { op: 'rmdir', args: { path: 'README.txt' } }, expect: 'ENOTDIR' },
  { condition: 'dir over a file', probe: { op: 'rename', args: { from: 'empty', to: 'README.txt' } }, expect: 'ENOTDIR' },
  { condition: 'a file', probe: { op: 'readdir', args: { path: 'README.txt' } }, expect: 'ENOTDIR' },

  { condition: 'dir opened for writing', probe: { op: 'overwrite', args: { path: 'etc', data: 'x' } }, expect: 'EISDIR' },
  { condition: 'a dir', probe: { op: 'unlink', args: { path: 'etc' } }, expect: 'EISDIR' },
  { condition: 'file over a dir', probe: { op: 'rename', args: { from: 'README.txt', to: 'empty' } }, expect: 'EISDIR' },
  { condition: 'a dir', probe: { op: 'truncate', args: { path: 'etc', length: 0 } }, expect: 'EISDIR' },

  { condition: 'merged dir with a template entry left', setup: [{ op: 'unlink', args: { path: 'etc/conf.d/a.conf' } }],
    probe: { op: 'rmdir', args: { path: 'etc/conf.d' } }, expect: 'ENOTEMPTY' },
  { condition: 'template dir over a non-empty template dir', probe: { op: 'rename', args: { from: 'empty', to: 'etc' } }, expect: 'ENOTEMPTY' },
  { condition: 'new dir over a non-empty template dir', setup: [{ op: 'mkdir', args: { path: 'new' } }],
    probe: { op: 'rename', args: { from: 'new', to: 'deep' } }, expect: 'ENOTEMPTY' },
  { condition: 'template dir whose template entries are gone but holds a new one',
    setup: [{ op: 'unlink', args: { path: 'deep/a/file' } }, { op: 'create', args: { path: 'deep/a/new', data: '' } }],
    probe: { op: 'rmdir', args: { path: 'deep/a' } }, expect: 'ENOTEMPTY' },

  { condition: 'existing template dir', probe: { op: 'mkdir', args: { path: 'etc' } }, expect: 'EEXIST' },
  { condition: 'O_CREAT|O_EXCL on a template file', probe: { op: 'create', args: { path: 'README.txt', data: '' } }, expect: 'EEXIST' },
  { condition: 'link onto an existing name', probe: { op: 'link', args: { existing: 'README.txt', path: 'etc/hosts' } }, expect: 'EEXIST' },
  { condition: 'symlink onto an existing name', probe: { op: 'symlink', args: { target: 'x', path: 'etc/hosts' } }, expect: 'EEXIST' },
  { condition: 'mknod onto an existing name', probe: { op: 'mkfifo', args: { path: 'README.txt' } }, expect: 'EEXIST' },

  { condition: 'create in a root-owned 0755 dir', asUser: true,
    probe: { op: 'create', args: { path: 'etc/new', data: '' } }, expect: 'EACCES' },
  { condition: 'open a root-owned 0644 file for writing', asUser: true,
    probe: { op: 'append', args: { path: 'README.txt', data: 'x' } }, expect: 'EACCES' },
  { condition: 'read a root-owned 0600 file', asUser: true, probe: { op: 'read', args: { path: 'secret.txt' } }, expect: 'EACCES' },
  { condition: 'list a root-owned 0700 dir', asUser: true, probe: { op: 'readdir', args: { path: 'closed' } }, expect: 'EACCES' },
  { condition: 'lookup through a root-owned 0700 dir', asUser: true, probe: { op: 'stat', args: { path: 'closed/x' } }, expect: 'EACCES' },
  { condition: 'unlink in a root-owned 0755 dir', asUser: true, probe: { op: 'unlink', args: { path: 'etc/hosts' } }, expect: 'EACCES' },
  { condition: 'control: the user reads a 0644 file', asUser: true, probe: { op: 'read', args: { path: 'README.txt' } }, expect: 'ok' },
  { condition: 'control: the user creates in a dir they own', asUser: true,
    probe: { op: 'create', args: { path: 'home/new', data: 'x' } }, expect: 'ok' },
  { condition: 'control: the user removes their own file from a sticky dir', asUser: true,
    probe: { op: 'unlink', args: { path: 'sticky/mine' } }, expect: 'ok' },

  { condition: "chmod of a file the user doesn't own", asUser: true,
    probe: { op: 'chmod', args: { path: 'README.txt', mode: 0o777 } }, expect: 'EPERM' },
  { condition: 'chown of their own file to root', asUser: true,
    probe: { op: 'chown', args: { path: 'home/notes', uid: 0, gid: 0 } }, expect: 'EPERM' },
  { condition: "unlink of another's file in a sticky dir", asUser: true,
    probe: { op: 'unlink', args: { path: 'sticky/roots' } }, expect: 'EPERM' },
  { condition: "setting explicit times on a file the user doesn't own", asUser: true,
    probe: { op: 'utimes', args: { path: 'README.txt', atime: [1, 0], mtime: [1, 0] } }, expect: 'EPERM' },
  { condition: 'hard link to a directory', probe: { op: 'link', args: { existing: 'etc', path: 'etc2' } }, expect: 'EPERM' },

  { condition: '256-byte name', probe: { op: 'create', args: { path: LONG, data: '' } }, expect: 'ENAMETOOLONG' },
  { condition: '256-byte name', probe: { op: 'stat', args: { path: LONG } }, expect: 'ENAMETOOLONG' },
  { condition: '256-byte name', probe: { op: 'mkdir', args: { path: `etc/${LONG}` } }, expect: 'ENAMETOOLONG' },

  { condition: 'symlink loop', probe: { op: 'read', args: { path: 'loop-a' } }, expect: 'ELOOP' },
  { condition: 'O_NOFOLLOW on a symlink', probe: { op: 'openNoFollow', args: { path: 'etc/motd' } }, expect: 'ELOOP' },

  { condition: 'dir into its own subdir', probe: { op: 'rename', args: { from: 'deep', to: 'deep/a/deeper' } }, expect: 'EINVAL' },
  { condition: 'a regular file', probe: { op: 'readlink', args: { path: 'README.txt' } }, expect: 'EINVAL' },

  { condition: 'from the mount to another filesystem', probe: { op: 'rename', args: { from: 'README.txt', to: '@outside/README.txt' } }, expect: 'EXDEV' },
  { condition: 'from the mount to another filesystem', probe: { op: 'link', args: { existing: 'README.txt', path: '@outside/README.txt' } }, expect: 'EXDEV' },
];

type Backend = { name: string; mount: (opts: MountOptions) => Promise<Mounted> };
const BACKENDS: Backend[] = [{ name: 'overlayfs', mount: mountOverlay }, { name: vefsTarget(), mount: mountVefs }];

const scratch = makeScratch('vefs-errno');
const template = scratch.dir('template');
// Off the mount but on the same filesystem as its layers: EXDEV must come from
// crossing the mount, not from crossing disks.
const outside = scratch.dir('outside');

test.before(() => {
  const results = runWorkload(template, TEMPLATE);
  const failed = results.flatMap((r, i) => (r.ok ? [] : [`${describeStep(i, TEMPLATE[i])} → ${r.code}`]));
  if (failed.length > 0) throw new Error(`building the template:\n${failed.join('\n')}`);
});

test.after.always(() => scratch.cleanup());

// Once a backend has stopped answering, every later row would wait out the
// same time limits; they fail at once instead, naming the row that hung.
const hung = new Map<string, string>();

// Serial: one mount at a time keeps the server of this file's state dir out of
// the picture as a cause of failures here.
for (const backend of BACKENDS) {
  ROWS.forEach((row, index) => {
    const title = `${backend.name}: ${row.probe.op} → ${row.expect} (${row.condition})`;
    test.serial(title, async (t) => {
      const earlier = hung.get(backend.name);
      if (earlier !== undefined) return t.fail(`not probed: ${backend.name} stopped answering at "${earlier}"`);
      try {
        await probeRow(t, backend, row, index);
      } catch (err) {
        if (err instanceof TimedOut) hung.set(backend.name, title);
        throw err;
      }
    });
  });
}

async function probeRow(t: ExecutionContext, backend: Backend, row: ErrnoRow, index: number): Promise<void> {
  const dir = withScratch(t, `vefs-errno-${backend.name}-${index}`).base;
  const m = await backend.mount({ templates: [template], privateDir: path.join(dir, 'private'), workDir: path.join(dir, 'work'),
    mountpoint: path.join(dir, 'mnt'), stateDir: scratch.stateDir });
  const setup = row.setup ?? [];
  const setupResults = runWorkload(m.mountpoint, setup, { outside });
  t.deepEqual(setupResults.flatMap((r, i) => (r.ok ? [] : [`setup ${describeStep(i, setup[i])} → ${r.code}`])), []);
  const [result] = row.asUser
    ? await runWorkloadAs(USER, m.mountpoint, [row.probe], { outside })
    : runWorkload(m.mountpoint, [row.probe], { outside });
  const got = result.ok ? 'ok' : result.code;
  t.is(got, row.expect, `${backend.name}: ${describeStep(0, row.probe)}${row.asUser ? ` as uid ${USER.uid}` : ''}: expected ${row.expect}, got ${JSON.stringify(result)}`);
  await m.unmount();
  t.deepEqual(leftoverMounts(dir), []);
}
