/**
 * What the main thread (handle.ts) and the capture thread (thread.ts) say to each other.
 *
 * The capture thread blocks in poll(2) rather than serving its event loop, so it reads no
 * messages after it starts: everything the main thread tells it later, and everything it reports
 * while running, goes through one small SharedArrayBuffer, the control block. Only its start
 * (`CaptureThreadData`, by structured clone) and its three reports (`CaptureReport`) are messages.
 *
 * The control block (`CAPTURE_CONTROL_BYTES`), offsets in bytes:
 *
 *   Bytes      Field               Written by                 Read by
 *     0 -   3  STOP                main: 0 → 1                capture, after every packet and poll
 *     4 -   7  SECRET_GENERATION   main (sequence lock)       capture, at each SYN it answers
 *     8 -  79  counters            capture, about once a      main: metrics and the stop summary
 *              (CaptureStat, nine  second and at stop
 *              float64s)
 *    80 -  95  SECRET              main, inside the lock      capture: the newest cookie secret
 *
 * The secret is published under a sequence lock (`publishCaptureSecret`): SECRET_GENERATION is odd
 * while the main thread writes it and even once it is whole, so the capture thread copies it only
 * when the generation is even and unchanged across the copy.
 */
import type { ChecksumPolicy, LinkType } from '../../src/wire/segment.js';
import type { CaptureLane } from '../../src/io/capture.js';
import type { RingRegion } from '../../src/ring/ring.js';
import { SECRET_BYTES } from '../../src/tcp/cookie.js';

/** The capture thread's start: where to capture, and one ring per shard (shard i = rings[i]). */
export interface CaptureThreadData {
  interface: string;
  /** The capture's lanes in priority order (io/capture.ts captureLanes). */
  lanes: CaptureLane[];
  /** The first lane's whole-frame companion (io/capture.ts wholeFramesLane). */
  wholeFrames: CaptureLane;
  rings: RingRegion[];
  /** The control block (layout above), from `allocateCaptureControl`. */
  control: SharedArrayBuffer;
  /** For the SYNs the capture thread answers itself (tcp/flowless.ts). */
  checksumPolicy: ChecksumPolicy;
  /** Send those SYN+ACKs on the capture interface when it is Ethernet (`--gso on`, io/link-send.ts), else through a raw socket. */
  gso: boolean;
  /** Cookie secrets, oldest first (ShardTask.secrets); later rotations arrive through `control`. */
  secrets: Uint8Array[];
  /** The shards' flows by hash bucket (tcp/live-flows.ts). */
  liveFlows: SharedArrayBuffer;
  /** The flow hash's key (wire/flow-hash.ts), the shards' too. */
  routingKey: Uint8Array;
  /** This host's addresses (io/host-addresses.ts): martian sources, with the fixed ranges (wire/martian.ts). */
  ownAddresses: Uint8Array[];
}

/** Int32 words at the start of the control block. */
export const CaptureFlag = {
  /** Set to 1 to make the capture thread close libpcap, report 'stopped' and end. */
  STOP: 0,
  /** Generation of the cookie secret at CAPTURE_SECRET_OFFSET: odd while written, even when whole. */
  SECRET_GENERATION: 1,
} as const;

/** Float64 counters from byte 8 of the control block. */
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
  /** SYNs (and the rare short data segment) from martian sources (wire/martian.ts), dropped unanswered. */
  MARTIAN_SOURCE: 6,
  /**
   * Frames longer than a ring slot that the capture thread cut into pieces that fit
   * (wire/coalesced.ts: GRO/LRO/TSO frames), and the pieces it made of them.
   */
  COALESCED_FRAMES: 7,
  COALESCED_PIECES: 8,
} as const;
const CAPTURE_STAT_COUNT = Object.keys(CaptureStat).length;
const CAPTURE_STATS_OFFSET = 8;
const CAPTURE_SECRET_OFFSET = CAPTURE_STATS_OFFSET + 8 * CAPTURE_STAT_COUNT;
const CAPTURE_CONTROL_BYTES = CAPTURE_SECRET_OFFSET + SECRET_BYTES;

export function allocateCaptureControl(): SharedArrayBuffer {
  return new SharedArrayBuffer(CAPTURE_CONTROL_BYTES);
}

/** The control block's words (CaptureFlag). */
export function controlFlags(control: SharedArrayBuffer): Int32Array {
  return new Int32Array(control, 0, 2);
}

/** The control block's counters (CaptureStat). */
export function controlStats(control: SharedArrayBuffer): Float64Array {
  return new Float64Array(control, CAPTURE_STATS_OFFSET, CAPTURE_STAT_COUNT);
}

/** The control block's secret bytes (read under the sequence lock). */
export function controlSecret(control: SharedArrayBuffer): Uint8Array {
  return new Uint8Array(control, CAPTURE_SECRET_OFFSET, SECRET_BYTES);
}

/** The main thread's side of the secret's sequence lock: the capture thread rotates to `secret` at its next SYN. */
export function publishCaptureSecret(control: SharedArrayBuffer, secret: Uint8Array): void {
  const words = controlFlags(control);
  Atomics.add(words, CaptureFlag.SECRET_GENERATION, 1);
  controlSecret(control).set(secret);
  Atomics.add(words, CaptureFlag.SECRET_GENERATION, 1);
}

export type CaptureReport =
  /** Capture is open and packets flow into the rings. */
  | { type: 'ready'; linkType: LinkType }
  /** Opening the capture failed; the message is one line. */
  | { type: 'failed'; message: string }
  /** After STOP: the capture is closed; its final counters are in the control block. */
  | { type: 'stopped' };
