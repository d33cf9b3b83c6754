/**
 * Sending complete IP packets through raw sockets (our Node-API addon, native/raw_send.c).
 *
 * Both sockets use protocol IPPROTO_RAW (255): the kernel then takes our IP header as written
 * (raw(7): IPPROTO_RAW implies IP_HDRINCL; for IPv6 the kernel sets hdrincl the same way), and —
 * unlike an IPPROTO_TCP raw socket — is never handed a copy of incoming TCP packets, which we
 * would have to read and throw away.
 *
 * Every shard worker thread opens its own RawSender, so the addon is a Node-API module, which
 * loads in any number of threads at once (the `raw-socket` package cannot: it is not
 * context-aware).
 *
 * Packets are sent in batches: `send` copies the packet into its family's batch, and the batch
 * goes out with one sendmmsg(2) once the JavaScript that queued it is done (a microtask), when
 * it is full, or at `close`. A shard answers a batch of captured frames, or a batch of upstream
 * answers, with many segments at once; one system call each cost more than the copies. Nothing
 * is formatted or allocated per packet.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface RawSendAddon {
  open(family: 4 | 6): number;
  /** Packets sent; the ones refused are counted in failure[0], the last errno in failure[1]. */
  sendBatch(
    fd: number,
    family: 4 | 6,
    packets: Uint8Array,
    lengths: Uint32Array,
    dstAddrs: Uint8Array,
    count: number,
    failure: Int32Array,
  ): number;
  close(fd: number): void;
  errorName(errno: number): string;
}

/** build/Release is where node-gyp puts it (`npm ci` builds it from binding.gyp), from dist/src/io/. */
const ADDON_PATH = '../../../build/Release/raw_send.node';

/** Packets per sendmmsg (the addon's MAX_BATCH). */
const BATCH = 64;
/** Bytes a batch holds: many full-sized segments, and always one of the largest (64 KiB + headers). */
const BATCH_BYTES = 256 * 1024;

export interface SendStats {
  sent: number;
  failed: number;
  lastError: string;
}

/** The packets of one address family waiting for their sendmmsg. */
class Batch {
  readonly packets = new Uint8Array(BATCH_BYTES);
  readonly lengths = new Uint32Array(BATCH);
  /** 16 bytes per packet: its destination address (4 used for IPv4). */
  readonly dstAddrs = new Uint8Array(BATCH * 16);
  count = 0;
  bytes = 0;

  constructor(readonly family: 4 | 6) {}
}

export class RawSender {
  readonly stats: SendStats = { sent: 0, failed: 0, lastError: '' };
  private readonly addon: RawSendAddon;
  private v4 = -1;
  private v6 = -1;
  private readonly batches = [new Batch(4), new Batch(6)] as const;
  private readonly failure = new Int32Array(2);
  /**
   * `prefixes[n]`: a view of the first n bytes of `prefixesOf`, the buffer the last packets came
   * in. TypedArray.set copies a whole array, so copying n bytes needs an n-byte view; a sender's
   * caller emits every packet into the same buffer, so each length's view is made once.
   */
  private prefixesOf: Uint8Array | null = null;
  private prefixes: (Uint8Array | undefined)[] = [];
  private flushQueued = false;
  private readonly flushNow = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  /** Opens both sockets; throws an Error whose message names the cause (EPERM without root). */
  constructor() {
    this.addon = require(ADDON_PATH) as RawSendAddon;
    this.v4 = this.addon.open(4);
    try {
      this.v6 = this.addon.open(6);
    } catch (error) {
      this.addon.close(this.v4);
      throw error;
    }
  }

  /**
   * Queues the IP packet `packet[0, length)` to `dst` (4 or 16 address bytes); it leaves with its
   * batch. A packet the kernel refuses (e.g. the socket buffer is full: ENOBUFS/EAGAIN) is dropped
   * and counted; TCP's retransmission recovers it like any loss in the network.
   */
  send(family: 4 | 6, packet: Uint8Array, length: number, dst: Uint8Array): void {
    if (this.v4 < 0) return;
    const batch = this.batches[family === 4 ? 0 : 1];
    if (batch.count === BATCH || batch.bytes + length > BATCH_BYTES) this.sendBatch(batch);
    batch.packets.set(this.prefix(packet, length), batch.bytes);
    batch.lengths[batch.count] = length;
    batch.dstAddrs.set(dst, batch.count * 16);
    batch.count++;
    batch.bytes += length;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushNow);
    }
  }

  /** Sends every queued packet now. */
  flush(): void {
    for (const batch of this.batches) if (batch.count > 0) this.sendBatch(batch);
  }

  /** Sends what is queued, then closes both sockets. */
  close(): void {
    if (this.v4 < 0) return;
    this.flush();
    this.addon.close(this.v4);
    this.addon.close(this.v6);
    this.v4 = this.v6 = -1;
  }

  private prefix(packet: Uint8Array, length: number): Uint8Array {
    if (length === packet.length) return packet;
    if (packet !== this.prefixesOf) {
      this.prefixesOf = packet;
      this.prefixes = [];
    }
    let prefix = this.prefixes[length];
    if (prefix === undefined) {
      prefix = packet.subarray(0, length);
      this.prefixes[length] = prefix;
    }
    return prefix;
  }

  private sendBatch(batch: Batch): void {
    const failure = this.failure;
    failure[0] = 0;
    this.stats.sent += this.addon.sendBatch(
      batch.family === 4 ? this.v4 : this.v6,
      batch.family,
      batch.packets,
      batch.lengths,
      batch.dstAddrs,
      batch.count,
      failure,
    );
    if (failure[0]! > 0) {
      this.stats.failed += failure[0]!;
      this.stats.lastError = this.addon.errorName(failure[1]!);
    }
    batch.count = 0;
    batch.bytes = 0;
  }
}

/** The one-line start-up message for a RawSender that could not be opened. */
export function rawSocketProblem(error: Error): string {
  return `cannot open a raw socket (${error.message}): run as root, or give node CAP_NET_RAW and CAP_NET_ADMIN`;
}
