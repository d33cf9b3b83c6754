/**
 * The UDP sockets a shard worker sends its queries to the resolver from: a pool of connected
 * sockets, each on its own random local port, that queries are spread over at random, each
 * replaced by a fresh socket on a new random port after a number of queries or some time (RFC 5452
 * §9.2: "use an unpredictable source port", and "use multiple different source ports
 * simultaneously in case of multiple outstanding queries"). An off-path forger must then guess,
 * besides the 16-bit ID, which of the ephemeral ports the query left from — and a port it did
 * learn serves it only until that socket is replaced.
 *
 * The socket is chosen at random per batch, not per query: the queries of one piece of JavaScript
 * (a batch of captured packets) leave together from one socket, with one sendmmsg(2), and their
 * answers come back together on it. Each query's port is still uniformly random among the pool's,
 * so a forged answer matches as many queries on average as with a choice per query; choosing per
 * query split every batch into a system call per socket each way, and cost 35 % more CPU per
 * answer under the persistent benchmark with a remote resolver, against 10 % this way.
 *
 * Why connected sockets: the kernel delivers to a connected UDP socket only datagrams from the
 * address and port it is connected to, and answers any other sender's datagram to that port as
 * if the port were closed (ICMP port unreachable). So answers from anywhere but the resolver never
 * reach us (RFC 5452 §9.1), and our ports cannot be found by probing them from another address.
 *
 * Replacing a socket drains the old one: it stays open, and receives, until every query sent from
 * it is answered or given up (`queryDone`), then closes. At most as many sockets drain as the
 * pool has; a replacement due while that many drain is put off (counted) until one has closed.
 *
 * Nothing is allocated per query: the sockets' buffers are allocated once per socket number and
 * reused by every socket opened under that number; the receive slots are shared by all.
 */
import { randomFillSync } from 'node:crypto';
import { BatchedUdpSocket, UdpReceiveSlots } from './udp-batch.js';

interface UdpPortPoolOptions {
  host: string;
  port: number;
  /** SO_RCVBUF of each socket; the kernel caps it at net.core.rmem_max. */
  receiveBufferBytes: number;
  /** Sockets queries are spread over (at least 1). */
  sockets: number;
  /** A socket is replaced once it has sent this many queries (Infinity: never for that reason). */
  queriesPerPort: number;
  /** … or once it has been open this long, whichever comes first (Infinity: never for that reason). */
  portLifetimeMs: number;
  /** Each datagram received, in place, `bytes[offset, offset+length)`, and the number of the socket it came on. */
  onDatagram: (bytes: Uint8Array, offset: number, length: number, socket: number) => void;
  /** Called once per socket replaced, and once per replacement put off. */
  onRebind: (postponed: boolean) => void;
}

/** Random bytes fetched at a time for choosing sockets (one crypto call per 2,048 queries). */
const RANDOM_POOL_BYTES = 4096;

export class UdpPortPool {
  /** By socket number: active in a place of the pool, draining, or closed and free for a new socket. */
  private readonly sockets: (BatchedUdpSocket | undefined)[];
  /** Queries sent from each socket and not yet answered or given up. */
  private readonly outstanding: Int32Array;
  /** Queries each socket has sent since it was opened. */
  private readonly sent: Float64Array;
  /** When each socket was opened (the caller's clock). */
  private readonly openedAt: Float64Array;
  /** 1 while a socket drains: replaced, waiting for its outstanding queries. */
  private readonly draining: Uint8Array;
  /** 1 while an active socket's replacement is put off. */
  private readonly overdue: Uint8Array;
  /** The socket number in each place of the pool. */
  private readonly active: Int32Array;
  private readonly receiveSlots = new UdpReceiveSlots();
  private readonly randomPool = new Uint8Array(RANDOM_POOL_BYTES);
  private randomPos = RANDOM_POOL_BYTES;
  private readonly places: number;
  /** The place the queries of this piece of JavaScript go out from (one sendmmsg), −1 until chosen. */
  private batchPlace = -1;
  private readonly endBatch = (): void => {
    this.batchPlace = -1;
  };
  /** The clock at the latest send, for a replacement made when a drained socket frees its number. */
  private lastSendMs: number;
  private closed = false;

