/**
 * The HTTP relay: whole requests from the responder go to the backend web server; each response
 * goes back on its connection, in request order (RFC 9112 §9.3.2), re-framed for the client and
 * streamed only as fast as the client acknowledges.
 *
 *   request bytes ──parseRequest──▶ backend (undici pool, keep-alive) ──▶ status + headers + body
 *   ──▶ head re-written (hop-by-hop fields dropped, framing chosen for this client) ──▶ answerPart
 *       … body chunks, each waiting for `onDrain` when the flow's send queue is full
 *   ──▶ answer (the last bytes) ──▶ closeWhenAnswered if the connection is to close
 *
 * Errors are answered with a short body and `Connection: close`: 400 malformed request, 413 body
 * too big, 431 head too big, 501 unknown transfer coding, 505 version, 502 backend unreachable,
 * 504 backend too slow (RFC 9110 §15.6).
 */
import { STATUS_CODES } from 'node:http';
import type { Flow } from '../tcp/flow.js';
import type { TcpApplication } from '../tcp/responder.js';
import { BackendError, toBackendError, type BackendResponse, type HttpBackend } from '../io/http-backend.js';
import { parseRequest, requestLength, type HttpRequest } from './request.js';
import { formatAddress } from '../wire/format.js';

/** What the relay needs from the TCP side (the Responder). */
export interface ResponseSink {
  expectAnswer(flow: Flow): void;
  answerPart(flow: Flow, data: Uint8Array, offset: number, length: number, nowMs: number): boolean;
  answer(flow: Flow, data: Uint8Array, offset: number, length: number, nowMs: number): void;
  closeWhenAnswered(flow: Flow, nowMs: number): void;
  /** Gives up on the connection with RST (a response that broke off mid-body). */
  reset(flow: Flow, nowMs: number): void;
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
export const HTTP_COUNTER_NAMES: readonly string[] = ['requests', 'responses', 'bad_requests', 'backend_unreachable', 'backend_timeouts', 'broken_responses', 'abandoned'];

/** Hop-by-hop fields (RFC 9110 §7.6.1) and framing fields we set ourselves. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

interface Connection {
  /** Whole requests not yet answered, oldest first (pipelining: answered in this order). */
  readonly queue: Uint8Array[];
  busy: boolean;
  /** A request asked to close (or an error closes): later requests are not answered. */
  closing: boolean;
  /** Resolves when the send queue has drained (`onDrain`) or the flow closed. */
  drained: (() => void) | null;
}

const EMPTY = new Uint8Array(0);
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');

export class HttpRelay implements TcpApplication {
  readonly counts = new Float64Array(HTTP_COUNTER_NAMES.length);
  private readonly connections = new Map<Flow, Connection>();
  private sink: ResponseSink | null = null;

  constructor(
    private readonly backend: HttpBackend,
    private readonly now: () => number = Date.now,
  ) {}

  attach(sink: ResponseSink): void {
    this.sink = sink;
  }

  /** Requests in flight or queued, over all connections. */
  get pendingConnections(): number {
    return this.connections.size;
  }

  onMessages(flow: Flow, buf: Uint8Array, offset: number, length: number): void {
    let connection = this.connections.get(flow);
    if (connection === undefined) {
      connection = { queue: [], busy: false, closing: false, drained: null };
      this.connections.set(flow, connection);
    }
    const end = offset + length;
    for (let p = offset; p < end; ) {
      const n = requestLength(buf, p, end);
      const size = n > 0 ? n : end - p; // unusable bytes: one "request" that gets its error
      if (!connection.closing) {
        connection.queue.push(buf.slice(p, p + size));
        this.sink!.expectAnswer(flow);
        this.counts[HttpCounter.REQUESTS]!++;
      }
      p += size;
    }
    if (!connection.busy) void this.serve(flow, connection);
  }

  onDrain(flow: Flow): void {
    const connection = this.connections.get(flow);
    const wake = connection?.drained;
    if (connection !== undefined && wake !== null && wake !== undefined) {
      connection.drained = null;
      wake();
    }
  }

  onClosed(flow: Flow): void {
    this.counts[HttpCounter.ABANDONED]!++;
    this.onDrain(flow); // a response waiting for space finds the flow closed and stops
    this.connections.delete(flow);
  }

  /** Answers the queued requests of one connection, one after the other. */
  private async serve(flow: Flow, connection: Connection): Promise<void> {
    connection.busy = true;
    try {
      while (connection.queue.length > 0 && !flow.closed) {
        const bytes = connection.queue.shift()!;
        const parsed = parseRequest(bytes, 0, bytes.length);
        if ('status' in parsed) {
          this.counts[HttpCounter.BAD_REQUESTS]!++;
          this.respondWithError(flow, connection, parsed.status);
        } else {
          await this.relay(flow, connection, parsed);
        }
      }
    } finally {
      connection.busy = false;
      if (connection.queue.length === 0 && this.connections.get(flow) === connection) this.connections.delete(flow);
    }
  }

