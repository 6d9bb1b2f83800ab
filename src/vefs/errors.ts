// Errno is the only error that crosses the filesystem boundary: every rule
// throws an FsError, and a binding turns anything else into EIO and logs it,
// so an unexpected exception shows up as a bug instead of a silent errno.
import { constants as os } from 'node:os';

const errnos = os.errno as Record<string, number>;
const names = new Map<number, string>(Object.entries(errnos).map(([k, v]) => [v, k]));

export class FsError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(code: keyof typeof os.errno, message?: string) {
    super(message ? `${code}: ${message}` : code);
    this.code = code;
    this.errno = errnos[code];
  }
}

export function fsError(code: keyof typeof os.errno, message?: string): FsError {
  return new FsError(code, message);
}

/** The positive errno carried by an error from the rules, the addon or Node's fs; undefined if it has none. */
export function errnoOf(err: unknown): number | undefined {
  if (err instanceof FsError) return err.errno;
  const e = err as { errno?: unknown; code?: unknown };
  if (typeof e?.code === 'string' && e.code in errnos) return errnos[e.code];
  if (typeof e?.errno === 'number') return Math.abs(e.errno);
  return undefined;
}

export function codeOf(err: unknown): string | undefined {
  const n = errnoOf(err);
  return n === undefined ? undefined : names.get(n);
}

export function hasCode(err: unknown, ...codes: string[]): boolean {
  const c = codeOf(err);
  return c !== undefined && codes.includes(c);
}
