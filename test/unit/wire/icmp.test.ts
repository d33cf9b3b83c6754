/**
 * ICMP too-big messages (wire/icmp.ts, wire/quoted.ts), built as a router builds them around real
 * captured answer segments of ours (test/fixtures: the server's answers of the dig flows, IPv4
 * and IPv6): RFC 792/1191 quote the IP header and the start of the datagram, RFC 4443 as much as
 * fits in 1280 bytes. The quoted segment is read from the client's side.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeTooBig } from '../../../src/wire/icmp.js';
import { LinkType, Segment } from '../../../src/wire/segment.js';
import { formatAddress } from '../../../src/wire/format.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { frameAround, tooBig } from '../../support/icmp-frames.js';

test('frag-needed and packet-too-big quoting our captured answers: the MTU, and the segment seen from the client', () => {
  for (const [family, index, mtu, clientPort, seq] of [
    [4, Packet.V4_ANSWER, 1280, 45483, 402274094],
    [6, Packet.V6_ANSWER, 1280, 39511, 872252329],
  ] as const) {
    const answer = ipPacket(index);
    const layers = new Segment();
    const quoted = new Segment();
    const frame = frameAround(family, tooBig(family, mtu, answer, answer.length));
    assert.equal(decodeTooBig(LinkType.ETHERNET, frame, 0, frame.length, layers, quoted), mtu);
    assert.equal(quoted.family, family);
    assert.equal(quoted.srcPort, clientPort, 'the source is the client');
    assert.equal(quoted.dstPort, 53);
    assert.equal(formatAddress(quoted.buf, quoted.srcAddrOffset, family), family === 4 ? '198.18.0.1' : '2001:2::1');
    assert.equal(formatAddress(quoted.buf, quoted.dstAddrOffset, family), family === 4 ? '198.18.0.2' : '2001:2::2');
    assert.equal(quoted.seq, seq);
    // RFC 792's minimum quote, the IP header and 8 bytes, is enough.
    const short = frameAround(family, tooBig(family, mtu, answer, (family === 4 ? 20 : 40) + 8));
    assert.equal(decodeTooBig(LinkType.ETHERNET, short, 0, short.length, layers, quoted), mtu);
    // Less is not.
    const shorter = frameAround(family, tooBig(family, mtu, answer, (family === 4 ? 20 : 40) + 7));
    assert.equal(decodeTooBig(LinkType.ETHERNET, shorter, 0, shorter.length, layers, quoted), 0);
  }
});

test('an old router reporting MTU 0 (RFC 1191 §5): the largest plateau below the quoted length', () => {
  const answer = ipPacket(Packet.V4_ANSWER); // 110 bytes
  const frame = frameAround(4, tooBig(4, 0, answer, answer.length));
  assert.equal(decodeTooBig(LinkType.ETHERNET, frame, 0, frame.length, new Segment(), new Segment()), 68);
  const big = ipPacket(Packet.BIG_ANSWER_FIRST); // 1260 bytes
  const bigFrame = frameAround(4, tooBig(4, 0, big, 28));
  assert.equal(decodeTooBig(LinkType.ETHERNET, bigFrame, 0, bigFrame.length, new Segment(), new Segment()), 1006);
});

test('other ICMP, other codes, a quoted non-TCP packet and TCP itself are not too-big messages', () => {
  const answer = ipPacket(Packet.V4_ANSWER);
  const layers = new Segment();
  const quoted = new Segment();
  const cases: Uint8Array[] = [];
  const portUnreachable = tooBig(4, 1280, answer, 28);
  portUnreachable[1] = 3;
  cases.push(frameAround(4, portUnreachable));
  const echo = tooBig(4, 1280, answer, 28);
  echo[0] = 8;
  cases.push(frameAround(4, echo));
  const udp = Uint8Array.from(answer);
  udp[9] = 17;
  cases.push(frameAround(4, tooBig(4, 1280, udp, 28)));
  const v6TimeExceeded = tooBig(6, 1280, ipPacket(Packet.V6_ANSWER), 48);
  v6TimeExceeded[0] = 3;
  cases.push(frameAround(6, v6TimeExceeded));
  for (const frame of cases) assert.equal(decodeTooBig(LinkType.ETHERNET, frame, 0, frame.length, layers, quoted), 0);
  const segment = Uint8Array.from([...new Uint8Array(12), 0x08, 0x00, ...answer]);
  assert.equal(decodeTooBig(LinkType.ETHERNET, segment, 0, segment.length, layers, quoted), 0, 'a TCP segment');
});
