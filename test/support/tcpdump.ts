/**
 * tcpdump writing a pcap file inside a lab namespace, and that file read back as TCP segments
 * (decoded by the wire layer, checksums verified), for lab tests that count what crossed an
 * interface: per connection, per direction, in the order the interface saw it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readPcap } from './pcap-file.js';
import type { Lab, Side } from '../../lab/lab.js';
import { formatAddress } from '../../src/wire/format.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, LinkType, Segment } from '../../src/wire/segment.js';
import { ETHERNET_HEADER_LENGTH, EtherType } from '../../src/wire/ethernet.js';

/** A BPF filter term for "not a bare ACK": SYN, FIN or RST set, or data (IPv4 only). */
export const NOT_A_BARE_ACK_V4 =
  '(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0 or ip[2:2] - ((ip[0] & 0x0f) << 2) - ((tcp[12] & 0xf0) >> 2) != 0)';

/** The kernel's buffer for the capture (KiB): a few seconds of a dnsperf run without a drop. */
const CAPTURE_BUFFER_KIB = 32 * 1024;
/** How long tcpdump may take to have every packet from the kernel (it hands them over at least every second). */
const CATCH_UP_TIMEOUT_MS = 5_000;

export interface CaptureCounts {
  /** Packets tcpdump wrote to the file. */
  captured: number;
  /** Packets the kernel passed through the filter, and those it dropped for want of buffer. */
  receivedByFilter: number;
  droppedByKernel: number;
}

export interface PcapCapture {
  /**
   * Once the traffic is over: waits until tcpdump has written every packet the kernel passed it,
   * then stops it; resolves to its final counts. Throws if it cannot catch up within
   * CATCH_UP_TIMEOUT_MS, or if the kernel dropped any packet (its buffer full).
   */
  stop(): Promise<CaptureCounts>;
}

/** tcpdump's count line (on SIGUSR1: one line; on exit: one line per count). */
const COUNT_PATTERNS = {
  captured: /(\d+) packets? captured/,
  receivedByFilter: /(\d+) packets? received by filter/,
  droppedByKernel: /(\d+) packets? dropped by kernel/,
} as const;

/**
 * tcpdump on `device` in a lab namespace, writing every packet that matches `filter` to `file`
 * (a `.pcap` name: Debian's AppArmor profile lets tcpdump write those); resolves once it captures.
 *
 * Without --immediate-mode (which would cost a wake-up per packet under load) the kernel hands
 * packets over a block at a time, when a block fills or after tcpdump's 1 s timeout, and on
 * SIGTERM tcpdump abandons a block it has not been handed yet: a capture stopped at once would
 * miss the last second. So `stop` first asks for counts (SIGUSR1) until everything the filter let
 * through has been written.
 */
export async function startPcapCapture(lab: Lab, side: Side, device: string, file: string, filter: string): Promise<PcapCapture> {
  // -Z root: keep root, so the file lands in the lab's root-only temp dir whatever tcpdump's default user.
  const tcpdump = lab.spawn(side, ['tcpdump', '-i', device, '-n', '-B', String(CAPTURE_BUFFER_KIB), '-Z', 'root', '-w', file, filter]);
  let stderr = '';
  tcpdump.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await lab.waitForLine(tcpdump, /listening on/, 5_000);
  /** The counts in the last of tcpdump's reports so far (each count from its latest line). */
  const latest = (): CaptureCounts & { reports: number } => {
    const value = (pattern: RegExp): number => Number([...stderr.matchAll(new RegExp(pattern, 'g'))].at(-1)?.[1] ?? NaN);
    return {
      reports: stderr.match(new RegExp(COUNT_PATTERNS.receivedByFilter, 'g'))?.length ?? 0,
      captured: value(COUNT_PATTERNS.captured),
      receivedByFilter: value(COUNT_PATTERNS.receivedByFilter),
      droppedByKernel: value(COUNT_PATTERNS.droppedByKernel),
    };
  };
  return {
    async stop() {
      const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
      for (;;) {
        const asked = latest().reports;
        tcpdump.kill('SIGUSR1');
        while (latest().reports === asked && Date.now() < deadline) await sleep(20);
        const now = latest();
        if (now.reports > asked && now.captured === now.receivedByFilter) break;
        if (Date.now() >= deadline)
          throw new Error(`tcpdump on ${device} did not catch up within ${CATCH_UP_TIMEOUT_MS} ms: ${stderr.trim()}`);
        await sleep(100);
      }
      await lab.stop(tcpdump);
      const final = latest();
      if (final.droppedByKernel !== 0) throw new Error(`tcpdump on ${device} missed packets: ${stderr.trim()}`);
      return { captured: final.captured, receivedByFilter: final.receivedByFilter, droppedByKernel: final.droppedByKernel };
    },
  };
}

