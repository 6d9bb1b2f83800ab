// A real job: what a VE does with its root. The VE builds a small C program
// with make, with the template's own gcc, headers and libraries (chroot into
// the VE root), then runs the program to check the build.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT, type Context, type Group } from '../types.js';

const SRC = 'srv/job';
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

// Each unit does real work behind the usual headers, so the compiler reads
// a few hundred header lines per file, as in any C project.
const unit = (i: number): string => `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include "job.h"

struct item_${i} { uint32_t key; char name[24]; };

static int cmp_${i}(const void *a, const void *b) {
  const struct item_${i} *x = a, *y = b;
  return x->key < y->key ? -1 : x->key > y->key;
}

uint32_t unit_${i}(uint32_t seed) {
  struct item_${i} items[256];
  uint32_t h = seed ^ ${i}u;
  for (int k = 0; k < 256; k++) {
    h = h * 1103515245u + 12345u;
    items[k].key = h >> 8;
    snprintf(items[k].name, sizeof items[k].name, "u${i}-%d-%u", k, (unsigned)(h & 0xffff));
  }
  qsort(items, 256, sizeof items[0], cmp_${i});
  uint32_t sum = 0;
  for (int k = 0; k < 256; k++) sum = sum * 31u + items[k].key + (uint32_t)strlen(items[k].name);
  return sum + (uint32_t)lround(sqrt((double)(sum % 1000u)));
}
`;

const header = (n: number): string =>
  `#include <stdint.h>\n${Array.from({ length: n }, (_, i) => `uint32_t unit_${i}(uint32_t seed);\n`).join('')}`;

const main = (n: number): string => `#include <stdio.h>
#include "job.h"

int main(void) {
  uint32_t sum = 0;
${Array.from({ length: n }, (_, i) => `  sum ^= unit_${i}(${i + 1}u);\n`).join('')}  printf("units ${n} checksum %u\\n", (unsigned)sum);
  return 0;
}
`;

const MAKEFILE = `OUT ?= /${OUT}/job
SRCS := $(wildcard *.c)
OBJS := $(SRCS:%.c=$(OUT)/%.o)

$(OUT)/prog: $(OBJS)
\tgcc -o $@ $(OBJS) -lm

$(OUT)/%.o: %.c job.h | $(OUT)
\tgcc -O2 -Wall -c -o $@ $<

$(OUT):
\tmkdir -p $@
`;

async function build(ctx: Context, out: string): Promise<number> {
  const { seconds } = await ctx.run('chroot', [ctx.roots[0], '/usr/bin/make', '-s', '-j2', '-C', `/${SRC}`, `OUT=${out}`], { env: ENV });
  const { stdout } = await ctx.run('chroot', [ctx.roots[0], `${out}/prog`], { env: ENV });
  const n = ctx.sizes.jobSources;
  if (!new RegExp(`^units ${n} checksum \\d+\\n$`).test(stdout)) throw new Error(`the built program printed ${JSON.stringify(stdout)}`);
  ctx.note('output', stdout.trim());
  return seconds;
}

export const job: Group = {
  id: 'job',
  title: 'A real job',
  method: 'make -j2 of a small C program (one file per unit, each including the usual libc headers, -O2) run with chroot into the VE root: '
    + 'the template\'s own gcc, cc1, as, ld, headers and libraries, objects written to the VE root; the program is then run and its output checked. '
    + 'Warm: one untimed build into another directory first; cold: caches dropped and every backend remounted first.',
  tools: ['chroot'],
  async template({ dir, sizes }) {
    const src = join(dir, SRC);
    mkdirSync(src, { recursive: true });
    for (let i = 0; i < sizes.jobSources; i++) writeFileSync(join(src, `unit${i}.c`), unit(i));
    writeFileSync(join(src, 'job.h'), header(sizes.jobSources));
    writeFileSync(join(src, 'main.c'), main(sizes.jobSources));
    writeFileSync(join(src, 'Makefile'), MAKEFILE);
  },
  workloads(sizes) {
    const what = `make -j2 of a ${sizes.jobSources + 1}-file C program inside the VE root (chroot, the template's gcc)`;
    return [
      { id: 'make-warm', title: `${what}, warm`, unit: 's', better: 'lower',
        prepare: async (ctx) => void (await build(ctx, `/${OUT}/warmup`)),
        measure: (ctx) => build(ctx, `/${OUT}/job`) },
      { id: 'make-cold', title: `${what}, cold`, unit: 's', better: 'lower', cold: true,
        measure: (ctx) => build(ctx, `/${OUT}/job`) },
    ];
  },
};
