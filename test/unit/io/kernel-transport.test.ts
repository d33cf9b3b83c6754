/**
 * The kernel transport over real sockets on 127.0.0.1: messages are handed over one at a time,
 * at most `maxPipelined` answers owed per connection (the rest stays unread), nothing after
 * closeWhenAnswered reaches the application (RFC 9112 §9.6), and the responder's deadlines hold:
 * a message trickled for longer than messageDeadlineMs, or answers left unread for
 * zeroWindowLimitMs, cost the client its connection (RST). A body streams to the application
 * with the socket paused while it holds a window of it, and must keep coming.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { type TestContext, test } from 'node:test';
import { dnsMessageLength } from '../../../src/dns/message.js';
import { KernelTransport, type KernelConnection } from '../../../src/io/kernel-transport.js';
import { parseRequest, wholeRequestLength, type HttpRequest } from '../../../src/http/request.js';

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

interface Setup {
  maxPipelined?: number;
  messageDeadlineMs?: number;
  zeroWindowLimitMs?: number;
  /** What the application does with each message after `expectAnswer` (default: nothing yet). */
  onMessage?: (transport: KernelTransport, connection: KernelConnection) => void;
  onDrain?: (transport: KernelTransport, connection: KernelConnection) => void;
}

/** Starts `transport` (with its 10 ms tick) on a free loopback port and connects a client to it; all closed after the test. */
async function listenAndConnect(transport: KernelTransport, t: TestContext): Promise<net.Socket> {
  const ticker = setInterval(() => transport.tick(Date.now()), 10);
  const port = await freePort();
  await transport.listen([{ address: '127.0.0.1', port, family: 4 }]);
  const client = net.connect({ host: '127.0.0.1', port });
  t.after(() => {
    clearInterval(ticker);
    client.destroy();
    transport.close();
  });
  await new Promise<void>((resolve) => client.once('connect', resolve));
  return client;
}

/** A transport on a free port of 127.0.0.1, its timers ticking every 10 ms as in the front end, and one client connected. */
async function setup(t: TestContext, options: Setup = {}) {
  const messages: { connection: KernelConnection; first: number }[] = [];
  let transport: KernelTransport;
  transport = new KernelTransport(
    {
      onMessages: (connection, buf, offset, length) => {
        assert.equal(dnsMessageLength(buf, offset, length), length, 'one whole message per call');
        messages.push({ connection, first: buf[offset + 2]! });
        transport.expectAnswer(connection);
        options.onMessage?.(transport, connection);
      },
      onDrain: (connection) => options.onDrain?.(transport, connection),
    },
    {
      messageLength: dnsMessageLength,
      maxPipelined: options.maxPipelined ?? 100,
      closeAfterResponse: false,
      messageDeadlineMs: options.messageDeadlineMs ?? 10_000,
      zeroWindowLimitMs: options.zeroWindowLimitMs ?? 60_000,
    },
  );
  const client = await listenAndConnect(transport, t);
  return { transport, messages, client };
}

