/**
 * FlowHash, from the real captures: one hash per connection whatever the link type, direction,
 * VLAN tags, IPv6 extension headers or padding; 0 for whatever the decoder would drop before the
 * ports; no exception and no out-of-bounds read on any truncation or garbage; an even spread
 * over small shard counts; and keyed: another key, other hashes, and tuples chosen to share one
 * live-flow bucket and shard under the unkeyed hash of before spread over buckets and shards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBytes } from '../../support/address.js';
import { CAPTURES, frame, ipPacket, Packet, PACKET_COUNT } from '../../support/fixtures.js';
import { insertBytes } from '../../support/packets.js';
import { Prng } from '../../support/prng.js';
import { unkeyedFlowHash } from '../../support/unkeyed-flow-hash.js';
import { writeU16 } from '../../../src/wire/bytes.js';
import { FlowHash, ROUTING_KEY_BYTES, UNPARSED_FLOW_HASH } from '../../../src/wire/flow-hash.js';
import { LIVE_FLOW_BUCKETS } from '../../../src/tcp/live-flows.js';
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

/** A routing key as the front end draws one, fixed here so that every run tests the same hashes. */
const packet = new Uint8Array(60);
const routing = new FlowHash(Uint8Array.from({ length: ROUTING_KEY_BYTES }, (_, i) => 0x5a ^ (17 * i)));

function hashOf(linkType: number, bytes: Uint8Array): number {
  return routing.ofFrame(linkType, bytes, 0, bytes.length);
}

/** The hash every packet of connection `c` has (that of its first packet over Ethernet). */
function connectionHash(c: (typeof CONNECTIONS)[number]): number {
  return hashOf(LinkType.ETHERNET, frame('ethernet', c.first));
}

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

describe('FlowHash on the captured connections', () => {
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
    assert.equal(routing.ofFrame(LinkType.ETHERNET, inside, 37, query.length), v4, 'at offset 37');

    // A Destination Options header (RFC 8200 §4.6, one PadN option) between IPv6 and TCP.
    const v6 = ipPacket(Packet.V6_QUERY);
    const withOptions = insertBytes(v6, 40, [6, 0, 1, 4, 0, 0, 0, 0]);
    withOptions[6] = 60;
    writeU16(withOptions, 4, v6.length - 40 + 8);
    assert.equal(hashOf(LinkType.RAW, withOptions), connectionHash(CONNECTIONS[1]), 'destination options');
  });

  it('agrees with ofSegment of the decoded segment, by which shards publish their flows', () => {
    // The capture thread looks a frame up in tcp/live-flows.ts by ofFrame; a shard adds its flow
    // there by ofSegment (tcp/flow.ts): they must be the same number.
    const seg = new Segment();
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (const { label, linkType, bytes } of capturedForms(index)) {
        assert.equal(decodeFrame(linkType, bytes, 0, bytes.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK, label);
        assert.equal(routing.ofSegment(seg), hashOf(linkType, bytes), label);
      }
    }
    const tagged = insertBytes(frame('ethernet', Packet.V6_QUERY), 12, [0x81, 0x00, 0x00, 0x64]);
    assert.equal(decodeFrame(LinkType.ETHERNET, tagged, 0, tagged.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(routing.ofSegment(seg), hashOf(LinkType.ETHERNET, tagged), 'VLAN-tagged IPv6');
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

describe('FlowHash on damaged input', () => {
  it('returns 0 for every truncation short of the whole IP packet, and never throws', () => {
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (const { label, linkType, bytes } of capturedForms(index)) {
        const full = hashOf(linkType, bytes);
        for (let length = 0; length < bytes.length; length++) {
          // The IP length fields, not the capture, delimit a packet: any cut into it is a drop.
          assert.equal(routing.ofFrame(linkType, bytes, 0, length), UNPARSED_FLOW_HASH, `${label} cut to ${length}`);
          // The same cut at the end of a buffer: nothing may be read past `length`.
          const cut = bytes.slice(0, length);
          assert.equal(hashOf(linkType, cut), UNPARSED_FLOW_HASH, `${label} captured ${length}`);
        }
        assert.equal(routing.ofFrame(linkType, bytes, 0, bytes.length), full);
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
      assert.equal(routing.ofFrame(LinkType.ETHERNET, query, offset, length), UNPARSED_FLOW_HASH, `[${offset}, +${length})`);
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

describe('FlowHash spread over shards', () => {
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

describe('FlowHash keyed', () => {
  it('hashes under its key: the same key the same hashes, another key others; a key is 16 bytes', () => {
    const sameKey = new FlowHash(Uint8Array.from({ length: ROUTING_KEY_BYTES }, (_, i) => 0x5a ^ (17 * i)));
    const otherKey = new FlowHash(Uint8Array.from({ length: ROUTING_KEY_BYTES }, (_, i) => 0x5b ^ (17 * i)));
    for (const c of CONNECTIONS) {
      const query = frame('ethernet', c.first);
      const hash = connectionHash(c);
      assert.equal(sameKey.ofFrame(LinkType.ETHERNET, query, 0, query.length), hash, c.name);
      assert.notEqual(otherKey.ofFrame(LinkType.ETHERNET, query, 0, query.length), hash, c.name);
    }
    assert.throws(() => new FlowHash(new Uint8Array(ROUTING_KEY_BYTES - 1)), RangeError);
  });

  it('spreads over buckets and shards the connections a sender chose to collide under the unkeyed hash', () => {
    // The sender's search: clients 198.18.x.y to the server's 198.18.0.2:53 whose unkeyed hash
    // (anyone can compute it) falls in one live-flow bucket, hence one shard of 2, 4, 8 or 16.
    const server = addressBytes('198.18.0.2');
    const bucket = 0x2a2a;
    const chosen: { client: Uint8Array; port: number }[] = [];
    for (let host = 0x0101; host < 0xffff && chosen.length < 64; host++) {
      const client = Uint8Array.of(198, 18, host >>> 8, host & 0xff);
      for (let port = 1024; port <= 65535 && chosen.length < 64; port++) {
        if ((unkeyedFlowHash(client, port, server, 53) & (LIVE_FLOW_BUCKETS - 1)) === bucket) chosen.push({ client, port });
      }
    }
    assert.equal(chosen.length, 64);
    const keyed = chosen.map(({ client, port }) => hashOf(LinkType.RAW, packet.subarray(0, synthetic(packet, client, port, server))));
    // 64 hashes in 65,536 buckets: a collision or two at most, by chance.
    const buckets = new Set(keyed.map((hash) => hash & (LIVE_FLOW_BUCKETS - 1)));
    assert.ok(buckets.size >= 62, `${buckets.size} buckets`);
    for (const shards of [2, 4]) {
      const counts = new Array<number>(shards).fill(0);
      for (const hash of keyed) counts[hash % shards]!++;
      // Binomial(64, 1/shards): every shard gets its share, give or take four standard deviations.
      const share = 64 / shards;
      const spread = 4 * Math.sqrt(share * (1 - 1 / shards));
      for (const count of counts) assert.ok(Math.abs(count - share) <= spread, `${shards} shards: ${counts.join(', ')}`);
    }
  });
});
