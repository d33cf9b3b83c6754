/**
 * BatchedUdpSocket (native/udp.c) against a real UDP peer on loopback: queries queued together
 * leave in one batch and each arrives whole, answers come back in place, a datagram longer than
 * a receive slot arrives cut with its TC bit set, and a worker thread that ends with the socket
 * open exits cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { BatchedUdpSocket } from '../../../src/io/udp-batch.js';

/** A UDP peer on 127.0.0.1 that answers each datagram with `reply(datagram)`. */
async function peer(reply: (datagram: Buffer) => Buffer): Promise<{ port: number; received: Buffer[]; close: () => void }> {
  const socket = dgram.createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (datagram, from) => {
    received.push(datagram);
    socket.send(reply(datagram), from.port, from.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { port: socket.address().port, received, close: () => socket.close() };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), what);
}

test('datagrams queued together all arrive, and every answer is handed over in place', async () => {
  const echo = await peer((d) => Buffer.concat([Buffer.from('re:'), d]));
  const answers: string[] = [];
  const udp = new BatchedUdpSocket({
    host: '127.0.0.1',
    port: echo.port,
    receiveBufferBytes: 1 << 20,
    onDatagram: (bytes, offset, length) => answers.push(Buffer.from(bytes.subarray(offset, offset + length)).toString()),
  });
  try {
    // 150 in one piece of JavaScript: more than one batch of 64.
    for (let i = 0; i < 150; i++) udp.send(Buffer.from(`query ${i}`));
    assert.equal(echo.received.length, 0, 'nothing leaves before the JavaScript that queued it is done');
    await until(() => answers.length === 150, `150 answers (got ${answers.length})`);
    assert.deepEqual(echo.received.map(String).sort(), Array.from({ length: 150 }, (_, i) => `query ${i}`).sort());
    assert.deepEqual(answers.sort(), Array.from({ length: 150 }, (_, i) => `re:query ${i}`).sort());
  } finally {
    udp.close();
    echo.close();
  }
});

test('an answer longer than a receive slot arrives cut to the slot with the DNS TC bit set', async () => {
  // A DNS-like header (flags byte 2 without TC) and 6,000 bytes in all.
  const big = await peer(() => Buffer.alloc(6000, 0x41).fill(0, 0, 12));
  let got: Buffer | undefined;
  const udp = new BatchedUdpSocket({
    host: '127.0.0.1',
    port: big.port,
    receiveBufferBytes: 1 << 20,
    onDatagram: (bytes, offset, length) => (got = Buffer.from(bytes.subarray(offset, offset + length))),
  });
  try {
    udp.send(Buffer.from('q'));
    await until(() => got !== undefined, 'the answer arrived');
    assert.equal(got!.length, 4096);
    assert.equal(got![2]! & 0x02, 0x02, 'TC set: the relay asks again over TCP');
  } finally {
    udp.close();
    big.close();
  }
});

test('a worker thread that ends with the socket still open exits cleanly', async () => {
  const echo = await peer((d) => d);
  try {
    const url = new URL('../../../src/io/udp-batch.js', import.meta.url).href;
    const worker = new Worker(
      `import(${JSON.stringify(url)}).then(({ BatchedUdpSocket }) => {
         const udp = new BatchedUdpSocket({ host: '127.0.0.1', port: ${echo.port}, receiveBufferBytes: 65536,
           onDatagram: () => process.exit(0) });
         udp.send(new Uint8Array([1, 2, 3]));
       });`,
      { eval: true },
    );
    const [code] = (await once(worker, 'exit')) as [number];
    assert.equal(code, 0);
  } finally {
    echo.close();
  }
});
