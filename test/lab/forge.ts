/**
 * Sends TCP segments that no handshake preceded, from inside the client namespace, built with the
 * project's own wire layer and raw sender:
 *
 *   node dist/test/lab/forge.js CLIENT_ADDR SERVER_ADDR
 *
 * For each case it sends one data segment carrying a real DNS query to port 53 with a random
 * acknowledgment number: without timestamps, and with a timestamps option whose TSecr is random.
 * Prints the number of segments sent. What comes back is for the test to capture.
 */
import { randomInt } from 'node:crypto';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { emitReply, replyLength } from '../../src/wire/emit.js';
import { ReplyHeader, TcpFlag } from '../../src/wire/segment.js';
import { RawSender } from '../../src/io/raw-send.js';

function addressBytes(address: string): Uint8Array {
  if (net.isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  const halves = address.split('::');
  const words = (s: string | undefined): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const head = words(halves[0]);
  const tail = words(halves[1]);
  const all = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  return Uint8Array.from(all.flatMap((w) => [w >> 8, w & 0xff]));
}

function main(clientAddress: string, serverAddress: string): void {
  const family = net.isIPv4(serverAddress) ? 4 : 6;
  const query = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'TXT', name: 'big.lab.test' }] });
  const payload = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
  const sender = new RawSender();
  let sent = 0;
  for (const withTimestamps of [false, true]) {
    const h = new ReplyHeader();
    h.family = family;
    h.srcAddr.set(addressBytes(clientAddress));
    h.dstAddr.set(addressBytes(serverAddress));
    h.srcPort = 40000 + randomInt(20000);
    h.dstPort = 53;
    h.seq = randomInt(2 ** 32);
    h.ack = randomInt(2 ** 32);
    h.flags = TcpFlag.ACK | TcpFlag.PSH;
    h.window = 64000;
    h.hasTimestamps = withTimestamps;
    h.tsVal = randomInt(2 ** 32);
    h.tsEcr = randomInt(2 ** 32);
    const packet = Buffer.alloc(replyLength(h, payload.length));
    emitReply(h, payload, 0, payload.length, packet, 0);
    sender.send(family, packet, packet.length, h.dstAddr);
    sent++;
  }
  sender.close();
  console.log(sent);
}

const [client, server] = process.argv.slice(2);
if (client !== undefined && server !== undefined) main(client, server);
