// The node ID journal: which merged path each node ID the kernel holds
// stands for, written before the reply that hands the ID out. A server that
// takes over a mount after a crash replays it, so that it can answer for the
// IDs the kernel still uses (a VE's working directory, a cached dentry) and
// never hands out one of them again.
//
// One line per event, JSON-encoded so that any byte of a name survives:
//   ["I", passthrough]    the kernel's INIT was answered, with or without passthrough
//   ["A", id, path]       an ID was handed out for path
//   ["F", id]             the kernel forgot it
//   ["R", from, to]       a rename moved path `from` (and everything below) to `to`
//   ["D", unique, reply]  a request that changes the tree was done, and this
//                         (base64) is its reply: if the server dies before
//                         the reply reaches the kernel, the kernel sends the
//                         request again, and the next server answers it from
//                         here instead of doing it twice (a second mkdir
//                         would answer EEXIST, a second rmdir ENOENT)
import { closeSync, openSync, readFileSync, writeSync, renameSync } from 'node:fs';

export interface Replayed {
  passthrough: boolean;
  /** Replies of requests done, by unique. */
  done: Map<bigint, Buffer>;
  paths: Map<bigint, string>;
  /** Above every ID ever handed out. */
  next: bigint;
}

export class NodeJournal {
  private fd: number;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'a', 0o600);
  }

  private write(entry: unknown[]): void {
    writeSync(this.fd, `${JSON.stringify(entry, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  }

  initialized(passthrough: boolean): void { this.write(['I', passthrough]); }
  allocated(id: bigint, path: string): void { this.write(['A', id, path]); }
  forgot(id: bigint): void { this.write(['F', id]); }
  renamed(from: string, to: string): void { this.write(['R', from, to]); }
  replied(unique: bigint, body: Buffer[]): void { this.write(['D', unique, Buffer.concat(body).toString('base64')]); }

  close(): void {
    closeSync(this.fd);
  }

  static replay(path: string): Replayed {
    const paths = new Map<bigint, string>();
    let next = 2n;
    let passthrough = false;
    const done = new Map<bigint, Buffer>();
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return { passthrough, done, paths, next };
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      let e: string[];
      try {
        e = JSON.parse(line) as string[];
        if (e[0] === 'I') passthrough = Boolean(e[1]);
      } catch {
        continue; // a line cut short by the crash: its reply was never sent
      }
      if (e[0] === 'A') {
        const id = BigInt(e[1]);
        paths.set(id, e[2]);
        if (id >= next) next = id + 1n;
      } else if (e[0] === 'F') paths.delete(BigInt(e[1]));
      else if (e[0] === 'D') done.set(BigInt(e[1]), Buffer.from(e[2], 'base64'));
      else if (e[0] === 'R') {
        const [from, to] = [e[1], e[2]];
        for (const [id, p] of paths) {
          if (p === from) paths.set(id, to);
          else if (p.startsWith(`${from}/`)) paths.set(id, to + p.slice(from.length));
        }
      }
    }
    return { passthrough, done, paths, next };
  }

  /** Starts a fresh journal holding exactly the replayed state (replaces the file atomically). */
  static rewrite(path: string, state: Replayed): NodeJournal {
    const tmp = `${path}.new`;
    const j = new NodeJournal(tmp);
    j.initialized(state.passthrough);
    // The highest ID ever given stays reserved even if it was forgotten.
    j.write(['A', state.next - 1n, '\0reserved']);
    j.forgot(state.next - 1n);
    for (const [id, p] of state.paths) j.allocated(id, p);
    for (const [unique, reply] of state.done) j.replied(unique, [reply]);
    renameSync(tmp, path);
    return j;
  }
}
