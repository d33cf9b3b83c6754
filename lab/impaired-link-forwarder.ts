/**
 * The impaired link's forwarder: an impairing wire between two veth ends, in userspace — netem
 * for a kernel without netem. (impaired-link.ts is the lab's side: it starts this process and
 * reads its counters.)
 *
 *   node dist/lab/impaired-link-forwarder.js SPEC_JSON   (run by the lab inside its wire namespace)
 *
 * This kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set, and it has no loadable modules).
 * Impairing with nftables on a sender's own output is not the same thing: a packet dropped there
 * is reported to the sender (sendmsg fails with EPERM), so kernel TCP just sends it again later
 * and the receiver never sees a gap. Here the lab puts a third namespace between client and
 * server, with one veth end facing each, and this process forwards every Ethernet frame captured
 * on one end out of the other (libpcap capture and pcap_inject). The namespace's own kernel has
 * no addresses there and forwards nothing. Neither endpoint can tell the wire from a cable.
 *
 * A wire carries what a NIC puts on it: a host with transmit offloads on (the server's end at the
 * kernel's defaults) hands its veth TCP frames whose checksum is left to offload, and frames of
 * many segments (TSO/GSO, and the front end's own GSO frames). Those are cut into segments of the
 * MTU and given full checksums here, as the NIC would (wire/coalesced.ts cuts as the kernel's GSO
 * does), before any impairment: each segment is lost, delayed or duplicated on its own.
 *
 * TCP frames are impaired as `tc qdisc … netem loss L% delay D J reorder R% duplicate P%` would:
 * dropped with probability L; otherwise sent once or (probability P) twice; each copy sent
 * after D ± J ms (uniform), except that a fraction R is sent at once, ahead of those waiting, which
 * reorders them (the jitter reorders some more). Other frames (ARP, neighbour discovery) pass at
 * once and unharmed. Counters per direction — `reordered` counts frames sent ahead of a frame
 * captured before them — are printed as one line `wire stats N {json}` on SIGUSR2 (N counts the
 * requests) and on SIGTERM before exiting. Without arguments it prints this usage and exits.
 */
import { createRequire } from 'node:module';
import { combine, finish, pseudoHeaderSum, sum16 } from '../src/wire/checksum.js';
import { SegmentCutter } from '../src/wire/coalesced.js';
import { decodeFrame } from '../src/wire/frame.js';
import { IpProtocol } from '../src/wire/ip.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../src/wire/segment.js';
import type { DirectionStats, WireSpec, WireStats } from './impaired-link.js';

const require = createRequire(import.meta.url);

interface PcapSession {
  open_live(
    device: string,
    filter: string,
    bufferSize: number,
    snapLength: number,
    outfile: string,
    onPacket: () => void,
    monitor: boolean,
    bufferTimeout: number,
    onWarning: (message: string) => void,
    promiscuous: boolean,
  ): string;
  dispatch(buffer: Buffer, header: Buffer): number;
  start_polling(): void;
  inject(frame: Buffer): void;
  close(): void;
  read_callback?: () => void;
}

const SNAP_LENGTH = 65_535;
const BUFFER_BYTES = 8 * 1024 * 1024;

function newStats(): DirectionStats {
  return { frames: 0, tcp: 0, dropped: 0, droppedByRule: 0, duplicated: 0, reordered: 0, sent: 0, injectFailed: 0 };
}

/** Whether an Ethernet frame carries TCP over IPv4 or IPv6 (IPv6: TCP as the first next header). */
function isTcp(frame: Buffer): boolean {
  if (frame.length < 14) return false;
  const etherType = frame.readUInt16BE(12);
  if (etherType === 0x0800) return frame.length >= 24 && frame[23] === 6;
  if (etherType === 0x86dd) return frame.length >= 54 && frame[20] === 6;
  return false;
}

/** The TCP checksum field's offset in its header (RFC 9293 §3.1). */
const TCP_CHECKSUM = 16;

/**
 * What a NIC with checksum offload and TSO makes of a TCP frame its host handed over: the frame
 * itself when it is whole (checksum complete, at most one MTU), else its segments of at most one
 * MTU, each with its checksum computed.
 */
function asNicSends(frame: Buffer, mtu: number, seg: Segment, cutter: SegmentCutter): Buffer[] {
  if (decodeFrame(LinkType.ETHERNET, frame, 0, frame.length, ChecksumPolicy.VERIFY, seg) !== DecodeResult.OK) return [frame];
  if (!seg.checksumOffloaded && frame.length <= mtu + 14) return [frame];
  const count = cutter.prepare(seg, 0);
  const pieces =
    count === 0 ? [Buffer.from(frame)] : Array.from({ length: count }, (_, i) => Buffer.from(cutter.out.subarray(0, cutter.piece(i))));
  for (const piece of pieces) {
    const tcp = new Segment();
    decodeFrame(LinkType.ETHERNET, piece, 0, piece.length, ChecksumPolicy.IGNORE, tcp);
    const tcpLength = tcp.ipEnd - tcp.tcpOffset;
    piece.writeUInt16BE(0, tcp.tcpOffset + TCP_CHECKSUM);
    const pseudo = pseudoHeaderSum(tcp.family, piece, tcp.srcAddrOffset, piece, tcp.dstAddrOffset, IpProtocol.TCP, tcpLength);
    piece.writeUInt16BE(finish(combine(pseudo, sum16(piece, tcp.tcpOffset, tcpLength))), tcp.tcpOffset + TCP_CHECKSUM);
  }
  return pieces;
}

