import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LinkType } from '../../../src/wire/segment.js';
import { CAPTURES, loadCapture, PACKET_COUNT } from '../../support/fixtures.js';
import { parsePcap } from '../../support/pcap-file.js';

/** A pcap file with one 4-byte record, written in the given byte order and time unit. */
function synthetic(littleEndian: boolean, nanoseconds: boolean): Uint8Array {
  const bytes = new Uint8Array(24 + 16 + 4);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4, littleEndian);
  view.setUint16(4, 2, littleEndian);
  view.setUint16(6, 4, littleEndian);
  view.setUint32(16, 65535, littleEndian);
  view.setUint32(20, LinkType.RAW, littleEndian);
  view.setUint32(24, 1_700_000_000, littleEndian);
  view.setUint32(28, nanoseconds ? 123_456_789 : 123_456, littleEndian);
  view.setUint32(32, 4, littleEndian);
  view.setUint32(36, 1500, littleEndian);
  bytes.set([0x45, 0, 0, 20], 40);
  return bytes;
}

describe('pcap file reader', () => {
  it('reads the committed captures', () => {
    for (const capture of CAPTURES) {
      const file = loadCapture(capture.name);
      assert.equal(file.linkType, capture.linkType);
      assert.equal(file.snapLength, 262144);
      assert.equal(file.records.length, PACKET_COUNT);
      let previous = 0;
      for (const record of file.records) {
        assert.equal(record.data.length, record.capturedLength);
        assert.equal(record.originalLength, record.capturedLength);
        const time = record.tsSec * 1e6 + record.tsUsec;
        assert.ok(time >= previous && record.tsUsec < 1e6);
        previous = time;
      }
    }
  });

  it('reads both byte orders and both time units', () => {
    for (const littleEndian of [false, true]) {
      for (const nanoseconds of [false, true]) {
        const file = parsePcap(synthetic(littleEndian, nanoseconds));
        assert.equal(file.linkType, LinkType.RAW);
        assert.equal(file.records.length, 1);
        const [record] = file.records;
        assert.deepEqual(Array.from(record!.data), [0x45, 0, 0, 20]);
        assert.equal(record!.capturedLength, 4);
        assert.equal(record!.originalLength, 1500);
        assert.equal(record!.tsSec, 1_700_000_000);
        assert.equal(record!.tsUsec, 123_456);
      }
    }
  });

  it('rejects pcapng, short files and cut records', () => {
    const pcapng = synthetic(true, false);
    pcapng.set([0x0a, 0x0d, 0x0d, 0x0a], 0);
    assert.throws(() => parsePcap(pcapng), /unknown magic/);
    assert.throws(() => parsePcap(new Uint8Array(10)), /shorter than a file header/);
    assert.throws(() => parsePcap(synthetic(false, false).subarray(0, 43)), /record data cut/);
    assert.throws(() => parsePcap(synthetic(false, false).subarray(0, 30)), /record header cut/);
  });
});
