/**
 * The HTTP relay: request heads from the transport go to the backend web server, each with its
 * body streamed as it arrives (an upload of any size holds only what is in flight: the
 * transport's window opens as the backend takes it); each response goes back on its connection,
 * in request order (RFC 9112 §9.3.2), re-framed for the client and streamed only as fast as the
 * client acknowledges.
 *
 *   head ──parseRequest──▶ (100 Continue) ──▶ backend (undici pool, keep-alive)
 *   body ──onBody──▶ RequestBody ──▶ backend, releaseBody as it is written
 *   backend ──▶ status + headers + body ──▶ head re-written (hop-by-hop fields dropped, framing
 *       chosen for this client) ──▶ answerPart … body chunks, each waiting for `onDrain` when the
 *       connection's send queue is full ──▶ answer (the last bytes) ──▶ closeWhenAnswered if the
 *       connection is to close
 *
 * Errors are answered with a short body and `Connection: close`: 400 malformed request (or a body
 * cut off), 413 body over `maxBodyBytes`, 417 an expectation other than 100-continue, 431 head
 * too big, 501 unknown transfer coding or CONNECT, 505 version, 502 backend unreachable (or none
 * of a pool up), 504 backend too slow (RFC 9110 §15.5, §15.6).
 */
import { STATUS_CODES } from 'node:http';
import { BackendError, type BackendResponse, type HttpBackend } from './backend.js';
import { parseRequest, type HttpRequest } from './request.js';
import { RequestBody } from './request-body.js';
import { counterNames } from '../counter-names.js';
import type { Relay, Transport, UpstreamsView } from '../tcp/transport.js';

export interface HttpRelayOptions {
  backend: HttpBackend;
  /** The clock for the relay's own events: backend responses, their bodies. */
  now: () => number;
  /** Largest request body relayed (nginx's client_max_body_size); bigger ones get 413. 0: no limit. */
  maxBodyBytes: number;
  /**
   * The counters, if the relay is to count into an array that goes on with a pool's per-backend
   * counters (indexed like `HttpCounter` up to HTTP_COUNTER_NAMES.length).
   */
  counts?: Float64Array;
  /** A pool of backends (the same object as `backend`): each one's state and latency for metrics. */
  upstreams?: UpstreamsView | null;
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
  /** Request body bytes handed to the backend. */
  BODY_BYTES: 7,
  /** Requests answered 413: a Content-Length, or a chunked body's running total, over the limit. */
  BODIES_TOO_LARGE: 8,
  /** Request bodies the client stopped sending part-way: its FIN, its RST or a missed deadline came first. */
  BODIES_CUT_OFF: 9,
  /** `100 Continue` sent to clients that asked for it. */
  CONTINUES: 10,
  /** Requests answered 502 at once: every backend of the pool was down (its health checks failed). */
  NO_BACKEND_UP: 11,
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

/** A request taken from the client and not yet answered. */
interface Exchange {
  /** The parsed head; null if the request cannot be relayed. */
  readonly request: HttpRequest | null;
  /** The status a request that cannot be relayed gets (0 for one that can). */
  readonly status: number;
  /** Its body as it arrives, if it has one. */
  readonly body: RequestBody | null;
}

/** A connection's requests waiting for their responses. */
interface Pending {
  /** Requests not yet answered, oldest first (pipelining: answered in this order); `serve` takes them off. */
  readonly queue: Exchange[];
  /** The request being answered (taken off the queue). */
  current: Exchange | null;
  /** The body the transport is delivering now (`onBody`), until it is whole or given up. */
  receiving: RequestBody | null;
  busy: boolean;
  /** No more requests are taken: one could not be relayed, or its body not read to its end. */
  stopped: boolean;
  /** A response closes the connection: the requests after it are not answered. */
  closing: boolean;
  /** Whether the transport takes more of the response now (false after `answerPart` said so, until `onDrain`). */
  room: boolean;
  /** Wakes a response waiting for room (`onDrain`, or the connection closed). */
  drained: (() => void) | null;
}

const EMPTY = new Uint8Array(0);
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');
/** RFC 9110 §15.2.1: the interim response that asks the client for the body it holds back. */
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

export class HttpRelay<C> implements Relay<C> {
  readonly counts: Float64Array;
  readonly upstreams: UpstreamsView | null;
  private readonly connections = new Map<C, Pending>();
  private sink: Transport<C> | null = null;
  /** Called with the time to each response head in seconds (metrics.ts), if set. */
  observeLatency: ((seconds: number) => void) | null = null;
  private readonly backend: HttpBackend;
  private readonly now: () => number;
  private readonly maxBodyBytes: number;

