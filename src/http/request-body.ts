/**
 * A request body on its way from the client to the backend (an upload): the transport's
 * `onBody` bytes go in — counted off a Content-Length, or de-chunked (request.ts ChunkedDecoder)
 * — and the backend client reads the data out as an async iterable, each read as soon as the
 * previous one is written. It holds only what the backend has not taken yet, which the
 * transport's receive window bounds: the bytes of each read are given back to the transport
 * (`release`, opening the window) when the backend client comes for the next, that is once it
 * has written them.
 *
 *   onBody ──take──▶ data ──next()──▶ undici ──▶ backend
 *      ▲                                │
 *      └────────── release ◀────────────┘ (at the next read)
 */
import { ByteQueue } from '../tcp/byte-queue.js';
import { CHUNKED_TOO_BIG, ChunkedDecoder } from './request.js';

/** What the body reports to its relay. */
export interface RequestBodyHooks {
  /** `length` bytes from the client (framing included) are done with: the window may open. */
  release(length: number): void;
  /** `length` data bytes were handed to the backend client. */
  read(length: number): void;
}

/** Why a body's reader fails: the body will not be whole (the backend client then aborts its request). */
export class BodyNotWhole extends Error {}

export class RequestBody implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  /** Data not yet read by the backend client. */
  private readonly data = new ByteQueue();
  private readonly chunked: ChunkedDecoder | null;
  /** Bytes of a Content-Length body still to come. */
  private remaining: number;
  /** Bytes taken from the client (framing included) so far; of those, released; and taken as of the last read. */
  private taken = 0;
  private released = 0;
  private takenAtRead = 0;
  /** All of it arrived. */
  complete = false;
  /** It never will, and the client gets this status instead: 413 over the limit, 400 malformed or cut off. */
  failure: 400 | 413 | null = null;
  /** Reads now fail (`fail`, `close`). */
  private broken = false;
  private waiting: ((result: IteratorResult<Uint8Array>) => void) | null = null;
  private failWaiting: ((error: Error) => void) | null = null;
  private readonly append = (buf: Uint8Array, offset: number, length: number): void => this.data.append(buf, offset, length);

  /** `framing` as parseRequest gave it (a length > 0, or chunked); `maxBytes` for a chunked body (0: no limit). */
  constructor(
    framing: number | 'chunked',
    maxBytes: number,
    private readonly hooks: RequestBodyHooks,
  ) {
    this.chunked = framing === 'chunked' ? new ChunkedDecoder(maxBytes) : null;
    this.remaining = framing === 'chunked' ? 0 : framing;
  }

  /** Whether any of it has arrived (then a `100 Continue` is no longer needed, RFC 9110 §10.1.1). */
  get started(): boolean {
    return this.taken > 0;
  }

  /**
   * The next bytes from the client, `buf[offset, offset+length)`, valid during the call: returns
   * how many belong to the body. Sets `complete` when its end is among them, or `failure` when
   * they show it cannot be relayed (then all of them are taken, and the caller gives up).
   */
  take(buf: Uint8Array, offset: number, length: number): number {
    let n: number;
    if (this.chunked === null) {
      n = Math.min(length, this.remaining);
      this.data.append(buf, offset, n);
      this.remaining -= n;
      this.complete = this.remaining === 0;
    } else {
      n = this.chunked.decode(buf, offset, length, this.append);
      if (n < 0) {
        this.failure = n === CHUNKED_TOO_BIG ? 413 : 400;
        n = length;
      } else {
        this.complete = this.chunked.done;
      }
    }
    this.taken += n;
    if (this.waiting !== null && (this.data.length > 0 || this.complete)) this.settle(this.readNow()!);
    return n;
  }

  /**
   * It will never be whole (`status`: what the client gets; null: the connection is gone): what
   * it holds is released, and the backend client's read fails, so that it aborts its request and
   * the backend never takes a cut-off body for a whole one.
   */
  fail(status: 400 | 413 | null): void {
    if (status !== null) this.failure = status;
    this.abandon();
    this.breakReads();
  }

  /**
   * The relay wants no more of it (the backend answered before it was whole): what it holds is
   * released. A read still waiting waits on until `close`, so that the backend client does not
   * fail the response it is giving.
   */
  abandon(): void {
    this.data.consume(this.data.length);
    this.releaseUpTo(this.taken);
  }

  /** The exchange is over: everything is released, and a read still waiting fails. */
  close(): void {
    this.abandon();
    if (!this.complete) this.breakReads();
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const result = this.readNow();
    if (result !== null) return Promise.resolve(result);
    if (this.broken) return Promise.reject(new BodyNotWhole('request body not whole'));
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  /**
   * A read as the backend client comes for it: the bytes of its previous read are written, so
   * they are released; then all the data here in one piece (a copy: the client's socket holds it
   * until written), or the end. Null while there is nothing to give. (Not named `read`: undici
   * calls a body's `read(0)`, taking it for a stream, before it starts writing.)
   */
  private readNow(): IteratorResult<Uint8Array> | null {
    if (this.broken) return null;
    this.releaseUpTo(this.takenAtRead);
    const length = this.data.length;
    if (length > 0) {
      const chunk = Buffer.from(this.data.bytes.subarray(this.data.start, this.data.end));
      this.data.consume(length);
      this.takenAtRead = this.taken;
      this.hooks.read(length);
      return { value: chunk, done: false };
    }
    if (!this.complete) return null;
    this.releaseUpTo(this.taken); // the framing after the last data: the last chunk, trailers
    return { value: undefined, done: true };
  }

  private releaseUpTo(taken: number): void {
    if (taken <= this.released) return;
    const length = taken - this.released;
    this.released = taken;
    this.hooks.release(length);
  }

  private breakReads(): void {
    this.broken = true;
    const fail = this.failWaiting;
    this.waiting = this.failWaiting = null;
    fail?.(new BodyNotWhole('request body not whole'));
  }

  private settle(result: IteratorResult<Uint8Array>): void {
    const resolve = this.waiting!;
    this.waiting = this.failWaiting = null;
    resolve(result);
  }
}
