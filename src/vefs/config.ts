// Checks a mount request before anything is touched: every message names
// the path and the problem, and a rejected request changes nothing on disk.
import { stat, realpath, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { VefsError } from './vefs-error.js';
import { readMounts, mountOf, VEFS_FSTYPE } from './mounts.js';
import type { BindingName, MountConfig } from './types.js';

export interface MountRequest {
  templates: string[];
  privateDir: string;
  workDir?: string;
  mountpoint: string;
  binding?: BindingName;
}

export const BINDINGS: readonly BindingName[] = ['kernel', 'fuse-native'];

/**
 * The binding a mount gets unless it asks: the one that wins `vefs bench`
 * (README, Benchmarks). VEFS_BINDING in the server's environment overrides
 * it, which is how the test suite runs everything on both.
 */
export function defaultBinding(): BindingName {
  const env = process.env.VEFS_BINDING;
  if (env === undefined || env === '') return 'kernel';
  if (!(BINDINGS as string[]).includes(env)) {
    throw new VefsError('EINVAL', `VEFS_BINDING=${env} is not a binding (${BINDINGS.join(', ')})`);
  }
  return env as BindingName;
}

/** The default work directory sits beside the private tree, on its filesystem, as overlayfs needs. */
export function defaultWorkDir(privateDir: string): string {
  return join(dirname(privateDir), `.${basename(privateDir)}.work`);
}

async function existingDir(path: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw new VefsError('ENOENT', `${what} ${path} does not exist`);
  }
  if (!(await stat(real)).isDirectory()) throw new VefsError('ENOTDIR', `${what} ${path} is not a directory`);
  return real;
}

const inside = (a: string, b: string): boolean => a === b || a.startsWith(b === '/' ? '/' : `${b}/`);

export async function checkMount(req: MountRequest): Promise<MountConfig> {
  if (req.templates.length === 0) throw new VefsError('EINVAL', 'at least one --template directory is required');
  const binding = req.binding ?? defaultBinding();
  if (!BINDINGS.includes(binding)) throw new VefsError('EINVAL', `unknown binding ${binding} (${BINDINGS.join(', ')})`);
  const templates: string[] = [];
  for (const t of req.templates) templates.push(await existingDir(t, 'template'));
  const privateDir = await existingDir(req.privateDir, 'private directory');
  const mountpoint = await existingDir(req.mountpoint, 'mountpoint');

  const workGiven = req.workDir ?? defaultWorkDir(privateDir);
  const workParent = await existingDir(dirname(workGiven), 'parent of the work directory');
  const workDir = join(workParent, basename(workGiven));
  const workSt = await stat(workDir).catch(() => null);
  if (workSt && !workSt.isDirectory()) throw new VefsError('ENOTDIR', `work directory ${workDir} is not a directory`);
  const workDev = (workSt ?? (await stat(workParent))).dev;
  if (workDev !== (await stat(privateDir)).dev) {
    throw new VefsError('EXDEV', `work directory ${workDir} is not on the private directory's filesystem (${privateDir})`);
  }

  const named: [string, string][] = [
    ...templates.map((t): [string, string] => [`template ${t}`, t]),
    [`private directory ${privateDir}`, privateDir],
    [`work directory ${workDir}`, workDir],
    [`mountpoint ${mountpoint}`, mountpoint],
  ];
  for (const [an, a] of named) {
    for (const [bn, b] of named) {
      if (a !== b && inside(a, b)) throw new VefsError('EINVAL', `${an} is inside ${bn}`);
      if (an !== bn && a === b) throw new VefsError('EINVAL', `${an} is the same directory as ${bn}`);
    }
  }

  const mounts = await readMounts();
  if (mounts.some((m) => m.mountpoint === mountpoint)) {
    throw new VefsError('EBUSY', `mountpoint ${mountpoint} is already mounted`);
  }
  for (const [what, dir] of named.slice(0, -1)) {
    // The server would wait on itself: its event loop serves that mount.
    if (mountOf(mounts, dir)?.fstype === VEFS_FSTYPE) throw new VefsError('EINVAL', `${what} is on a VEFS mount`);
  }
  if (!workSt) await mkdir(workDir, { mode: 0o700 });
  return { templates, privateDir, workDir, mountpoint, binding };
}
