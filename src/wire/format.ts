/**
 * tcpdump-style text for segments and addresses, for logs, traces and test failure messages.
 * Not for the hot path: it builds strings.
 *
 * `formatSegment` prints what `tcpdump -n -S` prints after the "IP"/"IP6" tag (absolute sequence
 * numbers): `198.18.0.1.40943 > 198.18.0.2.53: Flags [S], seq 1193414004, win 64660,
 * options [mss 1220,sackOK,TS val 405708912 ecr 0,nop,wscale 10], length 0`.
 */
import { readU16, readU32 } from './bytes.js';
import { TcpFlag, type Segment } from './segment.js';
import { TcpField, TcpOptionKind, TcpOptionLength, tcpOptionLength } from './tcp.js';

/**
 * Flag letters in tcpdump's order (print-tcp.c `tcp_flag_values`): ACK prints as ".",
 * ECE as "E", CWR as "W".
 */
const FLAG_LETTERS: readonly [number, string][] = [
  [TcpFlag.FIN, 'F'],
  [TcpFlag.SYN, 'S'],
  [TcpFlag.RST, 'R'],
  [TcpFlag.PSH, 'P'],
  [TcpFlag.ACK, '.'],
  [TcpFlag.URG, 'U'],
  [TcpFlag.ECE, 'E'],
  [TcpFlag.CWR, 'W'],
];

/** "S.", "P.", "F." ...; "none" when no flag is set, as tcpdump prints it. */
export function formatFlags(flags: number): string {
  let text = '';
  for (const [bit, letter] of FLAG_LETTERS) if (flags & bit) text += letter;
  return text === '' ? 'none' : text;
}

/** Dotted-quad IPv4, or RFC 5952 IPv6, read from `buf[offset]`. "?" if the bytes are not there. */
export function formatAddress(buf: Uint8Array, offset: number, family: 4 | 6): string {
  if (family === 4) {
    if (offset < 0 || offset + 4 > buf.length) return '?';
    return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  }
  if (offset < 0 || offset + 16 > buf.length) return '?';
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(readU16(buf, offset + i));
  // RFC 5952 §5: IPv4-mapped addresses keep the dotted quad in the last 32 bits.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatAddress(buf, offset + 12, 4)}`;
  }
  // RFC 5952 §4.2: "::" replaces the longest run of two or more zero groups, the first on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  // RFC 5952 §4.1 and §4.3: no leading zeros, lowercase hex.
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** The options of a decoded segment in wire order, as tcpdump names them. */
function formatOptions(seg: Segment): string {
  const { buf } = seg;
  const start = seg.tcpOffset + TcpField.OPTIONS;
  const end = seg.tcpOffset + seg.tcpHeaderLength;
  const parts: string[] = [];
  let position = start;
  while (position < end) {
    const kind = buf[position]!;
    const length = tcpOptionLength(buf, position, end);
    if (length === 0) {
      parts.push('[bad opt]');
      break;
    }
    parts.push(formatOption(buf, position, kind, length));
    if (kind === TcpOptionKind.END_OF_LIST) break;
    position += length;
  }
  return parts.join(',');
}

function formatOption(buf: Uint8Array, position: number, kind: number, length: number): string {
  switch (kind) {
    case TcpOptionKind.END_OF_LIST:
      return 'eol';
    case TcpOptionKind.NO_OPERATION:
      return 'nop';
    case TcpOptionKind.MSS:
      return length === TcpOptionLength.MSS ? `mss ${readU16(buf, position + 2)}` : '[bad opt]';
    case TcpOptionKind.WINDOW_SCALE:
      return length === TcpOptionLength.WINDOW_SCALE ? `wscale ${buf[position + 2]}` : '[bad opt]';
    case TcpOptionKind.SACK_PERMITTED:
      return length === TcpOptionLength.SACK_PERMITTED ? 'sackOK' : '[bad opt]';
    case TcpOptionKind.TIMESTAMPS:
      return length === TcpOptionLength.TIMESTAMPS ? `TS val ${readU32(buf, position + 2)} ecr ${readU32(buf, position + 6)}` : '[bad opt]';
    case TcpOptionKind.SACK: {
      // RFC 2018 §3: pairs of 32-bit left/right edges after kind and length.
      if ((length - 2) % 8 !== 0) return '[bad opt]';
      let blocks = '';
      for (let p = position + 2; p < position + length; p += 8) {
        blocks += `{${readU32(buf, p)}:${readU32(buf, p + 4)}}`;
      }
      return `sack ${(length - 2) / 8} ${blocks}`;
    }
    default: {
      let data = '';
      for (let p = position + 2; p < position + length; p++) data += buf[p]!.toString(16).padStart(2, '0');
      return `unknown-${kind}${data === '' ? '' : ` 0x${data}`}`;
    }
  }
}

/**
 * One tcpdump line for a segment that `decodeFrame` returned `OK` for. Like tcpdump, the
 * sequence number is printed for segments with data ("seq first:next") or SYN/FIN/RST, the
 * acknowledgment number when ACK is set, the urgent pointer when URG is set.
 */
export function formatSegment(seg: Segment): string {
  const family = seg.family;
  let line =
    `${formatAddress(seg.buf, seg.srcAddrOffset, family)}.${seg.srcPort} > ` +
    `${formatAddress(seg.buf, seg.dstAddrOffset, family)}.${seg.dstPort}: Flags [${formatFlags(seg.flags)}]`;
  if (seg.payloadLength > 0) {
    line += `, seq ${seg.seq}:${(seg.seq + seg.payloadLength) >>> 0}`;
  } else if (seg.flags & (TcpFlag.SYN | TcpFlag.FIN | TcpFlag.RST)) {
    line += `, seq ${seg.seq}`;
  }
  if (seg.flags & TcpFlag.ACK) line += `, ack ${seg.ack}`;
  line += `, win ${seg.window}`;
  if (seg.flags & TcpFlag.URG && seg.tcpHeaderLength > 0) {
    line += `, urg ${readU16(seg.buf, seg.tcpOffset + TcpField.URGENT_POINTER)}`;
  }
  if (seg.tcpHeaderLength > TcpField.OPTIONS) line += `, options [${formatOptions(seg)}]`;
  return `${line}, length ${seg.payloadLength}`;
}
