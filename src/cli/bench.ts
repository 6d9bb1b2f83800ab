// `vefs bench`: parses its options, runs the harness (bench/harness.ts) and
// prints where the report went and the summary table. Usage errors exit 2,
// an interrupt 130, a failed backend or workload 1 (through main).
import { parseArgs } from 'node:util';
import { BenchUsageError, Interrupted, runBench } from '../../bench/harness.js';
import { compare, figure, gaps } from '../../bench/report.js';

const list = (s: string | undefined): string[] | undefined => s?.split(',').map((x) => x.trim()).filter(Boolean);

function usage(message: string): never {
  console.error(`vefs bench: ${message}`);
  console.error(`run 'vefs help' for usage`);
  process.exit(2);
}

export async function benchCommand(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        out: { type: 'string' },
        groups: { type: 'string' },
        backends: { type: 'string' },
        runs: { type: 'string' },
        dir: { type: 'string' },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  const runs = values.runs === undefined ? undefined : Number(values.runs);
  try {
    const { out, result } = await runBench({
      quick: Boolean(values.quick), out: values.out, groups: list(values.groups), backends: list(values.backends), runs, dir: values.dir,
    });
    console.log(`report in ${out}: results.md, results.json, ${result.groups.filter((g) => !g.skipped).map((g) => `${g.id}.svg`).join(', ')}`);
    for (const b of result.backends.filter((x) => x.skipped)) console.log(`skipped backend ${b.id}: ${b.skipped}`);
    for (const g of result.groups.filter((x) => x.skipped)) console.log(`skipped group ${g.id}: ${g.skipped}`);
    for (const g of result.groups) {
      for (const w of g.workloads) {
        const c = compare(w, result.backends);
        const vefs = [...c.summaries].filter(([id]) => result.backends.find((b) => b.id === id)?.kind === 'vefs');
        const parts = vefs.map(([id, s]) => `${id} ${figure(s.median)}`);
        if (c.best) parts.push(`best peer ${c.best.id} ${figure(c.best.median)}`);
        if (c.raw !== undefined) parts.push(`raw ${figure(c.raw)}`);
        console.log(`  ${g.id}/${w.id} (${w.unit}): ${parts.join(', ')}`);
      }
    }
    for (const v of new Set(gaps(result).map((x) => x.vefs))) {
      const worst = gaps(result).filter((x) => x.vefs === v).slice(0, 3);
      console.log(`largest gaps of ${v} to the best peer: ${worst.map((x) => `${x.group}/${x.workload.id} ×${x.ratio.toFixed(1)} (${x.best})`).join('; ')}`);
    }
  } catch (err) {
    if (err instanceof BenchUsageError) usage(err.message);
    if (err instanceof Interrupted) {
      console.error(`vefs bench: ${err.message}; every mount of the run is down`);
      process.exit(130);
    }
    throw err;
  }
}
