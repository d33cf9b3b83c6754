import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16 } from '../../../src/wire/bytes.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { decodeIpv4, Ipv4Field } from '../../../src/wire/ipv4.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { addressBytes } from '../../support/address.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { fixIpv4Checksum, fixTcpChecksum, insertBytes } from '../../support/packets.js';

function decodeRaw(packet: Uint8Array, policy: ChecksumPolicy = ChecksumPolicy.VERIFY): { result: DecodeResult; seg: Segment } {
  const seg = new Segment();
  return { result: decodeFrame(LinkType.RAW, packet, 0, packet.length, policy, seg), seg };
}

/** The captured SYN with a header field changed and the header checksum fixed up. */
function modifiedSyn(change: (packet: Uint8Array) => void): Uint8Array {
  const packet = ipPacket(Packet.V4_SYN);
  change(packet);
  fixIpv4Checksum(packet, 0);
  return packet;
}

describe('IPv4', () => {
  it('deconstructs the captured client SYN (tcpdump -v: tos 0x0, ttl 64, id 18845, DF, length 60)', () => {
    const p = ipPacket(Packet.V4_SYN);
    assert.equal(p[Ipv4Field.VERSION_IHL], 0x45);
    assert.equal(p[Ipv4Field.DSCP_ECN], 0);
    assert.equal(readU16(p, Ipv4Field.TOTAL_LENGTH), 60);
    assert.equal(readU16(p, Ipv4Field.IDENTIFICATION), 18845);
    assert.equal(readU16(p, Ipv4Field.FLAGS_FRAGMENT_OFFSET), 0x4000);
    assert.equal(p[Ipv4Field.TTL], 64);
    assert.equal(p[Ipv4Field.PROTOCOL], 6);
    assert.equal(readU16(p, Ipv4Field.CHECKSUM), 0x64f7);
    assert.deepEqual(p.subarray(Ipv4Field.SOURCE, Ipv4Field.SOURCE + 4), addressBytes('198.18.0.1'));
    assert.deepEqual(p.subarray(Ipv4Field.DESTINATION, Ipv4Field.DESTINATION + 4), addressBytes('198.18.0.2'));

    const seg = new Segment();
    seg.ipOffset = 0;
    assert.equal(decodeIpv4(p, 0, p.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(seg.family, 4);
    assert.equal(seg.srcAddrOffset, 12);
    assert.equal(seg.dstAddrOffset, 16);
    assert.equal(seg.tcpOffset, 20);
  });

  it('verifies the header checksum only when asked to', () => {
    const packet = ipPacket(Packet.V4_SYN);
    packet[Ipv4Field.TTL] = 63; // not covered by the TCP checksum
    assert.equal(decodeRaw(packet).result, DecodeResult.BAD_IP_CHECKSUM);
    assert.equal(decodeRaw(packet, ChecksumPolicy.IGNORE).result, DecodeResult.OK);
  });

  it('accepts a header with options (IHL 6) and finds TCP after them', () => {
    const original = decodeRaw(ipPacket(Packet.V4_QUERY)).seg;
    // Three No-Operation options and End-of-Option-List (RFC 791 §3.1).
    const packet = insertBytes(ipPacket(Packet.V4_QUERY), 20, [1, 1, 1, 0]);
    packet[0] = 0x46;
    packet[3]! += 4;
    fixIpv4Checksum(packet, 0);
    const { result, seg } = decodeRaw(packet);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.tcpOffset, 24);
    assert.equal(seg.payloadOffset, original.payloadOffset + 4);
    assert.equal(seg.payloadLength, original.payloadLength);
    assert.equal(seg.seq, original.seq);
  });

  it('rejects impossible headers: version, IHL < 5, total length < header', () => {
    assert.equal(decodeRaw(modifiedSyn((p) => (p[0] = 0x75))).result, DecodeResult.BAD_IP_HEADER);
    for (let ihl = 0; ihl < 5; ihl++) {
      const packet = modifiedSyn((p) => (p[0] = 0x40 | ihl));
      assert.equal(decodeRaw(packet).result, DecodeResult.BAD_IP_HEADER, `IHL ${ihl}`);
      assert.equal(decodeRaw(packet, ChecksumPolicy.IGNORE).result, DecodeResult.BAD_IP_HEADER, `IHL ${ihl}`);
    }
    for (const totalLength of [0, 1, 19]) {
      const packet = modifiedSyn((p) => (p[3] = totalLength));
      assert.equal(decodeRaw(packet).result, DecodeResult.BAD_IP_HEADER, `total length ${totalLength}`);
    }
    // IHL 15 (60 bytes) is a consistent IP header here, but leaves no room for TCP.
    assert.equal(decodeRaw(modifiedSyn((p) => (p[0] = 0x4f))).result, DecodeResult.BAD_TCP_HEADER);
  });

  it('reports a total length beyond the capture as truncated', () => {
    const packet = modifiedSyn((p) => (p[3] = 61));
    assert.equal(decodeRaw(packet).result, DecodeResult.TRUNCATED);
  });

  it('drops fragments: MF set, or a fragment offset', () => {
    const firstFragment = modifiedSyn((p) => (p[6] = 0x20)); // MF, offset 0
    const laterFragment = modifiedSyn((p) => (p[7] = 0x01)); // DF, offset 8
    const lastFragment = modifiedSyn((p) => p.set([0x00, 0xb9], 6)); // offset 1480
    for (const packet of [firstFragment, laterFragment, lastFragment]) {
      assert.equal(decodeRaw(packet).result, DecodeResult.FRAGMENT);
    }
    // Neither DF nor MF, offset 0: a whole datagram.
    assert.equal(decodeRaw(modifiedSyn((p) => (p[6] = 0))).result, DecodeResult.OK);
  });

  it('drops protocols other than TCP', () => {
    assert.equal(decodeRaw(modifiedSyn((p) => (p[Ipv4Field.PROTOCOL] = 17))).result, DecodeResult.NOT_TCP);
  });

  it('drops unanswerable sources and destinations: 0.0.0.0, 255.255.255.255, 224.0.0.0/4', () => {
    const cases: [string, number, DecodeResult][] = [
      ['0.0.0.0', Ipv4Field.SOURCE, DecodeResult.BAD_ADDRESS],
      ['0.0.0.0', Ipv4Field.DESTINATION, DecodeResult.BAD_ADDRESS],
      ['255.255.255.255', Ipv4Field.DESTINATION, DecodeResult.BAD_ADDRESS],
      ['255.255.255.255', Ipv4Field.SOURCE, DecodeResult.BAD_ADDRESS],
      ['224.0.0.1', Ipv4Field.DESTINATION, DecodeResult.BAD_ADDRESS],
      ['239.255.255.255', Ipv4Field.SOURCE, DecodeResult.BAD_ADDRESS],
      ['223.255.255.255', Ipv4Field.SOURCE, DecodeResult.OK],
      ['240.0.0.1', Ipv4Field.SOURCE, DecodeResult.OK],
      ['0.0.0.1', Ipv4Field.SOURCE, DecodeResult.OK],
    ];
    for (const [address, field, expected] of cases) {
      const packet = ipPacket(Packet.V4_SYN);
      packet.set(addressBytes(address), field);
      fixIpv4Checksum(packet, 0);
      fixTcpChecksum(packet, 0, 20, packet.length);
      assert.equal(decodeRaw(packet).result, expected, `${address} at ${field}`);
    }
  });
});
