// Runs the ava suite and ends with a plain `N passed, N failed` line, so a run
// that executed no test is visible. Exits non-zero when anything failed or
// when nothing ran.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const args = ['ava', '--tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
createInterface({ input: child.stdout }).on('line', (line) => {
  console.log(line);
  if (/^not ok \d+/.test(line)) {
    if (/# (TODO|SKIP)/i.test(line)) skipped++;
    else failed++;
  } else if (/^ok \d+/.test(line)) {
    if (/# SKIP/i.test(line)) skipped++;
    else passed++;
  }
});
child.on('close', (code) => {
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code !== 0 || failed > 0 || passed === 0 ? 1 : 0);
});
