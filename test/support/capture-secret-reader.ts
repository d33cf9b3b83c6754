/**
 * The capture thread's half of the cookie secret's sequence lock (workers/capture/protocol.ts),
 * run as a worker thread for test/unit/workers/capture/protocol.test.ts while the main thread
 * publishes secrets with `publishCaptureSecret`. It reads as the protocol says the capture thread
 * does — the generation, a copy of the secret, the generation again; the copy counts only when
 * both generations are equal and even — and checks every copy it keeps. Not a test file itself:
 * in the main thread it does nothing.
 *
 * The publisher's k-th secret (k = 1, 2, …) is 16 bytes of value k mod 256, published as
 * generation 2k; the secret before any is all zero, generation 0. So a kept copy must be 16 equal
 * bytes, of the value its generation names.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CaptureFlag, controlFlags, controlSecret } from '../../workers/capture/protocol.js';

export interface SecretReaderData {
  control: SharedArrayBuffer;
  /** Int32 word 0: set to 1 by the main thread when it has published its last secret. */
  done: SharedArrayBuffer;
  /** Gives up after this long even if `done` never comes. */
  maxMs: number;
}

export interface SecretReaderReport {
  /** Copies kept: taken under an even generation that did not change across the copy. */
  kept: number;
  /** Copies thrown away because the generation changed across the copy. */
  retried: number;
  /** Reads that found the generation odd (a secret being written). */
  odd: number;
  /** Kept copies that were not the whole secret of their generation (must be 0), and the first. */
  torn: number;
  firstTorn: string | null;
  /** Whether the kept generations never went backwards. */
  monotonic: boolean;
  /** Copies taken ignoring the lock that were mixed: how often the lock had something to do. */
  unlockedMixed: number;
  lastGeneration: number;
}

function whole(copy: Uint8Array, value: number): boolean {
  for (let i = 0; i < copy.length; i++) if (copy[i] !== value) return false;
  return true;
}

function mixed(copy: Uint8Array): boolean {
  for (let i = 1; i < copy.length; i++) if (copy[i] !== copy[0]) return true;
  return false;
}

if (!isMainThread) {
  const data = workerData as SecretReaderData;
  const words = controlFlags(data.control);
  const secret = controlSecret(data.control);
  const done = new Int32Array(data.done);
  const report: SecretReaderReport = {
    kept: 0,
    retried: 0,
    odd: 0,
    torn: 0,
    firstTorn: null,
    monotonic: true,
    unlockedMixed: 0,
    lastGeneration: 0,
  };
  parentPort!.postMessage('ready');
  const deadline = performance.now() + data.maxMs;
  for (let i = 0; ; i++) {
    if ((i & 1023) === 0 && performance.now() > deadline) break;
    // Read before this round: if set, the secret read below is the last one published.
    const finished = Atomics.load(done, 0) !== 0;
    if (mixed(Uint8Array.from(secret))) report.unlockedMixed++;
    const generation = Atomics.load(words, CaptureFlag.SECRET_GENERATION);
    if ((generation & 1) !== 0) {
      report.odd++;
      continue;
    }
    const copy = Uint8Array.from(secret);
    if (Atomics.load(words, CaptureFlag.SECRET_GENERATION) !== generation) {
      report.retried++;
      continue;
    }
    report.kept++;
    if (generation < report.lastGeneration) report.monotonic = false;
    report.lastGeneration = generation;
    if (!whole(copy, (generation / 2) & 0xff)) {
      report.torn++;
      report.firstTorn ??= `generation ${generation}: ${Array.from(copy).join(',')}`;
    }
    if (finished) break;
  }
  parentPort!.postMessage(report);
}
