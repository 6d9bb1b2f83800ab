// Descriptors of a unify run to close. Closing drops a lease, and the last
// close of a replaced inode frees its blocks: the costly part of reclaiming
// (~115 us a file on this host's ext4, mounted with discard, mostly waiting
// for the device). The addon's closing threads do it (native/src/closer.cc),
// away from the event loop and from the pool threads that prepare links.
import { native } from '../../native/index.js';

export class Closer {
  private fds: number[] = [];

  add(fds: number[]): void {
    for (const fd of fds) this.fds.push(fd);
  }

  /** Hands what was added to the closing threads. */
  flush(): void {
    if (this.fds.length === 0) return;
    native.closeInBackground(Int32Array.from(this.fds));
    this.fds = [];
  }

  /** Descriptors added and not closed yet. */
  get backlog(): number {
    return this.fds.length + native.closeBacklog();
  }

  /** Resolves once at most `limit` of them are left. */
  async drained(limit = 0): Promise<void> {
    this.flush();
    await native.closeDrained(limit);
  }
}
