// `--net veth --ip`: the VE's eth0 has its address and a default route; the
// host reaches it through its end of the pair (vefs<ID>), and nothing of it
// outlives the VE. Without --net, a VE has only lo (runtime-isolation).
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expectExit, makeVeHost, type VeHost } from './helpers/runtime.js';

const run = promisify(execFile);
let h: VeHost;
test.before(async () => {
  h = await makeVeHost('vefs-rt-net');
});
test.after.always(async () => {
  await h?.cleanup();
});

const hostLinks = (): string[] => readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean);

test.serial('a veth VE has eth0 with its address; the host reaches it; stop removes the pair and the route', async (t) => {
  const id = 5101;
  await h.startVe(id, '--net', 'veth', '--ip', '10.213.51.2/24');
  const r = await h.sh(id, 'ip -4 addr show eth0 | grep -o "inet [0-9./]*"; ip route | grep default; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | sort | tr "\\n" " "');
  expectExit(t, r);
  t.regex(r.stdout, /inet 10\.213\.51\.2\/24/);
  t.regex(r.stdout, /default dev eth0/);
  t.regex(r.stdout, /^eth0 lo $/m);
  t.true(hostLinks().includes(`vefs${id}`));
  const ping = await run('busybox', ['ping', '-c', '1', '-W', '3', '10.213.51.2']);
  t.regex(ping.stdout, /1 packets received/);
  const status = JSON.parse((await h.vefs(['ve', 'status', String(id), '--json'])).stdout) as { net: { net: string; ip: string } };
  t.deepEqual(status.net, { net: 'veth', ip: '10.213.51.2/24' });
  expectExit(t, await h.vefs(['ve', 'stop', String(id)]));
  // The kernel takes the pair down with the VE's namespace, a moment after its last process.
  for (let i = 0; i < 50 && hostLinks().includes(`vefs${id}`); i++) await new Promise((r) => setTimeout(r, 100));
  t.false(hostLinks().includes(`vefs${id}`));
  t.notRegex((await run('ip', ['route'])).stdout, /10\.213\.51\.2/);
  expectExit(t, await h.vefs(['ve', 'destroy', String(id)]));
});

test.serial('bad network settings are refused and change nothing', async (t) => {
  const cases: [string[], RegExp][] = [
    [['ve', 'create', '5110', '--template', 'bb', '--net', 'veth'], /--net veth needs --ip ADDR\/PREFIX/],
    [['ve', 'create', '5110', '--template', 'bb', '--net', 'none', '--ip', '10.213.51.9/24'], /--ip needs --net veth/],
    [['ve', 'create', '5110', '--template', 'bb', '--ip', '10.213.51.300/24'], /not an IPv4 address with a prefix/],
    [['ve', 'create', '5110', '--template', 'bb', '--net', 'bridge'], /--net bridge: it is none \(only lo\) or veth/],
  ];
  for (const [args, message] of cases) {
    const r = await h.vefs(args);
    expectExit(t, r, 1);
    t.regex(r.stderr, message);
  }
  expectExit(t, await h.vefs(['ve', 'create', '5111', '--template', 'bb', '--ip', '10.213.51.7/24']));
  const dup = await h.vefs(['ve', 'create', '5112', '--template', 'bb', '--ip', '10.213.51.7/24']);
  expectExit(t, dup, 1);
  t.regex(dup.stderr, /VE 5111 has the address 10\.213\.51\.7\/24 already/);
  t.notRegex((await h.vefs(['ve', 'list'])).stdout, /^5110|^5112/m);
  expectExit(t, await h.vefs(['ve', 'destroy', '5111']));
});
