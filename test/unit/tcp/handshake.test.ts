/**
 * synAckFor, our SYN+ACK, from the real captured SYNs: addresses and ports reversed, ISN = the
 * cookie, the client's ISN + 1 acknowledged (never data on a SYN), our window and MSS, the
 * timestamp token only if the SYN offered timestamps. And it is one the client's next segment
 * proves itself by: a first data segment acknowledging it passes the cookie check, and its echo
 * of our TSval passes the token check.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { synAckFor } from '../../../src/tcp/handshake.js';
import { writeU32 } from '../../../src/wire/bytes.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import {
  ackNum,
  checkPacket,
  dst,
  dstPort,
  flags,
  ipv4,
  ipv6,
  mss,
  payloadLength,
  seqNum,
  src,
  srcPort,
  tcp,
  timestamps,
  window,
  windowScale,
} from '../../support/checkers.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { fixTcpChecksum, withTcpOptions } from '../../support/packets.js';

const NOW_MS = 1_764_000_000_000;
const OFFER = { window: 65535, mssOffer: 1220 };
const cookies = new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => 3 * i + 1));

function decode(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

function emit(reply: ReplyHeader): Uint8Array {
  const out = new Uint8Array(replyLength(reply, 0));
  emitReply(reply, null, 0, 0, out, 0);
  return out;
}

/** Offset of the timestamps option's TSecr in a decoded segment's packet. */
function tsEcrOffset(seg: Segment): number {
  for (let p = seg.tcpOffset + 20; p < seg.tcpOffset + seg.tcpHeaderLength; ) {
    const kind = seg.buf[p]!;
    if (kind === 8) return p + 6;
    p += kind === 1 ? 1 : seg.buf[p + 1]!;
  }
  assert.fail('no timestamps option');
}

describe('synAckFor', () => {
  it('answers the captured IPv4 SYN: reversed, cookie ISN, ISN + 1 acknowledged, our window, MSS and token', () => {
    const syn = decode(ipPacket(Packet.V4_SYN));
    const reply = synAckFor(syn, cookies, OFFER, NOW_MS, new ReplyHeader());
    checkPacket(
      emit(reply),
      ipv4(src('198.18.0.2'), dst('198.18.0.1')),
      tcp(
        srcPort(53),
        dstPort(45483),
        flags(TcpFlag.SYN | TcpFlag.ACK),
        seqNum(cookies.issue(syn, NOW_MS / 1000)),
        ackNum(3154750377 + 1),
        window(65535),
        mss(1220),
        payloadLength(0),
        timestamps({ val: cookies.tokenForSegment(syn, SynCookies.negotiated(syn), NOW_MS / 1000), ecr: 760932315 }),
        // The client's wscale 10 (Linux 6.16 on): agreed to, and carried in the token; ours is 0.
        windowScale(0),
      ),
    );
    assert.equal(SynCookies.windowShift(SynCookies.negotiated(syn)), 10);
  });

  it('answers the captured IPv6 SYN into a header that held an IPv4 reply', () => {
    const reply = new ReplyHeader();
    synAckFor(decode(ipPacket(Packet.V4_SYN)), cookies, OFFER, NOW_MS, reply);
    const syn = decode(ipPacket(Packet.V6_SYN));
    assert.equal(synAckFor(syn, cookies, { window: 1000, mssOffer: 1200 }, NOW_MS, reply), reply, 'fills the header it is given');
    checkPacket(
      emit(reply),
      ipv6(src('2001:2::2'), dst('2001:2::1')),
      tcp(
        srcPort(53),
        dstPort(39511),
        flags(TcpFlag.SYN | TcpFlag.ACK),
        ackNum(631299356 + 1),
        window(1000),
        mss(1200),
        seqNum(cookies.issue(syn, NOW_MS / 1000)),
      ),
    );
  });

  it('offers no timestamps to a SYN that did not', () => {
    const syn = decode(withTcpOptions(ipPacket(Packet.V4_SYN), [2, 4, 0x04, 0xc4])); // MSS 1220 only
    assert.equal(syn.hasTimestamps, false);
    const reply = synAckFor(syn, cookies, OFFER, NOW_MS, new ReplyHeader());
    assert.equal(reply.hasTimestamps, false);
    // RFC 7323 §2.2 would allow scaling without timestamps, but only a token could carry the
    // client's shift to later segments.
    checkPacket(emit(reply), ipv4(), tcp(flags(TcpFlag.SYN | TcpFlag.ACK), timestamps(null), mss(1220), windowScale(-1)));
  });

  it('offers no window scaling to a SYN whose shift a token cannot carry, nor to one that offered none', () => {
    for (const shift of [4, 12, 14, -1]) {
      const options = [2, 4, 0x04, 0xc4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
      const syn = decode(withTcpOptions(ipPacket(Packet.V4_SYN), shift < 0 ? options : [...options, 1, 3, 3, shift]));
      assert.equal(syn.windowScale, shift);
      checkPacket(emit(synAckFor(syn, cookies, OFFER, NOW_MS, new ReplyHeader())), ipv4(), tcp(windowScale(-1)));
      assert.equal(SynCookies.windowShift(SynCookies.negotiated(syn)), 0);
    }
  });

  it('acknowledges only the SYN of a SYN that carries data (RFC 7413 §4.2.2)', () => {
    const packet = ipPacket(Packet.V4_QUERY);
    const query = decode(packet);
    packet[query.tcpOffset + 13] = TcpFlag.SYN;
    fixTcpChecksum(packet, 0, query.tcpOffset, packet.length);
    const syn = decode(packet);
    assert.equal(syn.payloadLength, 54);
    const reply = synAckFor(syn, cookies, OFFER, NOW_MS, new ReplyHeader());
    assert.equal(reply.ack, (syn.seq + 1) >>> 0);
  });

  it('is proved by the client’s next segment: its ACK passes the cookie check, its TSecr the token check', () => {
    const syn = decode(ipPacket(Packet.V4_SYN));
    const reply = synAckFor(syn, cookies, OFFER, NOW_MS, new ReplyHeader());
    // The captured query, as the client would have sent it to us: acknowledging our ISN, echoing our TSval.
    const packet = ipPacket(Packet.V4_QUERY);
    const query = decode(packet);
    assert.equal(query.seq, (syn.seq + 1) >>> 0, 'the query starts right after the client ISN');
    writeU32(packet, query.tcpOffset + 8, (reply.seq + 1) >>> 0);
    writeU32(packet, tsEcrOffset(query), reply.tsVal);
    fixTcpChecksum(packet, 0, query.tcpOffset, packet.length);
    const first = decode(packet);
    // The ISN carries the MSS class alone; the token the window scale too.
    assert.equal(cookies.checkFirstSegment(first, NOW_MS / 1000 + 1), SynCookies.mssIndex(4, 1220));
    assert.equal(cookies.checkToken(first, first.tsEcr, NOW_MS / 1000 + 1), SynCookies.negotiated(syn));
    // The captured query as it was (acknowledging the real server's ISN) proves nothing.
    assert.equal(cookies.checkFirstSegment(decode(ipPacket(Packet.V4_QUERY)), NOW_MS / 1000), -1);
  });
});