test('at most maxPipelined answers owed: further messages stay unread until answers go out', async (t) => {
  const { transport, messages, client } = await setup(t, { maxPipelined: 3 });
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
  const { transport, messages, client } = await setup(t);
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

/** Resolves when the client's connection is reset, with the time it took from `sinceMs`. */
function resetAfter(client: net.Socket, sinceMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    client.once('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve(Date.now() - sinceMs) : reject(error)));
  });
}

test('a message trickled for longer than messageDeadlineMs is cut off with RST; messages whole within it are not', async (t) => {
  const { transport, messages, client } = await setup(t, {
    messageDeadlineMs: 400,
    onMessage: (transport, connection) => transport.answer(connection, framed(0xa0, 3), 0, 5),
  });
  client.on('data', () => {});
  // Three messages of 5 bytes, each trickled over 200 ms: 600 ms in all, each whole within its 400 ms.
  const message = framed(1, 3);
  for (let m = 0; m < 3; m++) {
    for (const byte of message) {
      client.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  await until(() => messages.length === 3, 'three trickled messages');
  assert.equal(transport.stats.deadlinesMissed, 0);
  // Then one of 22 bytes at one byte every 50 ms: it would take 1.1 s.
  const startedMs = Date.now();
  const reset = resetAfter(client, startedMs);
  for (const byte of framed(2)) {
    if (client.destroyed) break;
    client.write(Buffer.from([byte]));
    await Promise.race([reset, new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  const elapsedMs = await Promise.race([reset, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000))]);
  assert.ok(elapsedMs >= 400 && elapsedMs < 1100, `reset ${elapsedMs} ms after the first byte (-1: none within 5 s)`);
  assert.equal(messages.length, 3, 'the cut-off message never reached the application');
  assert.equal(transport.stats.deadlinesMissed, 1);
});

test('a client that leaves its answers unread is reset after zeroWindowLimitMs; one that reads again within it is not', async (t) => {
  const chunk = new Uint8Array(64 * 1024);
  /** Streams an answer that never ends, as an HTTP body does, part by part as the socket drains. */
  const stream = (transport: KernelTransport, connection: KernelConnection): void => {
    for (let parts = 0; parts < 16 && transport.answerPart(connection, chunk, 0, chunk.length); parts++);
  };
  for (const readsAgain of [true, false]) {
    const { transport, messages, client } = await setup(t, { zeroWindowLimitMs: 500, onMessage: stream, onDrain: stream });
    client.pause();
    client.write(framed(1));
    await until(() => messages.length === 1, 'the message');
    const connection = messages[0]!.connection;
    // The client's receive buffer and our send buffer fill; then the socket's own buffer stays full.
    await until(() => connection.stalledSinceMs >= 0, 'a full write buffer');
    const stalledMs = connection.stalledSinceMs;
    if (readsAgain) {
      let read = 0;
      client.on('data', (data: Buffer) => (read += data.length));
      await new Promise((resolve) => setTimeout(resolve, 300));
      client.resume();
      await new Promise((resolve) => setTimeout(resolve, 700));
      assert.ok(read > 1024 * 1024, `${read} bytes read`);
      assert.equal(transport.stats.deadlinesMissed, 0, 'a pause shorter than the limit');
      assert.ok(!connection.socket.destroyed);
    } else {
      await until(() => transport.stats.deadlinesMissed === 1, 'the reset');
      const elapsedMs = Date.now() - stalledMs;
      assert.ok(elapsedMs >= 500 && elapsedMs < 1500, `reset ${elapsedMs} ms after the write buffer filled`);
      assert.ok(connection.socket.destroyed);
      // The client reads what its kernel holds and finds the connection gone: what was still
      // queued here went with it (RST, no FIN after the rest).
      let read = 0;
      client.on('data', (data: Buffer) => (read += data.length));
      client.on('error', () => {});
      client.resume();
      await until(() => client.destroyed, 'the client to see the connection end');
      assert.ok(read < connection.bytesQueued, `the client read ${read} of the ${connection.bytesQueued} bytes answered`);
    }
  }
});

/**
 * A transport framing HTTP request heads, whose application takes each request's body (by its
 * Content-Length) as it comes and holds it until the test releases it; one client connected.
 */
async function uploadSetup(t: TestContext, messageDeadlineMs = 10_000) {
  const app = { targets: [] as string[], received: 0, remaining: 0, cutOff: 0, connection: null as KernelConnection | null };
  let transport: KernelTransport;
  transport = new KernelTransport(
    {
      onMessages: (connection, buf, offset, length, nowMs) => {
        const head = parseRequest(buf, offset, length) as HttpRequest;
        app.targets.push(head.target);
        app.connection = connection;
        transport.expectAnswer(connection);
        if (typeof head.body === 'number' && head.body > 0) {
          app.remaining = head.body;
          transport.beginBody(connection, nowMs);
        }
      },
      onBody: (connection, _buf, _offset, length) => {
        const n = Math.min(length, app.remaining);
        app.received += n;
        app.remaining -= n;
        if (app.remaining === 0) transport.endBody(connection);
        return n;
      },
      onBodyCutOff: () => void app.cutOff++,
    },
    { messageLength: wholeRequestLength, maxPipelined: 16, closeAfterResponse: false, messageDeadlineMs, zeroWindowLimitMs: 60_000 },
  );
  const client = await listenAndConnect(transport, t);
  return { transport, app, client };
}

const putOf = (size: number): Buffer => Buffer.from(`PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`, 'latin1');

test('a body streams to the application; the socket is paused while it holds a window of it, and read again as it releases', async (t) => {
  const { transport, app, client } = await uploadSetup(t);
  const size = 4 * 1024 * 1024;
  client.write(Buffer.concat([putOf(size), Buffer.alloc(size, 0x61), Buffer.from('GET /next HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1')]));
  await until(() => app.received >= 65535, 'a window of the body');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const held = app.received;
  assert.ok(held < 65535 + 65536, `${held} bytes taken while none were released: a window and one read at most`);
  assert.ok(app.connection!.socket.isPaused());
  for (let released = 0; app.received < size; ) {
    transport.releaseBody(app.connection!, app.received - released, Date.now());
    released = app.received;
    await until(() => app.received > released || app.received === size, 'more of the body after a release');
  }
  await until(() => app.targets.length === 2, 'the request after the body');
  assert.deepEqual(app.targets, ['/up', '/next']);
});

test('a body that stops coming is cut off with RST after messageDeadlineMs; a client FIN mid-body is told to the application', async (t) => {
  const { transport, app, client } = await uploadSetup(t, 400);
  const startedMs = Date.now();
  const reset = resetAfter(client, startedMs);
  client.write(Buffer.concat([putOf(100_000), Buffer.alloc(1000)]));
  const elapsedMs = await Promise.race([reset, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000))]);
  assert.ok(elapsedMs >= 400 && elapsedMs < 1500, `reset ${elapsedMs} ms after the body stopped (-1: none within 5 s)`);
  assert.equal(transport.stats.deadlinesMissed, 1);

  const other = await uploadSetup(t);
  other.client.end(Buffer.concat([putOf(100_000), Buffer.alloc(1000)]));
  await until(() => other.app.cutOff === 1, 'the cut-off body told');
  assert.equal(other.app.received, 1000);
  assert.equal(app.cutOff, 0);
});
