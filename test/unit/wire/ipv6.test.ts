import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readU16 } from '../../../src/wire/bytes.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { decodeIpv6, Ipv6Field } from '../../../src/wire/ipv6.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { addressBytes } from '../../support/address.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { fixTcpChecksum, insertBytes } from '../../support/packets.js';

function decodeRaw(packet: Uint8Array): { result: DecodeResult; seg: Segment } {
  const seg = new Segment();
  return { result: decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), seg };
}

/** An extension header of `type` with its 8-octet-unit length; Next Header is filled in by `chain`. */
interface Extension {
  type: number;
  bytes: number[];
}

/** Options headers (HBH 0, Destination Options 60) of `units` × 8 bytes, filled with PadN (RFC 8200 §4.2). */
function optionsHeader(type: number, units = 1): Extension {
  const length = units * 8;
  return { type, bytes: [0, units - 1, 1, length - 4, ...new Array<number>(length - 4).fill(0)] };
}

/** A Routing header (RFC 8200 §4.4) of type 4 (Segment Routing) with `segmentsLeft`, 8 bytes. */
function routingHeader(segmentsLeft: number): Extension {
  return { type: 43, bytes: [0, 0, 4, segmentsLeft, 0, 0, 0, 0] };
}

/** An Authentication Header (RFC 4302 §2) with a 12-byte ICV: 24 bytes, Payload Len 4. */
function authenticationHeader(): Extension {
  return { type: 51, bytes: [0, 4, 0, 0, ...new Array<number>(20).fill(0x5a)] };
}

/**
 * The captured IPv6 query with `extensions` inserted between the IPv6 header and `finalType`
 * (by default TCP, whose checksum is unaffected: the pseudo-header counts the upper-layer length).
 */
function chain(extensions: Extension[], finalType = 6, index: number = Packet.V6_QUERY): Uint8Array {
  let packet = ipPacket(index);
  const inserted: number[] = [];
  extensions.forEach((extension, i) => {
    const next = i + 1 < extensions.length ? extensions[i + 1]!.type : finalType;
    inserted.push(next, ...extension.bytes.slice(1));
  });
  packet = insertBytes(packet, 40, inserted);
  packet[Ipv6Field.NEXT_HEADER] = extensions.length > 0 ? extensions[0]!.type : finalType;
  const payloadLength = readU16(packet, Ipv6Field.PAYLOAD_LENGTH) + inserted.length;
  packet[Ipv6Field.PAYLOAD_LENGTH] = payloadLength >> 8;
  packet[Ipv6Field.PAYLOAD_LENGTH + 1] = payloadLength & 0xff;
  return packet;
}

