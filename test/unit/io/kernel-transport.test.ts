/**
 * The kernel transport over real sockets on 127.0.0.1: messages are handed over one at a time,
 * at most `maxPipelined` answers owed per connection (the rest stays unread), and nothing after
 * closeWhenAnswered reaches the application (RFC 9112 §9.6).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { dnsMessageLength } from '../../../src/dns/message.js';
import { KernelTransport, type KernelConnection } from '../../../src/io/kernel-transport.js';

/** A framed message of `size` bytes of `fill`. */
const framed = (fill: number, size = 20): Buffer => Buffer.concat([Buffer.from([0, size]), Buffer.alloc(size, fill)]);

/** A port nothing listens on now, on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits (at most 5 s) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > 5000) assert.fail(`waited 5 s for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function setup(maxPipelined: number) {
  const messages: { connection: KernelConnection; first: number }[] = [];
  let transport: KernelTransport;
  transport = new KernelTransport(
    {
      onMessages: (connection, buf, offset, length) => {
        assert.equal(dnsMessageLength(buf, offset, length), length, 'one whole message per call');
        messages.push({ connection, first: buf[offset + 2]! });
        transport.expectAnswer(connection);
      },
    },
    { messageLength: dnsMessageLength, maxPipelined, closeAfterResponse: false },
  );
  const port = await freePort();
  await transport.listen([{ address: '127.0.0.1', port, family: 4 }]);
  const client = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve) => client.once('connect', resolve));
  return { transport, messages, client };
}

test('at most maxPipelined answers owed: further messages stay unread until answers go out', async (t) => {
  const { transport, messages, client } = await setup(3);
  t.after(() => {
    client.destroy();
    transport.close();
  });
  client.write(Buffer.concat([1, 2, 3, 4, 5].map((i) => framed(i))));
  await until(() => messages.length === 3, 'three messages');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(messages.length, 3, 'the other two wait');
  assert.equal(transport.stats.pipelineFull, 1);
  const connection = messages[0]!.connection;
  transport.answer(connection, framed(0xa1), 0, 22);
  await until(() => messages.length === 4, 'the fourth after one answer');
  transport.answer(connection, framed(0xa2), 0, 22);
  await until(() => messages.length === 5, 'the fifth after another');
  assert.deepEqual(
    messages.map((m) => m.first),
    [1, 2, 3, 4, 5],
  );
});

test('after closeWhenAnswered nothing more reaches the application, and the answer is followed by our FIN', async (t) => {
  const { transport, messages, client } = await setup(100);
  t.after(() => {
    client.destroy();
    transport.close();
  });
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = new Promise<void>((resolve) => client.once('end', resolve));
  client.write(framed(1));
  await until(() => messages.length === 1, 'the first message');
  const connection = messages[0]!.connection;
  transport.closeWhenAnswered(connection);
  client.write(Buffer.concat([framed(2), framed(3).subarray(0, 5)]));
  await new Promise((resolve) => setTimeout(resolve, 100));
  transport.answer(connection, framed(0xa1), 0, 22);
  await ended;
  assert.equal(messages.length, 1, 'nothing after the close request was handed over');
  assert.deepEqual(Buffer.concat(received), framed(0xa1));
});
