/**
 * Sends hand-made TCP segments from inside the client namespace, built with the project's own
 * wire layer (emitReply works for client-to-server packets too: it writes whatever header it is
 * given) and sent with its raw sender (an IPPROTO_RAW socket):
 *
 *   node dist/lab/raw-client.js SEGMENTS_JSON
 *
 * SEGMENTS: RawSegment[]; each is sent once, in order. Prints the number sent. What comes back is
 * for the test to capture (tcpdump in the client namespace). Without arguments it prints its usage.
 */
import { emitReply, replyLength } from '../src/wire/emit.js';
import { ReplyHeader, TcpFlag } from '../src/wire/segment.js';
import { RawSender } from '../src/io/raw-send.js';
import { addressBytes, addressFamily } from '../test/support/address.js';

export interface RawSegment {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Letters of the flags set: S(YN) A(CK) P(SH) R(ST) F(IN). */
  flags: string;
  window: number;
  /** With a timestamps option carrying these values; without one if absent. */
  timestamps?: { tsVal: number; tsEcr: number };
  payloadHex?: string;
}

const FLAG_LETTERS: Record<string, number> = { S: TcpFlag.SYN, A: TcpFlag.ACK, P: TcpFlag.PSH, R: TcpFlag.RST, F: TcpFlag.FIN };

function send(segments: RawSegment[]): void {
  const sender = new RawSender();
  try {
    for (const s of segments) {
      const h = new ReplyHeader();
      h.family = addressFamily(s.dst);
      h.srcAddr.set(addressBytes(s.src));
      h.dstAddr.set(addressBytes(s.dst));
      h.srcPort = s.srcPort;
      h.dstPort = s.dstPort;
      h.seq = s.seq >>> 0;
      h.ack = s.ack >>> 0;
      h.flags = [...s.flags].reduce((all, letter) => {
        const bit = FLAG_LETTERS[letter];
        if (bit === undefined) throw new Error(`unknown flag letter ${letter}`);
        return all | bit;
      }, 0);
      h.window = s.window;
      if (s.timestamps !== undefined) {
        h.hasTimestamps = true;
        h.tsVal = s.timestamps.tsVal >>> 0;
        h.tsEcr = s.timestamps.tsEcr >>> 0;
      }
      const payload = Buffer.from(s.payloadHex ?? '', 'hex');
      const packet = Buffer.alloc(replyLength(h, payload.length));
      emitReply(h, payload, 0, payload.length, packet, 0);
      sender.send(h.family, packet, packet.length, h.dstAddr);
    }
  } finally {
    sender.close();
  }
  if (sender.stats.failed > 0) {
    console.error(`${sender.stats.failed} sends failed: ${sender.stats.lastError}`);
    process.exitCode = 1;
  }
  console.log(sender.stats.sent);
}

const argument = process.argv[2];
if (argument === undefined) console.log('usage: node raw-client.js SEGMENTS_JSON (see the comment at the top)');
else send(JSON.parse(argument) as RawSegment[]);
