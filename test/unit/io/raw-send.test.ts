/**
 * RawSender's sockets belong to the thread that opened them: a worker thread terminated without
 * closing its sender (as one killed at its heap limit is) leaves no raw socket open in the process.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { RawSender } from '../../../src/io/raw-send.js';

/** The inodes of this process's open sockets (readlink of /proc/self/fd/N is `socket:[inode]`). */
function openSockets(): Set<string> {
  const sockets = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith('socket:')) sockets.add(target);
    } catch {
      // Closed between the listing and the readlink (e.g. the directory's own fd).
    }
  }
  return sockets;
}

test('a worker terminated without closing its RawSender leaves no raw socket open', async (t) => {
  try {
    new RawSender().close();
  } catch (error) {
    t.skip(`no raw sockets here: ${(error as Error).message}`);
    return;
  }
  const before = openSockets();
  const worker = new Worker(new URL('../../support/raw-sender-worker.js', import.meta.url));
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  const whileOpen = [...openSockets()].filter((s) => !before.has(s));
  assert.equal(whileOpen.length, 2, 'the worker opened an IPv4 and an IPv6 raw socket');
  await worker.terminate();
  const left = [...openSockets()].filter((s) => whileOpen.includes(s));
  assert.deepEqual(left, [], 'its sockets were closed when its thread ended');
});

test("pathMtu reads the route's MTU (loopback's here), and a packet larger than it is reported to onTooBig, not lost silently", async (t) => {
  let sender: RawSender;
  try {
    sender = new RawSender();
  } catch (error) {
    t.skip(`no raw sockets here: ${(error as Error).message}`);
    return;
  }
  try {
    const lo = Number(readFileSync('/sys/class/net/lo/mtu', 'utf8'));
    const v6Loopback = new Uint8Array(16);
    v6Loopback[15] = 1;
    // IPv4 caps a route's MTU at 65535 (the largest datagram; Linux's IP_MAX_MTU).
    assert.equal(sender.pathMtu(4, Uint8Array.from([127, 0, 0, 1])), Math.min(lo, 65535));
    assert.equal(sender.pathMtu(6, v6Loopback), lo);

    // An IPv6 TCP packet from ::1 to ::1 of 40 + 65535 bytes: more than loopback's MTU.
    const length = 40 + 65535;
    const packet = new Uint8Array(length);
    packet.set([0x60, 0, 0, 0, 0xff, 0xff, 6, 64]);
    packet.set(v6Loopback, 8);
    packet.set(v6Loopback, 24);
    packet.set([0x9c, 0x40, 0, 9, 0, 0, 0x30, 0x39, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff], 40);
    const reports: { family: number; header: Uint8Array; packetLength: number }[] = [];
    sender.refused.onTooBig = (family, header, offset, n, packetLength) =>
      reports.push({ family, header: header.slice(offset, offset + n), packetLength });
    const sentBefore = sender.stats.sent;
    sender.send(6, packet, length, v6Loopback);
    sender.flush();
    await Promise.resolve(); // reports come in a microtask
    assert.equal(sender.stats.sent, sentBefore);
    assert.equal(sender.stats.tooBig, 1);
    assert.equal(sender.stats.failed, 1);
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.family, 6);
    assert.equal(reports[0]!.packetLength, length);
    assert.deepEqual(reports[0]!.header, packet.subarray(0, 100), 'the IP and TCP headers as queued');
  } finally {
    sender.close();
  }
});
