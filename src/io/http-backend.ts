/**
 * The backend web server, through a pooled keep-alive HTTP/1.1 client (undici).
 */
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
