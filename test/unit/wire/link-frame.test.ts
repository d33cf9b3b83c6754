/**
 * LinkFrame from real bytes: the two segments of a captured 1,628-byte answer (test/fixtures,
 * ethernet.pcap: 1,208 bytes, then 420 with PSH), replied to the captured query's addresses, made
 * one GSO frame — and cut back apart as the kernel's GSO would (wire/coalesced.ts does what
 * `tcp_gso_segment` does), giving the captured segments again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16 } from '../../../src/wire/bytes.js';
import { SegmentCutter } from '../../../src/wire/coalesced.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { LinkFrame, MAX_LINK_FRAME, VIRTIO_NET_HEADER_LENGTH } from '../../../src/wire/link-frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { frame, Packet } from '../../support/fixtures.js';

function decode(bytes: Uint8Array, offset = 0, length = bytes.length - offset): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.ETHERNET, bytes, offset, length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

/** The reply header of captured server segment `seg`, built as the responder builds one: from the query it answers. */
function replyLike(query: Segment, seg: Segment): ReplyHeader {
  const hdr = new ReplyHeader().reverseOf(query);
  hdr.seq = seg.seq;
  hdr.ack = seg.ack;
  hdr.flags = seg.flags;
  hdr.window = seg.window;
  hdr.hasTimestamps = seg.hasTimestamps;
  hdr.tsVal = seg.tsVal;
  hdr.tsEcr = seg.tsEcr;
  return hdr;
}

const query = decode(frame('ethernet', Packet.BIG_QUERY));
const first = decode(frame('ethernet', Packet.BIG_ANSWER_FIRST));
const second = decode(frame('ethernet', Packet.BIG_ANSWER_SECOND));

function payloadOf(seg: Segment): number[] {
  return Array.from(seg.buf.subarray(seg.payloadOffset, seg.payloadOffset + seg.payloadLength));
}

