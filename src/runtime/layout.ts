// Where the runtime keeps everything, under one state directory (--root,
// VEFS_ROOT, default /var/lib/vefs), as the VE tools lay it out:
//   templates/NAME   a template's tree, shared read-only by its VEs
//   private/ID       a VE's private tree (overlayfs upper-dir format)
//   private/.ID.work its work directory (VEFS's default, beside the tree)
//   root/ID          the VE's root: the VEFS mountpoint
//   logs/ID.log      the VE's console
//   locks/           per-VE and per-template lock files
//   runtime.db       SQLite: templates, VEs, their config and status
import { join, resolve } from 'node:path';
import { defaultWorkDir } from '../vefs/config.js';

export class Layout {
  readonly root: string;

  constructor(root = process.env.VEFS_ROOT ?? '/var/lib/vefs') {
    this.root = resolve(root);
  }

  get db(): string { return join(this.root, 'runtime.db'); }
  get templates(): string { return join(this.root, 'templates'); }
  template(name: string): string { return join(this.templates, name); }
  privateDir(id: number): string { return join(this.root, 'private', String(id)); }
  workDir(id: number): string { return defaultWorkDir(this.privateDir(id)); }
  mountpoint(id: number): string { return join(this.root, 'root', String(id)); }
  log(id: number): string { return join(this.root, 'logs', `${id}.log`); }
  lock(name: string): string { return join(this.root, 'locks', `${name}.lock`); }
}
