// Errors of the tools around the filesystem (mount, server, CLI): a stable
// code for scripts and a message that names the problem.
export class VefsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'VefsError';
  }
}
