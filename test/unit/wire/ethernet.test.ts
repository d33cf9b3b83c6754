/**
 * Ethernet II (+ 802.1Q/802.1ad VLAN tags), from the committed captures. Field values are those
 * `tcpdump -xx` shows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16 } from '../../../src/wire/bytes.js';
import { decodeEthernet, EtherType, LINK_HEADER_TRUNCATED } from '../../../src/wire/ethernet.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { frame, Packet } from '../../support/fixtures.js';
import { insertBytes } from '../../support/packets.js';

const CLIENT_MAC = '3e:44:5b:52:31:34';
const SERVER_MAC = '9e:ad:60:cd:82:2f';

function mac(buf: Uint8Array, offset: number): string {
  return Array.from(buf.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}

function decode(linkType: number, buf: Uint8Array): { result: DecodeResult; seg: Segment } {
  const seg = new Segment();
  return { result: decodeFrame(linkType, buf, 0, buf.length, ChecksumPolicy.VERIFY, seg), seg };
}

describe('Ethernet', () => {
  it('deconstructs a captured client SYN', () => {
    const f = frame('ethernet', Packet.V4_SYN);
    assert.equal(f.length, 74);
    assert.equal(mac(f, 0), SERVER_MAC);
    assert.equal(mac(f, 6), CLIENT_MAC);
    assert.equal(readU16(f, 12), EtherType.IPV4);
    const seg = new Segment();
    assert.equal(decodeEthernet(f, 0, f.length, seg), EtherType.IPV4);
    assert.equal(seg.ipOffset, 14);
  });

  it('deconstructs a captured IPv6 server SYN-ACK', () => {
    const f = frame('ethernet', Packet.V6_SYN_ACK);
    assert.equal(mac(f, 0), CLIENT_MAC);
    assert.equal(mac(f, 6), SERVER_MAC);
    const seg = new Segment();
    assert.equal(decodeEthernet(f, 0, f.length, seg), EtherType.IPV6);
    assert.equal(seg.ipOffset, 14);
  });

  it('skips 802.1Q and 802.1ad tags to the inner EtherType', () => {
    const plain = decode(LinkType.ETHERNET, frame('ethernet', Packet.V4_QUERY));
    const oneTag = insertBytes(frame('ethernet', Packet.V4_QUERY), 12, [0x81, 0x00, 0x00, 0x64]);
    const twoTags = insertBytes(frame('ethernet', Packet.V4_QUERY), 12, [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 100]);
    for (const [tagged, shift] of [
      [oneTag, 4],
      [twoTags, 8],
    ] as const) {
      const { result, seg } = decode(LinkType.ETHERNET, tagged);
      assert.equal(result, DecodeResult.OK);
      assert.equal(seg.ipOffset, 14 + shift);
      assert.equal(seg.payloadOffset, plain.seg.payloadOffset + shift);
      assert.equal(seg.payloadLength, plain.seg.payloadLength);
      assert.equal(seg.seq, plain.seg.seq);
    }
  });

  it('reports a frame cut inside the header or a VLAN tag as truncated', () => {
    const tagged = insertBytes(frame('ethernet', Packet.V4_SYN), 12, [0x81, 0x00, 0x00, 0x64]);
    const seg = new Segment();
    for (let length = 0; length < 18; length++) {
      assert.equal(decodeEthernet(tagged, 0, length, seg), LINK_HEADER_TRUNCATED, `length ${length}`);
    }
    assert.equal(decodeEthernet(tagged, 0, 18, seg), EtherType.IPV4);
  });

  it('drops ARP and 802.3 length-field frames as not IP', () => {
    const arp = frame('ethernet', Packet.V4_SYN);
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert.equal(decode(LinkType.ETHERNET, arp).result, DecodeResult.NOT_IP);
    const llc = frame('ethernet', Packet.V4_SYN);
    llc[12] = 0x00;
    llc[13] = 0x3c;
    assert.equal(decode(LinkType.ETHERNET, llc).result, DecodeResult.NOT_IP);
  });

  it('ignores trailing padding after the IP packet (IEEE 802.3 minimum frame size)', () => {
    for (const index of [Packet.V4_HANDSHAKE_ACK, Packet.V4_QUERY, Packet.V6_QUERY]) {
      const original = frame('ethernet', index);
      const padded = insertBytes(original, original.length, new Uint8Array(18).fill(0xa5));
      const plain = decode(LinkType.ETHERNET, original);
      const { result, seg } = decode(LinkType.ETHERNET, padded);
      assert.equal(result, DecodeResult.OK, `packet ${index}`);
      assert.equal(seg.payloadLength, plain.seg.payloadLength);
      assert.equal(seg.payloadOffset, plain.seg.payloadOffset);
    }
  });
});
