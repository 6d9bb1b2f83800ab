{
  'targets': [{
    'target_name': 'vefs_native',
    'sources': [
      'src/addon.cc',
      'src/args.cc',
      'src/async.cc',
      'src/attr.cc',
      'src/closer.cc',
      'src/compare.cc',
      'src/copy.cc',
      'src/dir.cc',
      'src/flags.cc',
      'src/fusedev.cc',
      'src/handle.cc',
      'src/io.cc',
      'src/link.cc',
      'src/lock.cc',
      'src/mount.cc',
      'src/names.cc',
      'src/open.cc',
      'src/scan.cc',
      'src/stat.cc',
      'src/xattr.cc',
    ],
    # xxhash.h from xxhash-addon: hashFiles (compare.cc) digests as xxhash-addon does.
    'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")", '../node_modules/xxhash-addon/xxHash'],
    'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS'],
    'cflags!': ['-fno-exceptions'],
    'cflags_cc!': ['-fno-exceptions', '-std=gnu++17'],
    'cflags_cc': ['-std=c++17', '-fexceptions'],
    'configurations': {
      'Release': {
        'cflags!': ['-O3'],
        'cflags': ['-O2'],
      },
    },
  }, {
    # Keeps FUSE device descriptors open across a server crash (src/vefs/holder.ts).
    'target_name': 'vefs-fdholder',
    'type': 'executable',
    'sources': ['holder/fdholder.c'],
    'cflags': ['-O2', '-Wall'],
  }, {
    # The VE launcher: static, because it is also PID 1 inside VE roots that have no libc.
    'target_name': 've-launch',
    'type': 'executable',
    'sources': ['src/ve-launch.c'],
    'cflags': ['-Wall', '-Wextra'],
    'ldflags': ['-static'],
  }],
}
