/**
 * The ring's shared-memory layout (ring/layout.ts): the words each side writes are on cache lines
 * of their own, and slots are whole cache lines holding their header and data.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CACHE_LINE_BYTES,
  HEADER_BYTES,
  HeaderWord,
  ringByteLength,
  SLOT_HEADER_BYTES,
  slotStrideBytes,
} from '../../../src/ring/layout.js';

describe('ring layout', () => {
  it('puts the fields of different writers more than a cache line apart', () => {
    const groups = [
      [HeaderWord.WRITE_INDEX, HeaderWord.DROPPED, HeaderWord.WAKEUPS],
      [HeaderWord.READ_INDEX, HeaderWord.SLEEPS],
      [HeaderWord.CONSUMER_SLEEPING],
    ];
    for (let a = 0; a < groups.length; a++) {
      for (let b = a + 1; b < groups.length; b++) {
        for (const x of groups[a]!) {
          for (const y of groups[b]!) {
            // Bytes [4x, 4x + 4) and [4y, 4y + 4) can share no 64-byte line wherever the buffer starts.
            assert.ok(Math.abs(4 * y - 4 * x) - 4 >= CACHE_LINE_BYTES, `words ${x} and ${y}`);
          }
        }
      }
    }
    for (const word of Object.values(HeaderWord)) assert.ok(4 * word + 4 <= HEADER_BYTES);
  });

  it('sizes slots as whole cache lines holding the slot header and the data', () => {
    assert.equal(slotStrideBytes(2048), 2112);
    assert.equal(slotStrideBytes(64 - SLOT_HEADER_BYTES), 64);
    assert.equal(slotStrideBytes(65 - SLOT_HEADER_BYTES), 128);
    assert.equal(ringByteLength(1024, 2048), HEADER_BYTES + 1024 * 2112);
  });
});