describe('IPv6', () => {
  it('deconstructs the captured client SYN (tcpdump -v: flowlabel 0x5ce00, hlim 64, payload length 40)', () => {
    const p = ipPacket(Packet.V6_SYN);
    assert.equal(p[0]! >>> 4, 6);
    assert.equal(((p[0]! & 0x0f) << 4) | (p[1]! >>> 4), 0); // traffic class
    assert.equal(((p[1]! & 0x0f) << 16) | readU16(p, 2), 0x5ce00); // flow label
    assert.equal(readU16(p, Ipv6Field.PAYLOAD_LENGTH), 40);
    assert.equal(p[Ipv6Field.NEXT_HEADER], 6);
    assert.equal(p[Ipv6Field.HOP_LIMIT], 64);
    assert.deepEqual(p.subarray(Ipv6Field.SOURCE, Ipv6Field.SOURCE + 16), addressBytes('2001:2::1'));
    assert.deepEqual(p.subarray(Ipv6Field.DESTINATION, Ipv6Field.DESTINATION + 16), addressBytes('2001:2::2'));

    const seg = new Segment();
    assert.equal(decodeIpv6(p, 0, p.length, seg), DecodeResult.OK);
    assert.equal(seg.family, 6);
    assert.equal(seg.srcAddrOffset, 8);
    assert.equal(seg.dstAddrOffset, 24);
    assert.equal(seg.tcpOffset, 40);
  });

  it('walks Hop-by-Hop, Destination Options, Routing (exhausted) and AH headers to TCP', () => {
    const plain = decodeRaw(ipPacket(Packet.V6_QUERY)).seg;
    const cases: [Extension[], number][] = [
      [[optionsHeader(0)], 48],
      [[optionsHeader(60, 3)], 64],
      [[routingHeader(0)], 48],
      [[authenticationHeader()], 64],
      [[optionsHeader(0), optionsHeader(60, 2), routingHeader(0), authenticationHeader(), optionsHeader(60)], 104],
    ];
    for (const [extensions, tcpOffset] of cases) {
      const { result, seg } = decodeRaw(chain(extensions));
      const label = extensions.map((e) => e.type).join(',');
      assert.equal(result, DecodeResult.OK, label);
      assert.equal(seg.tcpOffset, tcpOffset, label);
      assert.equal(seg.payloadOffset, plain.payloadOffset + tcpOffset - 40, label);
      assert.equal(seg.payloadLength, plain.payloadLength, label);
    }
  });

  it('allows Hop-by-Hop only right after the IPv6 header (RFC 8200 §4.1)', () => {
    assert.equal(decodeRaw(chain([optionsHeader(60), optionsHeader(0)])).result, DecodeResult.BAD_IP_HEADER);
  });

  it('does not answer source-routed packets still in transit (Segments Left > 0)', () => {
    assert.equal(decodeRaw(chain([routingHeader(1)])).result, DecodeResult.BAD_IP_HEADER);
  });

  it('drops fragments, ESP, No Next Header and other protocols', () => {
    const fragment: Extension = { type: 44, bytes: [0, 0, 0, 0, 0, 0, 0, 1] };
    assert.equal(decodeRaw(chain([fragment])).result, DecodeResult.FRAGMENT);
    assert.equal(decodeRaw(chain([optionsHeader(0), fragment])).result, DecodeResult.FRAGMENT);
    assert.equal(decodeRaw(chain([], 50)).result, DecodeResult.NOT_TCP);
    assert.equal(decodeRaw(chain([], 59)).result, DecodeResult.NOT_TCP);
    assert.equal(decodeRaw(chain([], 17)).result, DecodeResult.NOT_TCP);
    assert.equal(decodeRaw(chain([optionsHeader(60)], 58)).result, DecodeResult.NOT_TCP);
  });

  it('bounds the walk at 8 extension headers', () => {
    const destinationOptions = (n: number): Extension[] => Array.from({ length: n }, () => optionsHeader(60));
    assert.equal(decodeRaw(chain(destinationOptions(8))).result, DecodeResult.OK);
    assert.equal(decodeRaw(chain(destinationOptions(9))).result, DecodeResult.BAD_IP_HEADER);
  });

  it('rejects an extension header running past the payload', () => {
    const packet = chain([optionsHeader(60)]);
    packet[41] = 20; // 168 bytes claimed
    assert.equal(decodeRaw(packet).result, DecodeResult.BAD_IP_HEADER);
    // Payload Length ends inside the extension header's first two bytes.
    const cut = chain([optionsHeader(60)]);
    cut[Ipv6Field.PAYLOAD_LENGTH] = 0;
    cut[Ipv6Field.PAYLOAD_LENGTH + 1] = 1;
    assert.equal(decodeRaw(cut).result, DecodeResult.BAD_IP_HEADER);
  });

  it('rejects a wrong version; reports a payload length beyond the capture as truncated', () => {
    const version4 = ipPacket(Packet.V6_SYN);
    version4[0] = 0x40 | (version4[0]! & 0x0f);
    const seg = new Segment();
    assert.equal(decodeIpv6(version4, 0, version4.length, seg), DecodeResult.BAD_IP_HEADER);
    const long = ipPacket(Packet.V6_SYN);
    long[Ipv6Field.PAYLOAD_LENGTH + 1] = 41;
    assert.equal(decodeRaw(long).result, DecodeResult.TRUNCATED);
  });

  it('finds no room for TCP with Payload Length 0 (jumbograms are not supported)', () => {
    const packet = ipPacket(Packet.V6_SYN);
    packet[Ipv6Field.PAYLOAD_LENGTH + 1] = 0;
    assert.equal(decodeRaw(packet).result, DecodeResult.BAD_TCP_HEADER);
  });

  it('drops unanswerable sources and destinations: :: and ff00::/8', () => {
    const cases: [string, number, DecodeResult][] = [
      ['::', Ipv6Field.SOURCE, DecodeResult.BAD_ADDRESS],
      ['::', Ipv6Field.DESTINATION, DecodeResult.BAD_ADDRESS],
      ['ff02::1', Ipv6Field.DESTINATION, DecodeResult.BAD_ADDRESS],
      ['ff05::1:3', Ipv6Field.SOURCE, DecodeResult.BAD_ADDRESS],
      ['fe80::1', Ipv6Field.SOURCE, DecodeResult.OK],
      ['::1', Ipv6Field.SOURCE, DecodeResult.OK],
    ];
    for (const [address, field, expected] of cases) {
      const packet = ipPacket(Packet.V6_SYN);
      packet.set(addressBytes(address), field);
      fixTcpChecksum(packet, 0, 40, packet.length);
      assert.equal(decodeRaw(packet).result, expected, `${address} at ${field}`);
    }
  });
});
