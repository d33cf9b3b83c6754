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

/**
 * Why the backend gave no response: it could not be reached, it did not answer in time, our side
 * abandoned the request (its body will not be whole: not the backend's fault), or — a pool —
 * no backend is up.
 */
export class BackendError extends Error {
  constructor(
    readonly kind: 'unreachable' | 'timeout' | 'aborted' | 'no-backend-up',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Idempotent methods (RFC 9110 §9.2.2): a client, or a proxy on its behalf, may send them again
 * when the connection failed before the response, since doing so twice has the effect of once.
 */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Whether a request that got no response from one backend of a pool may go to another: an
 * idempotent method (RFC 9110 §9.2.2) without a body — a body streams from the client once, as
 * it arrives, so one that started for the first backend cannot be sent again (nginx's
 * proxy_next_upstream likewise never repeats a non-idempotent request).
 */
export function retryableElsewhere(request: Pick<BackendRequest, 'method' | 'body'>): boolean {
  return request.body === null && IDEMPOTENT_METHODS.has(request.method);
}

/**
 * An `--upstream` for the HTTP front end: `http://HOST:PORT` (port 80 if left out), plain HTTP and
 * no path; returns it as the origin undici takes (`http://host:port`), or throws an Error whose
 * message names the fix.
 */
export function parseOrigin(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`"${value}" is not a URL: give http://HOST:PORT`);
  }
  if (url.protocol !== 'http:' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '') {
    throw new Error(`"${value}" must be http://HOST:PORT (plain HTTP, no path)`);
  }
  return `http://${url.hostname}:${url.port || 80}`;
}

/**
 * Whether a health probe's response says the backend is up: any status below 500. A 5xx is the
 * server saying it cannot serve (503 while it starts or drains, 502 from a dead application
 * behind it); a 404 or 401 for the probe path still shows a server that answers (HAProxy's
 * `httpchk` and nginx's `health_check` want 2xx/3xx, but then a probe path an operator got wrong
 * would take the whole pool down).
 */
export function healthyStatus(status: number): boolean {
  return status < 500;
}

export interface HttpBackend {
  request(request: BackendRequest): Promise<BackendResponse>;
  close(): Promise<void>;
}
