/**
 * Packet capture with libpcap, through our Node-API addon (native/capture.c), for a thread that
 * does nothing else (workers/capture/thread.ts).
 *
 * The capture thread pulls packets: `next` copies the next packet into one buffer owned by this
 * object and returns, or waits in poll(2) for at most `timeoutMs` when none is ready. Packets
 * come in through up to three lanes, each a kernel buffer with its own filter, in priority
 * order (`captureLanes` says why, native/capture.c how). Nothing is
 * allocated per packet and nothing is registered with the event loop, so the thread may block
 * there and still exit cleanly. (The `pcap` package's binding polls through the event loop and
 * never closes its handle, which aborts a worker thread when it exits; nor can it load in a
 * worker thread while another thread has it.)
 */
import { createRequire } from 'node:module';
import { type KernelChecksum, LinkType } from '../wire/segment.js';
import { addressBytes } from '../endpoint.js';

const require = createRequire(import.meta.url);

interface CaptureAddon {
  open(
    device: string,
    filters: string[],
    bufferBytes: number[],
    snapLengths: number[],
    frame: Uint8Array,
    header: Uint32Array,
    wholeFrames: boolean,
  ): { handle: object; linkType: number };
  next(handle: object, timeoutMs: number): number;
  /** [received, dropped] per lane. */
  stats(handle: object): number[];
  lastError(handle: object): string;
  close(handle: object): void;
  lroEnabled(device: string): boolean | null;
}

/** build/Release is where node-gyp puts it (`npm ci` builds it from binding.gyp), from dist/src/io/. */
const ADDON_PATH = '../../../build/Release/capture.node';

/** pcap_datalink's DLT_ values (pcap/dlt.h) for the link types we decode. */
const LINK_TYPES: Record<number, LinkType> = {
  1: LinkType.ETHERNET, // DLT_EN10MB
  12: LinkType.RAW, // DLT_RAW on Linux
  14: LinkType.RAW, // DLT_RAW on some BSDs
  101: LinkType.RAW, // LINKTYPE_RAW
  113: LinkType.LINUX_SLL, // DLT_LINUX_SLL: the "any" device
  276: LinkType.LINUX_SLL2, // DLT_LINUX_SLL2
};

export interface CaptureOptions {
  interface: string;
  /** One to three, in priority order (`captureLanes`). */
  lanes: readonly CaptureLane[];
  /**
   * The whole-frame companion of the first lane (`wholeFramesLane`): its copy of a frame that the
   * first lane's snap length cut short replaces the short one, in the first lane's order.
   */
  wholeFrames?: CaptureLane | undefined;
}

export interface CaptureLane {
  /** BPF filter expression (pcap-filter(7)). */
  filter: string;
  /** Kernel buffer for the lane's packets not yet read. */
  bufferBytes: number;
  /** Bytes kept of each packet. */
  snapLength: number;
}

/** What `next` found. */
export const NextResult = {
  PACKET: 1,
  TIMED_OUT: 0,
  ERROR: -1,
} as const;

export class Capture {
  readonly linkType: LinkType;
  /** The last packet `next` returned: bytes `frame[0, capturedLength)`. */
  readonly frame: Uint8Array;
  /** Written by the addon per packet: tv_sec, tv_usec, caplen, len, lane, kernel checksum state. */
  private readonly header = new Uint32Array(6);
  private readonly addon: CaptureAddon;
  private readonly handle: object;
  /** Lanes read in priority order (`options.lanes`), without the whole-frame companion. */
  private readonly laneCount: number;
  private closed = false;

  /**
   * Opens a live capture in immediate mode (libpcap's TPACKET_V3 otherwise holds packets until a
   * block fills or its timeout passes), not promiscuous, one libpcap handle per lane of
   * `options.lanes`. Throws an Error with libpcap's reason (no such device, no permission, a bad
   * filter, a link type we cannot decode).
   */
  constructor(options: CaptureOptions) {
    this.addon = require(ADDON_PATH) as CaptureAddon;
    const lanes = options.wholeFrames === undefined ? options.lanes : [...options.lanes, options.wholeFrames];
    this.laneCount = options.lanes.length;
    this.frame = new Uint8Array(Math.max(...lanes.map((lane) => lane.snapLength)));
    const opened = this.addon.open(
      options.interface,
      lanes.map((lane) => lane.filter),
      lanes.map((lane) => lane.bufferBytes),
      lanes.map((lane) => lane.snapLength),
      this.frame,
      this.header,
      options.wholeFrames !== undefined,
    );
    this.handle = opened.handle;
    const linkType = LINK_TYPES[opened.linkType];
    if (linkType === undefined) {
      this.close();
      throw new Error(`interface ${options.interface} has link type ${opened.linkType} (pcap-linktype(7)), which is not supported`);
    }
    this.linkType = linkType;
  }

  /**
   * The next packet into `frame`: PACKET, or TIMED_OUT when none arrived within `timeoutMs`
   * (the thread blocks meanwhile), or ERROR (`lastError` says which).
   */
  next(timeoutMs: number): number {
    return this.addon.next(this.handle, timeoutMs);
  }

