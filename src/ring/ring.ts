/// <reference lib="es2024.sharedmemory" />
/**
 * A single-producer/single-consumer ring of captured frames over a SharedArrayBuffer: the capture
 * thread pushes each frame into the ring of the shard its flow hashes to, and that shard's worker
 * drains it. Byte layout and field names: layout.ts.
 *
 * Publication. The producer fills a slot with plain stores (the frame with TypedArray.set, the
 * slot header with word stores) and then publishes it with `Atomics.store` of WRITE_INDEX; the
 * consumer reads WRITE_INDEX with `Atomics.load` before touching any slot below it. JavaScript's
 * Atomics are sequentially consistent, so that store/load pair orders the plain writes before the
 * consumer's plain reads (release/acquire). Releasing slots is the mirror image with READ_INDEX.
 * Each index has exactly one writer, so it is advanced by load + store, never read-modify-write.
 * Indices and counters are int32 in JavaScript (layout.ts says why); metrics convert to unsigned.
 *
 * Never blocking the producer. `push` returns false when the ring is full and counts the frame in
 * DROPPED; it never waits and never overwrites a slot the consumer has not released (a frame
 * overwritten while the consumer reads it would be garbage, a dropped one is merely lost, which
 * TCP repairs). A frame longer than a slot is truncated to the slot, its CAPTURED_LENGTH saying
 * so, as libpcap truncates to its snap length; the decoder then treats it as a short capture.
 *
 * Sleeping. The consumer, finding the ring empty, sets CONSUMER_SLEEPING, looks at WRITE_INDEX
 * once more, and only if it is still empty waits with `Atomics.waitAsync` on the flag. The
 * producer, after publishing, loads the flag and only if it is set clears it (compare-exchange,
 * so one sleep costs one notify) and calls `Atomics.notify`. No wake-up can be lost: each side
 * stores its own word and then loads the other's, and sequential consistency forbids both loads
 * from missing the other side's store (the "store buffering" litmus test). So either the consumer
 * sees the new frame and does not sleep, or the producer sees the flag and wakes it. If the
 * producer clears the flag before the consumer reaches `waitAsync`, the wait finds the flag no
 * longer 1 and returns at once; if after, the notify finds it queued. docs/ring.md has the table.
 *
 * Hot paths allocate nothing per frame: `push` copies through a cached view of the source (see
 * `sourceViews`), `drain` hands the handler one reusable view of the ring plus an offset, and
 * every number that crosses a call is a small integer (layout.ts on indices and timestamps).
 */
import {
  CACHE_LINE_BYTES,
  ConsumerState,
  HEADER_BYTES,
  HeaderWord,
  MAX_SLOT_COUNT,
  MAX_SLOT_DATA_BYTES,
  RING_LAYOUT_VERSION,
  RING_MAGIC,
  ringByteLength,
  SLOT_HEADER_BYTES,
  slotStrideBytes,
  SlotWord,
} from './layout.js';

export interface RingOptions {
  /** Number of slots: a power of two. */
  slotCount: number;
  /** Frame bytes one slot holds: the capture's snap length. */
  slotDataBytes: number;
  /**
   * Where both indices start (a u32): 0 unless a test wants to cross 2^31 or 2^32 without first
   * pushing billions of frames. Counters are reported relative to it.
   */
  initialIndex?: number;
}

/**
 * Where a ring lives. A plain object, so it crosses to another thread in `workerData` or
 * `postMessage` (the SharedArrayBuffer is shared, not copied).
 */
export interface RingRegion {
  readonly buffer: SharedArrayBuffer;
  /** Start of the ring in `buffer`: a multiple of 64. */
  readonly byteOffset: number;
}

/**
 * Totals since the ring was created, unsigned and modulo 2^32 like the indices they come from: a
 * metrics reader takes differences `(now - before) >>> 0` at least once per 2^32 frames (7 minutes
 * at 10 million frames per second).
 */
