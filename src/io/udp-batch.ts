/**
 * A connected UDP socket that sends the datagrams queued during one turn of the event loop with
 * one system call and hands received ones to JavaScript a batch at a time (our Node-API addon,
 * native/udp.c, which says why node:dgram is not used for this).
 *
 * Nothing is allocated per datagram: queued datagrams are copied into one send buffer, and
 * received ones are read in place in slots of one receive buffer, both allocated once. Several
 * sockets of one thread may share the receive slots (`UdpReceiveSlots`): each socket's batch is
 * handed over and done with in one call before any other socket's is read.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface UdpAddon {
  open(
    address: string,
    port: number,
    receiveBufferBytes: number,
    recvSlots: Uint8Array,
    recvLengths: Uint32Array,
    sendBuffer: Uint8Array,
    sendLengths: Uint32Array,
    onDatagrams: (count: number) => void,
  ): object;
  /** Datagrams sent, or −errno. */
  flush(handle: object, count: number): number;
  close(handle: object): void;
}

/** build/Release is where node-gyp puts it (`npm ci` builds it from binding.gyp), from dist/src/io/. */
const ADDON_PATH = '../../../build/Release/udp.node';

/** Datagrams per system call either way (the addon's MAX_BATCH). */
const BATCH = 64;
/**
 * Bytes a receive slot holds. A longer datagram arrives cut to the slot with its DNS TC bit set,
 * so the relay asks again over TCP; resolvers keep UDP answers under 1,232 bytes (DNS Flag Day
 * 2020) or 4,096 (unbound's and BIND's largest EDNS size by default).
 */
const RECEIVE_SLOT_BYTES = 4096;
/** Room for a full batch of the largest DNS queries clients send (a few hundred bytes at most). */
const SEND_BUFFER_BYTES = 64 * 1024;

/** Where received datagrams land: a batch of slots, read in place. */
export class UdpReceiveSlots {
  readonly bytes = new Uint8Array(BATCH * RECEIVE_SLOT_BYTES);
  readonly lengths = new Uint32Array(BATCH);
}

export interface BatchedUdpOptions {
  host: string;
  port: number;
  /** SO_RCVBUF; the kernel caps it at net.core.rmem_max. */
  receiveBufferBytes: number;
  /** Each datagram received: `bytes[offset, offset+length)`, valid only during the call. */
  onDatagram: (bytes: Uint8Array, offset: number, length: number) => void;
  /** Receive slots shared with other sockets of this thread; by default the socket has its own. */
  receiveSlots?: UdpReceiveSlots;
}

export class BatchedUdpSocket {
  private readonly addon = require(ADDON_PATH) as UdpAddon;
  private handle: object;
  private readonly slots: UdpReceiveSlots;
  private readonly sendBuffer = new Uint8Array(SEND_BUFFER_BYTES);
  private readonly sendLengths = new Uint32Array(BATCH);
  private readonly onDatagrams: (count: number) => void;
  private queued = 0;
  private queuedBytes = 0;
  private flushQueued = false;
  private closed = false;
  private readonly flushNow = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  /**
   * Opens and connects the socket, from a local port the kernel picks at random from the ephemeral
   * range (net.ipv4.ip_local_port_range); throws an Error naming the failed call.
   */
  constructor(private readonly options: BatchedUdpOptions) {
    this.slots = options.receiveSlots ?? new UdpReceiveSlots();
    const { bytes, lengths } = this.slots;
    const onDatagram = options.onDatagram;
    this.onDatagrams = (count) => {
      for (let i = 0; i < count; i++) onDatagram(bytes, i * RECEIVE_SLOT_BYTES, lengths[i]!);
    };
    this.handle = this.open();
  }

  private open(): object {
    const { options, slots } = this;
    return this.addon.open(
      options.host,
      options.port,
      options.receiveBufferBytes,
      slots.bytes,
      slots.lengths,
      this.sendBuffer,
      this.sendLengths,
      this.onDatagrams,
    );
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /**
   * After `close`: a new socket to the same peer, from a new random local port, with the same
   * buffers and callback. Throws an Error naming the failed call (and stays closed).
   */
  reopen(): void {
    if (!this.closed) throw new Error('reopen: the socket is open');
    this.handle = this.open();
    this.closed = false;
  }

  /**
   * Queues one datagram; every datagram queued in this piece of JavaScript goes out with one
   * sendmmsg(2) once it is done (a microtask), or at once when the batch is full.
   */
  send(datagram: Uint8Array): void {
    // (A query longer than the buffer cannot be sent over UDP anyway: it is lost, and times out.)
    if (this.closed || datagram.length > SEND_BUFFER_BYTES) return;
    if (this.queued === BATCH || this.queuedBytes + datagram.length > SEND_BUFFER_BYTES) this.flush();
    this.sendBuffer.set(datagram, this.queuedBytes);
    this.sendLengths[this.queued++] = datagram.length;
    this.queuedBytes += datagram.length;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushNow);
    }
  }

  /** Closes the socket; datagrams still queued are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued = 0;
    this.queuedBytes = 0;
    this.addon.close(this.handle);
  }

  private flush(): void {
    const count = this.queued;
    if (count === 0 || this.closed) return;
    this.queued = 0;
    this.queuedBytes = 0;
    // Datagrams the kernel refuses (a full socket buffer, an ICMP error while the resolver
    // restarts) are lost like any UDP datagram: the relay's resends and timeout deal with them.
    this.addon.flush(this.handle, count);
  }
}
