/**
 * Throughput of the frame rings (src/ring): the main thread produces as the capture thread will,
 * pushing packet-sized frames round-robin into one or two rings without ever waiting (a full ring
 * drops the frame); one worker per ring consumes with `RingConsumer.run`, reading the first and
 * last byte of every frame. Reports what got through: frames/s and MB/s of frame bytes.
 *
 *   node dist/bench/ring-throughput.js
 *
 * Each configuration runs for RUN_MS; the whole benchmark is bounded by WATCHDOG_MS.
 */
import { availableParallelism, cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createRing, type RingCounters, RingConsumer, RingProducer, type RingRegion } from '../src/ring/ring.js';

/** As the front end captures (src/front-end.ts SNAP_LENGTH). */
const SNAP_LENGTH = 2048;
const SLOT_COUNT = 1024;
const FRAME_SIZES = [80, 1500];
const RING_COUNTS = [1, 2];
const RUN_MS = 3000;
/** Pushes between clock reads: reading the clock per frame would be a good part of the cost. */
const PUSHES_PER_CLOCK_READ = 1024;
const BATCH_SIZE = 256;
const IDLE_TIMEOUT_MS = 100;
/** Longest wait for the consumers to empty the rings after the producer stops. */
const DRAIN_WAIT_MS = 2000;
const WATCHDOG_MS = 60_000;

interface Result {
  rings: number;
  frameBytes: number;
  seconds: number;
  offered: number;
  totals: RingCounters;
}

if (isMainThread) {
  const watchdog = setTimeout(() => {
    console.error(`ring-throughput: not finished after ${WATCHDOG_MS} ms`);
    process.exit(1);
  }, WATCHDOG_MS);
  watchdog.unref();

  console.log(`${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`);
  console.log(`${SLOT_COUNT} slots of ${SNAP_LENGTH} bytes per ring, ${RUN_MS} ms per run, drain batches of ${BATCH_SIZE}\n`);
  const results: Result[] = [];
  for (const rings of RING_COUNTS) for (const frameBytes of FRAME_SIZES) results.push(await measure(rings, frameBytes));
  printTable(results);
} else {
  await consume(workerData as RingRegion);
}

/** Run one configuration: `rings` rings and consumers, frames of `frameBytes` bytes. */
async function measure(rings: number, frameBytes: number): Promise<Result> {
  const regions = Array.from({ length: rings }, () => createRing({ slotCount: SLOT_COUNT, slotDataBytes: SNAP_LENGTH }));
  const workers = regions.map((region) => new Worker(new URL(import.meta.url), { workerData: region }));
  try {
    await Promise.all(workers.map((w) => nextMessage(w)));
    const producers = regions.map((region) => new RingProducer(region));
    const frame = Buffer.alloc(frameBytes, 0x5a);

    let offered = 0;
    const started = performance.now();
    let now = started;
    while (now - started < RUN_MS) {
      const seconds = Math.floor(Date.now() / 1000);
      for (let i = 0; i < PUSHES_PER_CLOCK_READ; i++) {
        // Round-robin stands in for the flow hash, which spreads flows evenly (flow-hash.ts).
        producers[offered % rings]!.push(frame, 0, frameBytes, frameBytes, seconds, 0);
        offered++;
      }
      now = performance.now();
    }
    // What was pushed still has to come out; the clock stops when it has.
    while (!producers.every(drained) && performance.now() - now < DRAIN_WAIT_MS) await sleep(1);
    const seconds = (performance.now() - started) / 1000;
    if (!producers.every(drained)) throw new Error(`rings not drained ${DRAIN_WAIT_MS} ms after the producer stopped`);

    const totals: RingCounters = { pushed: 0, popped: 0, dropped: 0, sleeps: 0, wakeups: 0 };
    for (const p of producers) {
      const c = p.counters();
      for (const key of Object.keys(totals) as (keyof RingCounters)[]) totals[key] += c[key];
    }
    for (const w of workers) w.postMessage('stop');
    await Promise.all(workers.map((w) => nextMessage(w)));
    return { rings, frameBytes, seconds, offered, totals };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function drained(p: RingProducer): boolean {
  const c = p.counters();
  return c.popped === c.pushed;
}

function printTable(results: Result[]): void {
  const header = ['rings', 'frame B', 'delivered Mpps', 'MB/s', 'offered Mpps', 'dropped', 'sleeps', 'wakeups'];
  const rows = results.map((r) => [
    String(r.rings),
    String(r.frameBytes),
    (r.totals.popped / r.seconds / 1e6).toFixed(2),
    ((r.totals.popped * r.frameBytes) / r.seconds / 1e6).toFixed(0),
    (r.offered / r.seconds / 1e6).toFixed(2),
    `${((100 * r.totals.dropped) / r.offered).toFixed(1)}%`,
    String(r.totals.sleeps),
    String(r.totals.wakeups),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows]) console.log(row.map((cell, i) => cell.padStart(widths[i]!)).join('  '));
}

/** Resolve with the worker's next message; reject if it fails or exits first. */
function nextMessage(worker: Worker): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', reject);
      worker.off('exit', onExit);
    };
    const onMessage = (message: unknown): void => {
      cleanup();
      resolve(message);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`worker exited with code ${code}`));
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
    worker.on('exit', onExit);
  });
}

/** The worker: drain until told to stop, touching each frame's first and last byte. */
async function consume(region: RingRegion): Promise<void> {
  const consumer = new RingConsumer(region);
  let touched = 0;
  parentPort!.on('message', () => consumer.stop());
  parentPort!.postMessage('ready');
  await consumer.run(
    (bytes, offset, capturedLength) => {
      touched ^= bytes[offset]! ^ bytes[offset + capturedLength - 1]!;
    },
    { batchSize: BATCH_SIZE, idleTimeoutMs: IDLE_TIMEOUT_MS },
  );
  // Reported so the reads above cannot be optimized away.
  parentPort!.postMessage(touched);
}