export interface RingCounters {
  /** Frames published by the producer. */
  pushed: number;
  /** Frames the consumer has finished with. */
  popped: number;
  /** Frames refused because the ring was full. */
  dropped: number;
  /** Times the consumer found the ring empty and went to sleep. */
  sleeps: number;
  /**
   * Times the producer found the sleep flag set and notified. Can exceed `sleeps`: a consumer that
   * announced its sleep and then found a frame on its re-check does not sleep (nor count one), but
   * a busy producer may have seen the flag and notified in between.
   */
  wakeups: number;
}

/**
 * Receives one frame: `bytes[offset, offset + capturedLength)`, where `bytes` is a view of the
 * whole ring, the same object for every frame. The bytes are valid only during the call; the slot
 * is reused once the handler returns. The capture time is libpcap's: seconds since the Unix epoch
 * and microseconds within that second; `kernelChecksum` what the kernel said of the frame's TCP
 * checksum (wire/segment.ts KernelChecksum).
 */
export type FrameHandler = (
  bytes: Uint8Array,
  offset: number,
  capturedLength: number,
  wireLength: number,
  timestampSeconds: number,
  timestampMicros: number,
  kernelChecksum: number,
) => void;

/** Why `waitForFrames` returned. */
export type WakeReason =
  /** Frames were already there (or arrived while the consumer was announcing its sleep). */
  | 'frames'
  /** The consumer slept and the producer (or `stop`) woke it. */
  | 'notified'
  /** The consumer slept for the whole timeout. */
  | 'timed-out';

export interface RunOptions {
  /** Frames drained before the event loop gets a turn (timers, the upstream socket). */
  batchSize: number;
  /** Longest sleep on an empty ring before the loop wakes by itself. */
  idleTimeoutMs: number;
  /**
   * Called before each batch: a place for work done once per batch rather than per frame, such
   * as reading the clock (a millisecond time is a double, which V8 boxes into a new heap number
   * whenever it is passed to a function that is not inlined).
   */
  beforeBatch?: () => void;
}

/**
 * Lay out a new, empty ring in `buffer` at `byteOffset` (by default a new buffer of exactly
 * `ringByteLength` bytes) and return its region for `RingProducer` and `RingConsumer`. Writes
 * only the ring's own bytes. Throws RangeError for impossible options or a region that does not fit.
 */
export function createRing(
  options: RingOptions,
  buffer: SharedArrayBuffer = new SharedArrayBuffer(ringByteLength(options.slotCount, options.slotDataBytes)),
  byteOffset = 0,
): RingRegion {
  const { slotCount, slotDataBytes, initialIndex = 0 } = options;
  if (!isUint32(slotCount) || slotCount === 0 || slotCount > MAX_SLOT_COUNT || (slotCount & (slotCount - 1)) !== 0) {
    throw new RangeError(`slotCount ${slotCount} is not a power of two between 1 and ${MAX_SLOT_COUNT}`);
  }
  if (!isUint32(slotDataBytes) || slotDataBytes === 0 || slotDataBytes > MAX_SLOT_DATA_BYTES) {
    throw new RangeError(`slotDataBytes ${slotDataBytes} is not between 1 and ${MAX_SLOT_DATA_BYTES}`);
  }
  if (!isUint32(initialIndex)) throw new RangeError(`initialIndex ${initialIndex} is not a u32`);
  const byteLength = ringByteLength(slotCount, slotDataBytes);
  checkRegionBounds(buffer, byteOffset, byteLength);

  // A caller-supplied buffer may hold anything: clear the header (not the slots, which are never
  // read before a push fills them).
  new Uint8Array(buffer, byteOffset, HEADER_BYTES).fill(0);
  const control = new Int32Array(buffer, byteOffset, HEADER_BYTES / 4);
  control[HeaderWord.LAYOUT_VERSION] = RING_LAYOUT_VERSION;
  control[HeaderWord.SLOT_COUNT] = slotCount;
  control[HeaderWord.SLOT_DATA_BYTES] = slotDataBytes;
  control[HeaderWord.SLOT_STRIDE_BYTES] = slotStrideBytes(slotDataBytes);
  control[HeaderWord.INITIAL_INDEX] = initialIndex; // Int32Array stores keep the low 32 bits
  control[HeaderWord.WRITE_INDEX] = initialIndex;
  control[HeaderWord.READ_INDEX] = initialIndex;
  // Last, and atomically: a thread that sees the magic (attach loads it first) sees the rest.
  Atomics.store(control, HeaderWord.MAGIC, RING_MAGIC);
  return { buffer, byteOffset };
}

