// Paths inside unify are byte strings (one character per byte, latin1), as
// in native/index.ts, so that a name that is not UTF-8 is walked, indexed and
// linked like any other. These helpers join them and show them to people.

/** For messages: the bytes shown as UTF-8, which is what a terminal expects. */
export const shown = (p: string): string => Buffer.from(p, 'latin1').toString('utf8');

/** A ROOT-relative path ('/usr/bin') joined to a name. */
export const child = (rel: string, name: string): string => (rel === '/' ? `/${name}` : `${rel}/${name}`);

/** The path below a ROOT's directory fd that openat2 takes ('.' for the ROOT itself). */
export const beneath = (rel: string): string => (rel === '/' ? '.' : rel.slice(1));