describe('LinkFrame', () => {
  it('takes the two captured segments as one frame: virtio-net header, Ethernet back to the sender, checksum left to offload', () => {
    const out = new Uint8Array(MAX_LINK_FRAME);
    const linkFrame = new LinkFrame();
    linkFrame.begin(replyLike(query, first), first.buf, first.payloadOffset, first.payloadLength, out, 0);
    assert.equal(linkFrame.append(replyLike(query, second), second.buf, second.payloadOffset, second.payloadLength), true);
    const length = linkFrame.finish();
    assert.equal(linkFrame.segmentCount, 2);

    const headers = 14 + 20 + 32; // Ethernet, IPv4, TCP with timestamps
    assert.equal(length, VIRTIO_NET_HEADER_LENGTH + headers + 1208 + 420);
    // struct virtio_net_hdr, little-endian: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, csum_offset.
    assert.deepEqual(
      [out[0], out[1], out[2]! | (out[3]! << 8), out[4]! | (out[5]! << 8), out[6]! | (out[7]! << 8), out[8]! | (out[9]! << 8)],
      [1, 1, headers, 1208, 14 + 20, 16],
    );
    // To the MAC address the query came from, from the one it went to.
    const queryBytes = query.buf;
    assert.deepEqual(Array.from(out.subarray(10, 16)), Array.from(queryBytes.subarray(6, 12)));
    assert.deepEqual(Array.from(out.subarray(16, 22)), Array.from(queryBytes.subarray(0, 6)));

    const whole = decode(out, VIRTIO_NET_HEADER_LENGTH, length - VIRTIO_NET_HEADER_LENGTH);
    assert.equal(whole.checksumOffloaded, true, 'the TCP checksum field holds the pseudo-header sum');
    assert.equal(whole.payloadLength, 1628);
    assert.equal(whole.flags, TcpFlag.ACK | TcpFlag.PSH, "the last segment's PSH");
    assert.deepEqual(payloadOf(whole), [...payloadOf(first), ...payloadOf(second)]);
  });

  it('is cut back by GSO into the captured segments: sequence numbers, flags, timestamps and bytes', () => {
    const out = new Uint8Array(MAX_LINK_FRAME);
    const linkFrame = new LinkFrame();
    linkFrame.begin(replyLike(query, first), first.buf, first.payloadOffset, first.payloadLength, out, 0);
    linkFrame.append(replyLike(query, second), second.buf, second.payloadOffset, second.payloadLength);
    const length = linkFrame.finish();
    const whole = decode(out, VIRTIO_NET_HEADER_LENGTH, length - VIRTIO_NET_HEADER_LENGTH);
    const gsoSize = readU16(Uint8Array.from([out[5]!, out[4]!]), 0);
    const cutter = new SegmentCutter(whole.payloadOffset - VIRTIO_NET_HEADER_LENGTH + gsoSize);
    assert.equal(cutter.prepare(whole, VIRTIO_NET_HEADER_LENGTH), 2);
    for (const [i, captured] of [first, second].entries()) {
      const piece = decode(cutter.out.slice(0, cutter.piece(i)));
      for (const field of ['seq', 'ack', 'flags', 'window', 'tsVal', 'tsEcr', 'srcPort', 'dstPort', 'payloadLength'] as const) {
        assert.equal(piece[field], captured[field], `segment ${i}: ${field}`);
      }
      assert.deepEqual(payloadOf(piece), payloadOf(captured), `segment ${i}: bytes`);
    }
  });

  it('keeps apart what the receiver could tell apart', () => {
    const out = new Uint8Array(MAX_LINK_FRAME);
    const linkFrame = new LinkFrame();
    const start = (): void => linkFrame.begin(replyLike(query, first), first.buf, first.payloadOffset, first.payloadLength, out, 0);
    const next = (change: (hdr: ReplyHeader) => void): boolean => {
      const hdr = replyLike(query, second);
      change(hdr);
      return linkFrame.append(hdr, second.buf, second.payloadOffset, second.payloadLength);
    };
    const refusals: [string, (hdr: ReplyHeader) => void][] = [
      ['a gap in the sequence', (hdr) => (hdr.seq = (hdr.seq + 1) >>> 0)],
      ['another acknowledgment', (hdr) => (hdr.ack = (hdr.ack + 1) >>> 0)],
      ['another window', (hdr) => (hdr.window += 1)],
      ['another TSval', (hdr) => (hdr.tsVal = (hdr.tsVal + 1) >>> 0)],
      ['another client port', (hdr) => (hdr.dstPort += 1)],
      ['another client address', (hdr) => (hdr.dstAddr[3] = hdr.dstAddr[3]! ^ 1)],
      ['another next hop', (hdr) => (hdr.linkDst[5] = hdr.linkDst[5]! ^ 1)],
      ['an RST', (hdr) => (hdr.flags |= TcpFlag.RST)],
    ];
    for (const [what, change] of refusals) {
      start();
      assert.equal(next(change), false, what);
      linkFrame.finish();
    }
    // Nothing after a segment shorter than the first (GSO cuts all but the last at one size), or after a FIN.
    start();
    assert.equal(
      next(() => {}),
      true,
    );
    const after = replyLike(query, second);
    after.seq = (second.seq + second.payloadLength) >>> 0;
    assert.equal(linkFrame.append(after, second.buf, second.payloadOffset, second.payloadLength), false, 'after a short segment');
    linkFrame.finish();
    const withFin = replyLike(query, first);
    withFin.flags |= TcpFlag.FIN;
    linkFrame.begin(withFin, first.buf, first.payloadOffset, first.payloadLength, out, 0);
    assert.equal(
      next(() => {}),
      false,
      'after a FIN',
    );
    assert.equal(linkFrame.finish(), VIRTIO_NET_HEADER_LENGTH + 14 + 20 + 32 + 1208);
    assert.equal(out[1], 0, 'one segment: GSO_NONE');
  });

  it('stops at the largest IP packet', () => {
    const out = new Uint8Array(MAX_LINK_FRAME);
    const linkFrame = new LinkFrame();
    const hdr = replyLike(query, first);
    linkFrame.begin(hdr, first.buf, first.payloadOffset, first.payloadLength, out, 0);
    let segments = 1;
    for (;;) {
      hdr.seq = (first.seq + segments * first.payloadLength) >>> 0;
      if (!linkFrame.append(hdr, first.buf, first.payloadOffset, first.payloadLength)) break;
      segments++;
    }
    // 20 + 32 + 54 × 1,208 = 65,284 ≤ 65,535 < 66,492.
    assert.equal(segments, 54);
    const length = linkFrame.finish();
    assert.equal(decode(out, VIRTIO_NET_HEADER_LENGTH, length - VIRTIO_NET_HEADER_LENGTH).ipEnd - VIRTIO_NET_HEADER_LENGTH - 14, 65_284);
  });
});
