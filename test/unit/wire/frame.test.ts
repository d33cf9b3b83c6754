/**
 * decodeFrame end to end on every captured frame of every link type, plus the contract that
 * makes it safe on the hot path: it never throws, never reads outside [offset, offset + length),
 * and resets the reused Segment on every call.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSegment } from '../../../src/wire/format.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { CAPTURES, frame, ipPacket, loadCapture, Packet, PACKET_COUNT, tcpdumpLines } from '../../support/fixtures.js';
import { Prng } from '../../support/prng.js';

/** Every field of a segment, offsets made relative to `base` (where the frame starts). */
function fields(seg: Segment, base: number): Record<string, unknown> {
  return {
    family: seg.family,
    ipOffset: seg.ipOffset - base,
    srcAddrOffset: seg.srcAddrOffset - base,
    dstAddrOffset: seg.dstAddrOffset - base,
    tcpOffset: seg.tcpOffset - base,
    tcpHeaderLength: seg.tcpHeaderLength,
    payloadOffset: seg.payloadOffset - base,
    payloadLength: seg.payloadLength,
    srcPort: seg.srcPort,
    dstPort: seg.dstPort,
    seq: seg.seq,
    ack: seg.ack,
    flags: seg.flags,
    window: seg.window,
    mss: seg.mss,
    windowScale: seg.windowScale,
    sackPermitted: seg.sackPermitted,
    hasTimestamps: seg.hasTimestamps,
    tsVal: seg.tsVal,
    tsEcr: seg.tsEcr,
  };
}

/** Offsets relative to the IP header, to compare decodings under different link headers. */
function fieldsFromIp(seg: Segment): Record<string, unknown> {
  return fields(seg, seg.ipOffset);
}

