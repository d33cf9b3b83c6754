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

export interface RawSendAddon {
  open(family: 4 | 6): number;
  /**
   * Packets sent; the ones refused are counted in failure[0], the last errno in failure[1]; those
   * refused with EMSGSIZE also in failure[2], with their indices from failure[3] on.
   */
  sendBatch(
    fd: number,
    family: 4 | 6,
    packets: Uint8Array,
    lengths: Uint32Array,
    dstAddrs: Uint8Array,
    count: number,
    failure: Int32Array,
  ): number;
  /** The MTU of the route toward `address` (4 or 16 bytes), or −errno. */
  pathMtu(family: 4 | 6, address: Uint8Array): number;
  /** A packet socket on `device` taking frames behind a virtio-net header: [fd, ifindex]. */
  openLink(device: string): [number, number];
  /** The device's MTU, or −errno. */
  linkMtu(fd: number, device: string): number;
  /** As sendBatch, for frames of a link socket; a frame whose segments exceed `mtu` is refused with EMSGSIZE. */
  sendLinkBatch(
    fd: number,
    ifindex: number,
    mtu: number,
    packets: Uint8Array,
    lengths: Uint32Array,
    count: number,
    failure: Int32Array,
  ): number;
  close(fd: number): void;
  errorName(errno: number): string;
}

/** build/Release is where node-gyp puts it (`npm ci` builds it from binding.gyp), from dist/src/io/. */
const ADDON_PATH = '../../../build/Release/raw_send.node';

/** The addon, loaded once per thread. */
export function rawSendAddon(): RawSendAddon {
  return require(ADDON_PATH) as RawSendAddon;
}

/** Packets per sendmmsg (the addon's MAX_BATCH). */
export const BATCH = 64;
/** Bytes a batch holds: many full-sized segments, and always one of the largest (64 KiB + headers). */
const BATCH_BYTES = 256 * 1024;

/** Bytes kept of a packet refused as too big: its IPv6 header and a TCP header with every option. */
const TOO_BIG_HEADER = 40 + 60;

export interface SendStats {
  sent: number;
  /** Packets the kernel refused, EMSGSIZE included. */
  failed: number;
  /** … of which refused as larger than the MTU toward their destination (EMSGSIZE). */
  tooBig: number;
  lastError: string;
}

/**
 * Told of a packet the kernel refused as larger than the MTU toward its destination:
 * `packet[offset, offset + length)` holds its IP and TCP headers (valid during the call), and
 * `packetLength` was its whole length.
 */
export type TooBigListener = (family: 4 | 6, packet: Uint8Array, offset: number, length: number, packetLength: number) => void;

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

/**
 * The headers of packets refused with EMSGSIZE, kept for `onTooBig` and reported once the
 * JavaScript at hand is done (a microtask): a batch can go out from inside a send, while the
 * caller is still using its packet buffer, and the listener sends.
 */
export class RefusedPackets {
  /** Where packets refused with EMSGSIZE are reported (the pipeline cuts their flow's segments smaller). */
  onTooBig: TooBigListener | null = null;
  private readonly headers = new Uint8Array(BATCH * TOO_BIG_HEADER);
  private readonly lengths = new Uint32Array(BATCH);
  private readonly families = new Uint8Array(BATCH);
  private readonly sizes = new Uint32Array(BATCH);
  private count = 0;
  private queued = false;
  private readonly report = (): void => {
    this.queued = false;
    const count = this.count;
    this.count = 0;
    for (let k = 0; k < count; k++) {
      this.onTooBig?.(this.families[k] as 4 | 6, this.headers, k * TOO_BIG_HEADER, this.lengths[k]!, this.sizes[k]!);
    }
  };

  /** Keeps the IP packet at `packets[offset, offset + available)` (its headers), which was `packetLength` bytes. */
  keep(family: 4 | 6, packets: Uint8Array, offset: number, available: number, packetLength: number): void {
    if (this.onTooBig === null || this.count === BATCH) return;
    const kept = Math.min(available, TOO_BIG_HEADER);
    const slot = this.count++;
    this.headers.set(packets.subarray(offset, offset + kept), slot * TOO_BIG_HEADER);
    this.lengths[slot] = kept;
    this.families[slot] = family;
    this.sizes[slot] = packetLength;
    if (!this.queued) {
      this.queued = true;
      queueMicrotask(this.report);
    }
  }
}

export class RawSender {
  readonly stats: SendStats = { sent: 0, failed: 0, tooBig: 0, lastError: '' };
  readonly refused = new RefusedPackets();
  private readonly addon: RawSendAddon;
  private v4 = -1;
  private v6 = -1;
  private readonly batches = [new Batch(4), new Batch(6)] as const;
  /** [refused, last errno, refused with EMSGSIZE, their indices…] (native/raw_send.c). */
  private readonly failure = new Int32Array(3 + BATCH);
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
    this.addon = rawSendAddon();
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

  /**
   * The MTU of the route toward `dst` (4 or 16 bytes) as the kernel has it — the device's, a
   * route's `mtu`, or a path MTU it learned — or −errno (no route). One socket, connect and
   * getsockopt: a few microseconds, for io/path-mtu.ts to cache, not for every packet.
   */
  pathMtu(family: 4 | 6, dst: Uint8Array): number {
    return this.addon.pathMtu(family, dst);
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
    failure[2] = 0;
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
      if (failure[2]! > 0) this.keepTooBig(batch, failure[2]!);
    }
    batch.count = 0;
    batch.bytes = 0;
  }

  /** Keeps the headers of the packets refused with EMSGSIZE (their indices in `failure` from 3 on) for `refused.onTooBig`. */
  private keepTooBig(batch: Batch, count: number): void {
    this.stats.tooBig += count;
    forEachRefused(this.failure, count, batch.lengths, (index, offset) => {
      const length = batch.lengths[index]!;
      this.refused.keep(batch.family, batch.packets, offset, length, length);
    });
  }
}

/**
 * Calls `each(index, offset)` for the packets refused with EMSGSIZE, listed in `failure` from 3
 * on (native/raw_send.c), with where each starts in its batch of `lengths` laid end to end.
 */
export function forEachRefused(
  failure: Int32Array,
  count: number,
  lengths: Uint32Array,
  each: (index: number, offset: number) => void,
): void {
  const listed = Math.min(count, failure.length - 3);
  // Indices rise (sendmmsg goes in order): one walk over the lengths finds every offset.
  let index = 0;
  let offset = 0;
  for (let k = 0; k < listed; k++) {
    const wanted = failure[3 + k]!;
    while (index < wanted) offset += lengths[index++]!;
    each(index, offset);
  }
}

/** The one-line start-up message for a RawSender that could not be opened. */
export function rawSocketProblem(error: Error): string {
  return `cannot open a raw socket (${error.message}): run as root, or give node CAP_NET_RAW and CAP_NET_ADMIN`;
}
