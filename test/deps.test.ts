// Every native module that `npm ci` builds must load and work: a dependency
// installed without its install script fails only here, at load time.
import test from 'ava';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';

const require = createRequire(import.meta.url);

test('better-sqlite3 loads and runs a query', (t) => {
  const Database = require('better-sqlite3');
  const db = new Database(':memory:');
  t.is(db.prepare('select 6 * 7 as v').get().v, 42);
  db.close();
});

test('xxhash-addon loads and hashes', (t) => {
  const { XXHash128 } = require('xxhash-addon');
  const a = XXHash128.hash(Buffer.from('vefs'));
  t.is(a.length, 16);
  t.deepEqual(XXHash128.hash(Buffer.from('vefs')), a);
  t.notDeepEqual(XXHash128.hash(Buffer.from('vefs!')), a);
});

test('fuse-native loads the patched build from source, not a prebuild', (t) => {
  const resolved = require.resolve('fuse-native');
  const Fuse = require('fuse-native');
  t.is(typeof Fuse.UTIME_NOW, 'number', 'the VEFS patch exports UTIME_NOW');
  t.is(typeof Fuse.UTIME_OMIT, 'number');
  const nodeGypBuild = require('node-gyp-build');
  t.regex(nodeGypBuild.path(resolved.replace(/\/index\.js$/, '')), /build\/Release\/fuse\.node$/);
});

test('the vefs native addon loads', async (t) => {
  const { native } = await import('../native/index.js');
  t.true(native.fstat(native.openat(native.constants.AT_FDCWD, tmpdir(), native.constants.O_PATH, 0)).ino > 0n);
});