describe('decodeFrame on the captures', () => {
  it('decodes every frame of every link type, checksums verified, as tcpdump reads it', () => {
    const lines = tcpdumpLines();
    assert.equal(lines.length, PACKET_COUNT);
    const seg = new Segment();
    for (const capture of CAPTURES) {
      const file = loadCapture(capture.name);
      assert.equal(file.linkType, capture.linkType);
      assert.equal(file.records.length, PACKET_COUNT);
      file.records.forEach((record, i) => {
        const result = decodeFrame(file.linkType, record.data, 0, record.capturedLength, ChecksumPolicy.VERIFY, seg);
        assert.equal(DECODE_RESULT_NAMES[result], 'ok', `${capture.name} #${i}`);
        assert.equal(seg.ipOffset, capture.linkHeaderLength);
        assert.equal(formatSegment(seg), lines[i], `${capture.name} #${i}`);
      });
    }
  });

  it('decodes the same packet identically under every link type and as raw IP', () => {
    const a = new Segment();
    const b = new Segment();
    for (let i = 0; i < PACKET_COUNT; i++) {
      const raw = ipPacket(i);
      assert.equal(decodeFrame(LinkType.RAW, raw, 0, raw.length, ChecksumPolicy.VERIFY, a), DecodeResult.OK);
      for (const capture of CAPTURES) {
        const f = frame(capture.name, i);
        assert.equal(decodeFrame(capture.linkType, f, 0, f.length, ChecksumPolicy.VERIFY, b), DecodeResult.OK);
        assert.deepEqual(fieldsFromIp(b), fieldsFromIp(a), `${capture.name} #${i}`);
      }
    }
  });

  it('decodes the two segments of the large answer', () => {
    const seg = new Segment();
    const first = frame('ethernet', Packet.BIG_ANSWER_FIRST);
    assert.equal(decodeFrame(LinkType.ETHERNET, first, 0, first.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(seg.payloadLength, 1208); // 1220 (dig's MSS) − 12 bytes of timestamps option
    assert.equal((seg.buf[seg.payloadOffset]! << 8) | seg.buf[seg.payloadOffset + 1]!, 1626); // DNS length prefix
    const firstSeq = seg.seq;
    const second = frame('ethernet', Packet.BIG_ANSWER_SECOND);
    assert.equal(decodeFrame(LinkType.ETHERNET, second, 0, second.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(seg.payloadLength, 420);
    assert.equal(seg.seq, (firstSeq + 1208) >>> 0);
    assert.equal(1208 + 420, 2 + 1626);
  });

  it('decodes a frame at a non-zero offset of a larger buffer', () => {
    const f = frame('linux-sll2', Packet.V6_ANSWER);
    const big = new Uint8Array(f.length + 100).fill(0xa5);
    big.set(f, 37);
    const a = new Segment();
    const b = new Segment();
    assert.equal(decodeFrame(LinkType.LINUX_SLL2, f, 0, f.length, ChecksumPolicy.VERIFY, a), DecodeResult.OK);
    assert.equal(decodeFrame(LinkType.LINUX_SLL2, big, 37, f.length, ChecksumPolicy.VERIFY, b), DecodeResult.OK);
    assert.equal(b.buf, big);
    assert.deepEqual(fields(b, 37), fields(a, 0));
  });
});

describe('decodeFrame contract', () => {
  it('reports every truncation of every captured frame, at every length, as TRUNCATED', () => {
    const seg = new Segment();
    for (const capture of CAPTURES) {
      for (const record of loadCapture(capture.name).records) {
        for (let length = 0; length < record.capturedLength; length++) {
          const result = decodeFrame(capture.linkType, record.data, 0, length, ChecksumPolicy.VERIFY, seg);
          assert.equal(DECODE_RESULT_NAMES[result], 'truncated', `${capture.name} cut at ${length}`);
        }
      }
    }
  });

  it('resets the reused Segment: options of one packet never leak into the next', () => {
    const reused = new Segment();
    const order = [Packet.V4_SYN, Packet.V4_QUERY, Packet.V6_SYN_ACK, Packet.V6_ANSWER, Packet.V4_SYN, Packet.BIG_ANSWER_FIRST];
    for (const index of order) {
      const f = frame('ethernet', index);
      const fresh = new Segment();
      assert.equal(decodeFrame(LinkType.ETHERNET, f, 0, f.length, ChecksumPolicy.VERIFY, fresh), DecodeResult.OK);
      assert.equal(decodeFrame(LinkType.ETHERNET, f, 0, f.length, ChecksumPolicy.VERIFY, reused), DecodeResult.OK);
      assert.deepEqual(fields(reused, 0), fields(fresh, 0), `packet ${index}`);
    }
    // A failed decode leaves no option values behind either.
    const syn = frame('ethernet', Packet.V4_SYN);
    assert.equal(decodeFrame(LinkType.ETHERNET, syn, 0, syn.length, ChecksumPolicy.VERIFY, reused), DecodeResult.OK);
    assert.equal(decodeFrame(LinkType.ETHERNET, syn, 0, 20, ChecksumPolicy.VERIFY, reused), DecodeResult.TRUNCATED);
    const { mss, windowScale, sackPermitted, hasTimestamps, tsVal, tsEcr } = reused;
    assert.deepEqual([mss, windowScale, sackPermitted, hasTimestamps, tsVal, tsEcr], [0, -1, false, false, 0, 0]);
    assert.equal(reused.payloadLength, 0);
  });

  it('treats an offset/length outside the buffer as truncated and an unknown link type as not IP', () => {
    const f = frame('ethernet', Packet.V4_SYN);
    const seg = new Segment();
    const call = (offset: number, length: number): DecodeResult =>
      decodeFrame(LinkType.ETHERNET, f, offset, length, ChecksumPolicy.VERIFY, seg);
    assert.equal(call(0, f.length + 1), DecodeResult.TRUNCATED);
    assert.equal(call(1, f.length), DecodeResult.TRUNCATED);
    assert.equal(call(-1, 10), DecodeResult.TRUNCATED);
    assert.equal(call(0, -1), DecodeResult.TRUNCATED);
    assert.equal(call(0.5, 10), DecodeResult.TRUNCATED);
    assert.equal(call(Number.NaN, 10), DecodeResult.TRUNCATED);
    assert.equal(call(0, f.length), DecodeResult.OK);
    assert.equal(decodeFrame(228 /* LINKTYPE_IPV4 */, f, 0, f.length, ChecksumPolicy.VERIFY, seg), DecodeResult.NOT_IP);
  });

  it('survives 20,000 seeded mutations of the real frames, reading nothing outside the frame', () => {
    const prng = new Prng(0x57c9);
    const corpus = CAPTURES.flatMap((capture) =>
      loadCapture(capture.name).records.map((record) => ({ linkType: capture.linkType, data: record.data })),
    );
    const interesting = [0x00, 0x01, 0x05, 0x06, 0x0f, 0x2c, 0x3b, 0x40, 0x45, 0x60, 0x7f, 0x80, 0xff];
    const seen = new Map<number, number>();
    const a = new Segment();
    const b = new Segment();
    for (let round = 0; round < 20_000; round++) {
      const { linkType, data } = corpus[prng.below(corpus.length)]!;
      let mutated = Uint8Array.from(data);
      const mutations = 1 + prng.below(4);
      for (let m = 0; m < mutations; m++) {
        // Most of the interesting structure is in the first 100 bytes: aim there more often.
        const position = prng.below(prng.below(2) === 0 ? Math.min(100, mutated.length) : mutated.length);
        switch (prng.below(5)) {
          case 0:
            mutated[position]! ^= 1 << prng.below(8);
            break;
          case 1:
            mutated[position] = prng.nextU32() & 0xff;
            break;
          case 2:
            mutated[position] = interesting[prng.below(interesting.length)]!;
            break;
          case 3:
            mutated = mutated.slice(0, prng.below(mutated.length + 1));
            break;
          default: {
            // Trailing bytes, zero (like Ethernet padding) or random.
            const longer = new Uint8Array(mutated.length + 1 + prng.below(64));
            if (prng.below(2) === 0) prng.fill(longer);
            longer.set(mutated);
            mutated = longer;
          }
        }
      }
      const linkTypeUsed = prng.below(50) === 0 ? LinkType.RAW : linkType;
      const policy = round % 2 === 0 ? ChecksumPolicy.VERIFY : ChecksumPolicy.IGNORE;
      // The same frame inside two different random surroundings must decode identically:
      // any read outside [offset, offset + length) would (almost surely) tell them apart.
      const offsetA = prng.below(8);
      const offsetB = prng.below(8);
      const bufA = prng.fill(new Uint8Array(offsetA + mutated.length + 8));
      const bufB = prng.fill(new Uint8Array(offsetB + mutated.length + 8));
      bufA.set(mutated, offsetA);
      bufB.set(mutated, offsetB);
      const resultA = decodeFrame(linkTypeUsed, bufA, offsetA, mutated.length, policy, a);
      const resultB = decodeFrame(linkTypeUsed, bufB, offsetB, mutated.length, policy, b);
      assert.ok(Number.isInteger(resultA) && resultA >= 0 && resultA < DECODE_RESULT_NAMES.length, `round ${round}`);
      assert.equal(resultA, resultB, `round ${round}`);
      seen.set(resultA, (seen.get(resultA) ?? 0) + 1);
      if (resultA !== DecodeResult.OK) continue;
      assert.deepEqual(fields(a, offsetA), fields(b, offsetB), `round ${round}`);
      const end = offsetA + mutated.length;
      const addrLength = a.family === 4 ? 4 : 16;
      assert.ok(a.ipOffset >= offsetA && a.srcAddrOffset > a.ipOffset && a.dstAddrOffset + addrLength <= a.tcpOffset);
      assert.ok(a.tcpHeaderLength >= 20 && a.tcpHeaderLength <= 60 && a.tcpHeaderLength % 4 === 0);
      assert.equal(a.payloadOffset, a.tcpOffset + a.tcpHeaderLength);
      assert.ok(a.payloadLength >= 0 && a.payloadOffset + a.payloadLength <= end, `round ${round}`);
    }
    // The mutations reach deep into the decoder, not just its first check.
    for (const expected of [
      DecodeResult.OK,
      DecodeResult.TRUNCATED,
      DecodeResult.NOT_IP,
      DecodeResult.BAD_IP_HEADER,
      DecodeResult.BAD_IP_CHECKSUM,
      DecodeResult.FRAGMENT,
      DecodeResult.NOT_TCP,
      DecodeResult.BAD_TCP_HEADER,
      DecodeResult.BAD_TCP_CHECKSUM,
    ]) {
      assert.ok((seen.get(expected) ?? 0) > 0, `no mutation produced ${DECODE_RESULT_NAMES[expected]}`);
    }
  });
});

describe('decodeFrame on raw IP (LINKTYPE_RAW)', () => {
  function decode(linkType: number, buf: Uint8Array): { result: DecodeResult; seg: Segment } {
    const seg = new Segment();
    return { result: decodeFrame(linkType, buf, 0, buf.length, ChecksumPolicy.VERIFY, seg), seg };
  }

  it('picks IPv4 or IPv6 by the version nibble', () => {
    const v4 = decode(LinkType.RAW, ipPacket(Packet.V4_SYN));
    assert.equal(v4.result, DecodeResult.OK);
    assert.equal(v4.seg.family, 4);
    assert.equal(v4.seg.ipOffset, 0);
    const v6 = decode(LinkType.RAW, ipPacket(Packet.V6_SYN));
    assert.equal(v6.result, DecodeResult.OK);
    assert.equal(v6.seg.family, 6);
  });

  it('rejects other versions as a bad IP header and an empty capture as truncated', () => {
    const packet = ipPacket(Packet.V4_SYN);
    packet[0] = 0x55;
    assert.equal(decode(LinkType.RAW, packet).result, DecodeResult.BAD_IP_HEADER);
    assert.equal(decode(LinkType.RAW, new Uint8Array(0)).result, DecodeResult.TRUNCATED);
  });
});
