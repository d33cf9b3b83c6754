/**
 * flowHash, from the real captures: one hash per connection whatever the link type, direction,
 * VLAN tags, IPv6 extension headers or padding; 0 for whatever the decoder would drop before the
 * ports; no exception and no out-of-bounds read on any truncation or garbage; and an even spread
 * over small shard counts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBytes } from '../../support/address.js';
import { CAPTURES, frame, ipPacket, Packet, PACKET_COUNT } from '../../support/fixtures.js';
import { insertBytes } from '../../support/packets.js';
import { Prng } from '../../support/prng.js';
import { writeU16 } from '../../../src/wire/bytes.js';
import { flowHash, segmentFlowHash, UNPARSED_FLOW_HASH } from '../../../src/wire/flow-hash.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';

/** The three connections in the captures (fixtures.ts): packet index ranges. */
const CONNECTIONS = [
  { name: 'IPv4 a.stcp.test', first: 0, end: 10 },
  { name: 'IPv6 a.stcp.test', first: 10, end: 20 },
  { name: 'IPv4 big.stcp.test', first: 20, end: PACKET_COUNT },
] as const;

/** Every captured form of packet `index`: each pcap's frame and the bare IP packet (RAW). */
function capturedForms(index: number): { label: string; linkType: number; bytes: Uint8Array }[] {
  return [
    ...CAPTURES.map((c) => ({ label: `${c.name} #${index}`, linkType: c.linkType, bytes: frame(c.name, index) })),
    { label: `raw #${index}`, linkType: LinkType.RAW, bytes: ipPacket(index) },
  ];
}

function hashOf(linkType: number, bytes: Uint8Array): number {
  return flowHash(linkType, bytes, 0, bytes.length);
}

/** The hash every packet of connection `c` has (that of its first packet over Ethernet). */
function connectionHash(c: (typeof CONNECTIONS)[number]): number {
  return hashOf(LinkType.ETHERNET, frame('ethernet', c.first));
}