/** Read a ring's counters from any thread (metrics); see `RingCounters` for the wrap. */
export function readRingCounters(region: RingRegion): RingCounters {
  return countersOf(attach(region));
}

/** The capture thread's end of one ring. Use from one thread only. */
export class RingProducer {
  /** Frame bytes a slot holds; longer frames are truncated to this. */
  readonly slotDataBytes: number;
  readonly slotCount: number;
  private readonly ring: AttachedRing;
  /** WRITE_INDEX: only this producer writes it, so it keeps the value instead of loading it. */
  private writeIndex: number;
  /**
   * The last READ_INDEX seen. Reloading it only when the ring looks full keeps the producer off
   * the consumer's cache line for all but one push in `slotCount` while the consumer keeps up.
   */
  private readIndexSeen: number;
  /** DROPPED and WAKEUPS: only this producer writes them. */
  private dropped: number;
  private wakeups: number;
  /**
   * `sourceViews[n]` is a view of n source bytes from the last push of that length.
   * TypedArray.set copies a whole array, so copying n bytes of a frame needs an n-byte view; the
   * capture thread passes the same buffer at the same offset every time, so each length's view is
   * made once and reused instead of allocating a subarray per frame.
   */
  private readonly sourceViews: (Uint8Array | undefined)[];

  constructor(region: RingRegion) {
    this.ring = attach(region);
    this.slotDataBytes = this.ring.slotDataBytes;
    this.slotCount = this.ring.slotCount;
    const control = this.ring.control;
    this.writeIndex = Atomics.load(control, HeaderWord.WRITE_INDEX);
    this.readIndexSeen = Atomics.load(control, HeaderWord.READ_INDEX);
    this.dropped = Atomics.load(control, HeaderWord.DROPPED);
    this.wakeups = Atomics.load(control, HeaderWord.WAKEUPS);
    this.sourceViews = new Array<Uint8Array | undefined>(this.slotDataBytes + 1).fill(undefined);
  }

  /**
   * Copy `frame[offset, offset + capturedLength)` into the next slot and publish it, with the
   * frame's `wireLength`, capture time (libpcap's `tv_sec` and `tv_usec`, stored as u32) and
   * what the kernel said of its TCP checksum (`kernelChecksum`, wire/segment.ts KernelChecksum).
   * Bytes beyond `slotDataBytes` are cut off. Returns false, counting a drop, when the ring is
   * full. Throws RangeError if the range is not inside `frame` (a caller bug).
   */
  push(
    frame: Uint8Array,
    offset: number,
    capturedLength: number,
    wireLength: number,
    timestampSeconds: number,
    timestampMicros: number,
    kernelChecksum = 0,
  ): boolean {
    if (!isUint32(offset) || !isUint32(capturedLength) || offset + capturedLength > frame.length) {
      throw new RangeError(`frame range [${offset}, +${capturedLength}) is outside a ${frame.length}-byte buffer`);
    }
    const ring = this.ring;
    const write = this.writeIndex;
    if (((write - this.readIndexSeen) | 0) === ring.slotCount) {
      this.readIndexSeen = Atomics.load(ring.control, HeaderWord.READ_INDEX);
      if (((write - this.readIndexSeen) | 0) === ring.slotCount) {
        this.dropped = (this.dropped + 1) | 0;
        Atomics.store(ring.control, HeaderWord.DROPPED, this.dropped);
        return false;
      }
    }

    const slot = HEADER_BYTES + (write & ring.mask) * ring.slotStrideBytes;
    const stored = Math.min(capturedLength, ring.slotDataBytes);
    ring.bytes.set(this.sourceView(frame, offset, stored), slot + SLOT_HEADER_BYTES);
    const word = slot >>> 2;
    const words = ring.words;
    words[word + SlotWord.CAPTURED_LENGTH] = stored;
    words[word + SlotWord.WIRE_LENGTH] = wireLength;
    words[word + SlotWord.TIMESTAMP_SECONDS] = timestampSeconds;
    words[word + SlotWord.TIMESTAMP_MICROS] = timestampMicros;
    words[word + SlotWord.KERNEL_CHECKSUM] = kernelChecksum;

    this.writeIndex = (write + 1) | 0;
    Atomics.store(ring.control, HeaderWord.WRITE_INDEX, this.writeIndex); // publishes the slot
    // After publishing, never before: see "Sleeping" at the top for why this order loses no wake-up.
    if (Atomics.load(ring.control, HeaderWord.CONSUMER_SLEEPING) !== ConsumerState.AWAKE) this.wakeConsumer();
    return true;
  }

