/**
 * The backend web server, through a pooled keep-alive HTTP/1.1 client (undici).
 */
import net from 'node:net';
import { Pool, errors } from 'undici';

export interface BackendRequest {
  method: string;
  /** Origin-form target: path and query. */
  path: string;
  headers: [string, string][];
  body: Uint8Array | null;
}

export interface BackendResponse {
  status: number;
  /** Field lines as the backend sent them, names lower-cased. */
  headers: [string, string][];
  /** The body as it arrives; `destroy` abandons it. */
  body: AsyncIterable<Uint8Array> & { destroy(): void };
}

/** Why the backend gave no response: it could not be reached, or it did not answer in time. */
export class BackendError extends Error {
  constructor(
    readonly kind: 'unreachable' | 'timeout',
    message: string,
  ) {
    super(message);
  }
}

export interface HttpBackend {
  request(request: BackendRequest): Promise<BackendResponse>;
  close(): Promise<void>;
}

export class UndiciBackend implements HttpBackend {
  private readonly pool: Pool;

  /** `origin` as `http://host:port`; `timeoutMs` bounds the wait for headers and between body chunks. */
  constructor(origin: string, timeoutMs: number, connections = 64) {
    this.pool = new Pool(origin, {
      connections,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connectTimeout: timeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  async request(request: BackendRequest): Promise<BackendResponse> {
    try {
      const response = await this.pool.request({
        method: request.method as 'GET',
        path: request.path,
        headers: request.headers.flat(),
        body: request.body,
      });
      const headers: [string, string][] = [];
      const raw = response.headers;
      for (const name of Object.keys(raw)) {
        const value = raw[name];
        if (Array.isArray(value)) for (const v of value) headers.push([name, v]);
        else if (value !== undefined) headers.push([name, value]);
      }
      // Errors reach the reader through its async iteration; abandoning a body with destroy()
      // (the client went away, or HEAD) makes undici emit one more, which must not be fatal.
      response.body.on('error', () => {});
      return { status: response.statusCode, headers, body: response.body };
    } catch (error) {
      throw toBackendError(error);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

export function toBackendError(error: unknown): BackendError {
  if (
    error instanceof errors.HeadersTimeoutError ||
    error instanceof errors.BodyTimeoutError ||
    error instanceof errors.ConnectTimeoutError
  ) {
    return new BackendError('timeout', (error as Error).message);
  }
  return new BackendError('unreachable', error instanceof Error ? error.message : String(error));
}

/**
 * Checks at start-up that `origin` is an `http://host:port` URL and that something accepts TCP
 * connections there within `timeoutMs`; returns a one-line problem naming the fix, or null.
 */
export async function probeHttpBackend(origin: string, timeoutMs: number): Promise<string | null> {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return `--upstream "${origin}" is not a URL: give http://HOST:PORT`;
  }
  if (url.protocol !== 'http:' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
    return `--upstream "${origin}" must be http://HOST:PORT (plain HTTP, no path)`;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || 80);
  const fix = 'start the backend or correct --upstream';
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`backend ${url.host} did not accept a connection within ${timeoutMs} ms: ${fix}`);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(null);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      resolve(`backend ${url.host} is unreachable (${error.message}): ${fix}`);
    });
  });
}
