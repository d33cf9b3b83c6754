/** The table of idle connections' sequence numbers: lookup, replacement, lifetime, bounds. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentConnections } from '../../../src/tcp/recent.js';
import { Prng } from '../../support/prng.js';

test('an entry is found by its key until its lifetime ends or it is forgotten', () => {
  const table = new RecentConnections(64, 1000);
  table.remember(0xdeadbeef, 0x12345678, 1111, 2222, true, 28960, 131070, 0);
  const slot = table.find(0xdeadbeef, 0x12345678, 999);
  assert.ok(slot >= 0);
  assert.equal(table.expectedSeq(slot), 1111);
  assert.equal(table.sentUpTo(slot), 2222);
  assert.equal(table.ourFinSent(slot), true);
  assert.equal(table.congestionWindow(slot), 28928, 'in 64-byte units, rounded down');
  assert.equal(table.slowStartThreshold(slot), 131008);
  assert.equal(table.ageMs(slot, 999), 999);
  assert.equal(table.find(0xdeadbeef, 0x12345679, 999), -1, 'another key');
  assert.equal(table.find(0xdeadbef0, 0x12345678, 999), -1, 'the high half counts too');
  assert.equal(table.find(0xdeadbeef, 0x12345678, 1000), -1, 'too old');
  table.remember(0xdeadbeef, 0x12345678, 3333, 4444, false, 14464, 20032, 2000);
  const again = table.find(0xdeadbeef, 0x12345678, 2000);
  assert.equal(table.expectedSeq(again), 3333, 'rewritten in place');
  assert.equal(table.ourFinSent(again), false);
  assert.equal(table.congestionWindow(again), 14464);
  assert.equal(table.slowStartThreshold(again), 20032);
  table.forget(again);
  assert.equal(table.find(0xdeadbeef, 0x12345678, 2000), -1);
  assert.equal(table.live(2000), 0);
});

test('congestion state is kept up to 4 MiB, far above any send buffer', () => {
  const table = new RecentConnections(4, 1000);
  table.remember(1, 2, 0, 0, false, 200_000, 70_000, 0);
  const slot = table.find(1, 2, 1);
  assert.equal(table.congestionWindow(slot), 200_000);
  assert.equal(table.slowStartThreshold(slot), 69_952);
  table.remember(1, 2, 0, 0, false, 2 ** 30, 2 ** 30, 0);
  assert.equal(table.congestionWindow(slot), 0xffff * 64);
  assert.equal(table.slowStartThreshold(slot), 0xffff * 64);
});

test('a full set gives up its oldest entry; the table never grows', () => {
  const table = new RecentConnections(4, 1e9);
  assert.equal(table.slots, 4);
  for (let i = 0; i < 5; i++) table.remember(i, 0, i, i, false, 0, 0, 10 + i);
  assert.equal(table.find(0, 0, 20), -1, 'the oldest went');
  for (let i = 1; i < 5; i++) assert.equal(table.expectedSeq(table.find(i, 0, 20)), i);
  assert.equal(table.live(20), 4);
});

test('random keys: every entry of the last `slots / 4` written is still found, and the count stays bounded', () => {
  const table = new RecentConnections(1024, 1e9);
  const prng = new Prng(7);
  const keys: [number, number][] = [];
  for (let i = 0; i < 20_000; i++) {
    const key: [number, number] = [prng.nextU32(), prng.nextU32()];
    keys.push(key);
    table.remember(key[0], key[1], i, i, false, 0, 0, i);
  }
  assert.ok(table.live(20_000) <= 1024);
  // A set is evicted oldest first, so the newest entries survive unless four newer share their set.
  let found = 0;
  for (const [high, low] of keys.slice(-256)) if (table.find(high, low, 20_000) >= 0) found++;
  assert.ok(found >= 240, `${found} of the newest 256 found`);
  assert.equal(new RecentConnections(0, 1e9).find(1, 1, 0), -1, 'size 0 remembers nothing');
});
