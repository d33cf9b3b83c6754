/**
 * The ring between two real threads: the test's main thread produces, a worker_threads Worker
 * (test/support/ring-consumer-worker.ts) consumes with `RingConsumer.run`. The producer pushes a
 * million sequence frames in bursts of random size with pauses between some, so the consumer both
 * falls behind (the ring fills and frames are dropped) and runs dry (it sleeps and must be
 * notified). Every frame must arrive exactly once, in order, intact, or be counted as dropped.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { createRing, RingProducer } from '../../../src/ring/ring.js';
import { Prng } from '../../support/prng.js';
import {
  sequenceFrameLength,
  sequenceTimestampMicros,
  sequenceTimestampSeconds,
  sequenceWireLength,
  writeSequenceFrame,
} from '../../support/frame-sequence.js';
import type { ConsumerWorkerData, ConsumerWorkerReport } from '../../support/ring-consumer-worker.js';

const TOTAL = 1_000_000;
const MAX_FRAME_LENGTH = 200;
const SLOT_COUNT = 1024;
/** Bursts up to four rings' worth: the consumer cannot always keep up, so some frames drop. */
const MAX_BURST = 4 * SLOT_COUNT;
const TICK_INTERVAL_MS = 10;
const TEST_TIMEOUT_MS = 20_000;

it('a million frames from the main thread to a worker: in order, exactly once, or counted as dropped', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const region = createRing({ slotCount: SLOT_COUNT, slotDataBytes: MAX_FRAME_LENGTH });
  const received = new SharedArrayBuffer(TOTAL);
  const droppedMarks = new SharedArrayBuffer(TOTAL);
  const workerData: ConsumerWorkerData = {
    region,
    total: TOTAL,
    maxFrameLength: MAX_FRAME_LENGTH,
    received,
    dropped: droppedMarks,
    tickIntervalMs: TICK_INTERVAL_MS,
  };
  const worker = new Worker(new URL('../../support/ring-consumer-worker.js', import.meta.url), { workerData });
  try {
    const messages = workerMessages(worker);
    assert.equal(await messages.next(), 'ready');

    const producer = new RingProducer(region);
    const dropped = new Uint8Array(droppedMarks);
    const staging = new Uint8Array(MAX_FRAME_LENGTH);
    const rng = new Prng(0x5eed);
    const started = performance.now();
    let refused = 0;
    for (let sequence = 0; sequence < TOTAL; ) {
      const burstEnd = Math.min(TOTAL, sequence + 1 + rng.below(MAX_BURST));
      for (; sequence < burstEnd; sequence++) {
        const length = sequenceFrameLength(sequence, MAX_FRAME_LENGTH);
        writeSequenceFrame(staging, 0, sequence, length);
        // Marked before any later frame is pushed: the worker relies on that order.
        const wireLength = sequenceWireLength(sequence, length);
        if (!producer.push(staging, 0, length, wireLength, sequenceTimestampSeconds(sequence), sequenceTimestampMicros(sequence))) {
          dropped[sequence] = 1;
          refused++;
        }
      }
      // A pause long enough for the worker to drain the ring and fall asleep, after some bursts.
      if (rng.below(4) === 0) await sleep(1 + rng.below(3));
    }

    const report = (await messages.next()) as ConsumerWorkerReport;
    const elapsedMs = performance.now() - started;
    assert.deepEqual(report.errors, []);

    const receivedMarks = new Uint8Array(received);
    let accounted = 0;
    for (let s = 0; s < TOTAL; s++) {
      if (receivedMarks[s]! + dropped[s]! !== 1) assert.fail(`frame ${s}: received ${receivedMarks[s]}, dropped ${dropped[s]}`);
      accounted++;
    }
    assert.equal(accounted, TOTAL);

    const counters = producer.counters();
    assert.equal(report.delivered, TOTAL - refused);
    assert.equal(counters.pushed, report.delivered);
    assert.equal(counters.popped, report.delivered);
    assert.equal(counters.dropped, refused);
    assert.ok(counters.sleeps >= 1, 'the consumer slept');
    assert.ok(counters.wakeups >= 1, 'the producer notified it');
    assert.ok(report.wakeReasons.notified >= 1, `woken by a notify: ${JSON.stringify(report.wakeReasons)}`);
    // The run loop leaves the event loop turning: a 10 ms timer fired at a good part of its rate.
    assert.ok(report.ticks >= elapsedMs / TICK_INTERVAL_MS / 4, `${report.ticks} ticks in ${Math.round(elapsedMs)} ms`);
  } finally {
    await worker.terminate();
  }
});

/** The worker's messages in order; a worker error or early exit rejects the pending `next()`. */
function workerMessages(worker: Worker): { next(): Promise<unknown> } {
  const queue: unknown[] = [];
  let waiting: { resolve(value: unknown): void; reject(error: Error): void } | null = null;
  let failure: Error | null = null;
  worker.on('message', (message: unknown) => {
    if (waiting !== null) {
      waiting.resolve(message);
      waiting = null;
    } else {
      queue.push(message);
    }
  });
  const fail = (error: Error): void => {
    failure = error;
    waiting?.reject(error);
    waiting = null;
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`worker exited with code ${code}`)));
  return {
    next: () => {
      if (queue.length > 0) return Promise.resolve(queue.shift());
      if (failure !== null) return Promise.reject(failure);
      return new Promise((resolve, reject) => (waiting = { resolve, reject }));
    },
  };
}
