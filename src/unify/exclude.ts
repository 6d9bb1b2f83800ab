// Which paths below a ROOT unify leaves alone. Patterns are ROOT-relative,
// shell-like, and name a file or a whole directory:
//   /etc        the ROOT's /etc and everything below it (anchored: leading '/')
//   *.pid       any file or directory so named, at any depth (unanchored)
//   /var/lib/*/cache   '*' and '?' stay within one name, '**' crosses names
// The defaults keep per-VE state out: what a VE writes and configures
// differs between VEs by design, and the kernel's own trees are mounts.
export const DEFAULT_EXCLUDES = ['/etc', '/var', '/tmp', '/home', '/root', '/run', '/proc', '/sys', '/dev'];

export type Matcher = (rel: string) => boolean;

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}

/** A test of ROOT-relative paths ('/usr/bin/ls') against the patterns. */
export function excluder(patterns: string[]): Matcher {
  const parts = patterns.filter((p) => p !== '' && p !== '/').map((p) => {
    const trimmed = p.replace(/\/+$/, '');
    return trimmed.startsWith('/') ? `^${globToRegex(trimmed)}(/.*)?$` : `(^|/)${globToRegex(trimmed)}(/.*)?$`;
  });
  if (parts.length === 0) return () => false;
  const re = new RegExp(parts.join('|'), 's');
  return (rel) => re.test(rel);
}
