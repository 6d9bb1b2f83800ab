// The control protocol between `vefs` commands and the server: one JSON
// request per connection on a unix socket, one JSON reply. Errors travel
// with their stable code so the client reports them as the server saw them.
import { createConnection, createServer, type Server } from 'node:net';
import { VefsError } from './vefs-error.js';
import type { MountRequest } from './config.js';
import type { MountConfig } from './types.js';

export type Request =
  | { op: 'mount'; request: MountRequest }
  | { op: 'umount'; mountpoint: string }
  | { op: 'status' }
  | { op: 'invalidate'; paths: string[] }
  | { op: 'open-for-writing' }
  | { op: 'shutdown' };

export interface SessionInfo {
  mountpoint: string;
  /** Whether the kernel serves file data from the layer files itself (FUSE passthrough). */
  passthrough: boolean;
  /** Node IDs the kernel holds. */
  nodes: number;
  /** Requests served, by FUSE opcode name. */
  requests: Record<string, number>;
}

export interface Status {
  pid: number;
  rssBytes: number;
  mounts: MountConfig[];
  /** The kernel binding's mounts. */
  sessions: SessionInfo[];
}

type Reply = { ok: true; value: unknown } | { ok: false; code: string; message: string };

export function serveControl(path: string, handle: (req: Request) => Promise<unknown>): Promise<Server> {
  const server = createServer((sock) => {
    let data = '';
    let answered = false;
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => {
      data += chunk;
      const nl = data.indexOf('\n');
      if (nl < 0 || answered) return;
      answered = true;
      let reply: Promise<Reply>;
      try {
        const req = JSON.parse(data.slice(0, nl)) as Request;
        reply = handle(req).then((value) => ({ ok: true as const, value }));
      } catch (err) {
        reply = Promise.reject(err);
      }
      reply
        .catch((err: unknown): Reply => ({
          ok: false,
          code: (err as { code?: string }).code ?? 'EIO',
          message: (err as Error).message ?? String(err),
        }))
        .then((r) => sock.end(`${JSON.stringify(r)}\n`));
    });
    sock.on('error', () => sock.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

/** Sends one request; rejects with the server's VefsError, or with the socket error if none answers. */
export function call<T>(path: string, req: Request): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let data = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (c) => (data += c));
    sock.on('error', reject);
    sock.on('end', () => {
      try {
        const r = JSON.parse(data) as Reply;
        if (r.ok) resolve(r.value as T);
        else reject(new VefsError(r.code, r.message));
      } catch {
        reject(new VefsError('EIO', `the VEFS server at ${path} closed the connection without an answer`));
      }
    });
  });
}
