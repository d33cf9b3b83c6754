/**
 * The responder, driven by real captured client segments (test/fixtures: dig +tcp against a
 * kernel TCP server), with its replies emitted and checked byte by byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Responder, Response, Outcome, cutResponse, DEFAULT_MSS_OFFER, DEFAULT_WINDOW } from '../../../src/tcp/responder.js';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { wholeMessages } from '../../../src/dns/message.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { writeU32 } from '../../../src/wire/bytes.js';
import { ackNum, checkPacket, dst, dstPort, flags, ipv4, ipv6, mss, payloadLength, seqNum, src, srcPort, tcp, window } from '../../support/checkers.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { fixTcpChecksum } from '../../support/packets.js';

const NOW = 1_764_000_000;
const cookies = new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => i * 7));
const responder = new Responder({ mssOffer: DEFAULT_MSS_OFFER, window: DEFAULT_WINDOW, framer: wholeMessages }, cookies);

function decode(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

function emit(header: ReplyHeader, data: Uint8Array | null = null, offset = 0, length = 0): Uint8Array {
  const out = new Uint8Array(replyLength(header, length));
  emitReply(header, data, offset, length, out, 0);
  return out;
}

function respond(packet: Uint8Array, now = NOW): { seg: Segment; r: Response; outcome: Outcome } {
  const seg = decode(packet);
  const r = new Response();
  const outcome = responder.respond(seg, now, r);
  return { seg, r, outcome };
}

/** The captured client packet with its acknowledgment number set to `ack` (checksum fixed). */
function withAck(packet: Uint8Array, ack: number): Uint8Array {
  const copy = Uint8Array.from(packet);
  const tcpOffset = (copy[0]! >>> 4) === 4 ? (copy[0]! & 0xf) * 4 : 40;
  writeU32(copy, tcpOffset + 8, ack);
  fixTcpChecksum(copy, 0, tcpOffset, copy.length);
  return copy;
}

/** Our ISN for the flow of a captured client packet: what its SYN would have got. */
function isnFor(synIndex: number): number {
  return respond(ipPacket(synIndex)).r.control.seq;
}

test('SYN → SYN+ACK from the cookie, acknowledging the SYN, offering MSS 1220 and window 65535 (IPv4)', () => {
  const { seg, r, outcome } = respond(ipPacket(Packet.V4_SYN));
  assert.equal(outcome, Outcome.SYN_ANSWERED);
  assert.ok(r.hasControl);
  const isn = r.control.seq;
  assert.equal(cookies.check(seg, isn, NOW), SynCookies.mssIndex(4, seg.mss));
  checkPacket(
    emit(r.control),
    ipv4(src('198.18.0.2'), dst('198.18.0.1')),
    tcp(srcPort(53), dstPort(45483), flags(TcpFlag.SYN | TcpFlag.ACK), seqNum(isn), ackNum(3154750378), window(65535), mss(1220), payloadLength(0)),
  );
});

test('SYN → SYN+ACK (IPv6)', () => {
  const { r, outcome } = respond(ipPacket(Packet.V6_SYN));
  assert.equal(outcome, Outcome.SYN_ANSWERED);
  checkPacket(
    emit(r.control),
    ipv6(src('2001:2::2'), dst('2001:2::1')),
    tcp(srcPort(53), dstPort(39511), flags(TcpFlag.SYN | TcpFlag.ACK), ackNum(631299357), mss(1220)),
  );
});

test('a query acknowledging our cookie → ACK of the query and a request with the response template', () => {
  const isn = isnFor(Packet.V4_SYN);
  const query = withAck(ipPacket(Packet.V4_QUERY), (isn + 1) >>> 0);
  const { seg, r, outcome } = respond(query);
  assert.equal(outcome, Outcome.REQUEST);
  assert.equal(r.requestOffset, seg.payloadOffset);
  assert.equal(r.requestLength, 54);
  // MSS class of the captured client (MSS 1220 over IPv4 → class 536, the largest not above it).
  assert.equal(r.peerMss, 536);
  checkPacket(
    emit(r.control),
    ipv4(src('198.18.0.2'), dst('198.18.0.1')),
    tcp(srcPort(53), dstPort(45483), flags(TcpFlag.ACK), seqNum((isn + 1) >>> 0), ackNum(3154750378 + 54), payloadLength(0)),
  );
  assert.equal(r.response.seq, (isn + 1) >>> 0);
  assert.equal(r.response.ack, 3154750378 + 54);
  assert.equal(r.response.dstPort, 45483);
});

