// Builds a small but real VE template: a root tree around Debian's static
// busybox, with its applets as symlinks, the usual top-level directories and
// the /etc files that a shell and `ps`, `id` or `ls -l` need. The demo, unify
// and the runtime all build templates through this one function.
import { copyFile, mkdir, symlink, writeFile, chmod, access, rm, readdir } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join, relative } from 'node:path';
import { VefsError } from '../vefs/vefs-error.js';

const run = promisify(execFile);

export const BUSYBOX = '/bin/busybox';

export interface TemplateInfo {
  dir: string;
  applets: number;
}

const DIRS: [string, number][] = [
  ['bin', 0o755], ['sbin', 0o755], ['usr/bin', 0o755], ['usr/sbin', 0o755], ['usr/share/doc', 0o755],
  ['etc', 0o755], ['dev', 0o755], ['proc', 0o555], ['sys', 0o555], ['run', 0o755], ['root', 0o700],
  ['home', 0o755], ['tmp', 0o1777], ['var/log', 0o755], ['var/tmp', 0o1777], ['var/lib', 0o755], ['lib', 0o755],
];

const FILES: [string, string][] = [
  ['etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'],
  ['etc/group', 'root:x:0:\nnogroup:x:65534:\n'],
  ['etc/hostname', 've\n'],
  ['etc/hosts', '127.0.0.1 localhost\n::1 localhost\n'],
  ['etc/os-release', 'NAME="VEFS busybox template"\nID=vefs-busybox\n'],
  ['etc/profile', 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1="\\h:\\w# "\n'],
  ['usr/share/doc/README', 'This tree is a VEFS template. VEs see it read-only through their VEFS root.\n'],
];

/** Builds the template in dir, which must not exist yet or be empty. */
export async function buildBusyboxTemplate(dir: string): Promise<TemplateInfo> {
  try {
    await access(BUSYBOX);
  } catch {
    throw new VefsError('ENOENT', `${BUSYBOX} is missing: install Debian's busybox-static package`);
  }
  const existing = await readdir(dir).catch(() => []);
  if (existing.length > 0) throw new VefsError('EEXIST', `template directory ${dir} is not empty`);
  try {
    for (const [d, mode] of DIRS) {
      await mkdir(join(dir, d), { recursive: true });
      await chmod(join(dir, d), mode);
    }
    await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
    await chmod(join(dir, 'bin/busybox'), 0o755);
    const { stdout } = await run(BUSYBOX, ['--list-full']);
    const applets = stdout.split('\n').filter((a) => a && a !== 'bin/busybox');
    for (const applet of applets) {
      const at = join(dir, applet);
      await mkdir(dirname(at), { recursive: true });
      await symlink(relative(dirname(at), join(dir, 'bin/busybox')), at).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
    for (const [f, text] of FILES) await writeFile(join(dir, f), text, { mode: 0o644 });
    return { dir, applets: applets.length };
  } catch (err) {
    if (existing.length === 0) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
