/**
 * The backend web server (http/backend.ts HttpBackend), through a pooled keep-alive HTTP/1.1
 * client (undici). Every failure it reports is a BackendError.
 */
import net from 'node:net';
import { Client, Pool, errors, type Dispatcher } from 'undici';
import { BackendError, healthyStatus, parseOrigin, type BackendRequest, type BackendResponse, type HttpBackend } from '../http/backend.js';
import { BodyNotWhole } from '../http/request-body.js';

export class UndiciBackend implements HttpBackend {
  private readonly pool: Pool;

  /**
   * `origin` as `http://host:port`; `timeoutMs` bounds the wait for headers and between body
   * chunks. `onFinished`, if given, is called once for each request when it is over: its
   * response whole, broken off or abandoned, or no response (a pool counts what is outstanding).
   */
  constructor(
    origin: string,
    timeoutMs: number,
    private readonly onFinished: (() => void) | null = null,
    connections = 64,
  ) {
    this.pool = new Pool(origin, {
      connections,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connectTimeout: timeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  /**
   * Through undici's dispatch API rather than `pool.request`: the relay reads each body once, in
   * order, and needs neither a Readable stream nor its async iterator per response
   * (`ResponseBody` below is the little of them it uses).
   */
  request(request: BackendRequest): Promise<BackendResponse> {
    return new Promise((resolve, reject) => {
      let body: ResponseBody | null = null;
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        this.onFinished?.();
      };
      const handler: Dispatcher.DispatchHandler = {
        // Present so that undici takes this for a handler of its current API (it checks for it).
        onRequestStart() {},
        onResponseStart(controller, statusCode, raw) {
          if (statusCode < 200) return; // 1xx: informational, the response follows (RFC 9110 §15.2)
          const headers: [string, string][] = [];
          for (const name of Object.keys(raw)) {
            const value = raw[name];
            if (Array.isArray(value)) for (const v of value) headers.push([name, v]);
            else if (value !== undefined) headers.push([name, value]);
          }
          body = new ResponseBody(controller);
          resolve({ status: statusCode, headers, body });
        },
        // Only CONNECT or an Upgrade lead here, and the relay forwards neither: close the tunnel.
        onRequestUpgrade(_controller, _statusCode, _headers, socket) {
          socket.destroy();
          finish();
          reject(new BackendError('unreachable', 'the backend switched protocols'));
        },
        onResponseData(_controller, chunk) {
          body?.push(chunk);
        },
        onResponseEnd() {
          finish();
          body?.end(null);
        },
        onResponseError(_controller, error) {
          finish();
          if (body === null) reject(toBackendError(error));
          else body.end(toBackendError(error));
        },
      };
      // undici writes an async iterable body as it yields (client-h1.js writeIterable), though
      // its types name only buffers and streams.
      const requestBody = request.body as unknown as Dispatcher.DispatchOptions['body'];
      this.pool.dispatch({ method: request.method, path: request.path, headers: request.headers.flat(), body: requestBody }, handler);
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Chunks held before the backend connection is paused (TCP then holds the rest). */
const BODY_HIGH_WATER_CHUNKS = 16;

/**
 * A response body as it arrives: read once with `for await`, its chunks queued while the reader
 * waits for the client, the backend paused while BODY_HIGH_WATER_CHUNKS are queued. A backend
 * error ends the reading with that error; `destroy` abandons the rest.
 */
class ResponseBody implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private waiting: ((result: IteratorResult<Uint8Array>) => void) | null = null;
  private failWaiting: ((error: Error) => void) | null = null;

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  push(chunk: Uint8Array): void {
    if (this.ended) return;
    if (this.waiting !== null) {
      this.settle({ value: chunk, done: false });
      return;
    }
    this.chunks.push(chunk);
    if (this.chunks.length >= BODY_HIGH_WATER_CHUNKS && !this.controller.paused) this.controller.pause();
  }

  /** The body is whole (`error` null) or broke off. */
  end(error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiting === null) return;
    if (error === null) this.settle({ value: undefined, done: true });
    else {
      const fail = this.failWaiting!;
      this.waiting = this.failWaiting = null;
      fail(error);
    }
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.chunks.shift();
    if (chunk !== undefined) {
      if (this.controller.paused && this.chunks.length < BODY_HIGH_WATER_CHUNKS / 2) this.controller.resume();
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.error !== null) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  /** A `for await` that stops early (break, return, a throw) abandons the rest. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.destroy();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  destroy(): void {
    this.chunks.length = 0;
    if (this.ended) return;
    this.ended = true;
    if (!this.controller.aborted) this.controller.abort(new Error('response abandoned'));
    if (this.waiting !== null) this.settle({ value: undefined, done: true });
  }

  private settle(result: IteratorResult<Uint8Array>): void {
    const resolve = this.waiting!;
    this.waiting = this.failWaiting = null;
    resolve(result);
  }
}

function toBackendError(error: unknown): BackendError {
  // The body the relay streams failed its read (request-body.ts): undici hands that error back.
  if (error instanceof BodyNotWhole) return new BackendError('aborted', error.message);
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
    url = new URL(parseOrigin(origin));
  } catch (error) {
    return `--upstream ${(error as Error).message}`;
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

/**
 * A pool's health probe (`--health-check-path`): `GET path` to `origin` on a connection of its
 * own, closed after it (so that each probe also shows the backend accepts connections), given
 * `timeoutMs` for the whole response. Returns null if the backend is up (healthyStatus), else
 * one line saying why not.
 */
export async function probeHttpHealth(origin: string, path: string, timeoutMs: number): Promise<string | null> {
  const where = `backend ${new URL(origin).host}`;
  // Its own client, not the pool's: a probe must not wait behind real requests for a connection.
  const client = new Client(origin, { connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  try {
    const response = await client.request({
      method: 'GET',
      path,
      headers: { 'user-agent': 'stateless-tcp health check' },
      reset: true,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body.dump();
    return healthyStatus(response.statusCode) ? null : `${where} answered GET ${path} with ${response.statusCode}`;
  } catch (error) {
    const problem = toBackendError(error);
    return problem.kind === 'timeout' || (error as Error).name === 'TimeoutError'
      ? `${where} did not answer GET ${path} within ${timeoutMs} ms`
      : `${where} is unreachable (${problem.message})`;
  } finally {
    void client.destroy();
  }
}