  /** The last packet's header: bytes captured, bytes on the wire, capture time (libpcap's timeval). */
  get capturedLength(): number {
    return this.header[2]!;
  }
  get wireLength(): number {
    return this.header[3]!;
  }
  get timestampSeconds(): number {
    return this.header[0]!;
  }
  get timestampMicros(): number {
    return this.header[1]!;
  }
  /**
   * What the kernel said of the last packet's TCP checksum (wire/segment.ts KernelChecksum), read
   * from the ring frame's tp_status (native/capture.c says how).
   */
  get kernelChecksum(): KernelChecksum {
    return this.header[5]! as KernelChecksum;
  }
  /** Which of `options.lanes` the last packet came from (its index). */
  get lane(): number {
    return this.header[4]!;
  }

  get lastError(): string {
    return this.addon.lastError(this.handle);
  }

  /**
   * libpcap's counters of each lane, in the order of `options.lanes`, and of the whole-frame
   * companion (zeros without one).
   */
  stats(): { lanes: LaneStats[]; wholeFrames: LaneStats } {
    const numbers = this.addon.stats(this.handle);
    const lanes: LaneStats[] = [];
    for (let i = 0; i + 1 < numbers.length; i += 2) lanes.push({ received: numbers[i]!, dropped: numbers[i + 1]! });
    return { lanes: lanes.slice(0, this.laneCount), wholeFrames: lanes[this.laneCount] ?? { received: 0, dropped: 0 } };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }
}

export interface LaneStats {
  /** Packets that passed the lane's filter, and those the kernel dropped because its buffer was full. */
  received: number;
  dropped: number;
}

/**
 * Whether large receive offload is on at `device` (the NIC merges segments itself, ETHTOOL_GFLAGS);
 * null when its driver does not say.
 */
export function lroEnabled(device: string): boolean | null {
  return (require(ADDON_PATH) as CaptureAddon).lroEnabled(device);
}

/** The index of the SYN lane in `captureLanes`: every packet from it is a SYN (without RST), whatever its length. */
export const SYN_LANE = 1;
/** The index of the lane of everything else, ICMP too-big messages quoting our segments among it. */
export const REST_LANE = 2;

/**
 * Snap length of the whole-frame companion of the lane of open connections' segments
 * (`wholeFramesLane`): a whole coalesced frame (GRO, LRO, or TSO/GSO from a sender on this host:
 * docs/operations.md, "Offloads"), which the capture thread cuts into pieces that fit a ring slot
 * (wire/coalesced.ts). GRO stops merging before the IP
 * packet passes 64 KiB; with the link header and libpcap's frame header this length keeps a
 * TPACKET_V2 frame within a 64 KiB block (libpcap doubles the block size from a page until one
 * frame fits, so 65,536 + 1 bytes would take 128 KiB each), and it holds every frame GRO makes of
 * 1,448- or 1,460-byte segments (45 of 1,448: 65,226 bytes with Ethernet). A frame longer still
 * is counted in `decode.truncated`; its sender retransmits what was lost.
 */
export const COALESCED_SNAP_LENGTH = 65_280;

/**
 * The capture's lanes, which together select the packets to the listen endpoints (TCP to one of
 * the addresses and its port; our own replies, from those endpoints, never match), in priority
 * order:
 *   1. segments of open connections, without SYN (RFC 9293 §3.1: every segment after the
 *      handshake carries ACK): requests, ACKs, FINs, and RSTs with ACK;
 *   2. SYNs;
 *   3. the rest: RSTs without ACK (mostly the replies to the SYN+ACKs that a flood with forged
 *      sources draws), and IPv6 packets with extension headers, which are dropped anyway.
 * Each lane is a kernel buffer of its own, so a SYN flood beyond what the capture thread can
 * take overflows the second only: the clients being served keep theirs, and the capture
 * thread's time goes to SYNs before the flood's RSTs.
 *
 * Snap length: `snapLength` (a ring slot) for all three. A longer frame of an open connection is
 * also captured whole by the first lane's companion, `wholeFramesLane`.
 *
 * Buffers: in immediate mode libpcap uses TPACKET_V2, whose fixed frames are sized for the snap
 * length (2 KiB for the front end's 1978, two to a page: front-end.ts SNAP_LENGTH), so the first
 * lane's 64 MiB holds 32,768 packets, 300 ms at 100k packets/s while the capture thread is
 * descheduled (16 MiB measurably dropped on a busy 2-core machine: bench/capture-rate.ts); the
 * SYNs' 8 MiB 4,096 SYNs (300 ms at 12k connections/s), the rest's 2 MiB 1,024 packets.
 *
 * `tcp[…]` reads IPv4 only (pcap-filter(7)); for IPv6 the flags are at byte 40 + 13 behind a
 * fixed header with TCP next, which is also all that `tcp dst port` matches.
 */
