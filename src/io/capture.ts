/**
 * Packet capture with libpcap, through the `pcap` package's native binding.
 *
 * We call the binding directly instead of `pcap.createSession` because the package's JavaScript
 * wrapper allocates a `PacketWithHeader` and emits an event for every packet; the binding itself
 * copies each packet into one buffer we own and calls one function, so the capture path
 * allocates nothing per packet.
 */
import { createRequire } from 'node:module';
import { LinkType } from '../wire/segment.js';

const require = createRequire(import.meta.url);

interface PcapBindingSession {
  open_live(
    device: string,
    filter: string,
    bufferSize: number,
    snapLength: number,
    outfile: string,
    onPacket: () => void,
    monitor: boolean,
    bufferTimeout: number,
    onWarning: (message: string) => void,
    promiscuous: boolean,
  ): string;
  dispatch(buffer: Buffer, header: Buffer): number;
  start_polling(): void;
  close(): void;
  stats(): { ps_recv: number; ps_drop: number; ps_ifdrop: number };
  read_callback?: () => void;
}

interface PcapBinding {
  PcapSession: new () => PcapBindingSession;
  lib_version(): string;
}

/** Names the binding reports for the link types it knows (pcap_session.cc). */
const LINK_TYPES: Record<string, LinkType> = {
  LINKTYPE_ETHERNET: LinkType.ETHERNET,
  LINKTYPE_RAW: LinkType.RAW,
  LINKTYPE_LINUX_SLL: LinkType.LINUX_SLL,
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

/** Called for each packet: bytes `frame[0, capturedLength)`, valid only during the call. */
export type FrameHandler = (frame: Buffer, capturedLength: number, wireLength: number) => void;

export interface Capture {
  readonly linkType: LinkType;
  stats(): { received: number; dropped: number; interfaceDropped: number };
  close(): void;
}

/**
 * Opens a live capture in immediate mode: libpcap's TPACKET_V3 otherwise holds packets until a
 * block fills or its timeout passes, adding up to a second of latency to every answer.
 */
export function openCapture(options: CaptureOptions, onFrame: FrameHandler): Capture {
  const binding = require('pcap/build/Release/pcap_binding.node') as PcapBinding;
  const session = new binding.PcapSession();
  const frame = Buffer.alloc(options.snapLength);
  // Header as the binding writes it: tv_sec, tv_usec, caplen, len, host byte order.
  const header = Buffer.alloc(16);
  const header32 = new Uint32Array(header.buffer, header.byteOffset, 4);

  const onPacket = (): void => onFrame(frame, header32[2]!, header32[3]!);
  const linkTypeName = session.open_live(
    options.interface,
    options.filter,
    options.bufferBytes,
    options.snapLength,
    '',
    onPacket,
    false,
    0, // buffer timeout 0: the binding then sets immediate mode
    () => {}, // "no IPv4 address assigned" on a v6-only interface is harmless
    false,
  );
  const linkType = LINK_TYPES[linkTypeName];
  if (linkType === undefined) {
    session.close();
    throw new Error(`interface ${options.interface} has link type ${linkTypeName}, which is not supported`);
  }
  session.read_callback = () => {
    session.dispatch(frame, header);
  };
  session.start_polling();

  return {
    linkType,
    stats() {
      const s = session.stats();
      return { received: s.ps_recv, dropped: s.ps_drop, interfaceDropped: s.ps_ifdrop };
    },
    close() {
      session.read_callback = undefined;
      session.close();
      // pcap_breakloop only flags the handle; one more dispatch lets the binding close it.
      session.dispatch(frame, header);
    },
  };
}

/**
 * The BPF filter selecting packets to the listen endpoints: TCP to one of the addresses and its
 * port. Our own replies (from those endpoints) never match.
 */
export function captureFilter(endpoints: readonly { address: string; port: number }[]): string {
  const terms = endpoints.map((e) => `(dst host ${e.address} and tcp dst port ${e.port})`);
  return `tcp and (${terms.join(' or ')})`;
}
