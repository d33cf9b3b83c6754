/**
 * flowlessAction, the rule for a segment whose connection holds no flow: from the real captured
 * frames of every link type (their flags and lengths as tcpdump reads them), and from real frames
 * whose flag bits were changed (ECN SYNs, RSTs, FINs and data without ACK, SYNs with FIN or RST)
 * or whose source address was (martian sources: wire/martian.ts). And the rule and the responder
 * agree: for every captured frame under every one of the 256 flag bytes, from its own source and
 * from a martian one, a fresh Responder (no flows) ignores exactly what the rule ignores, without
 * a word, answers a SYN exactly when the rule does, with one SYN+ACK, and refuses exactly what
 * the rule refuses, without a word.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dnsMessageLength, plausibleQueryStart } from '../../../src/dns/message.js';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { Outcome } from '../../../src/tcp/counters.js';
import { FlowlessAction, flowlessAction } from '../../../src/tcp/flowless.js';
import { MartianSources } from '../../../src/wire/martian.js';
import { DEFAULT_RESPONDER_CONFIG, Responder } from '../../../src/tcp/responder.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { checkPacket, flags as flagsAre, ipv4, ipv6, tcp } from '../../support/checkers.js';
import { CAPTURES, frame, ipPacket, Packet, PACKET_COUNT, tcpdumpLines } from '../../support/fixtures.js';
import { fixIpv4Checksum, fixTcpChecksum } from '../../support/packets.js';
import { addressBytes } from '../../support/address.js';

const { FIN, SYN, RST, PSH, ACK, URG, ECE, CWR } = TcpFlag;
const NOW_MS = 1_764_000_000_000;
const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

const ACTION_NAMES = Object.fromEntries(Object.entries(FlowlessAction).map(([name, value]) => [value, name]));
/** The server of the captures, as the front end would list this host's addresses (io/host-addresses.ts). */
const SERVER_ADDRESSES = ['198.18.0.2', '198.18.0.255', '2001:2::2', '127.0.0.1', '::1'].map(addressBytes);
const martians = new MartianSources(SERVER_ADDRESSES);
/** Without the host's addresses: the server's own captured packets are judged by their flags alone. */
const byFlags = new MartianSources();

