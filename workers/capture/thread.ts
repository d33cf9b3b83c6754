/**
 * The capture thread: libpcap → flow hash → the ring of shard `hash mod N`. A dedicated worker
 * thread rather than the main thread, so that the main thread stays free for signals, for
 * replacing a dead shard worker and for metrics however fast packets arrive
 * (docs/architecture.md, "Threads").
 *
 * Segments of a connection that its shard holds no flow for (tcp/live-flows.ts) are judged here
 * by the same rule the shard's responder applies (tcp/flowless.ts `flowlessAction`), and three
 * kinds never reach the shard. A SYN gets its SYN+ACK here, from the cookie secret alone
 * (tcp/handshake.ts), through this thread's own raw socket: it needs no state, and every client
 * waits for it before it can send its request, so it should not wait for a second thread to wake
 * up (docs/performance.md: a client that opens connections one after another is paced by this
 * round trip). A segment the rule ignores — a bare ACK, an RST — is dropped here: the ACK that
 * completes every handshake is one, and so is the RST a client's kernel sends for a SYN+ACK it
 * did not ask for (a flood with forged sources). So is a SYN from a martian source
 * (wire/martian.ts), which gets no answer at all. Data and FINs, which must prove themselves and
 * may start a flow, go to the shard. With a flow in the bucket everything goes to the shard: a
 * SYN on a live connection gets a challenge ACK (RFC 5961 §4.2), and ACKs and RSTs act on the flow.
 *
 * It does nothing but capture, so it pulls packets in a loop and blocks in poll(2) when none is
 * waiting (io/capture.ts), without its event loop. Per packet it hashes the 4-tuple
 * (wire/flow-hash.ts: keyed, and symmetric, so both directions of a connection meet on one shard)
 * and copies the frame into that shard's ring. It never waits for a shard: a full ring drops the
 * frame and counts it in the ring's DROPPED word, and TCP repairs it like any loss. Nothing is
 * allocated per packet: libpcap's copy lands in one buffer, and the ring copies from it.
 *
 * The main thread stops it through a shared flag (the loop never reads messages), looked at
 * after every packet and at least every POLL_TIMEOUT_MS; packets already captured then are
 * still handed on, and the shards are stopped only after this thread, so every packet that
 * arrived before the stop is processed and counted.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Capture, NextResult, REST_LANE, SYN_LANE } from '../../src/io/capture.js';
import { RawSender } from '../../src/io/raw-send.js';
import { LinkSender, sendsOnLink } from '../../src/io/link-send.js';
import { nameThisThread } from '../../src/io/thread-name.js';
import { RingProducer } from '../../src/ring/ring.js';
import { SynCookies } from '../../src/tcp/cookie.js';
import { FlowlessAction, flowlessAction } from '../../src/tcp/flowless.js';
import { synAckFor } from '../../src/tcp/handshake.js';
import { LiveFlows } from '../../src/tcp/live-flows.js';
import { DEFAULT_RESPONDER_CONFIG } from '../../src/tcp/responder.js';
import { SegmentCutter } from '../../src/wire/coalesced.js';
import { emitReply } from '../../src/wire/emit.js';
import { FlowHash, UNPARSED_FLOW_HASH } from '../../src/wire/flow-hash.js';
import { decodeTooBig } from '../../src/wire/icmp.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { MartianSources } from '../../src/wire/martian.js';
import {
  DecodeResult,
  KernelChecksum,
  packetChecksumPolicy,
  ReplyHeader,
  Segment,
  type ChecksumPolicy,
  type LinkType,
} from '../../src/wire/segment.js';
import {
  CaptureFlag,
  CaptureStat,
  controlFlags,
  controlSecret,
  controlStats,
  type CaptureReport,
  type CaptureThreadData,
} from './protocol.js';

/** Longest time the thread waits for a packet before looking at the stop flag again. */
const POLL_TIMEOUT_MS = 50;
/** How often libpcap's counters are published for metrics (pcap_stats is one getsockopt). */
const STATS_INTERVAL_MS = 1000;
/** Most packets handed on after the stop flag: what a 16 MiB capture buffer holds of small ones. */
const STOP_DRAIN_MAX_PACKETS = 200_000;
/**
 * Frames longer than this carry data and go to their shard without being decoded here (requests
 * skip the decode): a bare ACK is at most a link header, an IP header and 60 bytes of TCP header.
 * Except SYNs: a frame from the SYN lane is a SYN whatever its length, and one carrying data (TCP
 * Fast Open, or a flood of such SYNs) is answered here like any other — its data is not accepted
 * (tcp/handshake.ts) — rather than sent through the ring of the shard's established traffic.
 */
