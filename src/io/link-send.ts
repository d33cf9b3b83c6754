/**
 * Sending replies on the capture interface itself, as Ethernet frames through a packet socket
 * with a virtio-net header (native/raw_send.c `openLink`, packet(7) PACKET_VNET_HDR), the way a
 * virtual machine's NIC hands its packets to the host.
 *
 * Why: a raw IP socket takes one packet per segment through the whole IP output path (routing,
 * netfilter, the neighbour table, the qdisc), and on a veth the receiver's TCP runs in the sender's
 * context once per packet. The replies of one flow that leave together go here as one frame
 * (wire/link-frame.ts) that the kernel's GSO or the NIC's TSO cuts into segments — on a veth,
 * not at all: the peer's TCP takes the whole frame, as it takes a GRO frame — and no segment's
 * checksum is summed in JavaScript (the frame asks the kernel or NIC to finish it).
 *
 * What it needs: an Ethernet interface, and the next hop's MAC address, which is the one the
 * client's segments came from (`ReplyHeader.linkDst`, filled from the captured frame; Knot DNS's
 * XDP mode answers the same way). Replies thus go back through the router the queries came
 * through, and skip the host's routing table and its netfilter output hooks (docs/operations.md,
 * "Sending"). Segments without link addresses (a capture of `any`, a VLAN-tagged frame) go
 * through the raw socket (io/raw-send.ts); `--gso off` sends everything that way.
 *
 * Frames are batched as the raw sender's packets are: one sendmmsg(2) when the JavaScript that
 * queued them is done (a microtask), when the batch is full, or at `close`.
 */
import { LINK_FRAME_IP_OFFSET, LinkFrame, largestWirePacket, MAX_LINK_FRAME } from '../wire/link-frame.js';
import { LinkType, type ReplyHeader } from '../wire/segment.js';
import { BATCH, forEachRefused, type RawSendAddon, rawSendAddon, RefusedPackets, type SendStats } from './raw-send.js';

/**
 * Whether replies go on the link with `--gso on` (`gso`) and a capture of `linkType`: frames of our
 * own need an Ethernet header to write, which a cooked `any` capture has none of to copy.
 */
export function sendsOnLink(gso: boolean, linkType: LinkType): boolean {
  return gso && linkType === LinkType.ETHERNET;
}

/** Bytes a batch holds: several of the largest frames. */
const BATCH_BYTES = 8 * MAX_LINK_FRAME;

export class LinkSender {
  readonly stats: SendStats = { sent: 0, failed: 0, tooBig: 0, lastError: '' };
  readonly refused = new RefusedPackets();
  /** Segments handed to `send`: with `stats.sent` frames, how much the frames carried. */
  segments = 0;
  private readonly addon: RawSendAddon;
  private fd: number;
  private readonly ifindex: number;
  private readonly frame = new LinkFrame();
  private readonly packets = new Uint8Array(BATCH_BYTES);
  private readonly lengths = new Uint32Array(BATCH);
  private count = 0;
  private bytes = 0;
  private readonly failure = new Int32Array(3 + BATCH);
  private flushQueued = false;
  private readonly flushNow = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  /** Opens the packet socket on `device`; throws an Error naming the failed call. */
  constructor(private readonly device: string) {
    this.addon = rawSendAddon();
    [this.fd, this.ifindex] = this.addon.openLink(device);
  }

  /**
   * Queues the segment `hdr` + `payload[offset, offset + length)`, whose header has link addresses
   * (`hdr.hasLinkAddresses`): into the open frame when it continues it, else in a frame of its own.
   */
  send(hdr: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void {
    if (this.fd < 0) return;
    this.segments++;
    const frame = this.frame;
    if (frame.open) {
      if (frame.append(hdr, payload, offset, length)) return;
      this.commit();
    }
    if (this.count === BATCH || this.bytes + MAX_LINK_FRAME > BATCH_BYTES) this.sendBatch();
    frame.begin(hdr, payload, offset, length, this.packets, this.bytes);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushNow);
    }
  }

  /** Sends every queued frame now. */
  flush(): void {
    if (this.frame.open) this.commit();
    if (this.count > 0) this.sendBatch();
  }

  /** Sends what is queued, then closes the socket. */
  close(): void {
    if (this.fd < 0) return;
    this.flush();
    this.addon.close(this.fd);
    this.fd = -1;
  }

  private commit(): void {
    const length = this.frame.finish();
    this.lengths[this.count++] = length;
    this.bytes += length;
  }

  private sendBatch(): void {
    const failure = this.failure;
    failure[0] = 0;
    failure[2] = 0;
    // The MTU bounds every segment, and the kernel checks no GSO frame's segments against it: read
    // for each batch (an ioctl), so that a smaller MTU is honoured at once, as the IP path's is.
    const mtu = this.addon.linkMtu(this.fd, this.device);
    this.stats.sent += this.addon.sendLinkBatch(this.fd, this.ifindex, mtu, this.packets, this.lengths, this.count, failure);
    if (failure[0]! > 0) {
      this.stats.failed += failure[0]!;
      this.stats.lastError = this.addon.errorName(failure[1]!);
      if (failure[2]! > 0) this.keepTooBig(failure[2]!);
    }
    this.count = 0;
    this.bytes = 0;
  }

  /**
   * Reports the frames refused as larger than the MTU like the raw sender's packets: their IP and
   * TCP headers, and the size of their largest segment as an IP packet.
   */
  private keepTooBig(count: number): void {
    this.stats.tooBig += count;
    const packets = this.packets;
    forEachRefused(this.failure, count, this.lengths, (index, offset) => {
      const length = this.lengths[index]!;
      const ip = offset + LINK_FRAME_IP_OFFSET;
      const family = packets[ip]! >>> 4 === 6 ? 6 : 4;
      this.refused.keep(family, packets, ip, length - LINK_FRAME_IP_OFFSET, largestWirePacket(packets, offset, length));
    });
  }
}
