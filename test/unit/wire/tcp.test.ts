import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16, readU32 } from '../../../src/wire/bytes.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { pseudoHeaderSum } from '../../../src/wire/checksum.js';
import { TcpField } from '../../../src/wire/tcp.js';
import { ipPacket, Offloaded, offloadedFrame, PACKET_COUNT, Packet } from '../../support/fixtures.js';
import { fixIpv4Checksum, fixTcpChecksum, withTcpOptions } from '../../support/packets.js';

function decodeRaw(packet: Uint8Array, policy: ChecksumPolicy = ChecksumPolicy.VERIFY): { result: DecodeResult; seg: Segment } {
  const seg = new Segment();
  return { result: decodeFrame(LinkType.RAW, packet, 0, packet.length, policy, seg), seg };
}

/** The captured IPv4 SYN with its options replaced by `options`. */
function synWithOptions(...options: number[]): { result: DecodeResult; seg: Segment } {
  return decodeRaw(withTcpOptions(ipPacket(Packet.V4_SYN), options));
}

const MSS_1460 = [2, 4, 0x05, 0xb4];

describe('TCP header', () => {
  it('deconstructs the captured client SYN', () => {
    const p = ipPacket(Packet.V4_SYN);
    const t = 20;
    assert.equal(readU16(p, t + TcpField.SRC_PORT), 45483);
    assert.equal(readU16(p, t + TcpField.DST_PORT), 53);
    assert.equal(readU32(p, t + TcpField.SEQ), 3154750377);
    assert.equal(readU32(p, t + TcpField.ACK), 0);
    assert.equal(p[t + TcpField.DATA_OFFSET], 0xa0);
    assert.equal(p[t + TcpField.FLAGS], TcpFlag.SYN);
    assert.equal(readU16(p, t + TcpField.WINDOW), 64660);
    assert.equal(readU16(p, t + TcpField.CHECKSUM), 0x9166);
    assert.equal(readU16(p, t + TcpField.URGENT_POINTER), 0);

    const { result, seg } = decodeRaw(p);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.srcPort, 45483);
    assert.equal(seg.dstPort, 53);
    assert.equal(seg.seq, 3154750377);
    assert.equal(seg.ack, 0);
    assert.equal(seg.flags, TcpFlag.SYN);
    assert.equal(seg.window, 64660);
    assert.equal(seg.tcpOffset, 20);
    assert.equal(seg.tcpHeaderLength, 40);
    assert.equal(seg.payloadOffset, 60);
    assert.equal(seg.payloadLength, 0);
    // options [mss 1220,sackOK,TS val 760932315 ecr 0,nop,wscale 10]
    assert.equal(seg.mss, 1220);
    assert.equal(seg.sackPermitted, true);
    assert.equal(seg.hasTimestamps, true);
    assert.equal(seg.tsVal, 760932315);
    assert.equal(seg.tsEcr, 0);
    assert.equal(seg.windowScale, 10);
  });

  it('deconstructs the captured server SYN-ACK, with a sequence number above 2^31 acknowledged', () => {
    const { result, seg } = decodeRaw(ipPacket(Packet.V4_SYN_ACK));
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.flags, TcpFlag.SYN | TcpFlag.ACK);
    assert.equal(seg.seq, 402274093);
    assert.equal(seg.ack, 3154750378);
    assert.equal(seg.mss, 1460);
    assert.equal(seg.tsVal, 1569376630);
    assert.equal(seg.tsEcr, 760932315);
  });

  it('locates the DNS payload of a captured query: 2-byte length prefix, then the message', () => {
    const { result, seg } = decodeRaw(ipPacket(Packet.V4_QUERY));
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.flags, TcpFlag.PSH | TcpFlag.ACK);
    assert.equal(seg.tcpHeaderLength, 32);
    assert.equal(seg.payloadLength, 54);
    assert.equal(readU16(seg.buf, seg.payloadOffset), 52); // RFC 1035 §4.2.2 length prefix
    assert.equal(seg.mss, 0);
    assert.equal(seg.windowScale, -1);
    assert.equal(seg.sackPermitted, false);
    assert.equal(seg.hasTimestamps, true);
  });

  it('reports a checksum error before looking at the header, only when verifying', () => {
    const packet = ipPacket(Packet.V4_QUERY);
    packet[packet.length - 1]! ^= 0x01;
    assert.equal(decodeRaw(packet).result, DecodeResult.BAD_TCP_CHECKSUM);
    assert.equal(decodeRaw(packet, ChecksumPolicy.IGNORE).result, DecodeResult.OK);
    const v6 = ipPacket(Packet.V6_QUERY);
    v6[40 + TcpField.WINDOW]! ^= 0x80;
    assert.equal(decodeRaw(v6).result, DecodeResult.BAD_TCP_CHECKSUM);
  });

  it('accepts every captured segment whose checksum the sender left to offload, and says so', () => {
    for (let i = 0; i < Offloaded.COUNT; i++) {
      const frame = offloadedFrame(i);
      const seg = new Segment();
      assert.equal(decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK, `packet ${i}`);
      assert.equal(seg.checksumOffloaded, true, `packet ${i}`);
      // The field is the folded pseudo-header sum with the segment's own length (CHECKSUM_PARTIAL).
      const tcpLength = seg.ipEnd - seg.tcpOffset;
      const pseudo = pseudoHeaderSum(seg.family, frame, seg.srcAddrOffset, frame, seg.dstAddrOffset, 6, tcpLength);
      assert.equal(readU16(frame, seg.tcpOffset + TcpField.CHECKSUM), pseudo, `packet ${i}`);
    }
    const frame = offloadedFrame(Offloaded.V4_DATA_14480);
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal([seg.payloadLength, seg.seq].join(), '14480,3601744721');
  });

  it('accepts no other wrong checksum: the field one off the pseudo-header sum, or the sum of another length', () => {
    for (const index of [Offloaded.V4_SYN, Offloaded.V4_DATA_FIRST, Offloaded.V6_SYN, Offloaded.V6_DATA_LAST]) {
      const frame = offloadedFrame(index);
      const checksumAt = 14 + (frame[14]! >>> 4 === 4 ? 20 : 40) + TcpField.CHECKSUM;
      frame[checksumAt + 1]! ^= 0x01;
      assert.equal(
        decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.VERIFY, new Segment()),
        DecodeResult.BAD_TCP_CHECKSUM,
      );
    }
    // A partial checksum computed for the whole frame no longer fits once the frame is cut short.
    const frame = offloadedFrame(Offloaded.V4_DATA_FIRST);
    frame[14 + 2] = 0x05;
    frame[14 + 3] = 0xdc; // IP total length 1500 of 7292
    fixIpv4Checksum(frame, 14);
    assert.equal(
      decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.VERIFY, new Segment()),
      DecodeResult.BAD_TCP_CHECKSUM,
    );
  });

  it('says nothing was offloaded of segments whose checksums verify, or when checksums are not verified', () => {
    for (let i = 0; i < PACKET_COUNT; i++) {
      const seg = new Segment();
      assert.equal(decodeFrame(LinkType.RAW, ipPacket(i), 0, ipPacket(i).length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
      assert.equal(seg.checksumOffloaded, false, `packet ${i}`);
    }
    const frame = offloadedFrame(Offloaded.V4_SYN);
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.IGNORE, seg), DecodeResult.OK);
    assert.equal(seg.checksumOffloaded, false);
  });

  it('rejects a data offset below 5 or beyond the segment', () => {
    for (const dataOffset of [0, 1, 4, 11, 15]) {
      const packet = ipPacket(Packet.V4_SYN); // a 40-byte segment
      packet[20 + TcpField.DATA_OFFSET] = dataOffset << 4;
      fixTcpChecksum(packet, 0, 20, packet.length);
      assert.equal(decodeRaw(packet).result, DecodeResult.BAD_TCP_HEADER, `data offset ${dataOffset}`);
    }
  });

  it('rejects an IP packet too short for a TCP header', () => {
    const packet = ipPacket(Packet.V4_SYN).slice(0, 39);
    packet[3] = 39;
    fixIpv4Checksum(packet, 0);
    assert.equal(decodeRaw(packet, ChecksumPolicy.IGNORE).result, DecodeResult.BAD_TCP_HEADER);
  });
});