/**
 * ICMP "fragmentation needed" (type 3 code 4) and ICMPv6 "packet too big" (type 2) quoting a
 * segment from one of the endpoints (RFC 1191, RFC 8201): path MTU discovery for our flows, which
 * the kernel does not do for us (it has no socket for them). The quoted IP header starts 8 bytes
 * into the ICMP message: its source address at 8 + 12 (IPv4) or 8 + 8 (IPv6), the TCP source port
 * after a 20- or 40-byte header. `icmp[…]` counts from the ICMP header whatever the IP options;
 * `ip6[…]` assumes no extension header before ICMPv6, as routers send it.
 */
function tooBigQuoting(endpoints: readonly { address: string; port: number }[]): string {
  const terms = endpoints.map((e) => {
    const bytes = addressBytes(e.address);
    const word = (at: number): string => `0x${Buffer.from(bytes.subarray(at, at + 4)).toString('hex')}`;
    if (bytes.length === 4) return `(icmp and icmp[0] == 3 and icmp[1] == 4 and icmp[20:4] == ${word(0)} and icmp[28:2] == ${e.port})`;
    const address = [0, 4, 8, 12].map((at) => `ip6[${56 + at}:4] == ${word(at)}`).join(' and ');
    return `(icmp6 and ip6[6] == 58 and ip6[40] == 2 and ${address} and ip6[88:2] == ${e.port})`;
  });
  return `(${terms.join(' or ')})`;
}

/** A share of the first lane's buffer for another lane: at least 1 MiB. */
function laneBuffer(bytes: number): number {
  return Math.max(1024 * 1024, Math.floor(bytes));
}

/** The first lane's kernel buffer unless `--capture-buffer` says otherwise: 8,192 frames of 2 KiB. */
export const DEFAULT_CAPTURE_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * The lanes with the first one's kernel buffer `bufferBytes` (`--capture-buffer`); the SYN lane gets
 * an eighth of it, the rest a thirty-second (at least 1 MiB each): the memory they take is resident
 * from the start (docs/operations.md, "Memory").
 */
export function captureLanes(
  endpoints: readonly { address: string; port: number }[],
  snapLength: number,
  bufferBytes = DEFAULT_CAPTURE_BUFFER_BYTES,
): [established: CaptureLane, syn: CaptureLane, rest: CaptureLane] {
  const toEndpoints = toEndpointsFilter(endpoints);
  const established = establishedFlags;
  const syn = flagsAre((f) => `${f} & 0x06 == 0x02`);
  return [
    { filter: establishedFilter(endpoints), bufferBytes, snapLength },
    { filter: `${toEndpoints} and ${syn}`, bufferBytes: laneBuffer(bufferBytes / 8), snapLength },
    {
      filter: `(${toEndpoints} and not ${established} and not ${syn}) or ${tooBigQuoting(endpoints)}`,
      bufferBytes: laneBuffer(bufferBytes / 32),
      snapLength,
    },
  ];
}

/**
 * The whole-frame companion of `captureLanes`' first lane: the same segments, only those longer
 * than `snapLength` (`greater` tests the length on the wire: a GRO or TSO frame's whole length),
 * with COALESCED_SNAP_LENGTH. libpcap sizes each frame of a TPACKET_V2 ring for its snap length
 * when the interface has any offload on that could deliver longer frames (TSO, GSO, GRO or LRO;
 * veth keeps GSO on even with `tx off`): 64 MiB then hold 1,027 frames of 64 KiB against 32,768 of
 * 2 KiB (measured on a veth, session run of 2026-12-03). So the first lane keeps its short frames
 * and this one takes the long ones; the addon puts each whole copy in the place of the first
 * lane's short one (native/capture.c take_whole), which keeps the first lane's order. Half the
 * first lane's buffer: with the default 32 MiB, 512 frames, each at least 2 KB of data.
 */
export function wholeFramesLane(
  endpoints: readonly { address: string; port: number }[],
  snapLength: number,
  firstLaneBufferBytes = DEFAULT_CAPTURE_BUFFER_BYTES,
): CaptureLane {
  return {
    filter: `${establishedFilter(endpoints)} and greater ${snapLength + 1}`,
    bufferBytes: laneBuffer(firstLaneBufferBytes / 2),
    snapLength: Math.max(snapLength, COALESCED_SNAP_LENGTH),
  };
}

function toEndpointsFilter(endpoints: readonly { address: string; port: number }[]): string {
  const terms = endpoints.map((e) => `(dst host ${e.address} and tcp dst port ${e.port})`);
  return `tcp and (${terms.join(' or ')})`;
}

/** The flags byte (RFC 9293 §3.1): SYN 0x02, RST 0x04, ACK 0x10. */
function flagsAre(test: (flags: string) => string): string {
  return `((ip and ${test('tcp[13]')}) or (ip6 and ip6[6] == 6 and ${test('ip6[53]')}))`;
}

/**
 * No SYN, and no RST without ACK: a client aborting its connection sends RST+ACK (Linux always
 * does), the RST that answers a SYN+ACK nobody asked for has no ACK (§3.10.7.1).
 */
const establishedFlags = flagsAre((f) => `${f} & 0x02 == 0 and ${f} & 0x14 != 0x04`);

function establishedFilter(endpoints: readonly { address: string; port: number }[]): string {
  return `${toEndpointsFilter(endpoints)} and ${establishedFlags}`;
}
