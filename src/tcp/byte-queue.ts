/**
 * The bytes of one direction of a TCP stream that are waiting: a flow's received partial message
 * and its unacknowledged answers (flow.ts), a kernel socket's partial message
 * (io/kernel-transport.ts), a DNS-over-TCP upstream's partial answer (io/upstream.ts).
 */

/** First allocation of a byte queue: a typical DNS answer or query fits. */
const INITIAL_BUFFER = 512;

/** Shared by every empty queue: a typed array costs V8 some 200 bytes even when empty. */
const NO_BYTES = new Uint8Array(0);

/**
 * A byte queue: appended at the end, consumed from the start. Grows by doubling; compacts in
 * place when the consumed prefix is at least as long as what is left, so steady use does not
 * allocate.
 */
export class ByteQueue {
  bytes: Uint8Array = NO_BYTES;
  start = 0;
  end = 0;

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
      const grown = new Uint8Array(size);
      grown.set(this.bytes.subarray(this.start, this.end));
      this.bytes = grown;
    }
    this.start = 0;
    this.end = used;
  }
}
