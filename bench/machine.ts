// The machine a run measured: kernel, CPU, memory, the disk and filesystem
// under the run's directory, and the version of every tool a figure depends on.
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem, version } from 'node:os';
import { run } from './exec.js';

export interface Machine {
  os: string;
  kernel: string;
  cpu: string;
  cores: number;
  memoryBytes: number;
  /** The block device under the run's directory: model, size, rotational. */
  disk: string;
  /** The filesystem under the run's directory: device, type, mount options. */
  filesystem: string;
  tools: Record<string, string>;
}

async function out(file: string, args: string[]): Promise<string> {
  try {
    const r = await run(file, args, { timeoutMs: 15_000 });
    return (r.stdout || r.stderr).trim();
  } catch (err) {
    return `unavailable (${(err as Error).message.split('\n')[0]})`;
  }
}

const first = (text: string): string => text.split('\n')[0];

function osName(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function disk(source: string): Promise<string> {
  if (!source.startsWith('/dev/')) return source;
  const parent = (await out('lsblk', ['-ndo', 'PKNAME', source])).trim();
  const dev = parent && !parent.startsWith('unavailable') ? `/dev/${parent}` : source;
  const info = await out('lsblk', ['-dno', 'NAME,MODEL,SIZE,ROTA,TYPE', dev]);
  const [name, ...rest] = info.split(/\s+/);
  const rota = rest.at(-2) === '1' ? 'rotational (or a virtual disk that says so)' : 'non-rotational';
  return `${name} ${rest.slice(0, -2).join(' ')}, ${rota}`;
}

/** Describes the machine; dir is where the run's files live. */
export async function describeMachine(dir: string, backendVersions: Record<string, string>): Promise<Machine> {
  const [source, fstype, options] = (await out('findmnt', ['-nvo', 'SOURCE,FSTYPE,OPTIONS', '-T', dir])).split(/\s+/);
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const tools: Record<string, string> = {
    node: process.version,
    fio: await out('fio', ['--version']),
    tar: first(await out('tar', ['--version'])),
    findutils: first(await out('find', ['--version'])),
    coreutils: first(await out('du', ['--version'])),
    'util-linux (fincore)': first(await out('fincore', ['--version'])),
    gcc: first(await out('gcc', ['--version'])),
    make: first(await out('make', ['--version'])),
    busybox: first(await out('busybox', ['--help'])),
    ...Object.fromEntries(Object.entries(backendVersions).map(([k, v]) => [`backend ${k}`, v])),
  };
  return {
    os: osName(),
    kernel: `${release()} (${version()})`,
    cpu: model,
    cores: cpus().length,
    memoryBytes: totalmem(),
    disk: await disk(source),
    filesystem: `${source} ${fstype} (${options})`,
    tools,
  };
}
