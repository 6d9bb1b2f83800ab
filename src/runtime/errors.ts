// The runtime's one error type: a stable code for scripts (ENOENT, EINVAL,
// EBUSY, EALREADY, ESERVER ...) and a message that names the VE and the
// problem. Every check that can fail runs before anything is changed.
import { VefsError } from '../vefs/vefs-error.js';

export class RuntimeError extends VefsError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'RuntimeError';
  }
}
