/**
 * The HTTP relay: whole requests from the responder go to the backend web server; each response
 * goes back on its connection, in request order (RFC 9112 §9.3.2), re-framed for the client and
 * streamed only as fast as the client acknowledges.
 *
 *   request bytes ──parseRequest──▶ backend (undici pool, keep-alive) ──▶ status + headers + body
 *   ──▶ head re-written (hop-by-hop fields dropped, framing chosen for this client) ──▶ answerPart
 *       … body chunks, each waiting for `onDrain` when the connection's send queue is full
 *   ──▶ answer (the last bytes) ──▶ closeWhenAnswered if the connection is to close
 *
 * Errors are answered with a short body and `Connection: close`: 400 malformed request, 413 body
 * too big, 431 head too big, 501 unknown transfer coding or CONNECT, 505 version, 502 backend
 * unreachable, 504 backend too slow (RFC 9110 §15.6).
 */
import { STATUS_CODES } from 'node:http';
import { BackendError, type BackendResponse, type HttpBackend } from './backend.js';
import { parseRequest, requestLength, type HttpRequest } from './request.js';
import { counterNames } from '../counter-names.js';
import type { Relay, Transport } from '../tcp/transport.js';

export interface HttpRelayOptions {
  backend: HttpBackend;
  /** The clock for the relay's own events: backend responses, their bodies. */
  now: () => number;
}

/** Counter indices of `HttpRelay.counts`. */
export const HttpCounter = {
  REQUESTS: 0,
  RESPONSES: 1,
  BAD_REQUESTS: 2,
  BACKEND_UNREACHABLE: 3,
  BACKEND_TIMEOUTS: 4,
  BROKEN_RESPONSES: 5,
  /** Responses abandoned because the client reset the connection. */
  ABANDONED: 6,
} as const;
export const HTTP_COUNTER_NAMES = counterNames(HttpCounter);

/** Hop-by-hop fields (RFC 9110 §7.6.1) and framing fields we set ourselves. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/** A connection's requests waiting for their responses. */
interface Pending {
  /** Whole requests not yet answered, oldest first (pipelining: answered in this order). */
  readonly queue: Uint8Array[];
  busy: boolean;
  /** A request asked to close (or an error closes): later requests are not answered. */
  closing: boolean;
  /** Whether the transport takes more of the response now (false after `answerPart` said so, until `onDrain`). */
  room: boolean;
  /** Wakes a response waiting for room (`onDrain`, or the connection closed). */
  drained: (() => void) | null;
}

const EMPTY = new Uint8Array(0);
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');

export class HttpRelay<C> implements Relay<C> {
  readonly counts = new Float64Array(HTTP_COUNTER_NAMES.length);
  private readonly connections = new Map<C, Pending>();
  private sink: Transport<C> | null = null;
  /** Called with the time to each response head in seconds (metrics.ts), if set. */
  observeLatency: ((seconds: number) => void) | null = null;
  private readonly backend: HttpBackend;
  private readonly now: () => number;

  constructor(options: HttpRelayOptions) {
    this.backend = options.backend;
    this.now = options.now;
  }

  attach(sink: Transport<C>): void {
    this.sink = sink;
  }

  /** No timers: the backend client times its own requests out. */
  tick(): void {}

  close(): void {
    void this.backend.close();
  }

  onMessages(connection: C, buf: Uint8Array, offset: number, length: number): void {
    let pending = this.connections.get(connection);
    if (pending === undefined) {
      pending = { queue: [], busy: false, closing: false, room: true, drained: null };
      this.connections.set(connection, pending);
    }
    const end = offset + length;
    for (let p = offset; p < end; ) {
      const n = requestLength(buf, p, end);
      const size = n > 0 ? n : end - p; // unusable bytes: one "request" that gets its error
      if (!pending.closing) {
        // A copy (Uint8Array's slice, not a Buffer's, which would be a view): the transport
        // reuses `buf` once this returns.
        pending.queue.push(Uint8Array.prototype.slice.call(buf, p, p + size));
        this.sink!.expectAnswer(connection);
        this.counts[HttpCounter.REQUESTS]!++;
      }
      p += size;
    }
    if (!pending.busy) void this.serve(connection, pending);
  }

  onDrain(connection: C): void {
    const pending = this.connections.get(connection);
    if (pending === undefined) return;
    // The ACK that drained the queue may come before the response starts waiting: remember it.
    pending.room = true;
    const wake = pending.drained;
    pending.drained = null;
    wake?.();
  }

  onClosed(connection: C): void {
    this.counts[HttpCounter.ABANDONED]!++;
    this.onDrain(connection); // a response waiting for space finds the connection closed and stops
    this.connections.delete(connection);
  }

  /** Answers the queued requests of one connection, one after the other. */
  private async serve(connection: C, pending: Pending): Promise<void> {
    pending.busy = true;
    try {
      while (pending.queue.length > 0 && !this.sink!.isClosed(connection)) {
        const bytes = pending.queue.shift()!;
        const parsed = parseRequest(bytes, 0, bytes.length);
        if ('status' in parsed) {
          this.counts[HttpCounter.BAD_REQUESTS]!++;
          this.respondWithError(connection, pending, parsed.status);
        } else if (parsed.method === 'CONNECT') {
          // A tunnel is not relaying requests to the backend (RFC 9110 §9.3.6): not implemented here.
          this.counts[HttpCounter.BAD_REQUESTS]!++;
          this.respondWithError(connection, pending, 501);
        } else {
          await this.relay(connection, pending, parsed);
        }
      }
    } catch {
      // Not expected (backend failures are handled in relay()): never let one connection's
      // trouble end the process; break that connection instead.
      this.counts[HttpCounter.BROKEN_RESPONSES]!++;
      if (!this.sink!.isClosed(connection)) this.sink!.reset(connection, this.now());
    } finally {
      pending.busy = false;
      if (pending.queue.length === 0 && this.connections.get(connection) === pending) this.connections.delete(connection);
    }
  }

