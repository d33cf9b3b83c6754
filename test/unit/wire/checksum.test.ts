import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { combine, finish, pseudoHeaderSum, sum16 } from '../../../src/wire/checksum.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { ipPacket, Packet, PACKET_COUNT } from '../../support/fixtures.js';

/** The TCP checksum of a decoded segment verifies: pseudo-header + segment sums to 0xffff. */
function tcpSum(seg: Segment, segment = seg.buf): number {
  const length = seg.tcpHeaderLength + seg.payloadLength;
  const pseudo = pseudoHeaderSum(seg.family, segment, seg.srcAddrOffset, segment, seg.dstAddrOffset, 6, length);
  return combine(pseudo, sum16(segment, seg.tcpOffset, length));
}

function decodeRaw(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.IGNORE, seg), DecodeResult.OK);
  return seg;
}

describe('checksum: RFC 1071 arithmetic', () => {
  it('matches the numerical example of RFC 1071 §3', () => {
    const bytes = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    assert.equal(sum16(bytes, 0, 8), 0xddf2);
    assert.equal(finish(0xddf2), 0x220d);
  });

  it('pads an odd trailing byte with zero (RFC 1071 §4.1)', () => {
    assert.equal(sum16(Uint8Array.from([0xab]), 0, 1), 0xab00);
    assert.equal(sum16(Uint8Array.from([0x12, 0x34, 0xab]), 0, 3), 0xbd34);
  });

  it('sums only the given range and chains through acc', () => {
    const bytes = Uint8Array.from([0xff, 0xff, 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0xff]);
    assert.equal(sum16(bytes, 2, 8), 0xddf2);
    assert.equal(sum16(bytes, 6, 4, sum16(bytes, 2, 4)), 0xddf2);
    assert.equal(combine(sum16(bytes, 2, 4), sum16(bytes, 6, 4)), 0xddf2);
  });

  it('folds every carry, even over 64 KiB of 0xff', () => {
    assert.equal(sum16(new Uint8Array(65536).fill(0xff), 0, 65536), 0xffff);
    assert.equal(sum16(new Uint8Array(65535).fill(0xff), 0, 65535), 0xff00);
    assert.equal(combine(0xffff, 0x0001), 0x0001);
    assert.equal(combine(0x8000, 0x8000), 0x0001);
  });

  it('sums an empty range to the accumulator', () => {
    assert.equal(sum16(new Uint8Array(0), 0, 0), 0);
    assert.equal(sum16(new Uint8Array(0), 0, 0, 0x1234), 0x1234);
  });
});

describe('checksum: real packets', () => {
  it('the IPv4 header checksum of a captured SYN verifies, and reproduces from a zeroed field', () => {
    const packet = ipPacket(Packet.V4_SYN);
    assert.equal(sum16(packet, 0, 20), 0xffff);
    assert.equal((packet[10]! << 8) | packet[11]!, 0x64f7); // tcpdump -x: "4006 64f7"
    packet[10] = 0;
    packet[11] = 0;
    assert.equal(finish(sum16(packet, 0, 20)), 0x64f7);
  });

  it('every captured TCP checksum verifies, IPv4 and IPv6', () => {
    for (let i = 0; i < PACKET_COUNT; i++) {
      assert.equal(tcpSum(decodeRaw(ipPacket(i))), 0xffff, `packet ${i}`);
    }
  });

  it('any single flipped bit in a header or segment fails verification', () => {
    for (const index of [Packet.V4_QUERY, Packet.V6_ANSWER]) {
      const packet = ipPacket(index);
      const seg = decodeRaw(packet);
      const segmentEnd = seg.payloadOffset + seg.payloadLength;
      for (let byte = seg.tcpOffset; byte < segmentEnd; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          packet[byte]! ^= 1 << bit;
          assert.notEqual(tcpSum(seg, packet), 0xffff, `packet ${index} byte ${byte} bit ${bit}`);
          packet[byte]! ^= 1 << bit;
        }
      }
    }
    const v4 = ipPacket(Packet.V4_SYN);
    for (let bit = 0; bit < 160; bit++) {
      v4[bit >> 3]! ^= 0x80 >> (bit & 7);
      assert.notEqual(sum16(v4, 0, 20), 0xffff, `IPv4 header bit ${bit}`);
      v4[bit >> 3]! ^= 0x80 >> (bit & 7);
    }
  });

  it('the pseudo-header covers addresses, protocol and length (RFC 9293 §3.1, RFC 8200 §8.1)', () => {
    const v4 = ipPacket(Packet.V4_SYN);
    // 198.18.0.1 + 198.18.0.2 + 6 + 40; "% 0xffff" is the end-around carry for a non-zero sum.
    assert.equal(pseudoHeaderSum(4, v4, 12, v4, 16, 6, 40), (0xc612 + 0x0001 + 0xc612 + 0x0002 + 6 + 40) % 0xffff);
    const v6 = ipPacket(Packet.V6_SYN);
    // 2001:2::1 + 2001:2::2 + 6 + 40.
    const v6Expected = 0x2001 + 0x0002 + 0x0001 + 0x2001 + 0x0002 + 0x0002 + 6 + 40;
    assert.equal(pseudoHeaderSum(6, v6, 8, v6, 24, 6, 40), v6Expected);
    // IPv6 lengths are 32 bits: the high word counts too.
    assert.equal(pseudoHeaderSum(6, v6, 8, v6, 24, 6, 0x10028), combine(pseudoHeaderSum(6, v6, 8, v6, 24, 6, 40), 1));
  });

  it('takes source and destination from separate arrays as well as from one frame', () => {
    const v6 = ipPacket(Packet.V6_SYN);
    const src = v6.slice(8, 24);
    const dst = v6.slice(24, 40);
    assert.equal(pseudoHeaderSum(6, src, 0, dst, 0, 6, 1234), pseudoHeaderSum(6, v6, 8, v6, 24, 6, 1234));
  });
});
