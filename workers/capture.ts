/**
 * The capture thread: libpcap → flow hash → the ring of shard `hash mod N`. A dedicated worker
 * thread rather than the main thread, so that the main thread stays free for signals, for
 * replacing a dead shard worker and for metrics however fast packets arrive
 * (docs/architecture.md, "Threads").
 *
 * It does nothing but capture, so it pulls packets in a loop and blocks in poll(2) when none is
 * waiting (io/capture.ts), without its event loop. Per packet it hashes the 4-tuple
 * (wire/flow-hash.ts: symmetric, so both directions of a connection meet on one shard) and copies
 * the frame into that shard's ring. It never waits for a shard: a full ring drops the frame and
 * counts it in the ring's DROPPED word, and TCP repairs it like any loss. Nothing is allocated
 * per packet: libpcap's copy lands in one buffer, and the ring copies from it.
 *
 * The main thread stops it through a shared flag (the loop never reads messages), looked at
 * after every packet and at least every POLL_TIMEOUT_MS; packets already captured then are
 * still handed on, and the shards are stopped only after this thread, so every packet that
 * arrived before the stop is processed and counted.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Capture, NextResult } from '../src/io/capture.js';
import { nameThisThread } from '../src/io/thread-name.js';
import { RingProducer } from '../src/ring/ring.js';
import { flowHash } from '../src/wire/flow-hash.js';
import { CAPTURE_STATS_OFFSET, CaptureFlag, type CaptureReport, type CaptureThreadData } from '../src/shard-protocol.js';

/** Longest time the thread waits for a packet before looking at the stop flag again. */
const POLL_TIMEOUT_MS = 50;
/** How often libpcap's counters are published for metrics (pcap_stats is one getsockopt). */
const STATS_INTERVAL_MS = 1000;
/** Most packets handed on after the stop flag: what a 16 MiB capture buffer holds of small ones. */
const STOP_DRAIN_MAX_PACKETS = 200_000;

const data = workerData as CaptureThreadData;
const port = parentPort!;
const report = (message: CaptureReport): void => port.postMessage(message);
const flags = new Int32Array(data.flags);
nameThisThread('stcp-capture');

let capture: Capture | undefined;
try {
  capture = new Capture({ interface: data.interface, filter: data.filter, snapLength: data.snapLength, bufferBytes: data.bufferBytes });
} catch (error) {
  report({ type: 'failed', message: (error as Error).message });
}
if (capture !== undefined) {
  report({ type: 'ready', linkType: capture.linkType });
  captureLoop(capture);
  const stats = capture.stats();
  capture.close();
  report({ type: 'stopped', received: stats.received, dropped: stats.dropped });
}
port.close();

function captureLoop(capture: Capture): void {
  const producers = data.rings.map((region) => new RingProducer(region));
  const shardCount = producers.length;
  const { frame, linkType } = capture;
  /** Hands the packet `next` returned to its shard, or throws on a capture error; false: none came. */
  const forward = (result: number): boolean => {
    if (result === NextResult.ERROR) throw new Error(`capture failed: ${capture.lastError}`);
    if (result !== NextResult.PACKET) return false;
    const length = capture.capturedLength;
    // flowHash is below 2^31, so the shard number is a small integer.
    const shard = flowHash(linkType, frame, 0, length) % shardCount;
    producers[shard]!.push(frame, 0, length, capture.wireLength, capture.timestampSeconds, capture.timestampMicros);
    return true;
  };
  const published = new Float64Array(data.flags, CAPTURE_STATS_OFFSET, 2);
  let publishAtMs = 0;
  let sinceClock = 0;
  while (Atomics.load(flags, CaptureFlag.STOP) === 0) {
    // The clock only every 1024 packets (or on an idle poll): a Date.now() is a heap number.
    if (!forward(capture.next(POLL_TIMEOUT_MS)) || ++sinceClock === 1024) {
      sinceClock = 0;
      const nowMs = Date.now();
      if (nowMs >= publishAtMs) {
        publishAtMs = nowMs + STATS_INTERVAL_MS;
        const stats = capture.stats();
        published[0] = stats.received;
        published[1] = stats.dropped;
      }
    }
  }
  // Stopping: what the kernel had already captured still goes to the shards, so that the final
  // counters account for every packet that arrived before the stop (bounded: under a flood the
  // kernel never runs dry).
  for (let n = 0; n < STOP_DRAIN_MAX_PACKETS && forward(capture.next(0)); n++);
}
