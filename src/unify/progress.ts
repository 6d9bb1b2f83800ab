// A progress line on a terminal (stderr), redrawn a few times a second; off
// the terminal, nothing until the summary line.
export interface ProgressState {
  phase: string;
  done: number;
  total: number | null;
  detail: string;
}

const WIDTH = 24;

export class Progress {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: NodeJS.WriteStream, private readonly state: () => ProgressState) {}

  start(): void {
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  private draw(): void {
    const s = this.state();
    let bar = '';
    if (s.total !== null && s.total > 0) {
      const f = Math.min(1, s.done / s.total);
      const filled = Math.round(f * WIDTH);
      bar = `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${(f * 100).toFixed(0).padStart(3)}% `;
    }
    const line = `${s.phase.padEnd(8)} ${bar}${s.detail}`;
    this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns ?? 80) - 1)}`);
  }

  stop(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    this.out.write('\r\x1b[K');
  }
}
