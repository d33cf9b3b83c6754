/**
 * What the HTTP relay needs of the backend web server: one request in, a response with a body
 * that streams. io/http-backend.ts implements it with undici's connection pool.
 */

export interface BackendRequest {
  method: string;
  /** Origin-form target: path and query. */
  path: string;
  headers: [string, string][];
  /**
   * The body as it arrives from the client, read once, each read after the previous one is
   * written (a Content-Length among `headers` gives its length; without one it is chunked).
   */
  body: AsyncIterable<Uint8Array> | null;
}

export interface BackendResponse {
  status: number;
  /** Field lines as the backend sent them, names lower-cased. */
  headers: [string, string][];
  /** The body as it arrives (a failure while reading it is a BackendError); `destroy` abandons it. */
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
