// Errors of `vefs unify`: a stable code for scripts and tests, and a message
// that names the problem in one line.
import { VefsError } from '../vefs/vefs-error.js';

export type UnifyErrorCode =
  | 'ENOENT'    // a ROOT or template does not exist
  | 'ENOTDIR'   // a ROOT is not a directory
  | 'EOVERLAP'  // one ROOT lies inside another: its files would be walked twice
  | 'EBUSY'     // another unify job holds the host's unify lock
  | 'EINVAL';   // an option value that cannot be used

export class UnifyError extends VefsError {
  constructor(override readonly code: UnifyErrorCode, message: string) {
    super(code, message);
    this.name = 'UnifyError';
  }
}
