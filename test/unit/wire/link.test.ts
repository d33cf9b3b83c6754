/**
 * Link layers: Ethernet II (+ VLAN tags), Linux cooked v1 and v2, raw IP. Field values are those
 * `tcpdump -xx` shows for the committed captures.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16, readU32 } from '../../../src/wire/bytes.js';
import { decodeEthernet, EtherType, LINK_HEADER_TRUNCATED } from '../../../src/wire/ethernet.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { decodeSll, decodeSll2 } from '../../../src/wire/sll.js';
import { frame, ipPacket, Packet } from '../../support/fixtures.js';
import { insertBytes } from '../../support/packets.js';

const CLIENT_MAC = '3e:44:5b:52:31:34';
const SERVER_MAC = '9e:ad:60:cd:82:2f';
/** Linux PACKET_HOST / PACKET_OUTGOING (linux/if_packet.h), as SLL reports direction. */
const PACKET_HOST = 0;
const PACKET_OUTGOING = 4;
const ARPHRD_ETHER = 1;

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

describe('Linux cooked capture v1 (LINUX_SLL)', () => {
  it('deconstructs an outgoing SYN and an incoming SYN-ACK', () => {
    const out = frame('linux-sll', Packet.V4_SYN);
    assert.equal(readU16(out, 0), PACKET_OUTGOING);
    assert.equal(readU16(out, 2), ARPHRD_ETHER);
    assert.equal(readU16(out, 4), 6);
    assert.equal(mac(out, 6), CLIENT_MAC);
    assert.equal(readU16(out, 14), EtherType.IPV4);
    const incoming = frame('linux-sll', Packet.V6_SYN_ACK);
    assert.equal(readU16(incoming, 0), PACKET_HOST);
    assert.equal(mac(incoming, 6), SERVER_MAC);
    assert.equal(readU16(incoming, 14), EtherType.IPV6);
    const seg = new Segment();
    assert.equal(decodeSll(incoming, 0, incoming.length, seg), EtherType.IPV6);
    assert.equal(seg.ipOffset, 16);
  });

  it('skips a VLAN tag libpcap inserted at the protocol field', () => {
    const tagged = insertBytes(frame('linux-sll', Packet.V4_QUERY), 14, [0x81, 0x00, 0x00, 0x64]);
    const { result, seg } = decode(LinkType.LINUX_SLL, tagged);
    assert.equal(result, DecodeResult.OK);
    assert.equal(seg.ipOffset, 20);
  });

  it('reports a cut header as truncated', () => {
    const f = frame('linux-sll', Packet.V4_SYN);
    const seg = new Segment();
    for (let length = 0; length < 16; length++) assert.equal(decodeSll(f, 0, length, seg), LINK_HEADER_TRUNCATED);
  });
});

describe('Linux cooked capture v2 (LINUX_SLL2)', () => {
  it('deconstructs an outgoing SYN and an incoming SYN-ACK', () => {
    const out = frame('linux-sll2', Packet.V4_SYN);
    assert.equal(readU16(out, 0), EtherType.IPV4);
    assert.equal(readU16(out, 2), 0); // reserved
    assert.equal(readU32(out, 4), 2); // ifindex of the client veth in its namespace
    assert.equal(readU16(out, 8), ARPHRD_ETHER);
    assert.equal(out[10], PACKET_OUTGOING);
    assert.equal(out[11], 6);
    assert.equal(mac(out, 12), CLIENT_MAC);
    const incoming = frame('linux-sll2', Packet.V6_SYN_ACK);
    assert.equal(readU16(incoming, 0), EtherType.IPV6);
    assert.equal(incoming[10], PACKET_HOST);
    const seg = new Segment();
    assert.equal(decodeSll2(incoming, 0, incoming.length, seg), EtherType.IPV6);
    assert.equal(seg.ipOffset, 20);
  });

  it('reports a cut header as truncated', () => {
    const f = frame('linux-sll2', Packet.V4_SYN);
    const seg = new Segment();
    for (let length = 0; length < 20; length++) assert.equal(decodeSll2(f, 0, length, seg), LINK_HEADER_TRUNCATED);
  });
});

describe('raw IP (LINKTYPE_RAW)', () => {
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
