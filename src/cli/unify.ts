// `vefs unify`: parses its options, runs the pipeline (src/unify/run.ts) and
// prints the report: a progress line on a terminal, then one summary line;
// --json prints the whole report on stdout instead; --quiet prints nothing
// unless something fails. Usage errors exit 2; failures (bad ROOT, another
// unify running) exit 1 through main with one line naming the problem.
import { parseArgs } from 'node:util';
import { toBytes } from '../../native/index.js';
import { DEFAULT_EXCLUDES } from '../unify/exclude.js';
import { summaryLine } from '../unify/report.js';
import { announceChanges } from '../vefs/changes.js';
import { defaultIndexPath, unify } from '../unify/run.js';

export const UNIFY_USAGE = `usage: vefs unify [options] ROOT...

Hard-links identical files across VE trees (private trees, plain VE roots,
templates) and marks the shared inodes immutable. Files are linked only when
a VE could not tell them apart: same bytes (compared byte for byte), mode,
owner, group, xattrs and mtime; regular, non-empty, on one filesystem.

  --template DIR        A template (repeatable; also a ROOT): its inodes are the
                        ones kept, its content is never replaced.
  --dry-run             Read and decide, change nothing; report what would be done.
  --json                The report as JSON on stdout.
  --quiet               No output unless something fails (for cron).
  --index FILE          Where the state lives (default: $VEFS_STATE_DIR/unify.db,
                        now ${defaultIndexPath()}).
  --min-size BYTES      Leave smaller files alone (default 1: never empty files).
  --exclude PATTERN     Leave these paths alone (repeatable). ROOT-relative;
                        '/etc' is anchored, 'name' matches at any depth; * ? **.
                        Added to the defaults: ${DEFAULT_EXCLUDES.join(' ')}
  --no-default-excludes Drop the default exclusions.
  --ignore-mtime        Link files that differ only in mtime (the kept inode's wins;
                        --revert gives each path its own mtime back).
  --link-max N          Links per inode to plan for (default: the filesystem's limit,
                        65,000 on ext4).
  --revert              Give every unified path under the ROOTs its own writable
                        copy again (own metadata, no immutable flag).
  --rescan              Stat every file. Without it a rerun trusts files it found
                        immutable in directories unchanged since; use it after
                        clearing the flag of unified files by hand.
`;

function usage(message: string): never {
  console.error(`vefs unify: ${message}`);
  console.error(`run 'vefs unify --help' for usage`);
  process.exit(2);
}

function count(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) usage(`${name} needs a whole number, got '${value}'`);
  return Number(value);
}

export async function unifyCommand(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        template: { type: 'string', multiple: true },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
        index: { type: 'string' },
        'min-size': { type: 'string' },
        exclude: { type: 'string', multiple: true },
        'no-default-excludes': { type: 'boolean' },
        'ignore-mtime': { type: 'boolean' },
        'link-max': { type: 'string' },
        revert: { type: 'boolean' },
        rescan: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(UNIFY_USAGE);
    return;
  }
  const templates = values.template ?? [];
  if (positionals.length === 0 && templates.length === 0) usage('no ROOT given');
  if (values.json && values.quiet) usage('--json and --quiet exclude each other');
  const quiet = Boolean(values.quiet || values.json);
  const report = await unify({
    roots: positionals.map(toBytes),
    templates: templates.map(toBytes),
    dryRun: values['dry-run'],
    index: values.index,
    minSize: count('--min-size', values['min-size']),
    exclude: values.exclude,
    defaultExcludes: !values['no-default-excludes'],
    ignoreMtime: values['ignore-mtime'],
    revert: values.revert,
    rescan: values.rescan,
    linkMax: count('--link-max', values['link-max']),
    progress: !quiet && process.stderr.isTTY ? process.stderr : undefined,
  });
  // Linked names now stand for other inodes: VEFS mounts over these trees must not answer from their caches.
  if (!values['dry-run']) await announceChanges([...positionals, ...templates]);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else if (!values.quiet) console.log(summaryLine(report));
}
