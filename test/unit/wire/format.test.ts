import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAddress, formatFlags, formatSegment } from '../../../src/wire/format.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { addressBytes } from '../../support/address.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { withTcpOptions } from '../../support/packets.js';

function v6(text: string): string {
  return formatAddress(addressBytes(text), 0, 6);
}

describe('formatAddress', () => {
  it('prints IPv4 dotted quads', () => {
    assert.equal(formatAddress(Uint8Array.of(198, 18, 0, 1), 0, 4), '198.18.0.1');
    assert.equal(formatAddress(Uint8Array.of(9, 0, 0, 0, 255, 255), 2, 4), '0.0.255.255');
  });

  it('prints IPv6 in RFC 5952 canonical form', () => {
    assert.equal(v6('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1'); // §4.1, §4.2.1
    assert.equal(v6('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // §4.2.2: one zero group stays
    assert.equal(v6('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1'); // §4.2.3: the longest run
    assert.equal(v6('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // §4.2.3: the first of equal runs
    assert.equal(v6('2001:DB8::ABCD'), '2001:db8::abcd'); // §4.3: lowercase
    assert.equal(v6('::'), '::');
    assert.equal(v6('::1'), '::1');
    assert.equal(v6('ff02::'), 'ff02::');
    assert.equal(v6('1:2:3:4:5:6:7:8'), '1:2:3:4:5:6:7:8');
    assert.equal(v6('::ffff:c612:1'), '::ffff:198.18.0.1'); // §5: IPv4-mapped
  });

  it('prints "?" rather than reading outside the buffer', () => {
    assert.equal(formatAddress(new Uint8Array(3), 0, 4), '?');
    assert.equal(formatAddress(new Uint8Array(16), 1, 6), '?');
  });
});

describe('formatFlags', () => {
  it('uses tcpdump letters and order', () => {
    assert.equal(formatFlags(0), 'none');
    assert.equal(formatFlags(TcpFlag.SYN), 'S');
    assert.equal(formatFlags(TcpFlag.SYN | TcpFlag.ACK), 'S.');
    assert.equal(formatFlags(TcpFlag.PSH | TcpFlag.ACK), 'P.');
    assert.equal(formatFlags(TcpFlag.RST), 'R');
    assert.equal(formatFlags(0xff), 'FSRP.UEW');
  });
});

describe('formatSegment', () => {
  function line(packet: Uint8Array): string {
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    return formatSegment(seg);
  }

  it('prints a captured SYN like tcpdump -n -S', () => {
    assert.equal(
      line(ipPacket(Packet.V4_SYN)),
      '198.18.0.1.45483 > 198.18.0.2.53: Flags [S], seq 3154750377, win 64660, ' +
        'options [mss 1220,sackOK,TS val 760932315 ecr 0,nop,wscale 10], length 0',
    );
  });

  it('prints options in wire order, including SACK blocks, unknown kinds, bad lengths and EOL', () => {
    const packet = withTcpOptions(ipPacket(Packet.V4_SYN), [
      5,
      10,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      2, // SACK {1:2}
      254,
      4,
      0xab,
      0xcd, // experimental (RFC 6994)
      2,
      3,
      9, // MSS with a wrong length
      0, // End of Option List
    ]);
    assert.equal(
      line(packet),
      '198.18.0.1.45483 > 198.18.0.2.53: Flags [S], seq 3154750377, win 64660, ' +
        'options [sack 1 {1:2},unknown-254 0xabcd,[bad opt],eol], length 0',
    );
  });

  it('prints an urgent pointer when URG is set', () => {
    const packet = withTcpOptions(ipPacket(Packet.V4_SYN), []);
    packet[33] = TcpFlag.URG | TcpFlag.ACK;
    packet[39] = 7;
    // Checksums no longer match; the line does not care.
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.IGNORE, seg), DecodeResult.OK);
    assert.equal(formatSegment(seg), '198.18.0.1.45483 > 198.18.0.2.53: Flags [.U], ack 0, win 64660, urg 7, length 0');
  });
});
