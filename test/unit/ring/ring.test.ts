/**
 * The SPSC frame ring in one thread: producer and consumer take turns, so every interleaving of
 * pushes and drains the tests choose is exactly what happens. Frames come from frame-sequence.ts
 * and are verified byte by byte; randomness is seeded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CACHE_LINE_BYTES,
  HEADER_BYTES,
  HeaderWord,
  RING_LAYOUT_VERSION,
  RING_MAGIC,
  ringByteLength,
  SLOT_HEADER_BYTES,
  slotStrideBytes,
} from '../../../src/ring/layout.js';
import { createRing, readRingCounters, RingConsumer, RingProducer, type RingOptions, type RingRegion } from '../../../src/ring/ring.js';
import { Prng } from '../../support/prng.js';
import {
  sequenceFrameLength,
  sequenceFrameMismatch,
  sequenceTimestampMicros,
  sequenceTimestampSeconds,
  sequenceWireLength,
  writeSequenceFrame,
} from '../../support/frame-sequence.js';

/**
 * A ring with both ends, pushing sequence frames from one reused staging buffer (as the capture
 * thread does) and checking that what comes out is exactly what went in, in order.
 */
class Harness {
  readonly region: RingRegion;
  readonly producer: RingProducer;
  readonly consumer: RingConsumer;
  /** Sequence numbers pushed and not yet drained, oldest first. */
  readonly inFlight: number[] = [];
  nextSequence = 0;
  delivered = 0;
  refused = 0;
  private readonly staging: Uint8Array;

  /** Frames are up to `maxFrameLength` bytes, which may exceed the slot (they are then truncated). */
  constructor(
    options: RingOptions,
    readonly maxFrameLength: number,
    buffer?: SharedArrayBuffer,
    byteOffset?: number,
  ) {
    this.region = buffer === undefined ? createRing(options) : createRing(options, buffer, byteOffset);
    this.producer = new RingProducer(this.region);
    this.consumer = new RingConsumer(this.region);
    this.staging = new Uint8Array(maxFrameLength + 64);
  }

  /** Push the next sequence frame, at `stagingOffset` in the staging buffer; false if refused. */
  push(stagingOffset = 0): boolean {
    const sequence = this.nextSequence++;
    const length = sequenceFrameLength(sequence, this.maxFrameLength);
    writeSequenceFrame(this.staging, stagingOffset, sequence, length);
    const accepted = this.producer.push(
      this.staging,
      stagingOffset,
      length,
      sequenceWireLength(sequence, length),
      sequenceTimestampSeconds(sequence),
      sequenceTimestampMicros(sequence),
    );
    if (accepted) this.inFlight.push(sequence);
    else this.refused++;
    return accepted;
  }

  /** Drain up to `max` frames, checking each against the next sequence number in flight. */
  drain(max: number): number {
    return this.consumer.drain((bytes, offset, capturedLength, wireLength, seconds, micros) => {
      const sequence = this.inFlight.shift();
      assert.notEqual(sequence, undefined, 'a frame came out that was never pushed');
      const s = sequence!;
      const sent = sequenceFrameLength(s, this.maxFrameLength);
      assert.equal(capturedLength, Math.min(sent, this.consumer.slotDataBytes), `captured length of frame ${s}`);
      assert.equal(wireLength, sequenceWireLength(s, sent), `wire length of frame ${s}`);
      assert.equal(seconds, sequenceTimestampSeconds(s), `timestamp seconds of frame ${s}`);
      assert.equal(micros, sequenceTimestampMicros(s), `timestamp microseconds of frame ${s}`);
      assert.equal(sequenceFrameMismatch(bytes, offset, s, capturedLength), -1, `bytes of frame ${s}`);
      this.delivered++;
    }, max);
  }
}

