/**
 * The capture thread seen from the main thread: start it (thread.ts), read its counters, rotate
 * its cookie secret, stop it. Everything after the start goes through the shared control block
 * (protocol.ts), because the thread's loop never reads messages.
 */
import { Worker } from 'node:worker_threads';
import type { LinkType } from '../../src/wire/segment.js';
import type { CaptureCounters } from '../../src/metrics.js';
import {
  CaptureFlag,
  CaptureStat,
  allocateCaptureControl,
  controlFlags,
  controlStats,
  publishCaptureSecret,
  type CaptureReport,
  type CaptureThreadData,
} from './protocol.js';

const CAPTURE_THREAD = new URL('./thread.js', import.meta.url);

export interface CaptureThread {
  readonly linkType: LinkType;
  /** Its counters as it last published them (about once a second, and at stop). */
  counters(): CaptureCounters;
  /** The thread issues cookies with `secret` from its next SYN on (the previous one stays valid). */
  rotateSecret(secret: Uint8Array): void;
  /** Closes the capture and ends the thread, which publishes its final counters first; the same promise if called again. */
  stop(): Promise<void>;
  /** `handler` runs if the thread ends (or has ended) other than by `stop`. */
  onUnexpectedExit(handler: (reason: string) => void): void;
}

/** What the capture thread needs but the control block, which this module makes. */
export type CaptureThreadOptions = Omit<CaptureThreadData, 'control'>;

/**
 * Starts the capture thread; resolves once libpcap is open, rejects with its one-line failure.
 * `stopTimeoutMs` bounds how long `stop` waits for the thread's last report.
 */
export async function startCaptureThread(options: CaptureThreadOptions, stopTimeoutMs: number): Promise<CaptureThread> {
  const control = allocateCaptureControl();
  const data: CaptureThreadData = { ...options, control };
  // A small young generation: the thread keeps almost nothing alive, so its scavenges are cheap
  // however often they run, and a SYN flood (a few short-lived numbers per SYN+ACK) does not
  // grow its heap to V8's default of tens of megabytes.
  const worker = new Worker(CAPTURE_THREAD, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
  let stopping = false;
  let onUnexpectedExit: ((reason: string) => void) | undefined;
  /** Why the thread ended, if it did before anyone asked to be told. */
  let unexpectedExit: string | undefined;
  let lastError = '';
  worker.on('error', (error) => (lastError = error.message));
  worker.on('exit', (code) => {
    if (stopping) return;
    unexpectedExit = lastError !== '' ? lastError : `exit code ${code}`;
    onUnexpectedExit?.(unexpectedExit);
  });
  const first = await new Promise<CaptureReport>((resolve) => {
    worker.once('message', resolve);
    worker.once('exit', () => resolve({ type: 'failed', message: lastError !== '' ? lastError : 'the capture thread exited' }));
  });
  if (first.type !== 'ready') {
    stopping = true;
    await worker.terminate();
    throw new Error(first.type === 'failed' ? first.message : 'unexpected report from the capture thread');
  }
  const published = controlStats(control);
  let stopped: Promise<void> | null = null;
  const stop = async (): Promise<void> => {
    stopping = true;
    const finished = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, stopTimeoutMs);
      worker.on('message', (report: CaptureReport) => {
        if (report.type !== 'stopped') return;
        clearTimeout(timer);
        resolve();
      });
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    Atomics.store(controlFlags(control), CaptureFlag.STOP, 1);
    await finished;
    await worker.terminate();
  };
  return {
    linkType: first.linkType,
    counters: () => ({
      received: published[CaptureStat.RECEIVED]!,
      dropped: published[CaptureStat.DROPPED]!,
      establishedDropped: published[CaptureStat.ESTABLISHED_DROPPED]!,
      synAnswered: published[CaptureStat.SYN_ANSWERED]!,
      sendFailed: published[CaptureStat.SEND_FAILED]!,
      ignored: published[CaptureStat.IGNORED]!,
      martianSource: published[CaptureStat.MARTIAN_SOURCE]!,
      coalescedFrames: published[CaptureStat.COALESCED_FRAMES]!,
      coalescedPieces: published[CaptureStat.COALESCED_PIECES]!,
    }),
    rotateSecret: (secret) => publishCaptureSecret(control, secret),
    stop: () => (stopped ??= stop()),
    onUnexpectedExit(handler) {
      onUnexpectedExit = handler;
      if (unexpectedExit !== undefined) handler(unexpectedExit);
    },
  };
}