  private async relay(connection: C, pending: Pending, request: HttpRequest): Promise<void> {
    const sink = this.sink!;
    let response: BackendResponse;
    const relayedMs = this.now();
    try {
      response = await this.backend.request({
        method: request.method,
        path: request.target,
        headers: forwardedHeaders(request, sink.clientAddress(connection)),
        body: request.body.length > 0 ? request.body : null,
      });
    } catch (error) {
      const timedOut = error instanceof BackendError && error.kind === 'timeout';
      this.counts[timedOut ? HttpCounter.BACKEND_TIMEOUTS : HttpCounter.BACKEND_UNREACHABLE]!++;
      this.respondWithError(connection, pending, timedOut ? 504 : 502);
      return;
    }
    this.observeLatency?.((this.now() - relayedMs) / 1000);
    if (sink.isClosed(connection)) {
      response.body.destroy();
      return;
    }

    // RFC 9110 §6.4.1: no body for HEAD, 1xx, 204 and 304.
    const noBody = request.method === 'HEAD' || response.status < 200 || response.status === 204 || response.status === 304;
    const length = response.headers.find(([name]) => name === 'content-length')?.[1];
    // Without a length, HTTP/1.1 clients get chunked; HTTP/1.0 clients get the body up to our FIN.
    const chunked = !noBody && length === undefined && request.minorVersion === 1;
    const keepAlive = request.keepAlive && (noBody || length !== undefined || chunked);
    if (!keepAlive) this.startClosing(connection, pending);

    let head = `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? 'Unknown'}\r\n`;
    for (const [name, value] of response.headers) {
      if (HOP_BY_HOP.has(name) || (name === 'content-length' && !noBody && chunked)) continue;
      head += `${name}: ${value}\r\n`;
    }
    if (chunked) head += 'transfer-encoding: chunked\r\n';
    head += keepAlive ? (request.minorVersion === 0 ? 'connection: keep-alive\r\n' : '') : 'connection: close\r\n';
    head += '\r\n';
    const headBytes = Buffer.from(head, 'latin1');
    pending.room = sink.answerPart(connection, headBytes, 0, headBytes.length);

    try {
      if (!noBody) {
        for await (const chunk of response.body) {
          if (sink.isClosed(connection)) {
            // Closed between two chunks (its onDrain came with nothing waiting): stop reading.
            response.body.destroy();
            return;
          }
          if (chunk.length === 0) continue;
          if (!pending.room) {
            await new Promise<void>((resolve) => (pending.drained = resolve));
            if (sink.isClosed(connection)) {
              response.body.destroy();
              return;
            }
          }
          if (chunked) {
            const size = Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1');
            sink.answerPart(connection, size, 0, size.length);
            sink.answerPart(connection, chunk, 0, chunk.length);
            pending.room = sink.answerPart(connection, CRLF, 0, CRLF.length);
          } else {
            pending.room = sink.answerPart(connection, chunk, 0, chunk.length);
          }
        }
      } else {
        response.body.destroy();
      }
    } catch (error) {
      // The head is out: nothing can say "error" any more but breaking the connection.
      const timedOut = error instanceof BackendError && error.kind === 'timeout';
      this.counts[timedOut ? HttpCounter.BACKEND_TIMEOUTS : HttpCounter.BROKEN_RESPONSES]!++;
      if (!sink.isClosed(connection)) sink.reset(connection, this.now());
      return;
    }
    this.counts[HttpCounter.RESPONSES]!++;
    const last = chunked ? LAST_CHUNK : EMPTY;
    sink.answer(connection, last, 0, last.length);
  }

  /** An error response with `Connection: close`; the requests queued after it are dropped. */
  private respondWithError(connection: C, pending: Pending, status: number): void {
    this.startClosing(connection, pending);
    const reason = STATUS_CODES[status] ?? 'Error';
    const body = `${status} ${reason}\n`;
    const message = Buffer.from(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      'latin1',
    );
    this.sink!.answer(connection, message, 0, message.length);
  }

  /** No more requests are answered on this connection; our FIN follows the last response. */
  private startClosing(connection: C, pending: Pending): void {
    if (pending.closing) return;
    pending.closing = true;
    // Requests pipelined behind this one get no answer: release what was owed for them.
    for (const _ of pending.queue.splice(0)) this.sink!.answer(connection, EMPTY, 0, 0);
    this.sink!.closeWhenAnswered(connection, this.now());
  }
}

/** The request's fields for the backend: hop-by-hop ones removed, X-Forwarded-For added. */
function forwardedHeaders(request: HttpRequest, clientAddress: string): [string, string][] {
  const named = new Set(HOP_BY_HOP);
  for (const [name, value] of request.headers) {
    if (name.toLowerCase() === 'connection') for (const token of value.split(',')) named.add(token.trim().toLowerCase());
  }
  const headers: [string, string][] = [];
  let forwardedFor: string | null = null;
  for (const [name, value] of request.headers) {
    const lower = name.toLowerCase();
    // Content-Length: undici sets it for the body we pass. Expect: the whole body is already
    // here (requests are relayed whole), so there is nothing left to continue.
    if (named.has(lower) || lower === 'content-length' || lower === 'expect') continue;
    if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`;
    else headers.push([name, value]);
  }
  headers.push(['x-forwarded-for', forwardedFor === null ? clientAddress : `${forwardedFor}, ${clientAddress}`]);
  return headers;
}