describe('ring in one thread', () => {
  it('goes around the ring ~100 times with random push and drain sizes, every frame intact and in order', () => {
    const rng = new Prng(4_2024);
    const slotCount = 64;
    const h = new Harness({ slotCount, slotDataBytes: 300 }, 300);
    while (h.delivered < 100 * slotCount) {
      const pushes = rng.below(slotCount + 16); // sometimes more than fits: drops
      for (let i = 0; i < pushes; i++) h.push(rng.below(4) === 0 ? rng.below(64) : 0);
      h.drain(1 + rng.below(slotCount + 8));
    }
    while (h.drain(slotCount) > 0);
    assert.equal(h.inFlight.length, 0);
    assert.ok(h.refused > 0, 'the random schedule should fill the ring sometimes');
    assert.deepEqual(h.consumer.counters(), {
      pushed: h.delivered,
      popped: h.delivered,
      dropped: h.refused,
      sleeps: 0,
      wakeups: 0,
    });
  });

  it('refuses a push when full, counts the drop, and overwrites nothing', () => {
    const h = new Harness({ slotCount: 8, slotDataBytes: 128 }, 128);
    for (let i = 0; i < 8; i++) assert.equal(h.push(), true);
    assert.equal(h.push(), false);
    assert.equal(h.push(), false);
    assert.equal(h.producer.counters().dropped, 2);
    h.inFlight.length = 0;
    // The eight accepted frames come out untouched by the refused ones (sequences 8 and 9).
    for (let s = 0; s < 8; s++) h.inFlight.push(s);
    assert.equal(h.drain(100), 8);
    assert.equal(h.push(), true, 'room again once drained');
    assert.equal(h.drain(100), 1);
    assert.deepEqual(readRingCounters(h.region), {
      pushed: 9,
      popped: 9,
      dropped: 2,
      sleeps: 0,
      wakeups: 0,
    });
  });

  it('truncates a frame longer than the slot to the slot, keeping its wire length, timestamp and kernel checksum word', () => {
    const region = createRing({ slotCount: 4, slotDataBytes: 100 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    const frame = new Uint8Array(1500);
    writeSequenceFrame(frame, 0, 7, 1500);
    // Seconds as far as a u32 goes (the year 2106), not just to 2^31.
    assert.equal(producer.push(frame, 0, 1500, 1514, 2 ** 32 - 1, 999_999, 2), true);
    let seen = 0;
    consumer.drain((bytes, offset, capturedLength, wireLength, seconds, micros, kernelChecksum) => {
      assert.equal(capturedLength, 100);
      assert.equal(wireLength, 1514);
      assert.equal(sequenceFrameMismatch(bytes, offset, 7, 100), -1);
      assert.equal(seconds, 2 ** 32 - 1);
      assert.equal(micros, 999_999);
      assert.equal(kernelChecksum, 2);
      seen++;
    }, 1);
    assert.equal(seen, 1);
  });

  for (const [start, boundary] of [
    [2 ** 31 - 40, 'the int32 sign change at 2^31'],
    [2 ** 32 - 40, 'the u32 wrap at 2^32'],
  ] as const) {
    it(`crosses ${boundary}: order, fullness and counters stay right`, () => {
      const slotCount = 16;
      const h = new Harness({ slotCount, slotDataBytes: 64, initialIndex: start }, 64);
      const rng = new Prng(32);
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < slotCount; i++) assert.equal(h.push(), true);
        assert.equal(h.push(), false, 'full at any index');
        h.drain(1 + rng.below(slotCount));
        while (h.drain(slotCount) > 0);
      }
      const write = Atomics.load(new Int32Array(h.region.buffer), HeaderWord.WRITE_INDEX) >>> 0;
      assert.equal(write, (start + 10 * slotCount) % 2 ** 32);
      assert.deepEqual(h.consumer.counters(), { pushed: 160, popped: 160, dropped: 10, sleeps: 0, wakeups: 0 });
    });
  }

  it('writes nothing outside its region or past a slot’s data: canaries survive heavy use', () => {
    const canary = 0xa5;
    const guard = 4 * CACHE_LINE_BYTES;
    const options = { slotCount: 32, slotDataBytes: 100 }; // 116-byte slots padded to 128
    const ringBytes = ringByteLength(options.slotCount, options.slotDataBytes);
    const buffer = new SharedArrayBuffer(guard + ringBytes + guard);
    const all = new Uint8Array(buffer).fill(canary);
    // Frames up to 180 bytes: many are longer than the slot and must be cut, not spill over.
    const h = new Harness(options, 180, buffer, guard);
    const rng = new Prng(0xca4a);
    while (h.nextSequence < 200 * options.slotCount) {
      const pushes = rng.below(40);
      for (let i = 0; i < pushes; i++) h.push(rng.below(50));
      h.drain(1 + rng.below(40));
    }
    const stride = slotStrideBytes(options.slotDataBytes);
    const isCanary = (from: number, to: number): boolean => all.subarray(from, to).every((b) => b === canary);
    assert.ok(isCanary(0, guard), 'bytes before the ring');
    assert.ok(isCanary(guard + ringBytes, all.length), 'bytes after the ring');
    for (let slot = 0; slot < options.slotCount; slot++) {
      const dataEnd = guard + HEADER_BYTES + slot * stride + SLOT_HEADER_BYTES + options.slotDataBytes;
      assert.ok(isCanary(dataEnd, guard + HEADER_BYTES + (slot + 1) * stride), `padding of slot ${slot}`);
    }
  });

  it('copies from buffers that change, move, or share memory with an earlier one', () => {
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    const pool = new ArrayBuffer(256);
    const cases: [Uint8Array, number][] = [
      [new Uint8Array(pool, 0, 128), 0],
      [new Uint8Array(pool, 0, 128), 0], // another view of the same memory
      [new Uint8Array(pool, 64, 128), 0], // same length, different memory
      [new Uint8Array(pool, 0, 128), 64], // the same memory reached through an offset
      [new Uint8Array(64), 0],
    ];
    cases.forEach(([frame, offset], sequence) => {
      writeSequenceFrame(frame, offset, sequence, 40);
      assert.equal(producer.push(frame, offset, 40, 40, 0, 0), true);
      let checked = false;
      consumer.drain((bytes, at, length) => {
        assert.equal(sequenceFrameMismatch(bytes, at, sequence, length), -1, `case ${sequence}`);
        checked = true;
      }, 1);
      assert.ok(checked);
    });
  });

  it('releases the frame a handler threw on, and keeps the rest', () => {
    const h = new Harness({ slotCount: 8, slotDataBytes: 32 }, 32);
    for (let i = 0; i < 5; i++) h.push();
    let calls = 0;
    assert.throws(
      () =>
        h.consumer.drain(() => {
          if (++calls === 2) throw new Error('handler failed');
        }, 8),
      /handler failed/,
    );
    h.inFlight.splice(0, 2);
    assert.equal(h.drain(8), 3, 'frames 2, 3 and 4 come next');
    assert.equal(h.consumer.counters().popped, 5);
  });

  it('rejects impossible options, misplaced regions and out-of-range frames', () => {
    assert.throws(() => createRing({ slotCount: 12, slotDataBytes: 64 }), RangeError);
    assert.throws(() => createRing({ slotCount: 0, slotDataBytes: 64 }), RangeError);
    assert.throws(() => createRing({ slotCount: 8, slotDataBytes: 0 }), RangeError);
    assert.throws(() => createRing({ slotCount: 8, slotDataBytes: 300_000 }), RangeError);
    assert.throws(() => createRing({ slotCount: 8, slotDataBytes: 64, initialIndex: -1 }), RangeError);
    const small = new SharedArrayBuffer(ringByteLength(8, 64));
    assert.throws(() => createRing({ slotCount: 8, slotDataBytes: 64 }, small, 64), RangeError, 'does not fit');
    assert.throws(() => createRing({ slotCount: 8, slotDataBytes: 64 }, new SharedArrayBuffer(8192), 32), RangeError);

    assert.throws(() => new RingConsumer({ buffer: new SharedArrayBuffer(4096), byteOffset: 0 }), /magic/);
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    const control = new Int32Array(region.buffer);
    control[HeaderWord.LAYOUT_VERSION] = 99;
    assert.throws(() => new RingProducer(region), /layout version 99/);
    control[HeaderWord.LAYOUT_VERSION] = RING_LAYOUT_VERSION;
    control[HeaderWord.SLOT_COUNT] = 1 << 20;
    assert.throws(() => new RingProducer(region), /does not fit/);
    control[HeaderWord.SLOT_COUNT] = 8;
    assert.equal(control[HeaderWord.MAGIC], RING_MAGIC);

    const producer = new RingProducer(region);
    const frame = new Uint8Array(100);
    assert.throws(() => producer.push(frame, 60, 41, 41, 0, 0), RangeError);
    assert.throws(() => producer.push(frame, -1, 10, 10, 0, 0), RangeError);
    assert.throws(() => new RingConsumer(region).drain(() => {}, 1.5), RangeError);
    assert.equal(producer.counters().pushed, 0, 'a rejected push publishes nothing');
  });
});

