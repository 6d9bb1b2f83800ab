// Running the VE runtime from tests: a state directory (VEFS_ROOT) and a
// VEFS server (VEFS_STATE_DIR) of the test's own, the `vefs` CLI against
// them, a busybox template, and a teardown that destroys every VE it
// recorded (killing their processes and removing their cgroups) before the
// scratch space's own cleanup takes down mounts and the server. It runs
// whether the test passed or not.
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { makeScratch, VEFS_CLI, type Scratch } from './mounts.js';
import type { CliResult } from './vefs.js';
import { destroyCgroups } from '../../src/runtime/cgroup.js';
import { destroyVe, Runtime } from '../../src/runtime/ve.js';

const run = promisify(execFile);

export interface VeHost {
  scratch: Scratch;
  /** VEFS_ROOT */
  root: string;
  env: NodeJS.ProcessEnv;
  /** Runs `vefs ARGS...`; stdin is fed `input` when given. */
  vefs(args: string[], input?: string): Promise<CliResult>;
  /** `vefs ve exec ID -- /bin/sh -c SCRIPT`. */
  sh(id: number, script: string): Promise<CliResult>;
  /** Creates VE id on the host's busybox template and starts it. */
  startVe(id: number, ...opts: string[]): Promise<void>;
  cleanup(): Promise<void>;
}

export function vefsCli(env: NodeJS.ProcessEnv, args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VEFS_CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** A state directory with a busybox template named 'bb'; the caller runs cleanup in after.always. */
export async function makeVeHost(label: string): Promise<VeHost> {
  const scratch = makeScratch(label);
  const root = join(scratch.base, 'ves');
  const env = { ...process.env, VEFS_ROOT: root, VEFS_STATE_DIR: scratch.stateDir };
  const vefs = (args: string[], input?: string): Promise<CliResult> => vefsCli(env, args, input);
  const must = async (args: string[]): Promise<CliResult> => {
    const r = await vefs(args);
    if (r.code !== 0) throw new Error(`vefs ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r;
  };
  const host: VeHost = {
    scratch, root, env, vefs,
    sh: (id, script) => vefs(['ve', 'exec', String(id), '--', '/bin/sh', '-c', script]),
    async startVe(id, ...opts) {
      await must(['ve', 'create', String(id), '--template', 'bb', ...opts]);
      await must(['ve', 'start', String(id)]);
    },
    async cleanup() {
      const problems: string[] = [];
      const saved = { root: process.env.VEFS_ROOT, state: process.env.VEFS_STATE_DIR };
      // The runtime's library reads the server's state directory from the environment.
      process.env.VEFS_STATE_DIR = scratch.stateDir;
      const rt = new Runtime(root);
      try {
        for (const rec of rt.state.ves()) {
          await destroyVe(rt, String(rec.id), true).catch(async (err: Error) => {
            problems.push(`destroy VE ${rec.id}: ${err.message}`);
            if (rec.cgroups) await destroyCgroups(rec.cgroups).catch((e: Error) => problems.push(e.message));
          });
        }
      } finally {
        rt.close();
        process.env.VEFS_STATE_DIR = saved.state;
      }
      await scratch.cleanup().catch((err: Error) => problems.push(err.message));
      if (problems.length > 0) throw new Error(problems.join('\n'));
    },
  };
  await must(['template', 'create', 'bb', '--busybox']);
  return host;
}

/** Fails the test with the command's output unless it exited `code`. */
export function expectExit(t: ExecutionContext, r: CliResult, code = 0): void {
  t.is(r.code, code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

// What an attacker with root in a VE would try, as one static program: each
// line names an attempt and the errno it got (0: it worked).
const PROBE_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
static void report(const char *what, long r) { printf("%s %d\n", what, r < 0 ? errno : 0); }
/* argv[1]: a file of the host, outside the VE root, that must stay out of reach. */
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  char path[4096];
  report("read_host_file", open(argv[1], O_RDONLY));
  snprintf(path, sizeof path, "/proc/1/root%s", argv[1]);
  report("proc1_root_host_file", open(path, O_RDONLY));
  int top = open("/", O_RDONLY);
  mkdir("/tmp/jail", 0700);
  chroot("/tmp/jail");
  fchdir(top);
  for (int i = 0; i < 64; i++) chdir("..");
  chroot(".");
  report("chroot_dotdot_host_file", open(argv[1], O_RDONLY));
  report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
  report("mknod", mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0)));
  report("init_module", syscall(SYS_init_module, "", 0, ""));
  report("finit_module", syscall(SYS_finit_module, 0, "", 0));
  report("delete_module", syscall(SYS_delete_module, "ext4", 0));
  struct { unsigned int bytes; int type; unsigned char h[128]; } fh = { 8, 1, { 2 } };
  report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
  report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
  union bpf_attr attr; memset(&attr, 0, sizeof attr);
  report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
  struct perf_event_attr pe; memset(&pe, 0, sizeof pe); pe.size = sizeof pe;
  report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
  report("unshare_user", unshare(CLONE_NEWUSER));
  report("unshare_mount", unshare(CLONE_NEWNS));
  int ns = open("/proc/1/ns/mnt", O_RDONLY);
  report("setns", ns < 0 ? -1 : setns(ns, 0));
  report("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
  report("sethostname", sethostname("evil", 4));
  report("capbset_sys_admin", prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) == 1 ? 0 : (errno = EPERM, -1));
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2]; syscall(SYS_capget, &h, d);
  d[0].effective |= 1u << CAP_SYS_ADMIN; d[0].permitted |= 1u << CAP_SYS_ADMIN;
  report("capset_sys_admin", syscall(SYS_capset, &h, d));
  report("no_new_privs_off", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0 && prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0 ? 0 : (errno = EPERM, -1));
  return 0;
}
`;

/** Builds the probe as a static binary at path (it runs in busybox roots, which have no libc). */
export async function buildProbe(path: string): Promise<void> {
  const src = `${path}.c`;
  writeFileSync(src, PROBE_C);
  await run('gcc', ['-static', '-O1', '-o', path, src]);
}