export interface CapturedSegment {
  /** When the interface saw it: microseconds since the epoch, on the clock every capture shares. */
  timeUs: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** TcpFlag bits. */
  flags: number;
  seq: number;
  payload: Uint8Array;
}

/** Every packet in a pcap file as a TCP segment, in capture order; throws on one that does not decode. */
export function readSegments(file: string): CapturedSegment[] {
  const capture = readPcap(file);
  const segment = new Segment();
  return capture.records.map((record, index) => {
    const result = decodeFrame(capture.linkType, record.data, 0, record.capturedLength, ChecksumPolicy.VERIFY, segment);
    if (result !== DecodeResult.OK) throw new Error(`${file}: packet ${index + 1} does not decode: ${DECODE_RESULT_NAMES[result]}`);
    return {
      timeUs: record.tsSec * 1_000_000 + record.tsUsec,
      src: formatAddress(segment.buf, segment.srcAddrOffset, segment.family),
      srcPort: segment.srcPort,
      dst: formatAddress(segment.buf, segment.dstAddrOffset, segment.family),
      dstPort: segment.dstPort,
      flags: segment.flags,
      seq: segment.seq,
      payload: segment.buf.subarray(segment.payloadOffset, segment.payloadOffset + segment.payloadLength),
    };
  });
}

export interface CapturedDatagram {
  src: string;
  dst: string;
  dstPort: number;
  payload: Uint8Array;
}

/**
 * Every packet in a pcap file of Ethernet frames (tcpdump on lo or a veth) as a UDP datagram, in
 * capture order; throws on one that is not IPv4 or IPv6 (without extension headers) carrying UDP.
 */
export function readUdpDatagrams(file: string): CapturedDatagram[] {
  const capture = readPcap(file);
  if (capture.linkType !== LinkType.ETHERNET) throw new Error(`${file}: link type ${capture.linkType}, not Ethernet`);
  return capture.records.map((record, index) => {
    const frame = record.data.subarray(0, record.capturedLength);
    const etherType = (frame[12]! << 8) | frame[13]!;
    const ip = ETHERNET_HEADER_LENGTH;
    // IPv4: protocol at 9, header length in words (RFC 791 §3.1); IPv6: next header at 6, a 40-byte header (RFC 8200 §3).
    const v4 = etherType === EtherType.IPV4;
    const protocol = v4 ? frame[ip + 9] : etherType === EtherType.IPV6 ? frame[ip + 6] : -1;
    if (protocol !== 17)
      throw new Error(`${file}: packet ${index + 1} is not UDP (EtherType ${etherType.toString(16)}, protocol ${protocol})`);
    const udp = ip + (v4 ? (frame[ip]! & 0x0f) * 4 : 40);
    const family = v4 ? 4 : 6;
    const udpLength = (frame[udp + 4]! << 8) | frame[udp + 5]!;
    return {
      src: formatAddress(frame, ip + (v4 ? 12 : 8), family),
      dst: formatAddress(frame, ip + (v4 ? 16 : 24), family),
      dstPort: (frame[udp + 2]! << 8) | frame[udp + 3]!,
      payload: frame.subarray(udp + 8, udp + udpLength),
    };
  });
}
