// `vefs demo`: the whole idea in one run, on a template built from Debian's
// busybox-static. Every step is a real operation on a real VEFS mount, done
// from this process (a client: the server is another process). Steps 1-7
// show the storage by hand (one root, changed with chroot; unify on copies);
// step 8 runs three VEs with the runtime, unifies their private trees while
// they run, stops and destroys them, and leaves no mount, process or cgroup.
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
import { unify } from '../unify/run.js';
import { bytes } from '../unify/report.js';
import { serverRunning } from '../vefs/daemon.js';
import { createTemplate } from '../runtime/templates.js';
import { createVe, destroyVe, execVe, findVe, Runtime, startVe, stopVe } from '../runtime/ve.js';
import { cgroupProcs } from '../runtime/cgroup.js';

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
  await runtimeDemoStep(join(dir, 'ves'));
}

/** Runs a shell command in a VE; its output goes to this terminal. */
async function inVe(rt: Runtime, id: number, script: string): Promise<void> {
  const code = await execVe(rt, String(id), ['/bin/sh', '-c', script]);
  if (code !== 0) throw new Error(`a demo command failed in VE ${id} (exit ${code}): ${script}`);
}

async function runtimeDemoStep(root: string): Promise<void> {
  const ids = [101, 102, 103];
  const serverWasRunning = await serverRunning();
  await rm(root, { recursive: true, force: true });
  const rt = new Runtime(root);
  try {
    say(`8. Running three VEs with the runtime (state in ${root})`);
    const tpl = await createTemplate(rt.layout, rt.state, 'busybox', { kind: 'busybox' });
    say(`   vefs template create busybox --busybox: ${tpl.dir}`);
    for (const id of ids) {
      await createVe(rt, String(id), 'busybox', { hostname: `ve${id}`, memory: 64 * 2 ** 20, pids: 64, cpus: 0.5 });
      const pid = await startVe(rt, String(id));
      say(`   vefs ve create ${id} --template busybox --memory 64M --pids 64 --cpus 0.5; vefs ve start ${id}: PID 1 is host pid ${pid}`);
    }
    say('   in each VE: hostname, its processes, and a write to a template file (copied up into its private tree):');
    for (const id of ids) {
      await inVe(rt, id, `ps -o pid,comm > /tmp/ps; echo "   $(hostname): $(tail -n +2 /tmp/ps | tr -s ' ' | tr '\n' ';')"; `
        + `echo "export VE=${id}" >> /etc/profile; echo "   $(hostname): /etc/profile now ends with: $(tail -1 /etc/profile)"`);
    }
    say('   isolation: VE 101 keeps a file in /root; VE 102 sees neither it nor 101\'s processes, and cannot reach the host kernel');
    await inVe(rt, 101, 'echo secret-of-101 > /root/note; echo "   ve101: ls /root: $(ls /root)"');
    const pid101 = findVe(rt, '101').pid!;
    await inVe(rt, 102, `echo "   ve102: ls /root: '$(ls /root)'"; echo "   ve102: kill -0 ${pid101} (101's PID 1 on the host): $(kill -0 ${pid101} 2>&1)"; `
      + `echo "   ve102: write core_pattern: $(echo x 2>&1 > /proc/sys/kernel/core_pattern)"; echo "   ve102: mount: $(mount -t tmpfs x /mnt 2>&1)"; true`);

    say('   unify while they run: each VE writes the same 1 MB table, then vefs unify links the private trees');
    for (const id of ids) {
      await inVe(rt, id, 'mkdir -p /opt/app && seq 1 150000 > /opt/app/table.txt && touch -d "2026-01-01 00:00:00" /opt/app/table.txt');
    }
    const privates = ids.map((id) => rt.layout.privateDir(id));
    const r = await unify({ roots: privates.map(toBytes), templates: [toBytes(rt.layout.template('busybox'))], index: join(root, 'unify.db') });
    say(`   vefs unify: ${r.linksMade} links made, ${r.inodesReclaimed} inodes and ${bytes(r.bytesReclaimed)} reclaimed`);
    await inVe(rt, 103, 'echo "   VE 103 still reads $(wc -l < /opt/app/table.txt) lines of its (now shared, immutable) table"');

    for (const id of ids) {
      const cgroups = findVe(rt, String(id)).cgroups!;
      await stopVe(rt, String(id), 5);
      await destroyVe(rt, String(id));
      if (cgroupProcs(cgroups).length > 0) throw new Error(`VE ${id}'s processes outlived its stop`);
    }
    say(`   vefs ve stop and vefs ve destroy ${ids.join(', ')}: their processes, cgroups, mounts and private trees are gone`);
  } finally {
    for (const rec of rt.state.ves()) await destroyVe(rt, String(rec.id), true).catch(() => undefined);
    rt.close();
    if (!serverWasRunning && (await serverRunning())) await call(socketPath(), { op: 'shutdown' });
    await rm(root, { recursive: true, force: true }).catch(() => run('chattr', ['-R', '-i', root]).then(() => rm(root, { recursive: true, force: true })));
  }
  const left = (await readMounts()).filter((m) => m.mountpoint.startsWith(`${root}/`));
  if (left.length > 0) throw new Error(`the demo left mounts: ${left.map((m) => m.mountpoint).join(', ')}`);
  say('   nothing left behind: no VE, mount, process or cgroup');
}
