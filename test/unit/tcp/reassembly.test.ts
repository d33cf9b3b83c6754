/**
 * Reassembly: segments beyond a gap held in order, overlaps kept once, handed over from RCV.NXT
 * without a gap, across the wrap of sequence numbers, and bounded in pieces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reassembly } from '../../../src/tcp/reassembly.js';

/** A stream's bytes: byte at sequence number s is s mod 256, so that a misplaced byte shows. */
function bytesAt(seq: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => ((seq + i) >>> 0) & 0xff);
}

/** Everything handed over from `rcvNxt` on, as the responder takes it: one piece after another. */
function drain(held: Reassembly, rcvNxt: number): { bytes: number[]; rcvNxt: number } {
  const bytes: number[] = [];
  for (let piece = held.shift(rcvNxt); piece !== null; piece = held.shift(rcvNxt)) {
    bytes.push(...piece);
    rcvNxt = (rcvNxt + piece.length) >>> 0;
  }
  return { bytes, rcvNxt };
}

for (const base of [1000, 0xffff_fc00]) {
  test(`pieces held out of order come back in order from RCV.NXT, overlaps once (base ${base.toString(16)})`, () => {
    const held = new Reassembly();
    const at = (offset: number) => (base + offset) >>> 0;
    assert.equal(held.add(at(2000), bytesAt(at(2000), 1000), 0, 1000), 1000);
    assert.equal(held.add(at(1000), bytesAt(at(1000), 500), 0, 500), 500);
    assert.equal(held.add(at(2000), bytesAt(at(2000), 1000), 0, 1000), 0, 'a duplicate adds nothing');
    assert.equal(held.add(at(1200), bytesAt(at(1200), 1200), 0, 1200), 500, 'cut to the hole between the two');
    assert.equal(held.bytes, 2000);
    assert.equal(held.shift(at(500)), null, 'a gap first');
    const { bytes, rcvNxt } = drain(held, at(1000));
    assert.deepEqual(bytes, [...bytesAt(at(1000), 2000)]);
    assert.equal(rcvNxt, at(3000));
    assert.equal(held.bytes, 0);
  });
}

test('pieces wholly behind RCV.NXT are dropped on the way; one part behind is handed over from RCV.NXT', () => {
  const held = new Reassembly();
  held.add(100, bytesAt(100, 50), 0, 50);
  held.add(200, bytesAt(200, 100), 0, 100);
  const { bytes, rcvNxt } = drain(held, 250);
  assert.deepEqual(bytes, [...bytesAt(250, 50)]);
  assert.equal(rcvNxt, 300);
  assert.equal(held.bytes, 0);
});

test('the copy is its own: the segment buffer may be reused', () => {
  const held = new Reassembly();
  const segment = bytesAt(10, 20);
  held.add(15, segment, 5, 10); // segment[5] is the byte at 15
  segment.fill(0);
  assert.deepEqual([...held.shift(15)!], [...bytesAt(15, 10)]);
});

test('at most 64 pieces: tiny segments into every other place cannot grow it without bound', () => {
  const held = new Reassembly();
  for (let i = 0; i < 100; i++) held.add(2 * i, bytesAt(2 * i, 1), 0, 1);
  assert.equal(held.bytes, 64);
  held.clear();
  assert.equal(held.bytes, 0);
  assert.equal(held.shift(0), null);
});
