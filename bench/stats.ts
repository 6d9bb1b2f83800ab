// Summaries of samples, and the one notion of "ratio" every table and plot
// uses: cost relative to a reference, so that 2 means twice as slow (twice
// the time, half the throughput, twice the copies) whatever the unit.
import type { Better } from './types.js';

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** Half the range, relative to the median: the ± of the tables. */
  spread: number;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) throw new Error('no samples to summarize');
  const m = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { n: values.length, median: m, min, max, spread: m === 0 ? 0 : (max - min) / 2 / m };
}

/** How many times the reference's cost value is: above 1 is worse than the reference. */
export function cost(value: number, reference: number, better: Better): number {
  return better === 'lower' ? value / reference : reference / value;
}