  constructor(options: HttpRelayOptions) {
    this.backend = options.backend;
    this.counts = options.counts ?? new Float64Array(HTTP_COUNTER_NAMES.length);
    this.upstreams = options.upstreams ?? null;
    this.now = options.now;
    this.maxBodyBytes = options.maxBodyBytes;
  }

  attach(sink: Transport<C>): void {
    this.sink = sink;
  }

  /** No timers: the backend client times its own requests out, the transport the client. */
  tick(): void {}

  close(): void {
    void this.backend.close();
  }

  /** One request head (or bytes that can never be one), as the transport framed it (request.ts). */
  onMessages(connection: C, buf: Uint8Array, offset: number, length: number): void {
    let pending = this.connections.get(connection);
    if (pending === undefined) {
      pending = { queue: [], current: null, receiving: null, busy: false, stopped: false, closing: false, room: true, drained: null };
      this.connections.set(connection, pending);
    }
    if (pending.stopped || pending.closing) return;
    const sink = this.sink!;
    sink.expectAnswer(connection);
    this.counts[HttpCounter.REQUESTS]!++;
    const parsed = parseRequest(buf, offset, length);
    const status = this.refusal(parsed);
    if (status !== 0) {
      this.countRefused(status);
      pending.queue.push({ request: null, status, body: null });
      // Its body, or what the bytes were, is never read: nothing after it can be framed.
      this.stopReading(connection, pending);
    } else {
      const request = parsed as HttpRequest;
      let body: RequestBody | null = null;
      if (request.body !== 0) {
        body = new RequestBody(request.body, this.maxBodyBytes, {
          release: (bytes) => this.sink!.releaseBody(connection, bytes, this.now()),
          read: (bytes) => {
            this.counts[HttpCounter.BODY_BYTES]! += bytes;
          },
        });
        pending.receiving = body;
        sink.beginBody(connection, this.now());
      }
      pending.queue.push({ request, status: 0, body });
    }
    if (!pending.busy) {
      pending.busy = true;
      // Once the transport is done with the bytes at hand: a body that came with its head is
      // then taken already, and no 100 Continue is sent for it.
      const start = pending;
      queueMicrotask(() => void this.serve(connection, start));
    }
  }

  /** The next bytes of the body being received: into its RequestBody, and the transport told when it ends. */
  onBody(connection: C, buf: Uint8Array, offset: number, length: number): number {
    const pending = this.connections.get(connection);
    const body = pending?.receiving ?? null;
    if (pending === undefined || body === null) {
      // Not expected (the transport streams only after beginBody, until endBody or a close). The
      // bytes belong to no body we know, so they are not framed as requests either: dropped,
      // and the connection closed.
      this.sink!.closeWhenAnswered(connection, this.now());
      this.sink!.releaseBody(connection, length, this.now());
      return length;
    }
    const taken = body.take(buf, offset, length);
    if (body.failure !== null) {
      this.countRefused(body.failure);
      body.fail(body.failure);
      this.stopReading(connection, pending);
    } else if (body.complete) {
      pending.receiving = null;
      this.sink!.endBody(connection);
    }
    return taken;
  }

  onBodyCutOff(connection: C): void {
    const pending = this.connections.get(connection);
    const body = pending?.receiving ?? null;
    if (pending === undefined || body === null) return;
    this.counts[HttpCounter.BODIES_CUT_OFF]!++;
    pending.receiving = null;
    body.fail(400);
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
    const pending = this.connections.get(connection);
    if (pending !== undefined) {
      // A body still arriving never will: its backend request is aborted, not left waiting.
      for (const exchange of pending.current === null ? pending.queue : [pending.current, ...pending.queue]) {
        if (exchange.body === null || exchange.body.complete || exchange.body.failure !== null) continue;
        this.counts[HttpCounter.BODIES_CUT_OFF]!++;
        exchange.body.fail(null);
      }
      pending.receiving = null;
    }
    this.onDrain(connection); // a response waiting for space finds the connection closed and stops
    this.connections.delete(connection);
  }

  /** A request answered `status` without the backend, by its head or by its body: over the body limit, or bad. */
  private countRefused(status: number): void {
    this.counts[status === 413 ? HttpCounter.BODIES_TOO_LARGE : HttpCounter.BAD_REQUESTS]!++;
  }

  /** The status a request gets without the backend (0: relay it). */
  private refusal(parsed: HttpRequest | { status: number }): number {
    if ('status' in parsed) return parsed.status;
    // A tunnel is not relaying requests to the backend (RFC 9110 §9.3.6): not implemented here.
    if (parsed.method === 'CONNECT') return 501;
    // RFC 9110 §10.1.1: 417 for an expectation we cannot meet; §15.5.14: 413 for a body over the
    // limit, from its Content-Length, before reading it (a chunked body when its total passes it).
    if (parsed.unmetExpectation) return 417;
    if (this.maxBodyBytes > 0 && typeof parsed.body === 'number' && parsed.body > this.maxBodyBytes) return 413;
    return 0;
  }

