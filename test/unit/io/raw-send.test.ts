/**
 * RawSender's sockets belong to the thread that opened them: a worker thread terminated without
 * closing its sender (as one killed at its heap limit is) leaves no raw socket open in the process.
 */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
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
