/**
 * A worker thread that opens a RawSender (two raw sockets), says so, and never closes it: the
 * test terminates it, as a crash or V8's heap limit would end a shard worker, with no `finally`.
 */
import { parentPort } from 'node:worker_threads';
import { RawSender } from '../../src/io/raw-send.js';

const sender = new RawSender();
parentPort!.postMessage('open');
// Keep the sender reachable; the thread only ends when terminated.
setInterval(() => void sender.stats, 60_000);