describe('TCP options', () => {
  it('has defaults when there are none', () => {
    const { result, seg } = synWithOptions();
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.tcpHeaderLength, 20);
    assert.deepEqual([seg.mss, seg.windowScale, seg.sackPermitted, seg.hasTimestamps, seg.tsVal, seg.tsEcr], [0, -1, false, false, 0, 0]);
  });

  it('rejects option lengths 0 and 1, a length running past the header, and a missing length byte', () => {
    for (const options of [
      [99, 0, 0, 0],
      [99, 1, 0, 0],
      [1, 1, 2, 1],
      [2, 5, 5, 0xb4],
      [1, 1, 1, 8],
      [8, 10, 0, 0, 0, 0, 0, 0],
    ]) {
      assert.equal(synWithOptions(...options).result, DecodeResult.BAD_TCP_HEADER, `options ${options}`);
    }
  });

  it('skips unknown options and SACK blocks by their length', () => {
    // Experimental option (RFC 6994 kind 254) and a SACK block (RFC 2018 §3), then MSS.
    const { result, seg } = synWithOptions(254, 4, 0xab, 0xcd, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, ...MSS_1460);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.mss, 1460);
  });

  it('ignores a known option with the wrong length and reads the options after it', () => {
    const { result, seg } = synWithOptions(2, 3, 0x05, 3, 4, 10, 0, 8, 6, 0, 0, 0, 1, 4, 2);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.mss, 0, 'MSS with length 3');
    assert.equal(seg.windowScale, -1, 'window scale with length 4');
    assert.equal(seg.hasTimestamps, false, 'timestamps with length 6');
    assert.equal(seg.sackPermitted, true);
  });

  it('stops at End-of-Option-List', () => {
    const { result, seg } = synWithOptions(...MSS_1460, 0, 3, 3, 7);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.mss, 1460);
    assert.equal(seg.windowScale, -1);
  });

  it('keeps a window scale above 14 as sent (RFC 7323 §2.3 caps it; the responder decides)', () => {
    assert.equal(synWithOptions(1, 3, 3, 15).seg.windowScale, 15);
  });

  it('reads timestamps as unsigned 32-bit values', () => {
    const { seg } = synWithOptions(1, 1, 8, 10, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0);
    assert.equal(seg.tsVal, 0xffffffff);
    assert.equal(seg.tsEcr, 0x80000000);
  });
});
