/**
 * What the lab's unbound must answer, as a check of whole DNS messages: for a query the lab zone
 * knows (LAB_ZONE), whether an answer is exactly right — ID, flags, rcode, question, and every
 * record's data, in order. Shared by the lab's TCP tests and their client (tcp-client.ts).
 */
import dnsPacket from 'dns-packet';
import { LAB_ZONE } from './zone.js';

export type QueryType = 'A' | 'AAAA' | 'TXT';

export interface Question {
  /** Fully qualified, with the trailing dot, as in LAB_ZONE. */
  name: string;
  type: QueryType;
}

interface Expected {
  rcode: number;
  type: QueryType;
  data: readonly string[];
  /** Exact message size for a query without EDNS, where the zone fixes it. */
  bytes?: number;
}

const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;
/** The OPT record an EDNS query's answer carries; our queries have none. */
const OPT_BYTES = 11;

function expected(q: Question): Expected {
  const { www, mid, big, missing } = LAB_ZONE;
  if (q.name === www.name && q.type === 'A') return { rcode: RCODE_NOERROR, type: 'A', data: [www.a] };
  if (q.name === www.name && q.type === 'AAAA') return { rcode: RCODE_NOERROR, type: 'AAAA', data: [www.aaaa] };
  for (const set of [mid, big]) {
    if (q.name === set.name && q.type === 'TXT')
      return { rcode: RCODE_NOERROR, type: 'TXT', data: set.strings, bytes: set.responseBytes - OPT_BYTES };
  }
  if (q.name === missing) return { rcode: RCODE_NXDOMAIN, type: q.type, data: [] };
  throw new Error(`no expected answer for ${q.name} ${q.type} in the lab zone`);
}

/** A DNS query without EDNS, as bytes (no length prefix). */
export function encodeQuery(id: number, q: Question): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: q.type, name: q.name.replace(/\.$/, '') }],
  });
}

/** With its 2-byte length prefix (RFC 1035 §4.2.2). */
export function framed(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);
}

/** Null if `message` is exactly the lab's answer to query `id` for `q`, else what is wrong. */
export function checkAnswer(id: number, q: Question, message: Buffer): string | null {
  const want = expected(q);
  let answer: dnsPacket.DecodedPacket;
  try {
    answer = dnsPacket.decode(message);
  } catch (error) {
    return `undecodable answer to ${q.name} ${q.type}: ${(error as Error).message}`;
  }
  const what = `answer ${id} (${q.name} ${q.type})`;
  if (answer.id !== id) return `${what}: ID ${answer.id}`;
  // dns-packet reports QR as `type` and leaves it out of `flags`.
  if (answer.type !== 'response') return `${what}: QR not set`;
  const flags = answer.flags ?? 0;
  if (flags & 0x0200) return `${what}: TC set`;
  if ((flags & 0xf) !== want.rcode) return `${what}: rcode ${flags & 0xf}, expected ${want.rcode}`;
  const question = answer.questions ?? [];
  if (question.length !== 1 || `${question[0]!.name}.` !== q.name || question[0]!.type !== q.type) {
    return `${what}: question ${JSON.stringify(question)}`;
  }
  const records = answer.answers ?? [];
  const data = records.map((r) => {
    if (r.type !== want.type || `${r.name}.` !== q.name) return `${r.name} ${r.type}`;
    if (r.type === 'TXT') return (r.data as Buffer[]).map((b) => b.toString('latin1')).join('');
    return String(r.data);
  });
  if (JSON.stringify(data) !== JSON.stringify(want.data)) {
    return `${what}: data ${JSON.stringify(data).slice(0, 200)}, expected ${JSON.stringify(want.data).slice(0, 200)}`;
  }
  if (want.bytes !== undefined && message.length !== want.bytes) return `${what}: ${message.length} bytes, expected ${want.bytes}`;
  return null;
}
