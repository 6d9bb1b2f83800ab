// Progress of a run on stderr: on a terminal, one status line rewritten in
// place above which finished workloads scroll; otherwise plain lines, one
// per sample, for logs and CI.

export class Progress {
  private done = 0;
  private readonly started = Date.now();
  private status = '';

  constructor(private total: number, private readonly tty = Boolean(process.stderr.isTTY)) {}

  setTotal(total: number): void {
    this.total = total;
  }

  private elapsed(): string {
    const s = Math.round((Date.now() - this.started) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  /** A line that stays. */
  log(line: string): void {
    if (this.tty) process.stderr.write(`\r\x1b[K${line}\n${this.status}`);
    else process.stderr.write(`${line}\n`);
  }

  /** The sample about to run. */
  start(what: string): void {
    if (!this.tty) return;
    this.status = `[${this.elapsed()} ${this.done}/${this.total}] ${what}`.slice(0, (process.stderr.columns ?? 100) - 1);
    process.stderr.write(`\r\x1b[K${this.status}`);
  }

  /** The sample that just ran, with its figure. */
  sample(what: string, figure: string): void {
    this.done++;
    if (!this.tty) process.stderr.write(`[${this.elapsed()} ${this.done}/${this.total}] ${what}: ${figure}\n`);
  }

  end(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
    this.status = '';
  }
}
