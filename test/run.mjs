// Runs the ava suite and ends with a plain `N passed, N failed` line, so a run
// that executed no test is visible. Exits non-zero when anything failed or
// when nothing ran.
//
// Both bindings, one truth: the whole suite runs on the default binding
// (kernel), then every test file that mounts VEFS runs again on fuse-native.
// The server picks the binding from VEFS_BINDING (src/vefs/config.ts).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const FILESYSTEM_SUITE = ['differential', 'posix-errno', 'posix-features', 'times', 'template-untouched', 'copyup',
  'crash', 'many-mounts', 'unified', 'cli'].map((f) => `dist/test/${f}.test.js`);

const given = process.argv.slice(2);
const passes = [
  { binding: 'kernel', files: given },
  // Files named on the command line narrow the second pass too.
  { binding: 'fuse-native', files: given.length > 0 ? given.filter((f) => FILESYSTEM_SUITE.includes(f)) : FILESYSTEM_SUITE },
];

let passed = 0;
let failed = 0;
let skipped = 0;
let crashed = false;

function runPass({ binding, files }) {
  return new Promise((resolve) => {
    console.log(`# binding: ${binding}`);
    const child = spawn('npx', ['ava', '--tap', ...files], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, VEFS_BINDING: binding },
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      console.log(line.replace(/^((?:not )?ok \d+ - )/, `$1[${binding}] `));
      if (/^not ok \d+/.test(line)) {
        if (/# (TODO|SKIP)/i.test(line)) skipped++;
        else failed++;
      } else if (/^ok \d+/.test(line)) {
        if (/# SKIP/i.test(line)) skipped++;
        else passed++;
      }
    });
    child.on('close', (code) => {
      if (code !== 0) crashed = true;
      resolve();
    });
  });
}

for (const pass of passes) {
  if (pass.binding !== 'kernel' && given.length > 0 && pass.files.length === 0) continue;
  await runPass(pass);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(crashed || failed > 0 || passed === 0 ? 1 : 0);
