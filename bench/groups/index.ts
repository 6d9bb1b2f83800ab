// The groups `vefs bench` runs, in report order. A new group is one file in
// this directory and one entry here.
import type { Group } from '../types.js';
import { data } from './data.js';
import { metadata } from './metadata.js';
import { job } from './job.js';
import { pagecache } from './pagecache.js';
import { sharing } from './sharing.js';
import { unify } from './unify.js';
import { runtime } from './runtime.js';

export const GROUPS: Group[] = [data, metadata, job, pagecache, sharing, unify, runtime];
