// Running the vefs CLI from tests: its exit code, stdout and stderr, with a
// per-test VEFS_STATE_DIR so every test file has its own server.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VEFS_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function vefs(stateDir: string, ...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [VEFS_CLI, ...args], { env: { ...process.env, VEFS_STATE_DIR: stateDir }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
  });
}

export function serverPid(stateDir: string): number {
  return Number(readFileSync(join(stateDir, 'server.pid'), 'utf8').trim());
}
