/**
 * flowlessAction, the rule for a segment whose connection holds no flow: from the real captured
 * frames of every link type (their flags and lengths as tcpdump reads them), and from real frames
 * whose flag bits were changed (ECN SYNs, RSTs, FINs and data without ACK, SYNs with FIN or RST).
 * And the rule and the responder agree: for every captured frame under every one of the 256 flag
 * bytes, a fresh Responder (no flows) ignores exactly what the rule ignores, without a word, and
 * answers a SYN exactly when the rule does, with one SYN+ACK.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dnsMessageLength, plausibleQueryStart } from '../../../src/dns/message.js';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { Outcome } from '../../../src/tcp/counters.js';
import { FlowlessAction, flowlessAction } from '../../../src/tcp/flowless.js';
import { DEFAULT_RESPONDER_CONFIG, Responder } from '../../../src/tcp/responder.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { checkPacket, flags as flagsAre, ipv4, ipv6, tcp } from '../../support/checkers.js';
import { CAPTURES, frame, ipPacket, Packet, PACKET_COUNT, tcpdumpLines } from '../../support/fixtures.js';
import { fixTcpChecksum } from '../../support/packets.js';

const { FIN, SYN, RST, PSH, ACK, URG, ECE, CWR } = TcpFlag;
const NOW_MS = 1_764_000_000_000;
const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

const ACTION_NAMES = Object.fromEntries(Object.entries(FlowlessAction).map(([name, value]) => [value, name]));

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
        const action = flowlessAction(seg.flags, seg.payloadLength);
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
      assert.equal(flowlessAction(seg.flags, seg.payloadLength), expected);
    });
  }
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
    );
    return { responder, sent };
  }

  it('on every captured frame under each of the 256 flag bytes: IGNORED exactly when IGNORE, SYN_ANSWERED exactly when ANSWER_SYN', () => {
    const tally = new Map<string, number>();
    for (let index = 0; index < PACKET_COUNT; index++) {
      for (let flags = 0; flags < 256; flags++) {
        const seg = decode(LinkType.RAW, withFlags(index, flags));
        const action = flowlessAction(seg.flags, seg.payloadLength);
        const { responder, sent } = freshResponder();
        const outcome = responder.handleSegment(seg, NOW_MS);
        const where = `packet ${index} flags 0x${flags.toString(16)}: ${ACTION_NAMES[action]}, outcome ${outcome}`;
        assert.equal(outcome === Outcome.IGNORED, action === FlowlessAction.IGNORE, where);
        assert.equal(outcome === Outcome.SYN_ANSWERED, action === FlowlessAction.ANSWER_SYN, where);
        if (action === FlowlessAction.IGNORE) assert.equal(sent.length, 0, `${where}: ignored in silence`);
        if (action === FlowlessAction.ANSWER_SYN) {
          assert.equal(sent.length, 1, where);
          checkPacket(sent[0]!, seg.family === 4 ? ipv4() : ipv6(), tcp(flagsAre(SYN | ACK)));
          assert.equal(responder.flows.size, 0, `${where}: no state for a SYN`);
        }
        const key = `${ACTION_NAMES[action]}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      }
    }
    // Every action was exercised, many times.
    for (const name of ['IGNORE', 'ANSWER_SYN', 'VERIFY']) assert.ok((tally.get(name) ?? 0) > 100, `${name}: ${tally.get(name)}`);
  });
});
