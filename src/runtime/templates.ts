// Template store: templates/NAME, each built out of sight in a temporary
// directory and published with one rename, so a crashed build leaves no
// half-template that a VE could start from. A template is removed only while
// no VE uses it; its lock keeps a VE create from racing the removal.
import { execFile } from 'node:child_process';
import { mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBusyboxTemplate } from './template.js';
import { RuntimeError } from './errors.js';
import { VefsError } from '../vefs/vefs-error.js';
import { diskUsed, removeTree } from './fsutil.js';
import { parseName } from './ids.js';
import { takeLock } from './lock.js';
import type { Layout } from './layout.js';
import type { State } from './state.js';

const run = promisify(execFile);

export type TemplateSource = { kind: 'busybox' } | { kind: 'from'; dir: string } | { kind: 'debootstrap'; suite: string };

export interface TemplateInfo {
  name: string;
  source: string;
  created: string;
  ves: number;
  dir: string;
  bytes: number;
}

export const templateLock = (layout: Layout, name: string): string => layout.lock(`template.${name}`);

function describe(src: TemplateSource): string {
  switch (src.kind) {
    case 'busybox': return 'busybox';
    case 'from': return `from ${src.dir}`;
    case 'debootstrap': return `debootstrap ${src.suite}`;
  }
}

async function build(src: TemplateSource, dir: string): Promise<void> {
  switch (src.kind) {
    case 'busybox':
      await buildBusyboxTemplate(dir);
      return;
    case 'from':
      await mkdir(dir);
      await run('cp', ['-a', '--', `${src.dir}/.`, dir], { maxBuffer: 16 * 2 ** 20 });
      return;
    case 'debootstrap':
      await run('debootstrap', ['--variant=minbase', src.suite, dir], { maxBuffer: 64 * 2 ** 20 });
  }
}

export async function createTemplate(layout: Layout, state: State, nameArg: string, src: TemplateSource): Promise<TemplateInfo> {
  const name = parseName(nameArg, 'template name');
  if (src.kind === 'from') {
    const st = await stat(src.dir).catch(() => null);
    if (!st?.isDirectory()) throw new RuntimeError('ENOENT', `--from ${src.dir} is not a directory`);
  }
  if (src.kind === 'debootstrap') {
    if (!/^[a-z][a-z0-9-]*$/.test(src.suite)) throw new RuntimeError('EINVAL', `'${src.suite}' is not a Debian suite name`);
    await run('debootstrap', ['--version']).catch(() => {
      throw new RuntimeError('ENOENT', 'debootstrap is not installed (apt-get install debootstrap)');
    });
  }
  const release = takeLock(templateLock(layout, name), `template ${name}`);
  try {
    if (state.template(name)) throw new RuntimeError('EEXIST', `template ${name} exists already`);
    const dir = layout.template(name);
    await mkdir(layout.templates, { recursive: true, mode: 0o755 });
    // Left by an earlier run that crashed before recording it: never published, so never used.
    await removeTree(dir);
    const tmp = join(layout.templates, `.${name}.building`);
    await removeTree(tmp);
    try {
      await build(src, tmp);
    } catch (err) {
      await removeTree(tmp);
      const e = err as Error & { stderr?: string };
      if (err instanceof VefsError) throw err;
      throw new RuntimeError('EBUILD', `cannot build template ${name} (${describe(src)}): ${(e.stderr ?? '').trim() || e.message}`);
    }
    await rename(tmp, dir);
    state.addTemplate({ name, source: describe(src), created: new Date().toISOString() });
    return { ...state.templates().find((t) => t.name === name)!, dir, bytes: await diskUsed(dir) };
  } finally {
    release();
  }
}

export async function listTemplates(layout: Layout, state: State): Promise<TemplateInfo[]> {
  const out: TemplateInfo[] = [];
  for (const t of state.templates()) out.push({ ...t, dir: layout.template(t.name), bytes: await diskUsed(layout.template(t.name)) });
  return out;
}

export async function removeTemplate(layout: Layout, state: State, name: string): Promise<void> {
  if (!state.template(name)) throw new RuntimeError('ENOENT', `no template ${name}`);
  const release = takeLock(templateLock(layout, name), `template ${name}`);
  try {
    const users = state.vesOfTemplate(name);
    if (users.length > 0) throw new RuntimeError('EBUSY', `template ${name} is used by VE ${users.join(', ')}: destroy them first`);
    await removeTree(layout.template(name));
    state.removeTemplate(name);
  } finally {
    release();
  }
}
