/**
 * tcpdump writing a pcap file inside a lab namespace, and that file read back as TCP segments
 * (decoded by the wire layer, checksums verified), for lab tests that count what crossed an
 * interface: per connection, per direction, in the order the interface saw it.
 */
import { readPcap } from './pcap-file.js';
import type { Lab, Side } from '../../lab/lab.js';
import { formatAddress } from '../../src/wire/format.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, Segment } from '../../src/wire/segment.js';

/** A BPF filter term for "not a bare ACK": SYN, FIN or RST set, or data (IPv4 only). */
export const NOT_A_BARE_ACK_V4 =
  '(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0 or ip[2:2] - ((ip[0] & 0x0f) << 2) - ((tcp[12] & 0xf0) >> 2) != 0)';

/** The kernel's buffer for the capture (KiB): a few seconds of a dnsperf run without a drop. */
const CAPTURE_BUFFER_KIB = 32 * 1024;

export interface PcapCapture {
  /** Stops tcpdump (which then writes out what it holds); resolves to the packets the kernel dropped. */
  stop(): Promise<number>;
}

/**
 * tcpdump on `device` in a lab namespace, writing every packet that matches `filter` to `file`
 * (a `.pcap` name: Debian's AppArmor profile lets tcpdump write those); resolves once it captures.
 */
export async function startPcapCapture(lab: Lab, side: Side, device: string, file: string, filter: string): Promise<PcapCapture> {
  // -Z root: keep root, so the file lands in the lab's root-only temp dir whatever tcpdump's default user.
  const tcpdump = lab.spawn(side, ['tcpdump', '-i', device, '-n', '-B', String(CAPTURE_BUFFER_KIB), '-Z', 'root', '-w', file, filter]);
  await lab.waitForLine(tcpdump, /listening on/, 5_000);
  return {
    async stop() {
      await lab.stop(tcpdump);
      // Printed on exit, after "packets captured" and "packets received by filter".
      const [, dropped] = await lab.waitForLine(tcpdump, /^(\d+) packets? dropped by kernel/, 1_000);
      return Number(dropped);
    },
  };
}

export interface CapturedSegment {
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
