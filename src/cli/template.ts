// `vefs template create|list|remove`.
import { createTemplate, listTemplates, removeTemplate, type TemplateSource } from '../runtime/templates.js';
import { parseCommand, usageExits, UsageError, withRuntime } from './ve.js';

export const TEMPLATE_USAGE = `usage: vefs template <command> [--root DIR] ...

  create NAME --busybox | --from DIR | --debootstrap SUITE
                        A template: Debian's busybox-static with /etc and an init's
                        needs; a copy of DIR; or a Debian minbase tree of SUITE.
  list                  Templates, their size and how many VEs use each.
  remove NAME           Refused while a VE uses it.
`;

export function templateCommand(args: string[]): Promise<void> {
  return usageExits('template', () => template(args));
}

async function template(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const { values, positionals } = parseCommand(rest, {
        busybox: { type: 'boolean' }, from: { type: 'string' }, debootstrap: { type: 'string' },
      }, 1);
      const given = [values.busybox, values.from, values.debootstrap].filter((v) => v !== undefined).length;
      if (given !== 1) throw new UsageError('give exactly one of --busybox, --from DIR, --debootstrap SUITE');
      const src: TemplateSource = values.from !== undefined ? { kind: 'from', dir: values.from }
        : values.debootstrap !== undefined ? { kind: 'debootstrap', suite: values.debootstrap } : { kind: 'busybox' };
      const t = await withRuntime(values.root, (rt) => createTemplate(rt.layout, rt.state, positionals[0]!, src));
      console.log(`created template ${t.name} (${t.source}) in ${t.dir}: ${(t.bytes / 2 ** 20).toFixed(1)} MiB`);
      return;
    }
    case 'list': {
      const { values } = parseCommand(rest, {}, 0);
      const all = await withRuntime(values.root, (rt) => listTemplates(rt.layout, rt.state));
      console.log('NAME             VES  SIZE        SOURCE');
      for (const t of all) console.log(`${t.name.padEnd(16)} ${String(t.ves).padEnd(4)} ${`${(t.bytes / 2 ** 20).toFixed(1)} MiB`.padEnd(11)} ${t.source}`);
      return;
    }
    case 'remove': {
      const { values, positionals } = parseCommand(rest, {}, 1);
      await withRuntime(values.root, (rt) => removeTemplate(rt.layout, rt.state, positionals[0]!));
      console.log(`removed template ${positionals[0]}`);
      return;
    }
    case undefined:
    case 'help':
      process.stdout.write(TEMPLATE_USAGE);
      if (sub === undefined) throw new UsageError('no template command given');
      return;
    default:
      throw new UsageError(`unknown template command '${sub}'`);
  }
}