  /** Opens the first sockets, all of them at `nowMs`; throws an Error naming the failed call. */
  constructor(
    private readonly options: UdpPortPoolOptions,
    nowMs: number,
  ) {
    if (!Number.isInteger(options.sockets) || options.sockets < 1)
      throw new RangeError(`sockets must be a positive integer, not ${options.sockets}`);
    this.places = options.sockets;
    const replaced = Number.isFinite(options.queriesPerPort) || Number.isFinite(options.portLifetimeMs);
    // Sockets never replaced never drain: only the places are needed.
    const capacity = replaced ? 2 * this.places : this.places;
    this.sockets = new Array<BatchedUdpSocket | undefined>(capacity).fill(undefined);
    this.outstanding = new Int32Array(capacity);
    this.sent = new Float64Array(capacity);
    this.openedAt = new Float64Array(capacity);
    this.draining = new Uint8Array(capacity);
    this.overdue = new Uint8Array(capacity);
    this.active = new Int32Array(this.places);
    this.lastSendMs = nowMs;
    try {
      for (let place = 0; place < this.places; place++) {
        this.openSocket(place, nowMs);
        this.active[place] = place;
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * Queues `datagram` on a socket chosen at random (replaced first if it is due); returns the
   * socket's number. It counts as outstanding on that socket until `queryDone`.
   */
  send(datagram: Uint8Array, nowMs: number): number {
    if (this.batchPlace < 0) {
      this.batchPlace = this.places === 1 ? 0 : this.randomPlace();
      queueMicrotask(this.endBatch);
    }
    const place = this.batchPlace;
    let socket = this.active[place]!;
    if (this.closed) return socket;
    this.lastSendMs = nowMs;
    if (
      this.overdue[socket] === 0 &&
      (this.sent[socket]! >= this.options.queriesPerPort || nowMs - this.openedAt[socket]! >= this.options.portLifetimeMs)
    ) {
      socket = this.replace(place, nowMs);
    }
    this.sent[socket]!++;
    this.outstanding[socket]!++;
    this.sockets[socket]!.send(datagram);
    return socket;
  }

  /** Queues `datagram` again on the socket it first left from (still open: its query is outstanding). */
  resend(datagram: Uint8Array, socket: number): void {
    this.sockets[socket]?.send(datagram);
  }

  /** A query sent from `socket` is answered or given up; a draining socket that owes nothing more closes. */
  queryDone(socket: number): void {
    if (this.closed || --this.outstanding[socket]! > 0 || this.draining[socket] === 0) return;
    this.draining[socket] = 0;
    this.sockets[socket]!.close();
    // Its number is free: a replacement that was put off goes ahead.
    for (let place = 0; place < this.places; place++) {
      if (this.overdue[this.active[place]!] === 1) {
        this.replace(place, this.lastSendMs);
        return;
      }
    }
  }

  /** Sockets open now, active and draining (for tests and diagnostics). */
  get openSockets(): number {
    let open = 0;
    for (const socket of this.sockets) if (socket?.isOpen === true) open++;
    return open;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.sockets) socket?.close();
  }

  /**
   * Opens a fresh socket for `place` and lets the one there drain; returns the socket now in the
   * place (the old one, if the replacement had to be put off).
   */
  private replace(place: number, nowMs: number): number {
    const old = this.active[place]!;
    const fresh = this.freeNumber();
    if (fresh >= 0) {
      try {
        this.openSocket(fresh, nowMs);
      } catch {
        // Out of file descriptors, most likely: the old socket serves on for another period.
        this.overdue[old] = 0;
        this.sent[old] = 0;
        this.openedAt[old] = nowMs;
        this.options.onRebind(true);
        return old;
      }
      this.active[place] = fresh;
      this.overdue[old] = 0;
      this.options.onRebind(false);
      if (this.outstanding[old] === 0) this.sockets[old]!.close();
      else this.draining[old] = 1;
      return fresh;
    }
    if (this.overdue[old] === 0) {
      this.overdue[old] = 1;
      this.options.onRebind(true);
    }
    return old;
  }

  /** A socket number that is neither active nor draining, or −1. */
  private freeNumber(): number {
    for (let socket = 0; socket < this.sockets.length; socket++) {
      if (this.sockets[socket]?.isOpen !== true) return socket;
    }
    return -1;
  }

  private openSocket(socket: number, nowMs: number): void {
    const existing = this.sockets[socket];
    if (existing === undefined) {
      const { host, port, receiveBufferBytes, onDatagram } = this.options;
      this.sockets[socket] = new BatchedUdpSocket({
        host,
        port,
        receiveBufferBytes,
        receiveSlots: this.receiveSlots,
        onDatagram: (bytes, offset, length) => onDatagram(bytes, offset, length, socket),
      });
    } else {
      existing.reopen();
    }
    this.sent[socket] = 0;
    this.outstanding[socket] = 0;
    this.openedAt[socket] = nowMs;
    this.draining[socket] = 0;
    this.overdue[socket] = 0;
  }

  /**
   * A place chosen uniformly at random from crypto randomness (16 bits modulo the places: a bias
   * below places/65,536, which tells a forger nothing since each socket's port is random anyway).
   */
  private randomPlace(): number {
    if (this.randomPos + 2 > RANDOM_POOL_BYTES) {
      randomFillSync(this.randomPool);
      this.randomPos = 0;
    }
    const value = (this.randomPool[this.randomPos]! << 8) | this.randomPool[this.randomPos + 1]!;
    this.randomPos += 2;
    return value % this.places;
  }
}