test('the same query over IPv6 is accepted with the IPv6 MSS class', () => {
  const isn = isnFor(Packet.V6_SYN);
  const { r, outcome } = respond(withAck(ipPacket(Packet.V6_QUERY), (isn + 1) >>> 0));
  assert.equal(outcome, Outcome.REQUEST);
  assert.equal(r.peerMss, 1220);
});

test('a query whose ack is not our cookie (a forger who never saw our SYN+ACK) gets RST and no data', () => {
  // The captured query acknowledges the kernel's ISN, not ours.
  const { r, outcome } = respond(ipPacket(Packet.V4_QUERY));
  assert.equal(outcome, Outcome.COOKIE_FAILED);
  checkPacket(emit(r.control), ipv4(src('198.18.0.2')), tcp(flags(TcpFlag.RST), seqNum(402274094), ackNum(0), window(0), payloadLength(0)));
  // A cookie older than its maximum age fails the same way.
  const isn = isnFor(Packet.V4_SYN);
  const late = respond(withAck(ipPacket(Packet.V4_QUERY), (isn + 1) >>> 0), NOW + 64 * 17);
  assert.equal(late.outcome, Outcome.COOKIE_FAILED);
});

test('FIN → ACK of the FIN; pure ACKs and RSTs → nothing', () => {
  const { r, outcome } = respond(ipPacket(Packet.V4_CLIENT_FIN));
  assert.equal(outcome, Outcome.FIN_ACKED);
  checkPacket(emit(r.control), ipv4(dst('198.18.0.1')), tcp(flags(TcpFlag.ACK), seqNum(402274152), ackNum(3154750433)));

  const ack = respond(ipPacket(Packet.V4_HANDSHAKE_ACK));
  assert.equal(ack.outcome, Outcome.IGNORED);
  assert.equal(ack.r.hasControl, false);

  // The server's own SYN+ACK sent back at us is not the start of a connection.
  const synAck = respond(ipPacket(Packet.V4_SYN_ACK));
  assert.equal(synAck.outcome, Outcome.IGNORED);
});

test('a request holding no whole message is neither acknowledged nor relayed', () => {
  const isn = isnFor(Packet.V4_SYN);
  const seg = decode(withAck(ipPacket(Packet.V4_QUERY), (isn + 1) >>> 0));
  const partial = new Responder({ mssOffer: 1220, window: 65535, framer: () => 0 }, cookies);
  const r = new Response();
  assert.equal(partial.respond(seg, NOW, r), Outcome.INCOMPLETE_REQUEST);
  assert.equal(r.hasControl, false);
});

test('cutResponse: segments of at most the MSS, consecutive sequence numbers, PSH and FIN on the last', () => {
  const template = new ReplyHeader();
  template.family = 4;
  template.srcAddr.set([198, 18, 0, 2]);
  template.dstAddr.set([198, 18, 0, 1]);
  template.srcPort = 53;
  template.dstPort = 45483;
  template.seq = 0xfffffc00; // wraps around 2^32 inside the response
  template.ack = 77;
  template.window = 65535;
  const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  const packets: Uint8Array[] = [];
  const count = cutResponse(template, data, 0, data.length, 1220, true, {
    send: (h, p, o, n) => packets.push(emit(h, p, o, n)),
  });
  assert.equal(count, 3);
  const sizes = [1220, 1220, 560];
  let seq = 0xfffffc00;
  packets.forEach((packet, i) => {
    const last = i === packets.length - 1;
    const seg = checkPacket(
      packet,
      ipv4(src('198.18.0.2'), dst('198.18.0.1')),
      tcp(seqNum(seq), ackNum(77), payloadLength(sizes[i]!), flags(TcpFlag.ACK | (last ? TcpFlag.PSH | TcpFlag.FIN : 0))),
    );
    assert.deepEqual(seg.buf.subarray(seg.payloadOffset, seg.payloadOffset + seg.payloadLength), data.subarray(i * 1220, i * 1220 + sizes[i]!));
    seq = (seq + sizes[i]!) >>> 0;
  });
});
