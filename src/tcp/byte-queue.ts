/**
 * The bytes of one direction of a TCP stream that are waiting: a flow's received partial message
 * and its unacknowledged answers (flow.ts), a kernel socket's partial message
 * (io/kernel-transport.ts), a DNS-over-TCP upstream's partial answer (io/upstream.ts).
 */

/** First allocation of a byte queue: a typical DNS answer or query fits. */
const INITIAL_BUFFER = 512;

/** Shared by every empty queue: a typed array costs V8 some 200 bytes even when empty. */
const NO_BYTES = new Uint8Array(0);

/** Buffers up to this size are kept for reuse (BufferPool); a larger one is left to the collector. */
const LARGEST_POOLED = 256 * 1024;
/** Size classes: INITIAL_BUFFER and each doubling up to LARGEST_POOLED. */
const SIZE_CLASSES = Math.log2(LARGEST_POOLED / INITIAL_BUFFER) + 1;

/** The size class of a power of two from INITIAL_BUFFER on: its log2 less INITIAL_BUFFER's. */
function sizeClassOf(size: number): number {
  return Math.clz32(INITIAL_BUFFER) - Math.clz32(size);
}

/**
 * Buffers that byte queues gave back (`ByteQueue.recycle`), for the next queues to take: one list
 * per power-of-two size, each holding at most `bytesPerClass` bytes.
 *
 * Why: a flow lives for one exchange (responder.ts releases it when idle), and its send queue
 * was a fresh ArrayBuffer each time. Their backing stores count toward V8's global heap limit
 * as external memory, so that garbage alone set off a full mark-compact about every 180 ms per
 * shard under the 4 KB-answer benchmark (docs/performance.md, "Where the 4 KB answers' time went").
 *
 * A buffer given back must not be referenced elsewhere: the send queue's bytes are only read
 * while a segment is written (the senders copy them), never kept.
 */
export class BufferPool {
  private readonly free: Uint8Array[][] = Array.from({ length: SIZE_CLASSES }, () => []);
  private readonly maxPerClass: number[];

  constructor(bytesPerClass: number) {
    this.maxPerClass = this.free.map((_, i) => Math.max(1, Math.floor(bytesPerClass / (INITIAL_BUFFER << i))));
  }

  /** A buffer of `size` bytes (a power of two from INITIAL_BUFFER), reused when one is free. */
  take(size: number): Uint8Array {
    if (size > LARGEST_POOLED) return new Uint8Array(size);
    return this.free[sizeClassOf(size)]!.pop() ?? new Uint8Array(size);
  }

  give(bytes: Uint8Array): void {
    const size = bytes.length;
    if (size < INITIAL_BUFFER || size > LARGEST_POOLED || (size & (size - 1)) !== 0) return;
    const sizeClass = sizeClassOf(size);
    const list = this.free[sizeClass]!;
    if (list.length < this.maxPerClass[sizeClass]!) list.push(bytes);
  }
}

/**
 * A byte queue: appended at the end, consumed from the start. Grows by doubling; compacts in
 * place when the consumed prefix is at least as long as what is left, so steady use does not
 * allocate.
 */
export class ByteQueue {
  bytes: Uint8Array = NO_BYTES;
  start = 0;
  end = 0;
  /** Where buffers come from and go back to, if anywhere (`recycle`). */
  pool: BufferPool | null = null;

  get length(): number {
    return this.end - this.start;
  }

  append(data: Uint8Array, offset: number, length: number): void {
    if (this.end + length > this.bytes.length) this.makeRoom(length);
    this.bytes.set(data.subarray(offset, offset + length), this.end);
    this.end += length;
  }

  /** Drops the last bytes, keeping the first `length`. */
  truncate(length: number): void {
    this.end = this.start + length;
    if (length === 0) this.start = this.end = 0;
  }

  /** Empties the queue and gives its buffer back to the pool: nothing may hold on to `bytes`. */
  recycle(): void {
    if (this.pool !== null && this.bytes !== NO_BYTES) this.pool.give(this.bytes);
    this.bytes = NO_BYTES;
    this.start = this.end = 0;
  }

  consume(length: number): void {
    this.start += length;
    if (this.start === this.end) this.start = this.end = 0;
  }

  private makeRoom(length: number): void {
    const used = this.end - this.start;
    // Compact when it fits and moves no more bytes than it frees; otherwise grow to at least
    // twice the size. Either way a copy is paid for by as many appended bytes, so a queue kept
    // more than half full (a flow's send queue while a body streams) does not reallocate each time.
    if (used + length <= this.bytes.length && this.start >= used) {
      this.bytes.copyWithin(0, this.start, this.end);
    } else {
      let size = Math.max(2 * this.bytes.length, INITIAL_BUFFER);
      while (size < used + length) size *= 2;
      const grown = this.pool === null ? new Uint8Array(size) : this.pool.take(size);
      grown.set(this.bytes.subarray(this.start, this.end));
      if (this.pool !== null && this.bytes !== NO_BYTES) this.pool.give(this.bytes);
      this.bytes = grown;
    }
    this.start = 0;
    this.end = used;
  }
}
