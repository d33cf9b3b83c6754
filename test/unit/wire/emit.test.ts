import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { addressBytes } from '../../support/address.js';
import {
  ackNum,
  atomicDatagram,
  checkPacket,
  dst,
  dstPort,
  flags,
  hopLimit,
  ipv4,
  ipv6,
  mss,
  payload,
  seqNum,
  src,
  srcPort,
  tcp,
  tcpHeaderLength,
  timestamps,
  window,
} from '../../support/checkers.js';
import { ipPacket, Packet } from '../../support/fixtures.js';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function header(family: 4 | 6): ReplyHeader {
  const hdr = new ReplyHeader();
  hdr.family = family;
  hdr.srcAddr.set(addressBytes(family === 4 ? '198.18.0.2' : '2001:2::2'));
  hdr.dstAddr.set(addressBytes(family === 4 ? '198.18.0.1' : '2001:2::1'));
  hdr.srcPort = 53;
  hdr.dstPort = 45483;
  hdr.seq = 0x89abcdef;
  hdr.ack = 3154750378;
  hdr.flags = TcpFlag.SYN | TcpFlag.ACK;
  hdr.window = 65535;
  hdr.mss = 1220;
  hdr.hopLimit = 64;
  return hdr;
}

function emit(hdr: ReplyHeader, data: Uint8Array | null = null): Uint8Array {
  const length = data === null ? 0 : data.length;
  const out = new Uint8Array(replyLength(hdr, length));
  assert.equal(emitReply(hdr, data, 0, length, out, 0), out.length);
  return out;
}