function run(spec: WireSpec): void {
  const binding = require('pcap/build/Release/pcap_binding.node') as { PcapSession: new () => PcapSession };
  const stats: WireStats = { toServer: newStats(), toClient: newStats() };
  const open = (device: string, fromMac: string, onFrame: (frame: Buffer) => void): PcapSession => {
    const session = new binding.PcapSession();
    const buffer = Buffer.alloc(SNAP_LENGTH);
    const header = Buffer.alloc(16);
    const header32 = new Uint32Array(header.buffer, header.byteOffset, 4);
    // Only frames the host behind this end sent: not the ones we inject here ourselves.
    session.open_live(
      device,
      `ether src ${fromMac}`,
      BUFFER_BYTES,
      SNAP_LENGTH,
      '',
      () => onFrame(Buffer.from(buffer.subarray(0, header32[2]!))),
      false,
      0,
      () => {},
      true,
    );
    session.read_callback = () => {
      session.dispatch(buffer, header);
    };
    session.start_polling();
    return session;
  };

  const timers = new Set<NodeJS.Timeout>();
  const dropOnce = new Set((spec.dropOnceToServer ?? []).map((hex) => Buffer.from(hex, 'hex')));
  const seg = new Segment();
  const cutter = new SegmentCutter(spec.mtu + 14);
  const forwarder = (out: () => PcapSession, s: DirectionStats, rules: Set<Buffer>): ((frame: Buffer) => void) => {
    let captured = 0;
    let highestSent = 0;
    const send = (frame: Buffer, order: number): void => {
      if (order < highestSent) s.reordered++;
      highestSent = Math.max(highestSent, order);
      try {
        out().inject(frame);
        s.sent++;
      } catch {
        s.injectFailed++;
      }
    };
    const later = (frame: Buffer, order: number): void => {
      if (Math.random() * 100 < spec.reorderPercent) {
        send(frame, order);
        return;
      }
      const delay = Math.max(0, spec.delayMs + (Math.random() * 2 - 1) * spec.jitterMs);
      const timer = setTimeout(() => {
        timers.delete(timer);
        send(frame, order);
      }, delay);
      timers.add(timer);
    };
    const impair = (frame: Buffer): void => {
      const order = ++captured;
      for (const rule of rules) {
        if (frame.includes(rule)) {
          rules.delete(rule);
          s.droppedByRule++;
          return;
        }
      }
      if (Math.random() * 100 < spec.lossPercent) {
        s.dropped++;
        return;
      }
      later(frame, order);
      if (Math.random() * 100 < spec.duplicatePercent) {
        s.duplicated++;
        later(frame, order);
      }
    };
    return (frame) => {
      s.frames++;
      if (!isTcp(frame)) {
        send(frame, ++captured);
        return;
      }
      s.tcp++;
      for (const piece of asNicSends(frame, spec.mtu, seg, cutter)) impair(piece);
    };
  };

  // Each session captures what its host sends and injects what the other host sent.
  let clientSide: PcapSession | null = null;
  let serverSide: PcapSession | null = null;
  clientSide = open(
    spec.clientSideInterface,
    spec.clientMac,
    forwarder(() => serverSide!, stats.toServer, dropOnce),
  );
  serverSide = open(
    spec.serverSideInterface,
    spec.serverMac,
    forwarder(() => clientSide!, stats.toClient, new Set()),
  );

  let requests = 0;
  const report = (): void => console.log(`wire stats ${++requests} ${JSON.stringify(stats)}`);
  const stop = (): void => {
    for (const timer of timers) clearTimeout(timer);
    report();
    for (const session of [clientSide, serverSide]) {
      session!.read_callback = undefined;
      session!.close();
    }
    process.exit(0);
  };
  process.on('SIGUSR2', report);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  setTimeout(stop, spec.maxLifetimeMs).unref();
  // Keeps the process alive between frames (the pcap poll handles alone may not).
  setInterval(() => {}, 60_000);
  console.log(`wire ready: ${spec.clientSideInterface} <-> ${spec.serverSideInterface}`);
}

const argument = process.argv[2];
if (argument === undefined) {
  console.log('usage: node impaired-link-forwarder.js SPEC_JSON (the lab runs it in its wire namespace; see the comment at the top)');
} else {
  run(JSON.parse(argument) as WireSpec);
}