function decode(linkType: number, bytes: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(linkType, bytes, 0, bytes.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

/** Captured packet `index` as raw IP with its TCP flag byte set to `flags`, checksum fixed. */
function withFlags(index: number, flags: number): Uint8Array {
  const packet = ipPacket(index);
  const seg = decode(LinkType.RAW, packet);
  packet[seg.tcpOffset + 13] = flags;
  fixTcpChecksum(packet, 0, seg.tcpOffset, packet.length);
  return packet;
}

/** Raw IP `packet` with its source address replaced by `source` (of its family), checksums fixed. */
function withSource(packet: Uint8Array, source: string): Uint8Array {
  const out = packet.slice();
  const seg = decode(LinkType.RAW, out);
  out.set(addressBytes(source), seg.srcAddrOffset);
  if (seg.family === 4) fixIpv4Checksum(out, 0);
  fixTcpChecksum(out, 0, seg.tcpOffset, out.length);
  return out;
}

/** What tcpdump says of packet `index`: its flags ("S", "S.", "P.", …) and payload length. */
function tcpdumpFlags(line: string): { flags: string; length: number } {
  const m = /Flags \[([^\]]*)\].*, length (\d+)$/.exec(line);
  assert.ok(m !== null, line);
  return { flags: m[1]!, length: Number(m[2]) };
}

describe('flowlessAction on the captured frames', () => {
  it('answers the clients’ SYNs, ignores SYN+ACKs and bare ACKs, verifies data and FINs — every link type', () => {
    const lines = tcpdumpLines();
    const seen = new Set<number>();
    for (let index = 0; index < PACKET_COUNT; index++) {
      const { flags, length } = tcpdumpFlags(lines[index]!);
      let expected: FlowlessAction;
      if (flags === 'S') expected = FlowlessAction.ANSWER_SYN;
      else if (flags === 'S.')
        expected = FlowlessAction.IGNORE; // a SYN+ACK starts nothing with us
      else if (flags === '.' && length === 0)
        expected = FlowlessAction.IGNORE; // a bare ACK asks for nothing
      else expected = FlowlessAction.VERIFY; // data ('P.', or '.' with a length) and FINs ('F.')
      seen.add(expected);
      for (const capture of CAPTURES) {
        const seg = decode(capture.linkType, frame(capture.name, index));
        assert.equal(seg.payloadLength, length);
        const action = flowlessAction(seg, byFlags);
        assert.equal(action, expected, `${capture.name} #${index} [${flags}] length ${length}: ${ACTION_NAMES[action]}`);
      }
    }
    assert.equal(seen.size, 3, 'the captures hold every kind');
  });
});

describe('flowlessAction on captured frames with other flags', () => {
  const cases: [string, number, number, FlowlessAction][] = [
    // RFC 3168 §6.1.1: an ECN-setup SYN has ECE and CWR set; it is a SYN like any other.
    ['ECN-setup SYN (SYN, ECE, CWR)', Packet.V4_SYN, SYN | ECE | CWR, FlowlessAction.ANSWER_SYN],
    ['ECN-setup SYN over IPv6', Packet.V6_SYN, SYN | ECE | CWR, FlowlessAction.ANSWER_SYN],
    ['SYN with ECE alone', Packet.V4_SYN, SYN | ECE, FlowlessAction.ANSWER_SYN],
    ['SYN with PSH and URG', Packet.BIG_SYN, SYN | PSH | URG, FlowlessAction.ANSWER_SYN],
    // Data on a SYN is not accepted (RFC 7413 §4.2.2 lets a server ignore it): the SYN is answered.
    ['SYN carrying the query', Packet.V4_QUERY, SYN, FlowlessAction.ANSWER_SYN],
    ['ECN-setup SYN+ACK', Packet.V4_SYN_ACK, SYN | ACK | ECE, FlowlessAction.IGNORE],
    ['SYN+FIN', Packet.V4_SYN, SYN | FIN, FlowlessAction.IGNORE],
    ['SYN+RST', Packet.V6_SYN, SYN | RST, FlowlessAction.IGNORE],
    // RFC 9293 §3.10.7.1: "An incoming segment containing a RST is discarded."
    ['RST', Packet.V4_HANDSHAKE_ACK, RST, FlowlessAction.IGNORE],
    ['RST+ACK', Packet.V6_HANDSHAKE_ACK, RST | ACK, FlowlessAction.IGNORE],
    ['RST+ACK with data', Packet.V4_QUERY, RST | ACK | PSH, FlowlessAction.IGNORE],
    ['RST+ACK+FIN', Packet.V4_CLIENT_FIN, RST | ACK | FIN, FlowlessAction.IGNORE],
    // RFC 9293 §3.10.7.4: "if the ACK bit is off, drop the segment and return".
    ['FIN without ACK', Packet.V4_CLIENT_FIN, FIN, FlowlessAction.IGNORE],
    ['data without ACK', Packet.V4_QUERY, PSH, FlowlessAction.IGNORE],
    ['data without any flag', Packet.V6_QUERY, 0, FlowlessAction.IGNORE],
    ['FIN, PSH, URG without ACK', Packet.BIG_QUERY, FIN | PSH | URG, FlowlessAction.IGNORE],
    ['bare ACK with ECE and CWR', Packet.V4_HANDSHAKE_ACK, ACK | ECE | CWR, FlowlessAction.IGNORE],
    ['bare ACK with PSH', Packet.V4_HANDSHAKE_ACK, ACK | PSH, FlowlessAction.IGNORE],
    ['data with ACK alone', Packet.V4_QUERY, ACK, FlowlessAction.VERIFY],
    ['data with ECE and CWR', Packet.V6_QUERY, ACK | PSH | ECE | CWR, FlowlessAction.VERIFY],
    ['FIN+ACK with data', Packet.V4_QUERY, ACK | PSH | FIN, FlowlessAction.VERIFY],
    ['FIN+ACK without data', Packet.V4_HANDSHAKE_ACK, ACK | FIN, FlowlessAction.VERIFY],
  ];
  for (const [name, index, flags, expected] of cases) {
    it(`${name}: ${ACTION_NAMES[expected]}`, () => {
      const seg = decode(LinkType.RAW, withFlags(index, flags));
      assert.equal(seg.flags, flags);
      assert.equal(flowlessAction(seg, byFlags), expected);
    });
  }
});

describe('martian sources', () => {
  // Each address is written as the source of a captured SYN of its family. Those the decoder
  // already refuses (0.0.0.0, 255.255.255.255, 224.0.0.0/4, ::, ff00::/8: decode.bad_address) are
  // checked on the decoded SYN with its source rewritten in place.
  const cases: [string, boolean][] = [
    ['198.18.0.1', false],
    ['1.2.3.4', false],
    ['100.64.0.1', false],
    ['169.254.7.7', false],
    ['223.255.255.255', false],
    ['198.18.0.254', false],
    ['198.18.0.2', true], // this host
    ['198.18.0.255', true], // its subnet's broadcast
    ['0.0.0.0', true],
    ['0.1.2.3', true],
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['224.0.0.1', true],
    ['239.255.255.250', true],
    ['240.0.0.1', true],
    ['255.255.255.255', true],
    ['2001:2::1', false],
    ['fe80::1', false],
    ['64:ff9b::c612:1', false], // NAT64 (RFC 6052), a real client behind a translator
    ['::1:0:0:1', false],
    ['2001:2::2', true], // this host
    ['::', true],
    ['::1', true],
    ['::198.18.0.1', true], // IPv4-compatible
    ['::ffff:198.18.0.1', true], // IPv4-mapped
    ['ff02::1', true],
    ['ff05::1:3', true],
  ];
  for (const [address, refused] of cases) {
    it(`${address}: ${refused ? 'refused' : 'answered'}`, () => {
      const index = address.includes(':') ? Packet.V6_SYN : Packet.V4_SYN;
      const seg = decode(LinkType.RAW, ipPacket(index));
      seg.buf.set(addressBytes(address), seg.srcAddrOffset);
      assert.equal(martians.refuses(seg), refused);
    });
  }

  it('the host’s addresses are martian only when the front end lists them', () => {
    const seg = decode(LinkType.RAW, withSource(ipPacket(Packet.V4_SYN), '198.18.0.2'));
    assert.equal(new MartianSources().refuses(seg), false);
    assert.equal(martians.refuses(seg), true);
    assert.throws(() => new MartianSources([new Uint8Array(5)]), RangeError);
  });

  it('refuses a SYN, data and a FIN from a martian source; what is ignored stays ignored', () => {
    const from = (index: number, flags: number, source: string): FlowlessAction =>
      flowlessAction(decode(LinkType.RAW, withSource(withFlags(index, flags), source)), martians);
    for (const [v4, v6] of [
      ['127.0.0.1', '::1'],
      ['198.18.0.2', '2001:2::2'],
    ] as const) {
      assert.equal(from(Packet.V4_SYN, SYN, v4), FlowlessAction.REFUSE_MARTIAN, `SYN from ${v4}`);
      assert.equal(from(Packet.V6_SYN, SYN | ECE | CWR, v6), FlowlessAction.REFUSE_MARTIAN, `SYN from ${v6}`);
      assert.equal(from(Packet.V4_QUERY, ACK | PSH, v4), FlowlessAction.REFUSE_MARTIAN, `query from ${v4}`);
      assert.equal(from(Packet.V6_QUERY, ACK | PSH, v6), FlowlessAction.REFUSE_MARTIAN, `query from ${v6}`);
      assert.equal(from(Packet.V4_CLIENT_FIN, ACK | FIN, v4), FlowlessAction.REFUSE_MARTIAN, `FIN from ${v4}`);
      assert.equal(from(Packet.V4_HANDSHAKE_ACK, ACK, v4), FlowlessAction.IGNORE, `bare ACK from ${v4}`);
      assert.equal(from(Packet.V6_HANDSHAKE_ACK, RST, v6), FlowlessAction.IGNORE, `RST from ${v6}`);
    }
  });
});

describe('flowlessAction and the responder agree', () => {
  /** A responder with no flows, and what it sent. */
  function freshResponder(): { responder: Responder; sent: Uint8Array[] } {
    const sent: Uint8Array[] = [];
    const responder: Responder = new Responder(
      { ...DEFAULT_RESPONDER_CONFIG, messageLength: dnsMessageLength, plausibleStart: plausibleQueryStart, recentConnections: 16 },
      new SynCookies(SECRET),
      {
        send: (header, payload, offset, length) => {
          const out = new Uint8Array(replyLength(header, length));
          emitReply(header, payload, offset, length, out, 0);
          sent.push(out);
        },
        pushWanted: () => responder.push(NOW_MS),
      },
      {
        onMessages: (flow) => responder.expectAnswer(flow),
      },
      null,
      martians,
    );
    return { responder, sent };
  }

  it('on every captured frame under each of the 256 flag bytes, from its source and a martian one: IGNORED exactly when IGNORE, SYN_ANSWERED exactly when ANSWER_SYN, MARTIAN_SOURCE exactly when REFUSE_MARTIAN', () => {
    const tally = new Map<string, number>();
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (let flags = 0; flags < 256; flags++) {
        const packet = withFlags(index, flags);
        const martian = withSource(packet, packet[0]! >>> 4 === 4 ? '127.0.0.1' : '::1');
        for (const seg of [decode(LinkType.RAW, packet), decode(LinkType.RAW, martian)]) {
          const action = flowlessAction(seg, martians);
          const { responder, sent } = freshResponder();
          const outcome = responder.handleSegment(seg, NOW_MS);
          const where = `packet ${index} flags 0x${flags.toString(16)}: ${ACTION_NAMES[action]}, outcome ${outcome}`;
          assert.equal(outcome === Outcome.IGNORED, action === FlowlessAction.IGNORE, where);
          assert.equal(outcome === Outcome.SYN_ANSWERED, action === FlowlessAction.ANSWER_SYN, where);
          assert.equal(outcome === Outcome.MARTIAN_SOURCE, action === FlowlessAction.REFUSE_MARTIAN, where);
          if (action === FlowlessAction.IGNORE || action === FlowlessAction.REFUSE_MARTIAN)
            assert.equal(sent.length, 0, `${where}: in silence`);
          if (action === FlowlessAction.ANSWER_SYN) {
            assert.equal(sent.length, 1, where);
            checkPacket(sent[0]!, seg.family === 4 ? ipv4() : ipv6(), tcp(flagsAre(SYN | ACK)));
            assert.equal(responder.flows.size, 0, `${where}: no state for a SYN`);
          }
          const key = `${ACTION_NAMES[action]}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
        }
      }
    }
    // Every action was exercised, many times.
    for (const name of ['IGNORE', 'ANSWER_SYN', 'VERIFY', 'REFUSE_MARTIAN'])
      assert.ok((tally.get(name) ?? 0) > 100, `${name}: ${tally.get(name)}`);
  });
});
