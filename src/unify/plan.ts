// Step 4: within one group of interchangeable names, which inode is kept and
// which inodes give up their names to it. Pure, so that it is tested as a
// table and a rerun repeats the same decisions without reading a byte.
//
// - A template's inode is kept first: the template is never rewritten, it
//   only gains names (and the immutable flag). Template inodes are never
//   targets; several of them in one group stay apart.
// - Otherwise the inode with the most names is kept: fewest links to make.
// - An inode with names the run did not see (outside the ROOTs, or
//   excluded) is never a target: relinking some of its names would split a
//   hard link that a VE can observe. It may be kept if it is unified
//   already (immutable): it only gains names, and so a run over a new VE and
//   its template, or over one batch of VEs, joins the inodes that earlier
//   runs made. One not unified is left alone: keeping it would give the
//   flag to names the operator did not name.
// - No inode is planned beyond the filesystem's link limit: when the kept
//   inode is full, the next inode becomes the kept one of a new group, so
//   a rerun finds nothing to do.
import type { Member } from './groups.js';

export interface PlanInode {
  ino: bigint;
  /** Link count when the walk saw it. */
  nlink: number;
  /** How many of its names are under this run's ROOTs. */
  count: number;
  /**
   * Its names under the ROOTs in the order they were indexed: the first one
   * only, until the inode is planned as a target (GroupQueries.allNames).
   */
  names: Member[];
  template: boolean;
  /** It carried the immutable flag when the walk saw it: unified already. */
  sealed: boolean;
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

const byNamesThenIno = (a: PlanInode, b: PlanInode): number =>
  b.nlink - a.nlink || b.count - a.count || (a.ino < b.ino ? -1 : a.ino > b.ino ? 1 : 0);

export function planGroup(inodes: PlanInode[], linkMax: number): Plan {
  const outside = (i: PlanInode): boolean => !i.template && i.count !== i.nlink;
  // Never targets, and may be kept: template inodes first, then unified ones with names elsewhere.
  const keepers = [...inodes.filter((i) => i.template).sort(byNamesThenIno), ...inodes.filter((i) => outside(i) && i.sealed).sort(byNamesThenIno)];
  const elsewhere = inodes.filter((i) => outside(i) && !i.sealed);
  const others = inodes.filter((i) => !i.template && !outside(i)).sort(byNamesThenIno);
  const links: PlannedLink[] = [];
  let current: PlannedLink | undefined;
  let room = 0;
  const keep = (master: PlanInode): void => {
    current = { master, targets: [] };
    links.push(current);
    room = linkMax - master.nlink;
  };
  const first = keepers.shift() ?? others.shift();
  if (first !== undefined) keep(first);
  for (const inode of others) {
    while (inode.count > room && keepers.length > 0) keep(keepers.shift()!);
    if (inode.count > room) {
      keep(inode);
      continue;
    }
    current!.targets.push(inode);
    room -= inode.count;
  }
  return { links: links.filter((l) => l.targets.length > 0), elsewhere: [...elsewhere, ...keepers.filter((i) => !i.template)] };
}
