// Parsing what an operator types: VE IDs, names, sizes, CPU fractions. Each
// parser either returns a valid value or throws EINVAL naming the input.
import { cpus } from 'node:os';
import { RuntimeError } from './errors.js';

/** IDs up to 100 are reserved, as in the VE tools this follows. */
export const FIRST_VE_ID = 101;
const MAX_VE_ID = 2 ** 31 - 1;

export function parseVeId(text: string): number {
  if (!/^\d+$/.test(text)) throw new RuntimeError('EINVAL', `'${text}' is not a VE ID: a VE ID is a number from ${FIRST_VE_ID} up`);
  const id = Number(text);
  if (id < FIRST_VE_ID) throw new RuntimeError('EINVAL', `VE ID ${id} is reserved: VE IDs start at ${FIRST_VE_ID}`);
  if (id > MAX_VE_ID) throw new RuntimeError('EINVAL', `VE ID ${text} is too large (at most ${MAX_VE_ID})`);
  return id;
}

const NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;

/** A template's or a VE's name: it becomes a directory name, and a VE name must not look like an ID. */
export function parseName(text: string, what: string): string {
  if (!NAME.test(text)) {
    throw new RuntimeError('EINVAL', `'${text}' is not a valid ${what}: a letter, then up to 62 letters, digits, '.', '_' or '-'`);
  }
  return text;
}

export function parseHostname(text: string): string {
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(text) || text.length > 64) {
    throw new RuntimeError('EINVAL', `'${text}' is not a valid hostname`);
  }
  return text;
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
/** Below this a VE's own init and shell cannot run: a smaller limit is a typo, not a policy. */
const MIN_MEMORY = 4 * 2 ** 20;

/** A memory size: bytes, or a number with K, M, G or T (powers of 1024); 'unlimited' is null. */
export function parseMemory(text: string): number | null {
  if (text === 'unlimited') return null;
  const m = /^(\d+(?:\.\d+)?)([kmgt]?)(i?b)?$/i.exec(text);
  if (!m) throw new RuntimeError('EINVAL', `'${text}' is not a memory size (e.g. 64M, 1.5G, 268435456, unlimited)`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (bytes < MIN_MEMORY) throw new RuntimeError('EINVAL', `memory limit ${text} is below the minimum of 4M`);
  if (!Number.isSafeInteger(bytes)) throw new RuntimeError('EINVAL', `memory limit ${text} is too large`);
  return bytes;
}

/** The most processes a VE may have; 'unlimited' is null. Its init and one shell need a few. */
export function parsePids(text: string): number | null {
  if (text === 'unlimited') return null;
  if (!/^\d+$/.test(text) || Number(text) < 4 || Number(text) > 4_194_304) {
    throw new RuntimeError('EINVAL', `'${text}' is not a process limit: a whole number from 4 to 4194304, or unlimited`);
  }
  return Number(text);
}

/** CPU time as a fraction of one CPU (0.5 is half of one, 2 is two whole CPUs); 'unlimited' is null. */
export function parseCpus(text: string): number | null {
  if (text === 'unlimited') return null;
  const n = Number(text);
  if (!/^\d*\.?\d+$/.test(text) || !(n >= 0.01) || n > cpus().length) {
    throw new RuntimeError('EINVAL', `'${text}' is not a CPU share: a fraction from 0.01 to ${cpus().length} (this host's CPUs), or unlimited`);
  }
  return n;
}

/** An IPv4 address with its prefix length, as `ip addr add` takes it. */
export function parseIpPrefix(text: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) < 1 || Number(m[5]) > 32) {
    throw new RuntimeError('EINVAL', `'${text}' is not an IPv4 address with a prefix (e.g. 10.213.0.2/24)`);
  }
  return text;
}

export function parseNet(text: string): 'none' | 'veth' {
  if (text !== 'none' && text !== 'veth') throw new RuntimeError('EINVAL', `--net ${text}: it is none (only lo) or veth (with --ip)`);
  return text;
}
