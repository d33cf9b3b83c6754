/**
 * The consumer half of test/unit/ring/ring.fuzz.test.ts, run as a worker thread: drains the
 * ring with `RingConsumer.run` and verifies every frame against its sequence number. Not a test
 * file itself (node --test runs every .js under test/ when given a directory): in the main thread
 * it does nothing.
 *
 * Protocol: workerData is a `ConsumerWorkerData`; the worker posts 'ready' once attached, then one
 * `ConsumerWorkerReport` when every frame is accounted for (delivered here or dropped by the
 * producer), and exits.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { type FrameHandler, RingConsumer, type RingRegion, type WakeReason } from '../../src/ring/ring.js';
import {
  sequenceFrameLength,
  sequenceFrameMismatch,
  sequenceTimestampMicros,
  sequenceTimestampSeconds,
  sequenceWireLength,
} from './frame-sequence.js';

export interface ConsumerWorkerData {
  region: RingRegion;
  /** Frames the producer will offer, sequences 0 … total - 1. */
  total: number;
  /** Longest frame the producer makes (frame-sequence.ts). */
  maxFrameLength: number;
  /** One byte per sequence, set here when that frame arrives. */
  received: SharedArrayBuffer;
  /**
   * One byte per sequence, set by the producer when the ring refused that frame, before it pushes
   * any later one; so once a frame is seen here, the marks of every sequence before it are too.
   */
  dropped: SharedArrayBuffer;
  /** Interval of the timer that proves the event loop keeps turning while frames flow. */
  tickIntervalMs: number;
}

export interface ConsumerWorkerReport {
  delivered: number;
  /** The first few problems found, if any. */
  errors: string[];
  /** How often the interval timer ran during the test. */
  ticks: number;
  wakeReasons: Record<WakeReason, number>;
}

const MAX_ERRORS = 10;
const BATCH_SIZE = 256;
/** Long, so that a missed notify would show as a stall rather than be papered over. */
const IDLE_TIMEOUT_MS = 1000;

if (!isMainThread) {
  const data = workerData as ConsumerWorkerData;
  const consumer = new RingConsumer(data.region);
  const received = new Uint8Array(data.received);
  const dropped = new Uint8Array(data.dropped);
  const report: ConsumerWorkerReport = {
    delivered: 0,
    errors: [],
    ticks: 0,
    wakeReasons: { frames: 0, notified: 0, 'timed-out': 0 },
  };
  const fail = (message: string): void => {
    if (report.errors.length < MAX_ERRORS) report.errors.push(message);
  };
  let last = -1;

  // The frame must be the first sequence after the last one that the producer did not drop.
  const handle: FrameHandler = (bytes, offset, capturedLength, wireLength, seconds, micros) => {
    let sequence = last + 1;
    while (sequence < data.total && dropped[sequence] !== 0) sequence++;
    if (sequence === data.total) {
      fail(`a frame after ${last}, which was the last one not dropped`);
      return;
    }
    if (received[sequence] !== 0) fail(`frame ${sequence} delivered twice`);
    received[sequence] = 1;
    last = sequence;
    report.delivered++;
    const sent = sequenceFrameLength(sequence, data.maxFrameLength);
    if (capturedLength !== sent) fail(`frame ${sequence}: captured length ${capturedLength}, sent ${sent}`);
    else if (sequenceFrameMismatch(bytes, offset, sequence, sent) !== -1) fail(`frame ${sequence}: wrong bytes`);
    if (wireLength !== sequenceWireLength(sequence, sent)) fail(`frame ${sequence}: wire length ${wireLength}`);
    if (seconds !== sequenceTimestampSeconds(sequence) || micros !== sequenceTimestampMicros(sequence)) {
      fail(`frame ${sequence}: timestamp ${seconds}.${micros}`);
    }
  };

  // The timer also ends the run: once every frame is delivered or counted as dropped.
  const ticker = setInterval(() => {
    report.ticks++;
    const counters = consumer.counters();
    if (report.delivered + counters.dropped === data.total && counters.popped === counters.pushed) consumer.stop();
  }, data.tickIntervalMs);

  // A spy recording why each sleep of `run` ended (run calls waitForFrames through `this`).
  const waitForFrames = consumer.waitForFrames.bind(consumer);
  consumer.waitForFrames = async (timeoutMs: number): Promise<WakeReason> => {
    const reason = await waitForFrames(timeoutMs);
    report.wakeReasons[reason]++;
    return reason;
  };

  parentPort!.postMessage('ready');
  await consumer.run(handle, { batchSize: BATCH_SIZE, idleTimeoutMs: IDLE_TIMEOUT_MS });
  clearInterval(ticker);
  parentPort!.postMessage(report);
}