const SHORT_FRAME_BYTES = 160;

/** What the capture thread does itself for connections without a flow (see the top of this file). */
class FlowlessShortcut {
  synAnswered = 0;
  ignored = 0;
  martianSources = 0;
  private readonly checksumPolicy: ChecksumPolicy;
  private readonly cookies: SynCookies;
  private readonly martians: MartianSources;
  /** Each shard's flows, indexed like the rings. */
  private readonly liveFlows: LiveFlows[];
  private readonly sender = new RawSender();
  /** On the capture interface, when it is Ethernet and `--gso on`: no IP output path per SYN+ACK, no checksum summed here. */
  private readonly link: LinkSender | null;
  private readonly segment = new Segment();
  private readonly reply = new ReplyHeader();
  private readonly packet = new Uint8Array(40 + 60);
  private readonly secretGeneration: Int32Array;
  private readonly secret: Uint8Array;
  private secretGenerationSeen = 0;

  constructor(
    private readonly linkType: LinkType,
    data: CaptureThreadData,
    routing: FlowHash,
  ) {
    this.checksumPolicy = data.checksumPolicy;
    this.cookies = SynCookies.fromHistory(data.secrets);
    this.martians = new MartianSources(data.ownAddresses);
    this.liveFlows = data.rings.map((_, shard) => new LiveFlows(data.liveFlows, shard, routing));
    this.secretGeneration = controlFlags(data.control);
    this.secret = controlSecret(data.control);
    this.secretGenerationSeen = Atomics.load(this.secretGeneration, CaptureFlag.SECRET_GENERATION);
    try {
      this.link = sendsOnLink(data.gso, linkType) ? new LinkSender(data.interface) : null;
    } catch (error) {
      this.sender.close();
      throw new Error(`cannot send on ${data.interface} (${(error as Error).message}): run as root with CAP_NET_RAW, or give --gso off`);
    }
  }

  /**
   * Handles `frame[0, length)`, captured in lane `lane`, here if it is a SYN, or a segment the
   * responder would not answer, of a connection that `shard`, where its hash sends it, holds no
   * flow for; false: it goes to that shard.
   */
  handle(
    frame: Uint8Array,
    length: number,
    lane: number,
    kernelChecksum: KernelChecksum,
    hash: number,
    shard: number,
    nowMs: number,
  ): boolean {
    if ((length > SHORT_FRAME_BYTES && lane !== SYN_LANE) || this.liveFlows[shard]!.mayHold(hash)) return false;
    const seg = this.segment;
    // A frame that does not decode is the shard's to count.
    const policy = packetChecksumPolicy(this.checksumPolicy, kernelChecksum);
    if (decodeFrame(this.linkType, frame, 0, length, policy, seg) !== DecodeResult.OK) return false;
    const action = flowlessAction(seg, this.martians);
    if (action === FlowlessAction.IGNORE) {
      this.ignored++;
      return true;
    }
    if (action === FlowlessAction.REFUSE_MARTIAN) {
      this.martianSources++;
      return true;
    }
    // Data or a FIN must prove itself against the cookie or token, and may start a flow: the shard's work.
    if (action !== FlowlessAction.ANSWER_SYN) return false;
    this.takeNewSecret();
    const reply = synAckFor(seg, this.cookies, DEFAULT_RESPONDER_CONFIG, nowMs, this.reply);
    if (this.link !== null && reply.hasLinkAddresses) this.link.send(reply, null, 0, 0);
    else this.sender.send(reply.family, this.packet, emitReply(reply, null, 0, 0, this.packet, 0), reply.dstAddr);
    this.synAnswered++;
    return true;
  }

  /** Sends what is queued: the capture loop has no event loop turn for a microtask to do it. */
  flush(): void {
    this.sender.flush();
    this.link?.flush();
  }

