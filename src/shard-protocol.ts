/**
 * What the main thread, the capture thread (workers/capture.ts) and the shard workers
 * (workers/shard.ts) say to each other. Everything here crosses threads by structured clone, so
 * it is plain data; a RingRegion's SharedArrayBuffer is shared, not copied.
 */
import type { MessagePort } from 'node:worker_threads';
import type { RingRegion } from './ring/ring.js';
import type { ChecksumPolicy, LinkType } from './wire/segment.js';
import type { CaptureLane } from './io/capture.js';
import type { UpstreamAddress } from './io/upstream.js';
import type { RegistrySnapshot } from './metrics.js';

/** The capture thread's start: where to capture, and one ring per shard (shard i = rings[i]). */
export interface CaptureThreadData {
  interface: string;
  /** The capture's lanes in priority order (io/capture.ts captureLanes). */
  lanes: CaptureLane[];
  snapLength: number;
  rings: RingRegion[];
  /**
   * Shared words (layout below): the capture loop blocks in poll(2) instead of serving its event
   * loop, so it reads no messages; the main thread sets flags and the cookie secret here, and
   * the capture thread publishes its counters.
   */
  flags: SharedArrayBuffer;
  /** For the SYNs the capture thread answers itself (workers/capture.ts). */
  checksumPolicy: ChecksumPolicy;
  /** Cookie secrets, oldest first (ShardTask.secrets); later rotations arrive through `flags`. */
  secrets: Uint8Array[];
  /** The shards' flows by hash bucket (tcp/live-flows.ts). */
  liveFlows: SharedArrayBuffer;
}

/** Int32 words at the start of CaptureThreadData.flags. */
export const CaptureFlag = {
  /** Set to 1 to make the capture thread close libpcap, report 'stopped' and end. */
  STOP: 0,
  /**
   * Generation of the cookie secret at CAPTURE_SECRET_OFFSET, a sequence lock: odd while the
   * main thread writes it, even once it is whole (`publishCaptureSecret`).
   */
  SECRET_GENERATION: 1,
} as const;
/** A Float64Array of CaptureStat from byte 8: the capture thread's counters, written about once a second and at stop. */
export const CAPTURE_STATS_OFFSET = 8;
export const CaptureStat = {
  /** libpcap's packets received and dropped, all lanes. */
  RECEIVED: 0,
  DROPPED: 1,
  /** SYNs answered by the capture thread itself, and its SYN+ACKs the kernel refused. */
  SYN_ANSWERED: 2,
  SEND_FAILED: 3,
  /** Bare ACKs and RSTs of connections without a flow, dropped by the capture thread. */
  IGNORED: 4,
  /**
   * Of DROPPED, those of the first lane: segments of open connections (io/capture.ts
   * captureLanes), which a SYN flood alone cannot make the kernel drop.
   */
  ESTABLISHED_DROPPED: 5,
} as const;
export const CAPTURE_STAT_COUNT = 6;
/** The newest cookie secret's 16 bytes, after the counters. */
export const CAPTURE_SECRET_OFFSET = CAPTURE_STATS_OFFSET + 8 * CAPTURE_STAT_COUNT;
export const CAPTURE_FLAG_BYTES = CAPTURE_SECRET_OFFSET + 16;

/** The main thread's side of the secret's sequence lock: the capture thread rotates to `secret` at its next SYN. */
export function publishCaptureSecret(flags: SharedArrayBuffer, secret: Uint8Array): void {
  const words = new Int32Array(flags, 0, 2);
  Atomics.add(words, CaptureFlag.SECRET_GENERATION, 1);
  new Uint8Array(flags, CAPTURE_SECRET_OFFSET, 16).set(secret);
  Atomics.add(words, CaptureFlag.SECRET_GENERATION, 1);
}

export type CaptureReport =
  /** Capture is open and packets flow into the rings. */
  | { type: 'ready'; linkType: LinkType }
  /** Opening the capture failed; the message is one line. */
  | { type: 'failed'; message: string }
  /** After STOP: the capture is closed; its final counters are in `flags`. */
  | { type: 'stopped' };

/** What each shard relays to: a DNS resolver over UDP, or a web server over HTTP. */
export type Application =
  | { kind: 'dns'; upstream: UpstreamAddress; /** before SERVFAIL */ timeoutMs: number }
  | { kind: 'http'; /** http://host:port */ origin: string; /** before 504 */ timeoutMs: number };

/** One shard worker's task (a piscina task that runs until told to stop). */
export interface ShardTask {
  shard: number;
  ring: RingRegion;
  linkType: LinkType;
  checksumPolicy: ChecksumPolicy;
  closeAfterResponse: boolean;
  application: Application;
  /**
   * Cookie secrets, oldest first: the one before the last rotation (still accepted) and the
   * current one. A worker that replaces a dead one needs both, or connections opened before the
   * last SIGHUP would fail their cookie check on this shard only.
   */
  secrets: Uint8Array[];
  /** The flows by hash bucket, shared with the capture thread (tcp/live-flows.ts). */
  liveFlows: SharedArrayBuffer;
  /** The main thread's line to this worker: ShardCommand in, ShardReport out. */
  control: MessagePort;
}

export type ShardCommand =
  | { type: 'rotate'; secret: Uint8Array }
  /** Finish the current batch, close the sockets and resolve the task with final ShardStats. */
  | { type: 'stop' };

export type ShardReport =
  /** Sockets are open and the ring is being drained; threadId names the worker thread. */
  | { type: 'ready'; threadId: number }
  /** Counters, sent every STATS_INTERVAL_MS so that little is lost when a worker dies, with its Prometheus registry's metrics. */
  | { type: 'stats'; stats: ShardStats; metrics?: RegistrySnapshot }
  /** The worker now issues cookies with the secret of the last 'rotate'. */
  | { type: 'rotated' };

/** A shard worker's counters since it started, indexed like the pipeline's arrays. */
export interface ShardStats {
  /** By DecodeResult (DECODE_RESULT_NAMES). */
  decode: number[];
  /** By responder outcome (OUTCOME_NAMES). */
  outcomes: number[];
  /** By TCP event (TCP_EVENT_NAMES). */
  tcpEvents: number[];
  /** By relay counter (RELAY_COUNTER_NAMES, or HTTP_COUNTER_NAMES for an HTTP front end). */
  relay: number[];
  /** Flows holding soft state now (a gauge). */
  flows: number;
  /** Bytes queued for sending now (a gauge). */
  queuedBytes: number;
  /** Packets sent through the raw socket, and sends that failed. */
  sent: number;
  sendFailed: number;
}

/** How often a shard worker reports its counters. */
export const STATS_INTERVAL_MS = 1000;
