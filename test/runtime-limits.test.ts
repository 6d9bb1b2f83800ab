// Limits are real: each is proved inside a running VE, through the cgroup
// backend that ran, named in every title. The host's controllers decide
// which backends run here: a backend the host lacks is listed as skipped.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupVersion, limitEvents, usage, type CgroupVersion } from '../src/runtime/cgroup.js';
import { Runtime } from '../src/runtime/ve.js';
import { VEFS_CLI } from './helpers/mounts.js';
import { expectExit, makeVeHost, type VeHost } from './helpers/runtime.js';

function available(v: CgroupVersion): boolean {
  const saved = process.env.VEFS_CGROUP;
  process.env.VEFS_CGROUP = v;
  try {
    cgroupVersion();
    return true;
  } catch {
    return false;
  } finally {
    if (saved === undefined) delete process.env.VEFS_CGROUP;
    else process.env.VEFS_CGROUP = saved;
  }
}

const hosts: VeHost[] = [];
test.after.always(async () => {
  for (const h of hosts) await h.cleanup();
});

/** The recorded cgroups of a started VE, read from the host's state as status would. */
function cgroupsOf(h: VeHost, id: number) {
  const rt = new Runtime(h.root);
  try {
    return rt.state.ve(id)!.cgroups!;
  } finally {
    rt.close();
  }
}

for (const [k, version] of (['v1', 'v2'] as const).entries()) {
  const base = 4101 + k * 10;
  if (!available(version)) {
    test.skip(`cgroup ${version}: this host has no usable cgroup ${version} hierarchy (memory, pids, cpu)`, () => undefined);
    continue;
  }
  let h: VeHost;
  const ready = (async () => {
    h = await makeVeHost(`vefs-rt-lim-${version}`);
    h.env.VEFS_CGROUP = version;
    hosts.push(h);
  })();

  test(`cgroup ${version}: a memory hog is OOM-killed inside its VE; the VE and the host live on`, async (t) => {
    await ready;
    const id = base;
    await h.startVe(id, '--memory', '48M');
    const set = cgroupsOf(h, id);
    t.is(set.version, version);
    // dd's 128 MiB buffer, filled with zeros, is 128 MiB of anonymous memory.
    const r = await h.sh(id, 'dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo "dd exited $?"');
    expectExit(t, r);
    t.regex(r.stdout, /dd exited 137/, 'the hog was killed by SIGKILL');
    t.true(limitEvents(set).oomKills >= 1, 'the cgroup counts the OOM kill');
    const after = await h.sh(id, 'echo still-here');
    t.is(after.stdout, 'still-here\n', 'the VE runs on after its hog died');
    const st = await h.vefs(['ve', 'status', String(id), '--json']);
    const json = JSON.parse(st.stdout) as { state: string; oomKills: number };
    t.is(json.state, 'running');
    t.true(json.oomKills >= 1, 've status does not report the OOM kill');
  });

  test(`cgroup ${version}: a fork bomb stops at the pids limit`, async (t) => {
    await ready;
    const id = base + 1;
    await h.startVe(id, '--pids', '24');
    const set = cgroupsOf(h, id);
    // The bomb runs in the background of the command; the VE's pids limit is the only thing that stops it.
    const bomb = spawn(process.execPath, [VEFS_CLI, 've', 'exec', String(id), '--', '/bin/sh', '-c', 'b() { b | b & }; b; sleep 30'],
      { env: h.env, stdio: 'ignore' });
    let most = 0;
    try {
      // On a loaded host the exec itself may take seconds to start: the window opens when the bomb runs.
      for (const until = Date.now() + 60_000; usage(set).processes <= 1 && Date.now() < until;) await sleep(50);
      for (const until = Date.now() + 3000; Date.now() < until; await sleep(50)) most = Math.max(most, usage(set).processes);
      t.log(`at most ${most} processes, forks refused ${limitEvents(set).forksRefused}`);
      t.true(most <= 24, `${most} processes in a VE limited to 24`);
      t.true(most >= 20, 'the bomb did not reach the limit');
      t.true(limitEvents(set).forksRefused > 0, 'no fork was refused');
    } finally {
      const stop = await h.vefs(['ve', 'stop', String(id), '--timeout', '1']);
      bomb.kill('SIGKILL');
      expectExit(t, stop);
    }
    t.false(Object.values(set.dirs).some((d) => existsSync(d)), 'the VE\'s cgroups outlived its stop');
  });

  test(`cgroup ${version}: a CPU burner stays within its share, by the cgroup's own accounting; set changes it live`, async (t) => {
    await ready;
    const id = base + 2;
    await h.startVe(id, '--cpus', '0.2');
    const set = cgroupsOf(h, id);
    // Two burners: on a 2-core host they could use 2 CPUs; the limit holds them to 0.2 of one.
    const burn = await h.sh(id, 'for i in 1 2; do (while :; do :; done) >/dev/null 2>&1 & done; echo started');
    expectExit(t, burn);
    const measure = async (): Promise<number> => {
      const u0 = usage(set).cpuUsec;
      const t0 = process.hrtime.bigint();
      await sleep(3000);
      return (usage(set).cpuUsec - u0) / (Number(process.hrtime.bigint() - t0) / 1000);
    };
    const share = await measure();
    t.log(`share ${share.toFixed(3)} of one CPU with --cpus 0.2`);
    t.true(share <= 0.3 && share >= 0.05, `used ${share.toFixed(3)} of a CPU, limit 0.2`);
    expectExit(t, await h.vefs(['ve', 'set', String(id), '--cpus', '0.5']));
    const raised = await measure();
    t.log(`share ${raised.toFixed(3)} of one CPU after set --cpus 0.5`);
    t.true(raised <= 0.65 && raised > share, `used ${raised.toFixed(3)} of a CPU, limit 0.5`);
    expectExit(t, await h.vefs(['ve', 'stop', String(id), '--timeout', '1']));
  });
}