  private async relay(flow: Flow, connection: Connection, request: HttpRequest): Promise<void> {
    const sink = this.sink!;
    let response: BackendResponse;
    try {
      response = await this.backend.request({
        method: request.method,
        path: request.target,
        headers: forwardedHeaders(request, formatAddress(flow.reply.dstAddr, 0, flow.reply.family)),
        body: request.body.length > 0 ? request.body : null,
      });
    } catch (error) {
      const failure = error instanceof BackendError ? error : toBackendError(error);
      this.counts[failure.kind === 'timeout' ? HttpCounter.BACKEND_TIMEOUTS : HttpCounter.BACKEND_UNREACHABLE]!++;
      this.respondWithError(flow, connection, failure.kind === 'timeout' ? 504 : 502);
      return;
    }
    if (flow.closed) {
      response.body.destroy();
      return;
    }

    // RFC 9110 §6.4.1: no body for HEAD, 1xx, 204 and 304.
    const noBody = request.method === 'HEAD' || response.status < 200 || response.status === 204 || response.status === 304;
    const length = response.headers.find(([name]) => name === 'content-length')?.[1];
    // Without a length, HTTP/1.1 clients get chunked; HTTP/1.0 clients get the body up to our FIN.
    const chunked = !noBody && length === undefined && request.minorVersion === 1;
    const keepAlive = request.keepAlive && (noBody || length !== undefined || chunked);
    if (!keepAlive) this.startClosing(flow, connection);

    let head = `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? 'Unknown'}\r\n`;
    for (const [name, value] of response.headers) {
      if (HOP_BY_HOP.has(name) || (name === 'content-length' && !noBody && chunked)) continue;
      head += `${name}: ${value}\r\n`;
    }
    if (chunked) head += 'transfer-encoding: chunked\r\n';
    head += keepAlive ? (request.minorVersion === 0 ? 'connection: keep-alive\r\n' : '') : 'connection: close\r\n';
    head += '\r\n';
    const headBytes = Buffer.from(head, 'latin1');
    let room = sink.answerPart(flow, headBytes, 0, headBytes.length, this.now());

    try {
      if (!noBody) {
        for await (const chunk of response.body) {
          if (chunk.length === 0) continue;
          if (!room) {
            await new Promise<void>((resolve) => (connection.drained = resolve));
            if (flow.closed) {
              response.body.destroy();
              return;
            }
          }
          if (chunked) {
            const size = Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1');
            sink.answerPart(flow, size, 0, size.length, this.now());
            sink.answerPart(flow, chunk, 0, chunk.length, this.now());
            room = sink.answerPart(flow, CRLF, 0, CRLF.length, this.now());
          } else {
            room = sink.answerPart(flow, chunk, 0, chunk.length, this.now());
          }
        }
      } else {
        response.body.destroy();
      }
    } catch (error) {
      // The head is out: nothing can say "error" any more but breaking the connection.
      this.counts[toBackendError(error).kind === 'timeout' ? HttpCounter.BACKEND_TIMEOUTS : HttpCounter.BROKEN_RESPONSES]!++;
      if (!flow.closed) sink.reset(flow, this.now());
      return;
    }
    this.counts[HttpCounter.RESPONSES]!++;
    const last = chunked ? LAST_CHUNK : EMPTY;
    sink.answer(flow, last, 0, last.length, this.now());
  }

  /** An error response with `Connection: close`; the requests queued after it are dropped. */
  private respondWithError(flow: Flow, connection: Connection, status: number): void {
    this.startClosing(flow, connection);
    const reason = STATUS_CODES[status] ?? 'Error';
    const body = `${status} ${reason}\n`;
    const message = Buffer.from(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      'latin1',
    );
    this.sink!.answer(flow, message, 0, message.length, this.now());
  }

  /** No more requests are answered on this connection; our FIN follows the last response. */
  private startClosing(flow: Flow, connection: Connection): void {
    if (connection.closing) return;
    connection.closing = true;
    // Requests pipelined behind this one get no answer: release what was owed for them.
    for (const _ of connection.queue.splice(0)) this.sink!.answer(flow, EMPTY, 0, 0, this.now());
    this.sink!.closeWhenAnswered(flow, this.now());
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
    if (named.has(lower) || lower === 'content-length') continue;
    if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`;
    else headers.push([name, value]);
  }
  headers.push(['x-forwarded-for', forwardedFor === null ? clientAddress : `${forwardedFor}, ${clientAddress}`]);
  return headers;
}
