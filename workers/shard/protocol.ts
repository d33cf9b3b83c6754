/**
 * What the main thread (pool.ts) and a shard worker (thread.ts) say to each other. Everything
 * here crosses threads by structured clone, so it is plain data; a RingRegion's and the live
 * flows' SharedArrayBuffers are shared, not copied.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ApplicationSettings } from '../../src/application.js';
import type { RegistrySnapshot } from '../../src/metrics.js';
import type { RingRegion } from '../../src/ring/ring.js';
import type { ChecksumPolicy, LinkType } from '../../src/wire/segment.js';
import type { ConnectionLimits } from '../../src/tcp/responder.js';

/** One shard worker's task (a piscina task that runs until told to stop). */
export interface ShardTask {
  shard: number;
  ring: RingRegion;
  linkType: LinkType;
  checksumPolicy: ChecksumPolicy;
  /** The capture interface, for sending on it (io/link-send.ts); null: through the raw socket only. */
  linkInterface: string | null;
  closeAfterResponse: boolean;
  /** The operator's bounds on connections and their sources. */
  limits: ConnectionLimits;
  /** What the shard relays to (src/application.ts). */
  application: ApplicationSettings;
  /**
   * Cookie secrets, oldest first: the one before the last rotation (still accepted) and the
   * current one. A worker that replaces a dead one needs both, or connections opened before the
   * last SIGHUP would fail their cookie check on this shard only.
   */
  secrets: Uint8Array[];
  /** The flows by hash bucket, shared with the capture thread (tcp/live-flows.ts). */
  liveFlows: SharedArrayBuffer;
  /** The flow hash's key (wire/flow-hash.ts), the capture thread's: the same for the process's life. */
  routingKey: Uint8Array;
  /** This host's addresses (io/host-addresses.ts): martian sources, with the fixed ranges (wire/martian.ts). */
  ownAddresses: Uint8Array[];
  /** The main thread's line to this worker: ShardCommand in, ShardReport out. */
  control: MessagePort;
}

export type ShardCommand =
  | { type: 'rotate'; secret: Uint8Array }
  /** Finish the current batch, close the sockets and resolve the task with its final metrics. */
  | { type: 'stop' };

export type ShardReport =
  /** Sockets are open and the ring is being drained; threadId names the worker thread. */
  | { type: 'ready'; threadId: number }
  /** The worker's metrics (metrics.ts), every METRICS_INTERVAL_MS so that little is lost when it dies. */
  | { type: 'metrics'; metrics: RegistrySnapshot }
  /** The worker now issues cookies with the secret of the last 'rotate'. */
  | { type: 'rotated' };

/** How often a shard worker reports its metrics. */
export const METRICS_INTERVAL_MS = 1000;