  /** This ring's counters. */
  counters(): RingCounters {
    return countersOf(this.ring);
  }

  private wakeConsumer(): void {
    const control = this.ring.control;
    // The consumer may have woken by itself since the load; then there is nobody to notify.
    if (
      Atomics.compareExchange(control, HeaderWord.CONSUMER_SLEEPING, ConsumerState.SLEEPING, ConsumerState.AWAKE) !== ConsumerState.SLEEPING
    ) {
      return;
    }
    Atomics.notify(control, HeaderWord.CONSUMER_SLEEPING);
    this.wakeups = (this.wakeups + 1) | 0;
    Atomics.store(control, HeaderWord.WAKEUPS, this.wakeups);
  }

  /** An exactly `length`-byte view of `frame` at `offset`, reused when it covers the same memory. */
  private sourceView(frame: Uint8Array, offset: number, length: number): Uint8Array {
    const cached = this.sourceViews[length];
    // Same memory, not the same object: Node's pooled Buffers share one ArrayBuffer.
    if (cached !== undefined && cached.buffer === frame.buffer && cached.byteOffset === frame.byteOffset + offset) {
      return cached;
    }
    const view = frame.subarray(offset, offset + length);
    this.sourceViews[length] = view;
    return view;
  }
}

/** A shard worker's end of one ring. Use from one thread only. */
export class RingConsumer {
  readonly slotDataBytes: number;
  readonly slotCount: number;
  private readonly ring: AttachedRing;
  /** READ_INDEX: only this consumer writes it. */
  private readIndex: number;
  private sleeps: number;
  private stopRequested = false;

  constructor(region: RingRegion) {
    this.ring = attach(region);
    this.slotDataBytes = this.ring.slotDataBytes;
    this.slotCount = this.ring.slotCount;
    this.readIndex = Atomics.load(this.ring.control, HeaderWord.READ_INDEX);
    this.sleeps = Atomics.load(this.ring.control, HeaderWord.SLEEPS);
  }

  /**
   * Hand up to `max` waiting frames, oldest first, to `handler`; returns how many. Slots are
   * released together when the batch ends, so the producer's view of free space is updated once
   * per batch instead of once per frame. If the handler throws, the frame it was given and those
   * before it are released (a frame that makes the handler throw is not handed over again) and
   * the exception propagates.
   */
  drain(handler: FrameHandler, max: number): number {
    if (!isUint32(max)) throw new RangeError(`drain max ${max} is not a u32`);
    const ring = this.ring;
    const first = this.readIndex;
    const waiting = (Atomics.load(ring.control, HeaderWord.WRITE_INDEX) - first) | 0;
    const count = Math.min(waiting, max);
    if (count === 0) return 0;
    const end = (first + count) | 0;
    const { bytes, words, mask, slotStrideBytes } = ring;
    let next = first;
    try {
      while (next !== end) {
        const slot = HEADER_BYTES + (next & mask) * slotStrideBytes;
        const word = slot >>> 2;
        next = (next + 1) | 0;
        handler(
          bytes,
          slot + SLOT_HEADER_BYTES,
          words[word + SlotWord.CAPTURED_LENGTH]!,
          words[word + SlotWord.WIRE_LENGTH]!,
          words[word + SlotWord.TIMESTAMP_SECONDS]!,
          words[word + SlotWord.TIMESTAMP_MICROS]!,
          words[word + SlotWord.KERNEL_CHECKSUM]!,
        );
      }
    } finally {
      this.readIndex = next;
      Atomics.store(ring.control, HeaderWord.READ_INDEX, next); // releases the slots to the producer
    }
    return count;
  }

