/**
 * Which connections a shard holds soft state for, as far as the capture thread needs to know:
 * for each shard, a count of its flows per bucket of flow hashes (wire/flow-hash.ts), in shared
 * memory. The shard worker adds and removes its flows; the capture thread reads them to decide
 * whether a SYN may be answered at once (no flow in its bucket) or must go to its shard (perhaps
 * a live connection, which gets a challenge ACK, RFC 5961 §4.2). A bucket shared with other
 * flows only sends a SYN the longer way; it never changes the answer. The flow hash is keyed, so
 * a client cannot choose connections that share one bucket.
 */
import type { FlowHash } from '../wire/flow-hash.js';
import type { Segment } from '../wire/segment.js';

export const LIVE_FLOW_BUCKETS = 65536;
const BUCKET_BYTES = 4;

export class LiveFlows {
  private readonly counts: Int32Array;

  /**
   * Shard `shard`'s counts in `buffer`, from `LiveFlows.allocate(shards)`; `routing` hashes as the
   * capture thread does (the same key).
   */
  constructor(
    buffer: SharedArrayBuffer,
    shard: number,
    private readonly routing: FlowHash,
  ) {
    this.counts = new Int32Array(buffer, shard * LIVE_FLOW_BUCKETS * BUCKET_BYTES, LIVE_FLOW_BUCKETS);
  }

  /** The flow hash of the connection of `seg`, as the capture thread computes it for the segment's frame. */
  routeHashOf(seg: Segment): number {
    return this.routing.ofSegment(seg);
  }

  static allocate(shards: number): SharedArrayBuffer {
    return new SharedArrayBuffer(shards * LIVE_FLOW_BUCKETS * BUCKET_BYTES);
  }

  add(flowHash: number): void {
    Atomics.add(this.counts, flowHash & (LIVE_FLOW_BUCKETS - 1), 1);
  }

  remove(flowHash: number): void {
    Atomics.sub(this.counts, flowHash & (LIVE_FLOW_BUCKETS - 1), 1);
  }

  /** Whether the shard may hold a flow with this hash. */
  mayHold(flowHash: number): boolean {
    return Atomics.load(this.counts, flowHash & (LIVE_FLOW_BUCKETS - 1)) !== 0;
  }

  /** No flows: a worker that replaces a dead one starts with none of its predecessor's. */
  clear(): void {
    for (let i = 0; i < LIVE_FLOW_BUCKETS; i++) Atomics.store(this.counts, i, 0);
  }

  /** Flows counted in all buckets (tests). */
  total(): number {
    let sum = 0;
    for (let i = 0; i < LIVE_FLOW_BUCKETS; i++) sum += Atomics.load(this.counts, i);
    return sum;
  }
}
