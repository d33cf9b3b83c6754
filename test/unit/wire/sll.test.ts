/**
 * Linux cooked captures v1 (LINUX_SLL) and v2 (LINUX_SLL2), from the committed captures. Field
 * values are those `tcpdump -xx` shows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16, readU32 } from '../../../src/wire/bytes.js';
import { EtherType, LINK_HEADER_TRUNCATED } from '../../../src/wire/ethernet.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { decodeSll, decodeSll2 } from '../../../src/wire/sll.js';
import { frame, Packet } from '../../support/fixtures.js';
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