describe('sleeping and waking in one thread', () => {
  const frame = new Uint8Array(64);

  it('returns "frames" without sleeping when frames are waiting', async () => {
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    new RingProducer(region).push(frame, 0, 64, 64, 0, 0);
    const consumer = new RingConsumer(region);
    assert.equal(await consumer.waitForFrames(10_000), 'frames');
    assert.equal(consumer.counters().sleeps, 0);
  });

  it('sleeps on an empty ring and is notified by the next push, once', async () => {
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    const woken = consumer.waitForFrames(10_000);
    producer.push(frame, 0, 64, 64, 0, 0);
    producer.push(frame, 0, 64, 64, 0, 0); // the flag is clear now: no second notify
    assert.equal(await woken, 'notified');
    assert.deepEqual(consumer.counters(), { pushed: 2, popped: 0, dropped: 0, sleeps: 1, wakeups: 1 });
  });

  it('wakes by itself after the timeout, and the producer does not notify a consumer that is awake', async () => {
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    const started = performance.now();
    assert.equal(await consumer.waitForFrames(30), 'timed-out');
    assert.ok(performance.now() - started >= 25);
    producer.push(frame, 0, 64, 64, 0, 0);
    assert.deepEqual(consumer.counters(), { pushed: 1, popped: 0, dropped: 0, sleeps: 1, wakeups: 0 });
  });

  it('run drains, sleeps, wakes on pushes and ends promptly on stop', async () => {
    const region = createRing({ slotCount: 8, slotDataBytes: 64 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    let received = 0;
    const running = consumer.run(() => received++, { batchSize: 4, idleTimeoutMs: 60_000 });
    for (let burst = 0; burst < 3; burst++) {
      for (let i = 0; i < 6; i++) assert.ok(producer.push(frame, 0, 64, 64, 0, 0));
      while (received < 6 * (burst + 1)) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const started = performance.now();
    consumer.stop();
    await running;
    assert.ok(performance.now() - started < 1000, 'stop wakes a sleeping run instead of waiting out its timeout');
    const counters = consumer.counters();
    assert.equal(counters.popped, 18);
    assert.ok(counters.sleeps >= 3 && counters.wakeups >= 2, JSON.stringify(counters));
  });

  it('run calls beforeBatch once before each batch, never between frames of one batch', async () => {
    const region = createRing({ slotCount: 16, slotDataBytes: 64 });
    const producer = new RingProducer(region);
    const consumer = new RingConsumer(region);
    for (let i = 0; i < 10; i++) assert.ok(producer.push(frame, 0, 64, 64, 0, 0));
    const batchOf: number[] = [];
    let batch = 0;
    const running = consumer.run(
      () => {
        batchOf.push(batch);
        if (batchOf.length === 10) consumer.stop();
      },
      { batchSize: 4, idleTimeoutMs: 60_000, beforeBatch: () => batch++ },
    );
    await running;
    // Batches of 4, 4 and 2 frames.
    assert.deepEqual(batchOf, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
  });
});