  get sendFailed(): number {
    return this.sender.stats.failed + (this.link?.stats.failed ?? 0);
  }

  close(): void {
    this.sender.close();
    this.link?.close();
  }

  /** Rotates to the secret the main thread published (CaptureFlag.SECRET_GENERATION), if it is whole. */
  private takeNewSecret(): void {
    const generation = Atomics.load(this.secretGeneration, CaptureFlag.SECRET_GENERATION);
    if (generation === this.secretGenerationSeen || (generation & 1) !== 0) return;
    const secret = Uint8Array.from(this.secret);
    if (Atomics.load(this.secretGeneration, CaptureFlag.SECRET_GENERATION) !== generation) return; // rewritten meanwhile: next time
    this.cookies.rotate(secret);
    this.secretGenerationSeen = generation;
  }
}

/**
 * Frames longer than a ring slot — coalesced by GRO or LRO, or left whole by TSO/GSO from a
 * sender on this host — cut into the pieces that fit (wire/coalesced.ts), all to the frame's shard.
 */
class CoalescedFrames {
  frames = 0;
  pieces = 0;
  private readonly segment = new Segment();
  private readonly cutter: SegmentCutter;

  constructor(
    private readonly linkType: LinkType,
    private readonly checksumPolicy: ChecksumPolicy,
    slotBytes: number,
  ) {
    this.cutter = new SegmentCutter(slotBytes);
  }

  /**
   * Pushes the pieces of `frame[0, length)` to `producer`; false when the frame is not one to cut
   * (it does not decode — the shard counts why, from what fits its slot — or needs no cutting).
   * A piece the ring has no room for is dropped and counted there, like any frame.
   */
  push(
    frame: Uint8Array,
    length: number,
    kernelChecksum: KernelChecksum,
    producer: RingProducer,
    seconds: number,
    micros: number,
  ): boolean {
    const policy = packetChecksumPolicy(this.checksumPolicy, kernelChecksum);
    if (decodeFrame(this.linkType, frame, 0, length, policy, this.segment) !== DecodeResult.OK) return false;
    const cutter = this.cutter;
    const count = cutter.prepare(this.segment, 0);
    if (count === 0) return false;
    for (let i = 0; i < count; i++) {
      const pieceLength = cutter.piece(i);
      // Each piece carries the pseudo-header sum in its checksum field: left to offload, as the
      // kernel would mark a segment its GSO cut.
      producer.push(cutter.out, 0, pieceLength, pieceLength, seconds, micros, KernelChecksum.LEFT_TO_OFFLOAD);
    }
    this.frames++;
    this.pieces += count;
    return true;
  }
}

const data = workerData as CaptureThreadData;
const port = parentPort!;
const report = (message: CaptureReport): void => port.postMessage(message);
const flags = controlFlags(data.control);
nameThisThread('stcp-capture');

let capture: Capture | undefined;
try {
  capture = new Capture({ interface: data.interface, lanes: data.lanes, wholeFrames: data.wholeFrames });
} catch (error) {
  report({ type: 'failed', message: (error as Error).message });
}
if (capture !== undefined) {
  const routing = new FlowHash(data.routingKey);
  let shortcut: FlowlessShortcut | undefined;
  try {
    shortcut = new FlowlessShortcut(capture.linkType, data, routing);
  } catch (error) {
    report({ type: 'failed', message: (error as Error).message });
  }
  if (shortcut !== undefined) {
    report({ type: 'ready', linkType: capture.linkType });
    const producers = data.rings.map((region) => new RingProducer(region));
    const coalesced = new CoalescedFrames(capture.linkType, data.checksumPolicy, producers[0]!.slotDataBytes);
    captureLoop(capture, shortcut, routing, producers, coalesced);
    shortcut.close();
    publishStats(capture, shortcut, coalesced);
    report({ type: 'stopped' });
  }
  capture.close();
}
port.close();

