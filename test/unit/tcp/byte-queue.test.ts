/**
 * ByteQueue: bytes appended at the end come out at the start, in order; the buffer grows by
 * doubling from 512 bytes, compacts in place once the consumed prefix is at least as long as what
 * is left and the new bytes fit, and
 * is the same object across append/consume cycles of bounded size. Contents are checked against
 * a plain model under seeded random use.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool, ByteQueue } from '../../../src/tcp/byte-queue.js';
import { Prng } from '../../support/prng.js';

/** `length` bytes counting up from `first` (mod 256), so any misplaced byte shows. */
function counting(first: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);
}

function contents(queue: ByteQueue): number[] {
  return Array.from(queue.bytes.subarray(queue.start, queue.end));
}

describe('ByteQueue', () => {
  it('starts empty without a buffer of its own, shared by every empty queue', () => {
    const a = new ByteQueue();
    const b = new ByteQueue();
    assert.equal(a.length, 0);
    assert.equal(a.bytes.length, 0);
    assert.equal(a.bytes, b.bytes);
  });

  it('hands out what was appended, in order, from `start`', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 10), 0, 10);
    queue.append(counting(100, 20), 5, 7); // a slice: bytes 105 … 111
    assert.equal(queue.length, 17);
    assert.deepEqual(contents(queue), [...counting(0, 10), ...counting(105, 7)]);
    queue.consume(4);
    assert.equal(queue.length, 13);
    assert.equal(queue.bytes[queue.start], 4);
    assert.deepEqual(contents(queue), [...counting(4, 6), ...counting(105, 7)]);
  });

  it('rewinds to offset 0 once everything is consumed, keeping its buffer', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 300), 0, 300);
    const buffer = queue.bytes;
    queue.consume(100);
    assert.equal(queue.start, 100);
    queue.consume(200);
    assert.equal(queue.start, 0);
    assert.equal(queue.end, 0);
    assert.equal(queue.length, 0);
    assert.equal(queue.bytes, buffer);
    queue.append(counting(7, 3), 0, 3);
    assert.equal(queue.bytes, buffer);
    assert.deepEqual(contents(queue), [7, 8, 9]);
  });

  it('allocates 512 bytes first, then doubles to fit', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 1), 0, 1);
    assert.equal(queue.bytes.length, 512);
    queue.append(counting(1, 511), 0, 511);
    assert.equal(queue.bytes.length, 512, 'exactly full: no growth');
    queue.append(counting(0, 1), 0, 1);
    assert.equal(queue.bytes.length, 1024);
    queue.append(counting(1, 1024), 0, 1024);
    assert.equal(queue.bytes.length, 2048);
    assert.equal(queue.length, 1537);
    assert.deepEqual(contents(queue), [...counting(0, 513), ...counting(1, 1024)]);

    const big = new ByteQueue();
    big.append(counting(0, 5000), 0, 5000); // 512 → 1024 → 2048 → 4096 → 8192 in one step
    assert.equal(big.bytes.length, 8192);
    assert.deepEqual(contents(big), Array.from(counting(0, 5000)));
  });

  it('grows around the unconsumed bytes only, moving them to offset 0', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 500), 0, 500);
    queue.consume(100); // start 100 < 256: not compacted, the buffer grows
    queue.append(counting(200, 300), 0, 300);
    assert.equal(queue.start, 0);
    assert.equal(queue.length, 700);
    assert.equal(queue.bytes.length, 1024);
    assert.deepEqual(contents(queue), [...counting(100, 400), ...counting(200, 300)]);
  });

  it('compacts in place when the consumed prefix is at least as long as the rest and the new bytes fit', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 400), 0, 400);
    const buffer = queue.bytes;
    queue.consume(256); // 256 consumed, 144 left
    queue.append(counting(50, 300), 0, 300); // 144 + 300 ≤ 512
    assert.equal(queue.bytes, buffer, 'no new buffer');
    assert.equal(queue.start, 0);
    assert.equal(queue.end, 444);
    assert.deepEqual(contents(queue), [...counting(256, 144), ...counting(50, 300)]);
  });

  it('grows rather than compacts when the unconsumed bytes and the new ones do not fit', () => {
    const queue = new ByteQueue();
    queue.append(counting(0, 512), 0, 512);
    queue.consume(300);
    queue.append(counting(9, 400), 0, 400); // 212 + 400 > 512
    assert.equal(queue.bytes.length, 1024);
    assert.deepEqual(contents(queue), [...counting(300, 212), ...counting(9, 400)]);
  });

  it('keeps one buffer across 10,000 cycles whose queued bytes stay within half of it', () => {
    // A flow's receive queue or a DNS upstream's partial answer: bytes come in, whole messages go out.
    const prng = new Prng(0x5eed_0001);
    const queue = new ByteQueue();
    queue.append(counting(0, 1), 0, 1);
    const buffer = queue.bytes;
    let next = 1;
    let expected = 0;
    for (let cycle = 0; cycle < 10_000; cycle++) {
      const n = 1 + prng.below(128);
      queue.append(counting(next, n), 0, n);
      next = (next + n) & 0xff;
      // Consume down to at most 128 bytes: never more than 256 (half the buffer) are held.
      const keep = prng.below(Math.min(queue.length, 128) + 1);
      const drop = queue.length - keep;
      assert.equal(queue.bytes[queue.start], expected, `cycle ${cycle}`);
      queue.consume(drop);
      expected = (expected + drop) & 0xff;
      assert.equal(queue.bytes, buffer, `cycle ${cycle}: a new buffer with ${queue.length} bytes queued`);
    }
    assert.equal(queue.bytes.length, 512);
  });

  it('grows once, then keeps one buffer across cycles whose queued bytes stay above half of it', () => {
    // A send queue kept near its bound by a streaming answer: 100 bytes in, 100 acknowledged.
    // Compacting 300 bytes to free 200 would cost more than it frees, so the queue doubles once,
    // and from then on compacts in place.
    const queue = new ByteQueue();
    queue.append(counting(0, 300), 0, 300);
    let allocations = 0;
    let last = queue.bytes;
    for (let cycle = 0; cycle < 100; cycle++) {
      queue.append(counting(cycle, 100), 0, 100);
      queue.consume(100);
      if (queue.bytes !== last) {
        allocations++;
        last = queue.bytes;
      }
    }
    assert.equal(allocations, 1);
    assert.equal(queue.bytes.length, 1024);
    assert.equal(queue.length, 300);
  });

  it('preserves its contents through 20,000 seeded random appends and consumes', () => {
    const prng = new Prng(0x5eed_0002);
    const queue = new ByteQueue();
    const source = prng.fill(new Uint8Array(4096));
    /** The model: every byte appended and not yet consumed, oldest first. */
    let model: number[] = [];
    let largest = 0;
    for (let step = 0; step < 20_000; step++) {
      if (prng.below(2) === 0) {
        // Mostly small appends, sometimes large ones that force growth.
        const n = prng.below(8) === 0 ? prng.below(3000) : prng.below(200);
        const offset = prng.below(source.length - n + 1);
        queue.append(source, offset, n);
        for (let i = 0; i < n; i++) model.push(source[offset + i]!);
      } else {
        const n = prng.below(queue.length + 1);
        queue.consume(n);
        model = model.slice(n);
      }
      assert.equal(queue.length, model.length, `step ${step}`);
      assert.ok(queue.start >= 0 && queue.start <= queue.end && queue.end <= queue.bytes.length, `step ${step}`);
      if (step % 50 === 0 || queue.length < 64) assert.deepEqual(contents(queue), model, `step ${step}`);
      largest = Math.max(largest, queue.length);
    }
    assert.deepEqual(contents(queue), model);
    // Doubling: the buffer is never more than twice what was ever queued (and at least 512).
    assert.ok(queue.bytes.length <= Math.max(512, 2 * largest), `${queue.bytes.length} for at most ${largest} queued`);
  });
});

