/**
 * Packet capture with libpcap, through our Node-API addon (native/capture.c), for a thread that
 * does nothing else (workers/capture.ts).
 *
 * The capture thread pulls packets: `next` copies the next packet into one buffer owned by this
 * object and returns, or waits in poll(2) for at most `timeoutMs` when none is ready. Nothing is
 * allocated per packet and nothing is registered with the event loop, so the thread may block
 * there and still exit cleanly. (The `pcap` package's binding polls through the event loop and
 * never closes its handle, which aborts a worker thread when it exits; nor can it load in a
 * worker thread while another thread has it.)
 */
import { createRequire } from 'node:module';
import { LinkType } from '../wire/segment.js';

const require = createRequire(import.meta.url);

interface CaptureAddon {
  open(device: string, filter: string, snapLength: number, bufferBytes: number, frame: Uint8Array, header: Uint32Array): { handle: object; linkType: number };
  next(handle: object, timeoutMs: number): number;
  stats(handle: object): [number, number, number];
  lastError(handle: object): string;
  close(handle: object): void;
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
  /** BPF filter expression (pcap-filter(7)). */
  filter: string;
  /** Bytes kept of each packet. */
  snapLength: number;
  /** Kernel buffer for packets not yet read. */
  bufferBytes: number;
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
  private readonly header = new Uint32Array(4);
  private readonly addon: CaptureAddon;
  private readonly handle: object;
  private closed = false;

  /**
   * Opens a live capture in immediate mode (libpcap's TPACKET_V3 otherwise holds packets until a
   * block fills or its timeout passes), not promiscuous, with `options.filter` applied. Throws an
   * Error with libpcap's reason (no such device, no permission, a bad filter, a link type we
   * cannot decode).
   */
  constructor(options: CaptureOptions) {
    this.addon = require(ADDON_PATH) as CaptureAddon;
    this.frame = new Uint8Array(options.snapLength);
    const opened = this.addon.open(options.interface, options.filter, options.snapLength, options.bufferBytes, this.frame, this.header);
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

  get lastError(): string {
    return this.addon.lastError(this.handle);
  }

  stats(): { received: number; dropped: number; interfaceDropped: number } {
    const [received, dropped, interfaceDropped] = this.addon.stats(this.handle);
    return { received, dropped, interfaceDropped };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }
}

/**
 * The BPF filter selecting packets to the listen endpoints: TCP to one of the addresses and its
 * port. Our own replies (from those endpoints) never match.
 */
export function captureFilter(endpoints: readonly { address: string; port: number }[]): string {
  const terms = endpoints.map((e) => `(dst host ${e.address} and tcp dst port ${e.port})`);
  return `tcp and (${terms.join(' or ')})`;
}
