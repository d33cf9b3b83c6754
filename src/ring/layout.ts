/**
 * Where every byte of a packet ring lives. The ring is a single-producer/single-consumer queue of
 * fixed-size slots in a SharedArrayBuffer: the capture thread copies each frame into a slot, one
 * shard worker drains them (ring.ts). Both threads, and anything reading metrics, find every
 * shared field through the names below and nowhere else.
 *
 * A ring is a region of a SharedArrayBuffer (usually the whole buffer) starting at `byteOffset`,
 * a multiple of 64. Offsets below are bytes from the start of the region; every field is a 32-bit
 * word in host byte order (both sides run in one process), accessed through an Int32Array or
 * Uint32Array over the region.
 *
 *   Bytes      Field               Written by           Read by
 *   ── configuration: written once by createRing, before the region is handed out ──────────────
 *     0 -   3  MAGIC               createRing (last)    attach (first): 0x676e6952, "Ring" in LE
 *     4 -   7  LAYOUT_VERSION      createRing           attach: must equal RING_LAYOUT_VERSION
 *     8 -  11  SLOT_COUNT          createRing           attach: slots, a power of two
 *    12 -  15  SLOT_DATA_BYTES     createRing           attach: frame bytes a slot holds (snap length)
 *    16 -  19  SLOT_STRIDE_BYTES   createRing           attach: bytes from one slot to the next
 *    20 -  23  INITIAL_INDEX       createRing           counters: where both indices started
 *    24 - 127  (zero)
 *   ── producer group: written only by the producer ─────────────────────────────────────────────
 *   128 - 131  WRITE_INDEX         producer             consumer: slots [READ, WRITE) hold frames
 *   132 - 135  DROPPED             producer             metrics: frames refused because full
 *   136 - 139  WAKEUPS             producer             metrics: times the producer woke the consumer
 *   140 - 255  (zero)
 *   ── consumer group: written only by the consumer ─────────────────────────────────────────────
 *   256 - 259  READ_INDEX          consumer             producer: slots before it may be reused
 *   260 - 263  SLEEPS              consumer             metrics: times the consumer went to sleep
 *   264 - 383  (zero)
 *   ── sleep flag: set by the consumer, cleared by whoever wakes it ─────────────────────────────
 *   384 - 387  CONSUMER_SLEEPING   consumer: 0 → 1      producer, on every push
 *                                  producer: 1 → 0
 *   388 - 511  (zero)
 *   ── slots: SLOT_COUNT × SLOT_STRIDE_BYTES, slot i at 512 + i × SLOT_STRIDE_BYTES ──────────────
 *     +0 -  +3 CAPTURED_LENGTH     frame bytes stored in the slot (≤ SLOT_DATA_BYTES)
 *     +4 -  +7 WIRE_LENGTH         the frame's length on the wire (libpcap `len`)
 *     +8 - +11 TIMESTAMP_SECONDS   capture time: seconds since the Unix epoch (libpcap `tv_sec`)
 *    +12 - +15 TIMESTAMP_MICROS    capture time: microseconds within that second (`tv_usec`)
 *    +16 - +19 KERNEL_CHECKSUM     what the kernel said of its TCP checksum (wire/segment.ts KernelChecksum)
 *    +20 - ... frame bytes, SLOT_DATA_BYTES of room, then padding up to a multiple of 64
 *
 * WRITE_INDEX and READ_INDEX are free-running 32-bit counters: slot = index & (SLOT_COUNT − 1),
 * frames held = WRITE − READ in 32-bit wrapping arithmetic. With SLOT_COUNT a power of two that
 * stays right across the wrap at 2^32, and "full" (WRITE − READ = SLOT_COUNT) is distinct from
 * "empty" (WRITE = READ) without sacrificing a slot. The code keeps indices and counters as
 * signed int32 (`| 0`) rather than unsigned (`>>> 0`), and only metrics convert: V8 represents an
 * int32 as a small integer, but boxes an unsigned value ≥ 2^31 into a heap number whenever it is
 * stored in a field or passed to a function that is not inlined — an allocation per frame, half
 * the time.
 *
 * Timestamps are libpcap's struct timeval as the capture binding hands it over: no arithmetic on
 * the capture thread, and both numbers are small integers (seconds stay below 2^31 until 2038).
 * One number of microseconds since 1970 would be a double that V8 boxes per frame, for the same
 * reason as above.
 */