  /** Answers the queued requests of one connection, one after the other. */
  private async serve(connection: C, pending: Pending): Promise<void> {
    try {
      while (pending.queue.length > 0 && !this.sink!.isClosed(connection)) {
        const exchange = pending.queue.shift()!;
        pending.current = exchange;
        try {
          const failure = exchange.status || exchange.body?.failure || 0;
          if (failure !== 0) this.respondWithError(connection, pending, failure);
          else await this.relay(connection, pending, exchange.request!, exchange.body);
        } finally {
          pending.current = null;
          exchange.body?.close();
        }
      }
    } catch {
      // Not expected (backend failures are handled in relay()): never let one connection's
      // trouble end the process; break that connection instead.
      this.counts[HttpCounter.BROKEN_RESPONSES]!++;
      if (!this.sink!.isClosed(connection)) this.sink!.reset(connection, this.now());
    } finally {
      pending.busy = false;
      if (pending.queue.length === 0 && pending.receiving === null && this.connections.get(connection) === pending) {
        this.connections.delete(connection);
      }
    }
  }

  private async relay(connection: C, pending: Pending, request: HttpRequest, body: RequestBody | null): Promise<void> {
    const sink = this.sink!;
    if (request.expectContinue && body !== null && !body.started) {
      // RFC 9110 §10.1.1: the head is good and the body wanted: tell the client to send it now,
      // rather than after its own wait (curl's is a second).
      this.counts[HttpCounter.CONTINUES]!++;
      pending.room = sink.answerPart(connection, CONTINUE, 0, CONTINUE.length);
    }
    let response: BackendResponse;
    const relayedMs = this.now();
    try {
      response = await this.backend.request({
        method: request.method,
        path: request.target,
        headers: forwardedHeaders(request, sink.clientAddress(connection)),
        body,
      });
    } catch (error) {
      if (sink.isClosed(connection)) {
        // Gone meanwhile (perhaps why the request failed: its body with it): not the backend's fault.
        sink.answer(connection, EMPTY, 0, 0);
      } else if (body?.failure) {
        // The body failed (too big, cut off) and with it the backend request.
        this.respondWithError(connection, pending, body.failure);
      } else {
        const kind = error instanceof BackendError ? error.kind : 'unreachable';
        if (kind === 'timeout') this.counts[HttpCounter.BACKEND_TIMEOUTS]!++;
        else this.counts[kind === 'no-backend-up' ? HttpCounter.NO_BACKEND_UP : HttpCounter.BACKEND_UNREACHABLE]!++;
        this.respondWithError(connection, pending, kind === 'timeout' ? 504 : 502);
      }
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
    // The backend answered before the body was whole (an early 413 of its own, say): the rest of
    // the body is not read, so nothing after it could be framed — close (RFC 9110 §10.1.1).
    const bodyUnread = body !== null && !body.complete;
    const keepAlive = request.keepAlive && !bodyUnread && (noBody || length !== undefined || chunked);
    if (!keepAlive) this.startClosing(connection, pending);
    if (bodyUnread) body.abandon();

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

  /**
   * No more requests are taken on this connection (the transport acknowledges and drops what
   * follows); those taken still get their answers, then our FIN.
   */
  private stopReading(connection: C, pending: Pending): void {
    if (pending.stopped) return;
    pending.stopped = true;
    pending.receiving = null;
    this.sink!.closeWhenAnswered(connection, this.now());
  }

  /** No more requests are answered on this connection; our FIN follows the last response. */
  private startClosing(connection: C, pending: Pending): void {
    if (pending.closing) return;
    pending.closing = true;
    // Requests pipelined behind this one get no answer: release what was owed for them, and
    // what their bodies hold.
    for (const exchange of pending.queue.splice(0)) {
      exchange.body?.close();
      this.sink!.answer(connection, EMPTY, 0, 0);
    }
    this.stopReading(connection, pending);
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
    // Content-Length: set below for the body we stream. Expect: answered here (100 Continue
    // or 417), not by the backend.
    if (named.has(lower) || lower === 'content-length' || lower === 'expect') continue;
    if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`;
    else headers.push([name, value]);
  }
  headers.push(['x-forwarded-for', forwardedFor === null ? clientAddress : `${forwardedFor}, ${clientAddress}`]);
  // The body streams, so the backend client learns its length here (a chunked one it chunks anew).
  if (typeof request.body === 'number' && request.body > 0) headers.push(['content-length', String(request.body)]);
  return headers;
}