  /**
   * Resolve once frames may be waiting, always on a later turn of the event loop so that timers
   * and sockets are served between batches. If the ring is empty, sleep until the producer
   * notifies or `timeoutMs` passes. While asleep a timer keeps the event loop alive (a pending
   * `Atomics.waitAsync` does not, and the worker would exit) and ends the sleep at the timeout.
   */
  waitForFrames(timeoutMs: number): Promise<WakeReason> {
    const control = this.ring.control;
    if (this.hasFrames()) return nextTurn('frames');
    Atomics.store(control, HeaderWord.CONSUMER_SLEEPING, ConsumerState.SLEEPING);
    // The re-check after announcing: a frame published before the producer could see the flag.
    if (this.hasFrames()) {
      Atomics.store(control, HeaderWord.CONSUMER_SLEEPING, ConsumerState.AWAKE);
      return nextTurn('frames');
    }
    this.sleeps = (this.sleeps + 1) | 0;
    Atomics.store(control, HeaderWord.SLEEPS, this.sleeps);
    const wait = Atomics.waitAsync(control, HeaderWord.CONSUMER_SLEEPING, ConsumerState.SLEEPING);
    // Not equal: the producer cleared the flag between the re-check and here; it has notified.
    if (!wait.async) return nextTurn('notified');
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.wakeSelf();
    }, timeoutMs);
    // Only a notify ends the wait, and every notifier (producer, timer, stop) first cleared the
    // flag with compare-exchange: we wake AWAKE.
    return wait.value.then(() => {
      clearTimeout(timer);
      return timedOut ? 'timed-out' : 'notified';
    });
  }

  /**
   * The shard worker's loop: drain up to `batchSize` frames, give the event loop a turn, repeat;
   * sleep in `waitForFrames` whenever the ring is empty. Resolves after `stop()`; frames still
   * in the ring stay there.
   */
  async run(handler: FrameHandler, options: RunOptions): Promise<void> {
    this.stopRequested = false;
    const beforeBatch = options.beforeBatch;
    while (!this.stopRequested) {
      beforeBatch?.();
      if (this.drain(handler, options.batchSize) === options.batchSize) {
        await nextTurn('frames'); // there may be more, but timers and sockets go first
      } else if (!this.stopRequested) {
        await this.waitForFrames(options.idleTimeoutMs);
      }
    }
  }

  /** End `run` after the current batch, or at once if it is asleep. Callable from the handler. */
  stop(): void {
    this.stopRequested = true;
    this.wakeSelf();
  }

  /** This ring's counters. */
  counters(): RingCounters {
    return countersOf(this.ring);
  }

  private hasFrames(): boolean {
    return Atomics.load(this.ring.control, HeaderWord.WRITE_INDEX) !== this.readIndex;
  }

  /** End our own sleep, the way the producer would (a notify from the sleeping thread works too). */
  private wakeSelf(): void {
    const control = this.ring.control;
    if (
      Atomics.compareExchange(control, HeaderWord.CONSUMER_SLEEPING, ConsumerState.SLEEPING, ConsumerState.AWAKE) === ConsumerState.SLEEPING
    ) {
      Atomics.notify(control, HeaderWord.CONSUMER_SLEEPING);
    }
  }
}