/** A cache line on the x86-64 and ARM64 machines we run on. Slots are whole multiples of it. */
export const CACHE_LINE_BYTES = 64;

/**
 * Distance between the starts of the groups of fields written by different threads. Each group
 * uses at most 12 bytes, so two groups are always more than a cache line apart and never share
 * one, wherever the SharedArrayBuffer's memory starts (V8 promises no 64-byte alignment for it).
 * 128 rather than 64 also allows for Intel's L2 spatial prefetcher, which pulls in the other line
 * of each 128-byte pair (Intel 64 and IA-32 Architectures Optimization Reference Manual, "Data
 * Prefetching"); crossbeam's `CachePadded` and Folly's `hardware_destructive_interference_size`
 * use 128 for the same reason.
 */
const GROUP_BYTES = 128;
const CONFIG_GROUP = 0 * GROUP_BYTES;
const PRODUCER_GROUP = 1 * GROUP_BYTES;
const CONSUMER_GROUP = 2 * GROUP_BYTES;
const SLEEP_GROUP = 3 * GROUP_BYTES;

/** Bytes before slot 0. */
export const HEADER_BYTES = 4 * GROUP_BYTES;

/** Index of each header word in an Int32Array/Uint32Array over the region (byte offset ÷ 4). */
export const HeaderWord = {
  MAGIC: CONFIG_GROUP / 4 + 0,
  LAYOUT_VERSION: CONFIG_GROUP / 4 + 1,
  SLOT_COUNT: CONFIG_GROUP / 4 + 2,
  SLOT_DATA_BYTES: CONFIG_GROUP / 4 + 3,
  SLOT_STRIDE_BYTES: CONFIG_GROUP / 4 + 4,
  INITIAL_INDEX: CONFIG_GROUP / 4 + 5,
  WRITE_INDEX: PRODUCER_GROUP / 4 + 0,
  DROPPED: PRODUCER_GROUP / 4 + 1,
  WAKEUPS: PRODUCER_GROUP / 4 + 2,
  READ_INDEX: CONSUMER_GROUP / 4 + 0,
  SLEEPS: CONSUMER_GROUP / 4 + 1,
  CONSUMER_SLEEPING: SLEEP_GROUP / 4 + 0,
} as const;

/** "Ring" read as a little-endian u32: a region that does not start with it is not a ring. */
export const RING_MAGIC = 0x676e6952;
/** Bumped whenever anything in this file moves, so old and new code never share a region. */
export const RING_LAYOUT_VERSION = 2;

/** Values of CONSUMER_SLEEPING (an Int32Array word, so that Atomics.waitAsync can wait on it). */
export const ConsumerState = {
  AWAKE: 0,
  /** The consumer found the ring empty after announcing this and waits to be notified. */
  SLEEPING: 1,
} as const;

/** Index of each slot header word, counted from the slot's first word. */
export const SlotWord = {
  CAPTURED_LENGTH: 0,
  WIRE_LENGTH: 1,
  TIMESTAMP_SECONDS: 2,
  TIMESTAMP_MICROS: 3,
  KERNEL_CHECKSUM: 4,
} as const;
export const SLOT_HEADER_BYTES = 20;

/** The largest slot count: WRITE − READ, as an int32, must reach SLOT_COUNT without overflowing. */
export const MAX_SLOT_COUNT = 2 ** 30;
/** The largest snap length libpcap accepts (MAXIMUM_SNAPLEN in pcap-int.h). */
export const MAX_SLOT_DATA_BYTES = 262_144;

/** Bytes from one slot to the next: header and data rounded up to whole cache lines. */
export function slotStrideBytes(slotDataBytes: number): number {
  const bytes = SLOT_HEADER_BYTES + slotDataBytes;
  return Math.ceil(bytes / CACHE_LINE_BYTES) * CACHE_LINE_BYTES;
}

/** Bytes of the whole region for a ring of `slotCount` slots of `slotDataBytes` frame bytes. */
export function ringByteLength(slotCount: number, slotDataBytes: number): number {
  return HEADER_BYTES + slotCount * slotStrideBytes(slotDataBytes);
}