describe('flowHash on the captured connections', () => {
  it('hashes every packet of a connection alike: all four link types, both directions', () => {
    for (const c of CONNECTIONS) {
      const expected = connectionHash(c);
      assert.notEqual(expected, UNPARSED_FLOW_HASH);
      for (let index = c.first; index < c.end; index++) {
        for (const { label, linkType, bytes } of capturedForms(index))
          assert.equal(hashOf(linkType, bytes), expected, `${c.name}: ${label}`);
      }
    }
  });

  it('hashes the three connections differently', () => {
    const hashes = CONNECTIONS.map(connectionHash);
    assert.equal(new Set(hashes).size, 3, hashes.join(' '));
  });

  it('sees through VLAN tags, IPv6 extension headers, Ethernet padding and a non-zero offset', () => {
    const query = frame('ethernet', Packet.V4_QUERY);
    const v4 = connectionHash(CONNECTIONS[0]);
    const tagged = insertBytes(query, 12, [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 100]);
    assert.equal(hashOf(LinkType.ETHERNET, tagged), v4, '802.1ad + 802.1Q');
    assert.equal(hashOf(LinkType.ETHERNET, insertBytes(query, query.length, new Uint8Array(18))), v4, 'padding');
    const inside = insertBytes(insertBytes(query, 0, new Uint8Array(37).fill(0xff)), 37 + query.length, new Uint8Array(5).fill(0xff));
    assert.equal(flowHash(LinkType.ETHERNET, inside, 37, query.length), v4, 'at offset 37');

    // A Destination Options header (RFC 8200 §4.6, one PadN option) between IPv6 and TCP.
    const v6 = ipPacket(Packet.V6_QUERY);
    const withOptions = insertBytes(v6, 40, [6, 0, 1, 4, 0, 0, 0, 0]);
    withOptions[6] = 60;
    writeU16(withOptions, 4, v6.length - 40 + 8);
    assert.equal(hashOf(LinkType.RAW, withOptions), connectionHash(CONNECTIONS[1]), 'destination options');
  });

  it('agrees with segmentFlowHash of the decoded segment, by which shards publish their flows', () => {
    // The capture thread looks a frame up in tcp/live-flows.ts by flowHash; a shard adds its flow
    // there by segmentFlowHash (tcp/flow.ts): they must be the same number.
    const seg = new Segment();
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (const { label, linkType, bytes } of capturedForms(index)) {
        assert.equal(decodeFrame(linkType, bytes, 0, bytes.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK, label);
        assert.equal(segmentFlowHash(seg), hashOf(linkType, bytes), label);
      }
    }
    const tagged = insertBytes(frame('ethernet', Packet.V6_QUERY), 12, [0x81, 0x00, 0x00, 0x64]);
    assert.equal(decodeFrame(LinkType.ETHERNET, tagged, 0, tagged.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(segmentFlowHash(seg), hashOf(LinkType.ETHERNET, tagged), 'VLAN-tagged IPv6');
  });

  it('hashes to 0 what the decoder drops before the ports: not IP, not TCP, fragments, unknown link types', () => {
    const arp = frame('ethernet', Packet.V4_SYN);
    writeU16(arp, 12, 0x0806);
    assert.equal(hashOf(LinkType.ETHERNET, arp), UNPARSED_FLOW_HASH, 'ARP');
    const udp = ipPacket(Packet.V4_QUERY);
    udp[9] = 17;
    assert.equal(hashOf(LinkType.RAW, udp), UNPARSED_FLOW_HASH, 'UDP');
    const fragment = ipPacket(Packet.V4_QUERY);
    fragment[6] |= 0x20; // More Fragments
    assert.equal(hashOf(LinkType.RAW, fragment), UNPARSED_FLOW_HASH, 'first fragment');
    const multicast = ipPacket(Packet.V4_QUERY);
    multicast[16] = 224;
    assert.equal(hashOf(LinkType.RAW, multicast), UNPARSED_FLOW_HASH, 'multicast destination');
    assert.equal(hashOf(228, ipPacket(Packet.V4_QUERY)), UNPARSED_FLOW_HASH, 'LINKTYPE_IPV4 is not one we decode');
  });
});

describe('flowHash on damaged input', () => {
  it('returns 0 for every truncation short of the whole IP packet, and never throws', () => {
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (const { label, linkType, bytes } of capturedForms(index)) {
        const full = hashOf(linkType, bytes);
        for (let length = 0; length < bytes.length; length++) {
          // The IP length fields, not the capture, delimit a packet: any cut into it is a drop.
          assert.equal(flowHash(linkType, bytes, 0, length), UNPARSED_FLOW_HASH, `${label} cut to ${length}`);
          // The same cut at the end of a buffer: nothing may be read past `length`.
          const cut = bytes.slice(0, length);
          assert.equal(hashOf(linkType, cut), UNPARSED_FLOW_HASH, `${label} captured ${length}`);
        }
        assert.equal(flowHash(linkType, bytes, 0, bytes.length), full);
      }
    }
  });

  it('rejects offsets and lengths outside the buffer', () => {
    const query = frame('ethernet', Packet.V4_QUERY);
    for (const [offset, length] of [
      [0, query.length + 1],
      [1, query.length],
      [-1, 10],
      [0.5, 10],
      [Number.NaN, 10],
      [0, Number.NaN],
      [2 ** 32, 0],
    ] as const) {
      assert.equal(flowHash(LinkType.ETHERNET, query, offset, length), UNPARSED_FLOW_HASH, `[${offset}, +${length})`);
    }
  });

  it('survives 100,000 random and randomly corrupted frames', () => {
    const rng = new Prng(0xf10);
    const linkTypes = [LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, LinkType.RAW];
    const templates = CAPTURES.map((c) => ({ linkType: c.linkType, name: c.name }));
    for (let i = 0; i < 100_000; i++) {
      let linkType: number;
      let bytes: Uint8Array;
      if (i % 2 === 0) {
        linkType = linkTypes[rng.below(linkTypes.length)]!;
        bytes = rng.fill(new Uint8Array(rng.below(120)));
      } else {
        const t = templates[rng.below(templates.length)]!;
        linkType = t.linkType;
        bytes = frame(t.name, rng.below(PACKET_COUNT));
        for (let flips = 1 + rng.below(4); flips > 0; flips--) bytes[rng.below(Math.min(bytes.length, 80))] = rng.nextU32() & 0xff;
      }
      const hash = hashOf(linkType, bytes);
      assert.ok(hash >>> 0 === hash, `frame ${i}: ${hash}`);
    }
  });
});

describe('flowHash spread over shards', () => {
  /** A minimal TCP/IP packet (RAW) from `client`:`clientPort` to `server`:53, in `out`. */
  function synthetic(out: Uint8Array, client: Uint8Array, clientPort: number, server: Uint8Array): number {
    const family = client.length === 4 ? 4 : 6;
    const ipLength = family === 4 ? 20 : 40;
    out.fill(0, 0, ipLength + 20);
    if (family === 4) {
      out[0] = 0x45;
      writeU16(out, 2, ipLength + 20);
      out[8] = 64;
      out[9] = 6;
      out.set(client, 12);
      out.set(server, 16);
    } else {
      out[0] = 0x60;
      writeU16(out, 4, 20);
      out[6] = 6;
      out[7] = 64;
      out.set(client, 8);
      out.set(server, 24);
    }
    writeU16(out, ipLength, clientPort);
    writeU16(out, ipLength + 2, 53);
    out[ipLength + 12] = 5 << 4;
    return ipLength + 20;
  }

  /** Each of 2 … 16 shards gets its share of `hashes` within ±5%. */
  function assertEven(hashes: Uint32Array, label: string): void {
    for (let shards = 2; shards <= 16; shards++) {
      const counts = new Array<number>(shards).fill(0);
      for (const h of hashes) counts[h % shards]!++;
      const share = hashes.length / shards;
      for (let s = 0; s < shards; s++) {
        const deviation = Math.abs(counts[s]! - share) / share;
        assert.ok(deviation <= 0.05, `${label}: shard ${s} of ${shards} has ${counts[s]}, expected ${share.toFixed(0)}`);
      }
    }
  }

  const COUNT = 100_000;
  const packet = new Uint8Array(60);

  it('spreads 100,000 random IPv4 clients and ports to one server evenly over 2 … 16 shards', () => {
    const rng = new Prng(401);
    const server = addressBytes('198.18.0.2');
    const client = new Uint8Array(4);
    const hashes = new Uint32Array(COUNT);
    for (let i = 0; i < COUNT; i++) {
      client.set([10 + rng.below(100), rng.below(256), rng.below(256), 1 + rng.below(254)]);
      hashes[i] = hashOf(LinkType.RAW, packet.subarray(0, synthetic(packet, client, 1024 + rng.below(64_512), server)));
    }
    assertEven(hashes, 'IPv4 random');
  });

  it('spreads 100,000 connections from one resolver, ports only, evenly', () => {
    // The hard case: a big resolver behind one address; only the port (or the last address byte)
    // changes, in sequence.
    const server = addressBytes('2001:db8::53');
    const client = addressBytes('2001:db8:1::1');
    const hashes = new Uint32Array(COUNT);
    for (let i = 0; i < COUNT; i++) {
      client[15] = i >>> 16;
      hashes[i] = hashOf(LinkType.RAW, packet.subarray(0, synthetic(packet, client, i & 0xffff, server)));
    }
    assertEven(hashes, 'IPv6 sequential ports');
  });
});