/** A validated ring region and the views both ends use. */
interface AttachedRing {
  /** The header as Int32 words, for Atomics (waitAsync works on Int32Array only). */
  readonly control: Int32Array;
  /** The whole region as u32 words, for slot headers (plain, unsigned reads). */
  readonly words: Uint32Array;
  /** The whole region as bytes, for frame data. */
  readonly bytes: Uint8Array;
  readonly slotCount: number;
  readonly mask: number;
  readonly slotDataBytes: number;
  readonly slotStrideBytes: number;
  readonly initialIndex: number;
}

/** Check that `region` holds a ring laid out by this code and make views of it. */
function attach(region: RingRegion): AttachedRing {
  const { buffer, byteOffset } = region;
  if (!(buffer instanceof SharedArrayBuffer)) throw new TypeError('a ring lives in a SharedArrayBuffer');
  checkRegionBounds(buffer, byteOffset, HEADER_BYTES);
  const control = new Int32Array(buffer, byteOffset, HEADER_BYTES / 4);
  // Magic first and atomically: createRing stores it last (see there).
  if (Atomics.load(control, HeaderWord.MAGIC) !== RING_MAGIC) {
    throw new Error(`no ring at byte ${byteOffset}: magic missing`);
  }
  const version = control[HeaderWord.LAYOUT_VERSION]!;
  if (version !== RING_LAYOUT_VERSION) {
    throw new Error(`ring at byte ${byteOffset} has layout version ${version}, this code knows ${RING_LAYOUT_VERSION}`);
  }
  const slotCount = control[HeaderWord.SLOT_COUNT]!;
  const slotDataBytes = control[HeaderWord.SLOT_DATA_BYTES]!;
  const stride = control[HeaderWord.SLOT_STRIDE_BYTES]!;
  if (stride !== slotStrideBytes(slotDataBytes)) throw new Error(`ring at byte ${byteOffset} has an inconsistent header`);
  const byteLength = ringByteLength(slotCount, slotDataBytes);
  checkRegionBounds(buffer, byteOffset, byteLength);
  return {
    control,
    words: new Uint32Array(buffer, byteOffset, byteLength / 4),
    bytes: new Uint8Array(buffer, byteOffset, byteLength),
    slotCount,
    mask: slotCount - 1,
    slotDataBytes,
    slotStrideBytes: stride,
    initialIndex: control[HeaderWord.INITIAL_INDEX]!,
  };
}

function countersOf(ring: AttachedRing): RingCounters {
  const control = ring.control;
  const load = (word: number): number => Atomics.load(control, word) >>> 0;
  return {
    pushed: (Atomics.load(control, HeaderWord.WRITE_INDEX) - ring.initialIndex) >>> 0,
    popped: (Atomics.load(control, HeaderWord.READ_INDEX) - ring.initialIndex) >>> 0,
    dropped: load(HeaderWord.DROPPED),
    sleeps: load(HeaderWord.SLEEPS),
    wakeups: load(HeaderWord.WAKEUPS),
  };
}

function checkRegionBounds(buffer: SharedArrayBuffer, byteOffset: number, byteLength: number): void {
  if (!isUint32(byteOffset) || byteOffset % CACHE_LINE_BYTES !== 0) {
    throw new RangeError(`ring offset ${byteOffset} is not a multiple of ${CACHE_LINE_BYTES}`);
  }
  if (byteOffset + byteLength > buffer.byteLength) {
    throw new RangeError(`a ${byteLength}-byte ring at byte ${byteOffset} does not fit in a ${buffer.byteLength}-byte buffer`);
  }
}

/** `x >>> 0 === x` holds exactly for the integers 0 … 2^32-1 (not NaN, fractions or negatives). */
function isUint32(x: number): boolean {
  return x >>> 0 === x;
}

/**
 * A promise resolved from the event loop's check phase. setImmediate, not a microtask: a loop of
 * microtasks would never let I/O callbacks and timers run.
 */
function nextTurn(reason: WakeReason): Promise<WakeReason> {
  return new Promise((resolve) => setImmediate(resolve, reason));
}