describe('BufferPool', () => {
  it("passes a recycled queue's buffer to the next queue that needs one of its size", () => {
    const pool = new BufferPool(64 * 1024);
    const first = new ByteQueue();
    first.pool = pool;
    first.append(counting(0, 4000), 0, 4000);
    const buffer = first.bytes;
    assert.equal(buffer.length, 4096);
    first.recycle();
    assert.equal(first.length, 0);
    assert.equal(first.bytes.length, 0, 'the recycled queue keeps no reference to its buffer');
    const next = new ByteQueue();
    next.pool = pool;
    next.append(counting(9, 3000), 0, 3000);
    assert.equal(next.bytes, buffer);
    assert.deepEqual(contents(next), [...counting(9, 3000)]);
  });

  it('takes back the smaller buffer a queue grows out of, and gives it to the next small queue', () => {
    const pool = new BufferPool(64 * 1024);
    const queue = new ByteQueue();
    queue.pool = pool;
    queue.append(counting(0, 100), 0, 100);
    const small = queue.bytes;
    queue.append(counting(100, 1000), 0, 1000);
    assert.equal(queue.bytes.length, 2048);
    assert.deepEqual(contents(queue), [...counting(0, 100), ...counting(100, 1000)]);
    assert.equal(pool.take(512), small);
  });

  it('keeps at most bytesPerClass bytes of each size, and nothing larger than 256 KiB', () => {
    const pool = new BufferPool(8192);
    const given = Array.from({ length: 5 }, () => new Uint8Array(4096));
    for (const bytes of given) pool.give(bytes);
    assert.equal(pool.take(4096), given[1]);
    assert.equal(pool.take(4096), given[0]);
    assert.notEqual(pool.take(4096), given[2], 'a third buffer was over the cap and not kept');
    const huge = new Uint8Array(512 * 1024);
    pool.give(huge);
    assert.notEqual(pool.take(512 * 1024), huge);
  });

  it('ignores buffers that are not one of its sizes', () => {
    const pool = new BufferPool(64 * 1024);
    const odd = new Uint8Array(3000);
    pool.give(odd);
    for (const size of [512, 1024, 2048, 4096]) assert.notEqual(pool.take(size), odd);
  });
});