function decodeRaw(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

/** A ReplyHeader repeating a captured packet's fields, and its payload. */
function headerFromCapture(packet: Uint8Array): { hdr: ReplyHeader; seg: Segment; data: Uint8Array } {
  const seg = decodeRaw(packet);
  const hdr = new ReplyHeader();
  hdr.family = seg.family;
  hdr.srcAddr.set(packet.subarray(seg.srcAddrOffset, seg.srcAddrOffset + seg.addrLength));
  hdr.dstAddr.set(packet.subarray(seg.dstAddrOffset, seg.dstAddrOffset + seg.addrLength));
  hdr.srcPort = seg.srcPort;
  hdr.dstPort = seg.dstPort;
  hdr.seq = seg.seq;
  hdr.ack = seg.ack;
  hdr.flags = seg.flags;
  hdr.window = seg.window;
  hdr.mss = seg.mss;
  hdr.hopLimit = packet[seg.family === 4 ? 8 : 7]!;
  return { hdr, seg, data: packet.slice(seg.payloadOffset, seg.payloadOffset + seg.payloadLength) };
}

describe('emitReply', () => {
  // Golden packets; tcpdump -vv reads them as "cksum ... (correct)" with no IP checksum complaint.
  it('writes an IPv4 SYN-ACK with MSS byte for byte', () => {
    assert.equal(hex(emit(header(4))), '4500002c000040004006aea4c6120002c6120001' + '0035b1ab89abcdefbc09abaa6012ffff9bae0000020404c4');
  });

  it('writes an IPv6 SYN-ACK with MSS byte for byte', () => {
    assert.equal(
      hex(emit(header(6))),
      '600000000018064020010002000000000000000000000002200100020000000000000000000000010035b1ab' +
        '89abcdefbc09abaa6012ffffe7cd0000020404c4',
    );
  });

  it('writes an IPv4 data segment without options byte for byte (odd payload length)', () => {
    const hdr = header(4);
    hdr.flags = TcpFlag.PSH | TcpFlag.ACK;
    hdr.seq = 0x89abcdf0;
    hdr.mss = 0;
    assert.equal(
      hex(emit(hdr, Uint8Array.from(Buffer.from('\x00\x05hello', 'latin1')))),
      '4500002f000040004006aea1c6120002c6120001' + '0035b1ab89abcdf0bc09abaa5018ffff6e950000' + '000568656c6c6f',
    );
  });

  it('passes the checkers, which verify both checksums', () => {
    checkPacket(
      emit(header(4)),
      ipv4(src('198.18.0.2'), dst('198.18.0.1'), hopLimit(64), atomicDatagram()),
      tcp(srcPort(53), dstPort(45483), flags(TcpFlag.SYN | TcpFlag.ACK), seqNum(0x89abcdef), ackNum(3154750378)),
    );
    checkPacket(
      emit(header(6)),
      ipv6(src('2001:2::2'), dst('2001:2:0::1'), hopLimit(64)),
      tcp(window(65535), mss(1220), tcpHeaderLength(24), timestamps(null), payload(new Uint8Array(0))),
    );
  });

  it('reproduces the captured server packets, except what our emitter fixes', () => {
    // Linux adds timestamps (and sackOK/wscale on SYN-ACK) that we do not emit yet, sets a flow
    // label and an IPv4 ID counter; everything else must come out identical.
    for (const index of [
      Packet.V4_SYN_ACK,
      Packet.V4_QUERY_ACK,
      Packet.V4_ANSWER,
      Packet.V4_SERVER_FIN,
      Packet.BIG_ANSWER_FIRST,
      Packet.BIG_ANSWER_SECOND,
      Packet.V6_SYN_ACK,
      Packet.V6_ANSWER,
    ]) {
      const captured = ipPacket(index);
      const { hdr, seg, data } = headerFromCapture(captured);
      const emitted = emit(hdr, data);
      const ours = decodeRaw(emitted);
      const label = `packet ${index}`;
      const ipLength = seg.family === 4 ? 20 : 40;
      const sameBytes = (from: number, to: number, what: string): void =>
        assert.deepEqual(emitted.subarray(from, to), captured.subarray(from, to), `${label} ${what}`);
      if (seg.family === 4) {
        // Not comparable: Total Length (2-3, our options differ), Identification (4-5, Linux
        // counts; we send 0, as Linux does on SYN-ACKs), header checksum (10-11, covers both).
        sameBytes(0, 2, 'version/IHL/DSCP');
        sameBytes(6, 10, 'DF/fragment offset/TTL/protocol');
        sameBytes(12, 20, 'addresses');
        assert.equal((emitted[4]! << 8) | emitted[5]!, 0, `${label} identification`);
        if (index === Packet.V4_SYN_ACK) sameBytes(4, 6, 'identification');
      } else {
        // Not comparable: flow label (1-3, Linux sets one; we send 0), Payload Length (4-5).
        assert.equal(emitted[0], captured[0], `${label} version/traffic class`);
        assert.equal(emitted[1]! & 0xf0, captured[1]! & 0xf0, `${label} traffic class`);
        assert.deepEqual(emitted.subarray(1, 4), Uint8Array.of(0, 0, 0), `${label} flow label`);
        sameBytes(6, 40, 'next header/hop limit/addresses');
      }
      // TCP: ports, seq, ack, flags, window, urgent pointer identical; header length is ours.
      // TCP: not comparable are the data offset (12) and checksum (16-17); the options differ.
      const t = ipLength;
      sameBytes(t, t + 12, 'ports/seq/ack');
      sameBytes(t + 13, t + 16, 'flags/window');
      sameBytes(t + 18, t + 20, 'urgent pointer');
      assert.equal(ours.tcpHeaderLength, hdr.mss > 0 ? 24 : 20, label);
      // Linux puts MSS first on its SYN-ACK too: the first option's 4 bytes match.
      if (hdr.mss > 0) sameBytes(t + 20, t + 24, 'MSS option');
      assert.deepEqual(emitted.subarray(ours.payloadOffset), data, `${label} payload`);
      assert.equal(ours.payloadLength, seg.payloadLength);
    }
  });

  it('round-trips every header field through decodeFrame, including values above 2^31', () => {
    for (const family of [4, 6] as const) {
      const hdr = header(family);
      hdr.seq = 0xffffffff;
      hdr.ack = 0x80000000;
      hdr.flags = 0xff;
      hdr.window = 0xfffe;
      hdr.mss = 0xffff;
      hdr.hopLimit = 255;
      const seg = decodeRaw(emit(hdr, Uint8Array.from([1, 2, 3])));
      const answer = new ReplyHeader().reverseOf(seg);
      assert.equal(seg.seq, hdr.seq);
      assert.equal(seg.ack, hdr.ack);
      assert.equal(seg.flags, hdr.flags);
      assert.equal(seg.window, hdr.window);
      assert.equal(seg.mss, hdr.mss);
      assert.equal(seg.payloadLength, 3);
      assert.equal(seg.srcPort, hdr.srcPort);
      assert.equal(seg.dstPort, hdr.dstPort);
      // A reply to the decoded packet goes back where it came from.
      assert.equal(answer.family, family);
      assert.deepEqual([answer.srcPort, answer.dstPort], [hdr.dstPort, hdr.srcPort]);
      assert.deepEqual(answer.srcAddr, hdr.dstAddr);
      assert.deepEqual(answer.dstAddr, hdr.srcAddr);
    }
  });

  it('writes every byte of its range, and nothing outside it (0xa5 canaries)', () => {
    for (const family of [4, 6] as const) {
      for (const withMss of [true, false]) {
        const hdr = header(family);
        hdr.mss = withMss ? 1460 : 0;
        const data = Uint8Array.from([0xa5, 0x00, 0x5a]);
        const length = replyLength(hdr, data.length);
        const dirty = new Uint8Array(length + 16).fill(0xa5);
        const clean = new Uint8Array(length + 16).fill(0x00);
        assert.equal(emitReply(hdr, data, 0, data.length, dirty, 7), length);
        assert.equal(emitReply(hdr, data, 0, data.length, clean, 7), length);
        // A byte the emitter skipped would still be 0xa5 in one buffer and 0x00 in the other.
        const label = `family ${family} mss ${withMss}`;
        assert.deepEqual(dirty.subarray(7, 7 + length), clean.subarray(7, 7 + length), label);
        assert.ok(
          dirty.subarray(0, 7).every((b) => b === 0xa5),
          'bytes before the packet',
        );
        assert.ok(
          dirty.subarray(7 + length).every((b) => b === 0xa5),
          'bytes after the packet',
        );
        decodeRaw(dirty.subarray(7, 7 + length));
      }
    }
  });

  it('takes the payload from any offset, or in place from the output buffer', () => {
    const hdr = header(4);
    hdr.mss = 0;
    const message = Uint8Array.from(Buffer.from('\x00\x03abc', 'latin1'));
    const expected = emit(hdr, message);
    const source = new Uint8Array(20).fill(0xee);
    source.set(message, 9);
    const out = new Uint8Array(100);
    assert.equal(emitReply(hdr, source, 9, message.length, out, 5), expected.length);
    assert.deepEqual(out.subarray(5, 5 + expected.length), expected);
    // Built in place: the payload already sits right after where the headers go.
    const inPlace = new Uint8Array(100);
    inPlace.set(message, 3 + 40);
    assert.equal(emitReply(hdr, inPlace, 3 + 40, message.length, inPlace, 3), expected.length);
    assert.deepEqual(inPlace.subarray(3, 3 + expected.length), expected);
    // Elsewhere in the same buffer, overlapping the destination: moved like memmove.
    const overlapping = new Uint8Array(100);
    overlapping.set(message, 30);
    assert.equal(emitReply(hdr, overlapping, 30, message.length, overlapping, 0), expected.length);
    assert.deepEqual(overlapping.subarray(0, expected.length), expected);
  });

  it('computes lengths and refuses what it cannot write (returns 0, writes nothing)', () => {
    const v4 = header(4);
    const v6 = header(6);
    assert.equal(replyLength(v4, 0), 44);
    assert.equal(replyLength(v6, 100), 164);
    v4.mss = 0;
    assert.equal(replyLength(v4, 10), 50);
    const small = new Uint8Array(49).fill(0xa5);
    const data = new Uint8Array(10);
    assert.equal(emitReply(v4, data, 0, 10, small, 0), 0);
    assert.equal(emitReply(v4, data, 0, 10, new Uint8Array(60), 11), 0);
    assert.equal(emitReply(v4, data, 1, 10, new Uint8Array(60), 0), 0);
    assert.equal(emitReply(v4, null, 0, 1, new Uint8Array(60), 0), 0);
    assert.equal(emitReply(v4, data, 0, 10, new Uint8Array(60), -1), 0);
    assert.ok(small.every((b) => b === 0xa5));
    // The IP length fields are 16 bits: IPv4 counts its header, IPv6 does not (RFC 8200 §3).
    const big = new Uint8Array(65535);
    const room = new Uint8Array(70000);
    assert.equal(emitReply(v4, big, 0, 65535 - 40, room, 0), 65535);
    assert.equal(emitReply(v4, big, 0, 65535 - 39, room, 0), 0);
    v6.mss = 0;
    assert.equal(emitReply(v6, big, 0, 65535 - 20, room, 0), 65535 + 40);
    assert.equal(emitReply(v6, big, 0, 65535 - 19, room, 0), 0);
  });
});

describe('checkers', () => {
  it('fail with the field, both values and the tcpdump line of the packet', () => {
    const packet = emit(header(4));
    assert.throws(() => checkPacket(packet, ipv4(), tcp(ackNum(3154750379))), {
      message:
        'ackNum: expected 3154750379, got 3154750378\n' +
        '  packet: 198.18.0.2.53 > 198.18.0.1.45483: Flags [S.], seq 2309737967, ack 3154750378, win 65535, ' +
        'options [mss 1220], length 0',
    });
    assert.throws(() => checkPacket(packet, ipv6()), /IP version: expected 6, got 4/);
    assert.throws(() => checkPacket(packet, ipv4(src('198.18.0.9'))), /source address: expected 198.18.0.9, got 198.18.0.2/);
  });

  it('reject a packet with a bad checksum or trailing bytes', () => {
    const packet = emit(header(6));
    packet[packet.length - 1]! ^= 1;
    assert.throws(() => checkPacket(packet, ipv6()), /decode: expected ok, got bad_tcp_checksum/);
    const padded = new Uint8Array(emit(header(4)).length + 2);
    padded.set(emit(header(4)));
    assert.throws(() => checkPacket(padded, ipv4()), /IP packet length: expected 46, got 44/);
  });
});

describe('emitReply with the timestamps option', () => {
  it('writes MSS then NOP NOP TS (RFC 7323 Appendix A layout) and the checkers read them back', () => {
    const hdr = header(4);
    hdr.hasTimestamps = true;
    hdr.tsVal = 0x01020304;
    hdr.tsEcr = 0xfffffffe;
    const packet = emit(hdr);
    checkPacket(packet, ipv4(), tcp(mss(1220), timestamps({ val: 0x01020304, ecr: 0xfffffffe }), tcpHeaderLength(36)));
    assert.equal(hex(packet.subarray(40, 56)), '020404c4' + '0101080a' + '01020304' + 'fffffffe');
  });

  it('on a data segment without MSS: 12 option bytes, payload after them', () => {
    const hdr = header(6);
    hdr.mss = 0;
    hdr.flags = TcpFlag.ACK | TcpFlag.PSH;
    hdr.hasTimestamps = true;
    hdr.tsVal = 7;
    hdr.tsEcr = 9;
    const data = Uint8Array.from([1, 2, 3]);
    checkPacket(emit(hdr, data), ipv6(), tcp(mss(0), timestamps({ val: 7, ecr: 9 }), tcpHeaderLength(32), payload(data)));
  });
});
