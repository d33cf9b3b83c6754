import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SegmentCutter } from '../../../src/wire/coalesced.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { Offloaded, offloadedFrame, Packet, frame as capturedFrame } from '../../support/fixtures.js';

const SLOT_BYTES = 2048;

function decode(bytes: Uint8Array, length = bytes.length): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.ETHERNET, bytes, 0, length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

/** The pieces of captured frame `index` of offloaded.pcap, each decoded from a copy of its bytes. */
function cut(index: number): { whole: Segment; pieces: Segment[]; lengths: number[] } {
  const whole = decode(offloadedFrame(index));
  const cutter = new SegmentCutter(SLOT_BYTES);
  const count = cutter.prepare(whole, 0);
  const pieces: Segment[] = [];
  const lengths: number[] = [];
  for (let i = 0; i < count; i++) {
    const length = cutter.piece(i);
    lengths.push(length);
    pieces.push(decode(cutter.out.slice(0, length)));
  }
  return { whole, pieces, lengths };
}

describe('coalesced frames cut into pieces that fit a ring slot', () => {
  for (const [name, index, payload] of [
    ['IPv4, 14,480 bytes', Offloaded.V4_DATA_14480, 14480],
    ['IPv4, 7,240 bytes', Offloaded.V4_DATA_FIRST, 7240],
    ['IPv6, 14,280 bytes', Offloaded.V6_DATA_14280, 14280],
  ] as const) {
    it(`${name}: every piece decodes with its checksum accepted, in sequence, the payload whole and in order`, () => {
      const { whole, pieces, lengths } = cut(index);
      assert.equal(whole.payloadLength, payload);
      const headerBytes = whole.payloadOffset;
      assert.equal(pieces.length, Math.ceil(payload / (SLOT_BYTES - headerBytes)));
      let seq = whole.seq;
      const joined: number[] = [];
      pieces.forEach((piece, i) => {
        assert.ok(lengths[i]! <= SLOT_BYTES);
        assert.equal(piece.checksumOffloaded, true, `piece ${i}`);
        assert.equal(piece.seq, seq, `piece ${i}`);
        assert.equal(piece.ack, whole.ack);
        assert.equal(piece.tsVal, whole.tsVal);
        assert.equal(piece.ipEnd, lengths[i], 'IP length rewritten to the piece');
        const last = i === pieces.length - 1;
        // PSH stays on the last piece only (tcp_gso_segment); ACK on all.
        assert.equal(piece.flags, last ? whole.flags : whole.flags & ~TcpFlag.PSH, `piece ${i}`);
        seq = (seq + piece.payloadLength) >>> 0;
        for (let b = 0; b < piece.payloadLength; b++) joined.push(piece.buf[piece.payloadOffset + b]!);
      });
      assert.equal(seq, (whole.seq + payload) >>> 0);
      assert.deepEqual(joined, Array.from(whole.buf.subarray(whole.payloadOffset, whole.payloadOffset + payload)));
    });
  }

  it('leaves alone what fits a slot, or carries no more than one piece, and SYNs', () => {
    const cutter = new SegmentCutter(SLOT_BYTES);
    for (const index of [Offloaded.V4_DATA_LAST, Offloaded.V6_DATA_LAST, Offloaded.V4_SYN, Offloaded.V4_HANDSHAKE_ACK]) {
      assert.equal(cutter.prepare(decode(offloadedFrame(index)), 0), 0, `packet ${index}`);
    }
    assert.equal(cutter.prepare(decode(capturedFrame('ethernet', Packet.BIG_ANSWER_FIRST)), 0), 0);
    // A SYN longer than a slot (TCP Fast Open data) is never cut: its data is not accepted anyway.
    const syn = decode(offloadedFrame(Offloaded.V4_DATA_FIRST));
    syn.flags |= TcpFlag.SYN;
    assert.equal(cutter.prepare(syn, 0), 0);
  });

  it('cuts at the frame offset it is given (a frame inside a larger buffer)', () => {
    const bytes = offloadedFrame(Offloaded.V4_DATA_FIRST);
    const buffer = new Uint8Array(bytes.length + 100);
    buffer.set(bytes, 100);
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.ETHERNET, buffer, 100, bytes.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    const cutter = new SegmentCutter(SLOT_BYTES);
    const count = cutter.prepare(seg, 100);
    assert.equal(count, 4);
    const first = decode(cutter.out.slice(0, cutter.piece(0)));
    assert.equal(first.seq, seg.seq);
    assert.equal(first.payloadLength, SLOT_BYTES - 66);
  });
});
