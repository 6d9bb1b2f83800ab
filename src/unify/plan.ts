// Step 4: within one group of interchangeable names, which inode is kept and
// which inodes give up their names to it. Pure, so that it is tested as a
// table and a rerun repeats the same decisions without reading a byte.
//
// - A template's inode is kept first: the template is never rewritten, it
//   only gains names (and the immutable flag). Template inodes are never
//   targets; several of them in one group stay apart.
// - Otherwise the inode with the most names is kept: fewest links to make.
// - An inode with names the run did not see (outside the ROOTs, or
//   excluded) is left alone: relinking some of its names would split a hard
//   link that a VE can observe.
// - No inode is planned beyond the filesystem's link limit: when the kept
//   inode is full, the next inode becomes the kept one of a new group, so
//   a rerun finds nothing to do.
import type { Member } from './groups.js';

export interface PlanInode {
  ino: bigint;
  /** Link count when the walk saw it. */
  nlink: number;
  names: Member[];
  template: boolean;
}

export interface PlannedLink {
  master: PlanInode;
  targets: PlanInode[];
}

export interface Plan {
  links: PlannedLink[];
  /** Inodes with names elsewhere, left as they are. */
  elsewhere: PlanInode[];
}

export function inodesOf(members: Member[]): PlanInode[] {
  const byIno = new Map<bigint, PlanInode>();
  for (const m of members) {
    let i = byIno.get(m.ino);
    if (i === undefined) {
      i = { ino: m.ino, nlink: m.nlink, names: [], template: false };
      byIno.set(m.ino, i);
    }
    i.names.push(m);
    i.template ||= m.template;
  }
  return [...byIno.values()];
}

const byNamesThenIno = (a: PlanInode, b: PlanInode): number =>
  b.nlink - a.nlink || b.names.length - a.names.length || (a.ino < b.ino ? -1 : a.ino > b.ino ? 1 : 0);

export function planGroup(members: Member[], linkMax: number): Plan {
  const inodes = inodesOf(members);
  const templates = inodes.filter((i) => i.template).sort(byNamesThenIno);
  const elsewhere = inodes.filter((i) => !i.template && i.names.length !== i.nlink);
  const others = inodes.filter((i) => !i.template && i.names.length === i.nlink).sort(byNamesThenIno);
  const links: PlannedLink[] = [];
  let current: PlannedLink | undefined;
  let room = 0;
  const keep = (master: PlanInode): void => {
    current = { master, targets: [] };
    links.push(current);
    room = linkMax - master.nlink;
  };
  const first = templates.shift() ?? others.shift();
  if (first !== undefined) keep(first);
  for (const inode of others) {
    while (inode.names.length > room && templates.length > 0) keep(templates.shift()!);
    if (inode.names.length > room) {
      keep(inode);
      continue;
    }
    current!.targets.push(inode);
    room -= inode.names.length;
  }
  return { links: links.filter((l) => l.targets.length > 0), elsewhere };
}
