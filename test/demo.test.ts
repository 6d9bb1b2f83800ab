// `vefs demo` on its own directory: runs to the end, proves the template
// untouched, shows the private tree's format, and leaves no mount.
import test from 'ava';
import { withScratch, leftoverMounts } from './helpers/mounts.js';
import { vefs } from './helpers/vefs.js';
import { join } from 'node:path';
import { lstatSync } from 'node:fs';

test('vefs demo runs and leaves the template untouched', async (t) => {
  const s = withScratch(t, 'vefs-demo');
  const r = await vefs(s.stateDir, 'demo', '--dir', join(s.base, 'demo'));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /busybox v\d+\.\d+\.\d+ runs from the template/);
  t.regex(r.stdout, /Template untouched/);
  t.regex(r.stdout, /\/usr\/share\/doc\/README {2}whiteout/);
  t.regex(r.stdout, /\/var\/log\.old {2}dir {2}trusted\.overlay\.redirect=\/var\/log/);
  const wo = lstatSync(join(s.base, 'demo/private/usr/share/doc/README'));
  t.true(wo.isCharacterDevice() && wo.rdev === 0);
  t.regex(r.stdout, /7\. Unifying three VE trees/);
  t.regex(r.stdout, /[1-9]\d* links made, [1-9]\d* inodes and .* reclaimed/);
  t.regex(r.stdout, /lsattr -*i/);
  t.deepEqual(leftoverMounts(s.base), []);
});
