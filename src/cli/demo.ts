// `vefs demo`: the whole idea in one run, on a template built from Debian's
// busybox-static. Every step is a real operation on a real VEFS mount, done
// from this process (a client: the server is another process).
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, unlink, writeFile, appendFile, readdir, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBusyboxTemplate } from '../runtime/template.js';
import { call } from '../vefs/control.js';
import { ensureServer } from '../vefs/daemon.js';
import { digestTree } from '../vefs/digest.js';
import { socketPath, logPath } from '../vefs/state.js';
import { umount } from '../vefs/umount.js';
import { readMounts } from '../vefs/mounts.js';
import { native, toBytes } from '../../native/index.js';
import { unifyDemoStep } from '../unify/demo.js';

const run = promisify(execFile);
const say = (s: string): void => console.log(s);

/** The private tree as an operator inspects it: whiteouts and overlayfs marks shown. */
async function describePrivate(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = join(root, rel, name);
    const st = await lstat(path);
    const marks = native.llistxattr(toBytes(path)).filter((x) => x.startsWith('trusted.overlay.'))
      .map((x) => `${x}=${native.lgetxattr(toBytes(path), x)?.toString()}`);
    const kind = st.isCharacterDevice() && st.rdev === 0 ? 'whiteout' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
    out.push(`  /${join(rel, name)}  ${kind}${marks.length ? `  ${marks.join(' ')}` : ''}`);
    if (st.isDirectory()) out.push(...(await describePrivate(root, join(rel, name))));
  }
  return out;
}

export async function demo(dir = '/var/tmp/vefs-demo'): Promise<void> {
  if ((await readMounts()).some((m) => m.mountpoint.startsWith(`${dir}/`))) {
    await umount(join(dir, 'root')).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
  const template = join(dir, 'template');
  const priv = join(dir, 'private');
  const root = join(dir, 'root');
  await mkdir(priv, { recursive: true });
  await mkdir(root, { recursive: true });

  say(`1. Building a busybox template in ${template}`);
  const info = await buildBusyboxTemplate(template);
  say(`   ${info.applets} busybox applets, /etc, /usr, /var ...`);
  const before = await digestTree(template, { ctime: true });

  const started = await ensureServer();
  say(`2. Mounting a VE root at ${root} (server ${started ? 'started' : 'already running'}; log ${logPath()})`);
  await call(socketPath(), { op: 'mount', request: { templates: [template], privateDir: priv, mountpoint: root } });
  try {
    say('3. Working inside the VE root');
    const { stdout } = await run('chroot', [root, '/bin/sh', '-c', 'echo "   busybox $(busybox | head -1 | cut -d" " -f2) runs from the template; / holds: $(ls / | tr "\\n" " ")"']);
    process.stdout.write(stdout);
    await writeFile(join(root, 'etc/hostname'), 've101\n');
    say('   wrote /etc/hostname (a template file: copied up, then changed)');
    await appendFile(join(root, 'etc/profile'), 'alias ll="ls -l"\n');
    say('   appended to /etc/profile');
    await mkdir(join(root, 'srv/www'), { recursive: true });
    await writeFile(join(root, 'srv/www/index.html'), '<h1>ve101</h1>\n');
    say('   created /srv/www/index.html');
    await unlink(join(root, 'usr/share/doc/README'));
    say('   deleted /usr/share/doc/README (a template file: leaves a whiteout)');
    await rename(join(root, 'etc/os-release'), join(root, 'etc/os-release.orig'));
    say('   renamed /etc/os-release to /etc/os-release.orig');
    await rename(join(root, 'var/log'), join(root, 'var/log.old'));
    say('   renamed the template directory /var/log to /var/log.old (no EXDEV: a redirect)');
    say(`   the VE now reads /etc/hostname = ${(await readFile(join(root, 'etc/hostname'), 'utf8')).trim()}`);
  } finally {
    say(`4. Unmounting ${root}`);
    await umount(root);
    if (started) await call(socketPath(), { op: 'shutdown' });
  }
  const after = await digestTree(template, { ctime: true });
  say(`5. Template ${before === after ? 'untouched' : 'CHANGED'}: digest of every name, byte, mode, owner, xattr and time`);
  say(`   before ${before.slice(0, 16)}…  after ${after.slice(0, 16)}…`);
  say(`   template /etc/hostname still reads: ${(await readFile(join(template, 'etc/hostname'), 'utf8')).trim()}`);
  say(`6. The private tree ${priv} (kernel overlayfs upper-dir format):`);
  for (const line of await describePrivate(priv)) say(line);
  say(`   kernel overlayfs shows the same tree: mount -t overlay overlay -o lowerdir=${template},upperdir=${priv},workdir=${dir}/.private.work,redirect_dir=on,metacopy=on MNT`);
  if (before !== after) throw new Error('the template changed: this is a bug, please report it');
  await unifyDemoStep(template, dir, (line) => say(line.startsWith(' ') ? line : `7. ${line}`));
}
