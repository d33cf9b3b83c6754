/**
 * One DNS-over-TCP connection held open across something the test does to the server in
 * between. Run inside the client namespace:
 *
 *   node dist/lab/held-connection.js HOST PORT NAME GO_FILE
 *
 * Connects, asks NAME A and prints `answer 1 <rcode>`; then waits (polling, at most 20 s) until
 * GO_FILE exists, asks again on the same connection and prints `answer 2 <rcode>`, and exits 0.
 * Exits 1 on any error, a closed or reset connection, or a timeout.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';

const GO_POLL_MS = 50;
const GO_TIMEOUT_MS = 20_000;
const ANSWER_TIMEOUT_MS = 5000;

/** dns-packet decodes the RCODE to its name, but its types omit the field. */
const rcode = (answer: dnsPacket.DecodedPacket): string => (answer as { rcode?: string }).rcode ?? String(answer.flags! & 0xf);

function query(name: string, id: number): Buffer {
  const message = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  return Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);
}

async function main(host: string, port: number, name: string, goFile: string): Promise<void> {
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  let received = Buffer.alloc(0);
  let waiting: ((answer: dnsPacket.DecodedPacket) => void) | undefined;
  const fail = (why: string): never => {
    console.error(why);
    process.exit(1);
  };
  socket.on('error', (error) => fail(error.message));
  socket.on('close', () => fail('connection closed'));
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    if (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
      const answer = dnsPacket.decode(received.subarray(2, 2 + received.readUInt16BE(0)));
      received = received.subarray(2 + received.readUInt16BE(0));
      waiting?.(answer);
    }
  });
  const ask = (id: number): Promise<dnsPacket.DecodedPacket> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => fail(`no answer to query ${id} within ${ANSWER_TIMEOUT_MS} ms`), ANSWER_TIMEOUT_MS);
      waiting = (answer) => {
        clearTimeout(timer);
        resolve(answer);
      };
      socket.write(query(name, id));
    });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  console.log(`answer 1 ${rcode(await ask(1))}`);
  const deadline = Date.now() + GO_TIMEOUT_MS;
  while (!existsSync(goFile)) {
    if (Date.now() > deadline) fail(`${goFile} did not appear within ${GO_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, GO_POLL_MS));
  }
  console.log(`answer 2 ${rcode(await ask(2))}`);
  socket.removeAllListeners('close');
  socket.end();
}

const [host, port, name, goFile] = process.argv.slice(2);
if (host !== undefined && port !== undefined && name !== undefined && goFile !== undefined) void main(host, Number(port), name, goFile);