/** The counters for metrics and the stop line (CaptureStat). */
function publishStats(capture: Capture, shortcut: FlowlessShortcut, coalesced: CoalescedFrames): void {
  const published = controlStats(data.control);
  const { lanes, wholeFrames } = capture.stats();
  // The whole-frame companion's packets are copies of the first lane's, not more packets; a copy
  // it dropped is a frame handed on cut short (decode.truncated), which it counts as dropped.
  published[CaptureStat.RECEIVED] = lanes.reduce((sum, lane) => sum + lane.received, 0);
  published[CaptureStat.DROPPED] = lanes.reduce((sum, lane) => sum + lane.dropped, 0) + wholeFrames.dropped;
  published[CaptureStat.ESTABLISHED_DROPPED] = lanes[0]!.dropped;
  published[CaptureStat.SYN_ANSWERED] = shortcut.synAnswered;
  published[CaptureStat.IGNORED] = shortcut.ignored;
  published[CaptureStat.MARTIAN_SOURCE] = shortcut.martianSources;
  published[CaptureStat.SEND_FAILED] = shortcut.sendFailed;
  published[CaptureStat.COALESCED_FRAMES] = coalesced.frames;
  published[CaptureStat.COALESCED_PIECES] = coalesced.pieces;
}

function captureLoop(
  capture: Capture,
  shortcut: FlowlessShortcut,
  routing: FlowHash,
  producers: readonly RingProducer[],
  coalesced: CoalescedFrames,
): void {
  const shardCount = producers.length;
  const slotBytes = producers[0]!.slotDataBytes;
  const { frame, linkType } = capture;
  // An ICMP too-big message goes to the shard of the connection whose segment it quotes.
  const icmpLayers = new Segment();
  const quoted = new Segment();
  // The clock for cookies, read when the capture runs dry and every 1024 packets, not per packet
  // (a Date.now() is a heap number); a SYN+ACK's cookie and token change once a minute
  // (tcp/cookie.ts), so a clock a few milliseconds old is as good.
  let nowMs = Date.now();
  /**
   * Answers the packet `next` returned, or hands it to its shard; throws on a capture error.
   * False: none came.
   */
  const handle = (result: number): boolean => {
    if (result === NextResult.ERROR) throw new Error(`capture failed: ${capture.lastError}`);
    if (result !== NextResult.PACKET) return false;
    const length = capture.capturedLength;
    // The flow hash is below 2^31, so the shard number is a small integer.
    let hash = routing.ofFrame(linkType, frame, 0, length);
    if (hash === UNPARSED_FLOW_HASH && capture.lane === REST_LANE && decodeTooBig(linkType, frame, 0, length, icmpLayers, quoted) > 0) {
      hash = routing.ofSegment(quoted);
    }
    const shard = hash % shardCount;
    const kernelChecksum = capture.kernelChecksum;
    if (!shortcut.handle(frame, length, capture.lane, kernelChecksum, hash, shard, nowMs)) {
      const producer = producers[shard]!;
      const seconds = capture.timestampSeconds;
      const micros = capture.timestampMicros;
      if (length <= slotBytes || !coalesced.push(frame, length, kernelChecksum, producer, seconds, micros)) {
        producer.push(frame, 0, length, capture.wireLength, seconds, micros, kernelChecksum);
      }
    }
    return true;
  };
  let publishAtMs = 0;
  let sinceClock = 0;
  while (Atomics.load(flags, CaptureFlag.STOP) === 0) {
    const result = capture.next(0);
    if (result === NextResult.TIMED_OUT) {
      // Nothing waiting: send the SYN+ACKs answered so far, then sleep until a packet comes.
      shortcut.flush();
      nowMs = Date.now();
      handle(capture.next(POLL_TIMEOUT_MS));
    } else {
      handle(result);
    }
    // SYN+ACKs wait for at most 64 packets when the capture never runs dry.
    if ((++sinceClock & 63) === 0) shortcut.flush();
    if (sinceClock >= 1024 || result === NextResult.TIMED_OUT) {
      if (sinceClock >= 1024) nowMs = Date.now();
      sinceClock = 0;
      if (nowMs >= publishAtMs) {
        publishAtMs = nowMs + STATS_INTERVAL_MS;
        publishStats(capture, shortcut, coalesced);
      }
    }
  }
  // Stopping: what the kernel had already captured still goes to the shards, so that the final
  // counters account for every packet that arrived before the stop (bounded: under a flood the
  // kernel never runs dry).
  for (let n = 0; n < STOP_DRAIN_MAX_PACKETS && handle(capture.next(0)); n++);
  shortcut.flush();
}
