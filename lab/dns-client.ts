/**
 * A DNS-over-TCP client for the odd cases dig cannot produce: malformed messages, several
 * messages in one write, one message over several writes. Run inside the client namespace:
 *
 *   node dist/lab/dns-client.js HOST PORT WRITES_JSON [EXPECTED_ANSWERS]
 *
 * WRITES_JSON is an array of hex strings, each written separately (TCP_NODELAY, 50 ms apart) so
 * each becomes its own segment. Prints a JSON array of the answers received (hex) once
 * EXPECTED_ANSWERS (default 1) framed answers arrived, or exits 1 after 5 s.
 */
import net from 'node:net';

const [host, port, writesJson, expected = '1'] = process.argv.slice(2);
const writes = (JSON.parse(writesJson!) as string[]).map((hex) => Buffer.from(hex, 'hex'));
const want = Number(expected);

const socket = net.connect({ host: host!, port: Number(port) });
socket.setNoDelay(true);
const timer = setTimeout(() => {
  console.error(`timed out with ${answers.length} of ${want} answers`);
  process.exit(1);
}, 5000);
const answers: string[] = [];
let received = Buffer.alloc(0);

socket.on('connect', () => {
  for (const [i, w] of writes.entries()) setTimeout(() => socket.write(w), 50 * i);
});
socket.on('data', (chunk: Buffer) => {
  received = Buffer.concat([received, chunk]);
  while (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
    const n = received.readUInt16BE(0);
    answers.push(received.subarray(2, 2 + n).toString('hex'));
    received = received.subarray(2 + n);
  }
  if (answers.length >= want) {
    clearTimeout(timer);
    console.log(JSON.stringify(answers));
    socket.end();
  }
});
socket.on('error', (error) => {
  console.error(error.message);
  process.exit(1);
});
