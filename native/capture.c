/*
 * capture: libpcap for a dedicated capture thread, for src/io/capture.ts.
 *
 * Why our own addon rather than the `pcap` package's binding: the capture runs in a worker
 * thread, and that binding (1) is not context-aware, and (2) never uv_close()s its poll handle,
 * so a worker that used it aborts when it exits ("uv_loop_close() while having open handles").
 * This one registers nothing with the event loop at all: the capture thread calls `next`, which
 * waits in poll(2) for at most `timeoutMs` when no packet is ready. A thread that does nothing
 * but capture may block; its event loop is not needed while it captures.
 *
 * Lane 0's frames longer than its snap length (GRO/TSO frames of open connections, up to 64 KiB)
 * are also captured whole by a companion handle with a large snap length and a filter that takes
 * only long frames: libpcap sizes every frame of a TPACKET_V2 ring for its snap length, so one
 * ring with a 64 KiB snap length would hold 30 times fewer packets than lane 0's 2 KiB frames do.
 * When lane 0 yields a frame that was cut short, the companion's copy of that same frame (same
 * length, same first bytes: both taps see the same skb) replaces it, so frames
 * keep lane 0's order and the companion costs nothing while no long frame comes.
 *
 * The kernel's checksum state of each packet. The kernel tells an AF_PACKET ring whether it
 * validated a packet's TCP/UDP checksum (TP_STATUS_CSUM_VALID: the NIC or veth checked it, or GRO
 * merged checked segments) or whether the sender on this host left it to offload
 * (TP_STATUS_CSUMNOTREADY: CHECKSUM_PARTIAL, the field holds only the pseudo-header sum), in the
 * tp_status word of the frame's tpacket2_hdr (Linux net/packet/af_packet.c tpacket_rcv). libpcap
 * does not pass tp_status on, but in immediate mode it reads a TPACKET_V2 ring and hands
 * pcap_dispatch's callback a pointer into the ring frame, whose tpacket2_hdr is still the
 * reader's until the callback returns (pcap-linux.c pcap_read_linux_mmap_v2). So the callback
 * finds the header: the frame start is 16-byte aligned (TPACKET_ALIGNMENT), the sockaddr_ll the
 * kernel writes after the header says AF_PACKET, and the header's tp_mac, tp_len and the
 * pointer agree (libpcap moves the pointer back by exactly what it adds to `len`: a VLAN tag it
 * re-inserts, the cooked header of `any`). It looks back at most RING_LOOK_BACK bytes, never below
 * the start of the mapping that holds the packet (read once per lane from /proc/self/maps), so a
 * libpcap that hands over a copy instead finds nothing: the state is then CHECKSUM_UNKNOWN and
 * the shard verifies the checksum itself, as it does for every packet the kernel did not vouch
 * for. pcap_next_ex would copy the packet first (pcap_oneshot_linux) and release the frame, so
 * this addon uses pcap_dispatch, which also saves that copy.
 *
 * One capture may have up to three lanes, each its own libpcap handle (its own kernel buffer)
 * with its own BPF filter, taken in priority order (take_by_priority). The kernel drops packets
 * when a buffer is full, whichever they are; the front end puts the segments of open
 * connections, SYNs and the rest (bare RSTs) in lanes of their own, so that a SYN flood larger
 * than the capture thread can take overflows the SYNs' buffer only and never the clients'
 * queries, ACKs and FINs, and that the RSTs a flood brings back do not take the capture
 * thread's time from the SYNs.
 *
 *   open(device, filters, bufferBytes, snapLengths, frame, header, wholeFrames) -> { handle, linkType }
 *       one lane per filter (1 to 4, lane 0 first) with the kernel buffer and snap length of the
 *       same index; with `wholeFrames` the last filter is not a lane read in priority order but
 *       the whole-frame companion of lane 0 (take_whole); each in immediate mode (TPACKET_V3 would otherwise hold packets until a block
 *       fills), not promiscuous, non-blocking. Each packet is copied into `frame` (a Uint8Array of
 *       ≥ the largest snap length) and its header into `header` (a Uint32Array of 6: tv_sec,
 *       tv_usec, caplen, len, the index of the lane it came from, and the kernel's checksum state:
 *       CHECKSUM_* below), both kept referenced until close.
 *       Throws Error(pcap's text).
 *   next(handle, timeoutMs) -> 1: a packet is in frame/header; 0: none within timeoutMs;
 *       -1: error (lastError(handle) says which)
 *   stats(handle) -> [received, dropped] per lane, lane 0 first                (pcap_stats)
 *   lastError(handle) -> string
 *   close(handle)
 *   lroEnabled(device) -> true/false: whether the NIC's large receive offload is on (ETHTOOL_GFLAGS),
 *       null when the driver does not say; for the start-up check (src/io/preflight.ts)
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include "napi_args.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LANES 4
/* Stale frames in the whole-frame companion skipped at most per cut-short frame (its ring holds fewer). */
#define WHOLE_SKIP_MAX 4096
/* The packet header `next` writes: tv_sec, tv_usec, caplen, len, lane, checksum state. */
#define HEADER_WORDS 6
/* The checksum state `next` writes (src/io/capture.ts KernelChecksum). */
#define CHECKSUM_UNKNOWN 0
#define CHECKSUM_VALIDATED 1
#define CHECKSUM_LEFT_TO_OFFLOAD 2
/* Bytes before a packet where its ring frame's tpacket2_hdr is looked for: tp_mac is about 70 for Ethernet. */
#define RING_LOOK_BACK 256
/*
 * While a lane below the first has packets, the lanes above it are looked at again only after
 * LANE_RUN of them: libpcap does a poll(2) when a look finds its buffer empty, so looking at
 * every lane before every packet would add a syscall per packet under a flood; 8 makes it one
 * in 8, while a packet in a higher lane waits behind at most 8 others.
 */
#define LANE_RUN 8
/*
 * And the last lane is looked at first once in LAST_LANE_EVERY reads, so that a flood in a
 * higher lane slows it down but cannot starve it.
 */
#define LAST_LANE_EVERY 64

typedef struct {
  pcap_t *lanes[MAX_LANES];
  int fds[MAX_LANES];
  int lane_count;
  /* Lanes read in priority order: lane_count, or one less with a whole-frame companion (the last). */
  int priority_count;
  int whole_lane;
  /* The companion's frame read but not yet matched (valid until the next pcap_next_ex on it). */
  int whole_pending;
  struct pcap_pkthdr *whole_header;
  const u_char *whole_data;
  /* The lane whose error lastError reports, or -1: poll(2) failed with poll_errno. */
  int failed_lane;
  int poll_errno;
  /* The lane the last packet came from, and how many packets have come since lane 0 was looked at. */
  int current_lane;
  int run;
  /* Reads since the last lane was looked at first. */
  int since_last_lane;
  /*
   * Per lane: where the mapping that holds its packets starts (0: not looked up yet;
   * UINTPTR_MAX: the packets are not in a mapping found, so no ring header is looked for).
   */
  uintptr_t ring_start[MAX_LANES];
  uintptr_t ring_end[MAX_LANES];
  /* The lane `take` is reading, for the callback; and what `take` returns. */
  int taking_lane;
  int took;
  uint8_t *frame;
  size_t frame_bytes;
  uint32_t *header;
  napi_ref frame_ref;
  napi_ref header_ref;
} Capture;

static void release(napi_env env, Capture *c) {
  for (int i = 0; i < c->lane_count; i++) {
    if (c->lanes[i] != NULL) pcap_close(c->lanes[i]);
    c->lanes[i] = NULL;
  }
  c->lane_count = 0;
  if (c->frame_ref != NULL) {
    napi_delete_reference(env, c->frame_ref);
    c->frame_ref = NULL;
  }
  if (c->header_ref != NULL) {
    napi_delete_reference(env, c->header_ref);
    c->header_ref = NULL;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  release(env, (Capture *)data);
  free(data);
}

static Capture *capture_arg(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "not a capture handle");
    return NULL;
  }
  Capture *c = (Capture *)data;
  if (c->lane_count == 0) {
    napi_throw_error(env, NULL, "capture already closed");
    return NULL;
  }
  return c;
}

static napi_value throw_pcap(napi_env env, const char *what, const char *detail) {
  char message[PCAP_ERRBUF_SIZE + 64];
  snprintf(message, sizeof message, "%s: %s", what, detail);
  napi_throw_error(env, NULL, message);
  return NULL;
}

/*
 * One lane: a live capture of `device` with `filter`. NULL on failure, with what failed and
 * libpcap's reason in `message`.
 */
static pcap_t *open_lane(const char *device, const char *filter, int snap_length, int buffer_bytes, char *message, size_t message_bytes) {
  char errbuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t *pcap = pcap_create(device, errbuf);
  if (pcap == NULL) {
    snprintf(message, message_bytes, "pcap_create: %s", errbuf);
    return NULL;
  }
  const char *failed = NULL;
  if (pcap_set_snaplen(pcap, snap_length) != 0) failed = "pcap_set_snaplen";
  else if (pcap_set_promisc(pcap, 0) != 0) failed = "pcap_set_promisc";
  else if (pcap_set_buffer_size(pcap, buffer_bytes) != 0) failed = "pcap_set_buffer_size";
  else if (pcap_set_immediate_mode(pcap, 1) != 0) failed = "pcap_set_immediate_mode";
  if (failed != NULL) {
    snprintf(message, message_bytes, "%s: rejected before activation", failed);
    pcap_close(pcap);
    return NULL;
  }
  int status = pcap_activate(pcap);
  if (status < 0) {
    // pcap_geterr has the detail for PCAP_ERROR; the others are described by pcap_statustostr.
    snprintf(message, message_bytes, "pcap_activate: %s%s%s", pcap_statustostr(status), status == PCAP_ERROR ? ": " : "",
             status == PCAP_ERROR ? pcap_geterr(pcap) : "");
    pcap_close(pcap);
    return NULL;
  }
  struct bpf_program program;
  if (pcap_compile(pcap, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    snprintf(message, message_bytes, "pcap_compile: %s", pcap_geterr(pcap));
    pcap_close(pcap);
    return NULL;
  }
  status = pcap_setfilter(pcap, &program);
  pcap_freecode(&program);
  if (status != 0) {
    snprintf(message, message_bytes, "pcap_setfilter: %s", pcap_geterr(pcap));
  } else if (pcap_setnonblock(pcap, 1, errbuf) != 0) {
    snprintf(message, message_bytes, "pcap_setnonblock: %s", errbuf);
  } else if (pcap_get_selectable_fd(pcap) < 0) {
    snprintf(message, message_bytes, "pcap_get_selectable_fd: no descriptor to wait on");
  } else {
    return pcap;
  }
  pcap_close(pcap);
  return NULL;
}

static napi_value open_capture(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  char device[256];
  bool whole_frames = false;
  uint32_t filter_count, buffer_count, snap_count;
  bool filters_array, buffers_array, snaps_array;
  void *frame, *header;
  size_t frame_bytes, header_words;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7 ||
      napi_get_value_bool(env, argv[6], &whole_frames) != napi_ok ||
      napi_get_value_string_utf8(env, argv[0], device, sizeof device, NULL) != napi_ok ||
      napi_is_array(env, argv[1], &filters_array) != napi_ok || !filters_array ||
      napi_get_array_length(env, argv[1], &filter_count) != napi_ok || filter_count < 1 || filter_count > MAX_LANES ||
      napi_is_array(env, argv[2], &buffers_array) != napi_ok || !buffers_array ||
      napi_get_array_length(env, argv[2], &buffer_count) != napi_ok || buffer_count != filter_count ||
      napi_is_array(env, argv[3], &snaps_array) != napi_ok || !snaps_array ||
      napi_get_array_length(env, argv[3], &snap_count) != napi_ok || snap_count != filter_count ||
      !typed_array(env, argv[4], napi_uint8_array, &frame, &frame_bytes) ||
      !typed_array(env, argv[5], napi_uint32_array, &header, &header_words) || header_words < HEADER_WORDS) {
    napi_throw_type_error(env, NULL, "open(device, filters, bufferBytes, snapLengths, frame, header, wholeFrames)");
    return NULL;
  }
  int32_t snap_lengths[MAX_LANES];
  for (uint32_t i = 0; i < snap_count; i++) {
    napi_value element;
    if (napi_get_element(env, argv[3], i, &element) != napi_ok || napi_get_value_int32(env, element, &snap_lengths[i]) != napi_ok ||
        snap_lengths[i] <= 0 || frame_bytes < (size_t)snap_lengths[i]) {
      napi_throw_type_error(env, NULL, "open: a snap length is not a positive number no larger than the frame buffer");
      return NULL;
    }
  }
  Capture *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_pcap(env, "open", "out of memory");
  c->frame = frame;
  c->frame_bytes = frame_bytes;
  c->header = header;
  for (uint32_t i = 0; i < filter_count; i++) {
    napi_value element, buffer_element;
    size_t filter_length;
    int32_t buffer_bytes;
    char *filter = NULL;
    char message[PCAP_ERRBUF_SIZE + 64] = "open: a filter is not a string or a buffer size not a number";
    if (napi_get_element(env, argv[2], i, &buffer_element) == napi_ok &&
        napi_get_value_int32(env, buffer_element, &buffer_bytes) == napi_ok &&
        napi_get_element(env, argv[1], i, &element) == napi_ok &&
        napi_get_value_string_utf8(env, element, NULL, 0, &filter_length) == napi_ok &&
        (filter = malloc(filter_length + 1)) != NULL) {
      napi_get_value_string_utf8(env, element, filter, filter_length + 1, NULL);
      c->lanes[i] = open_lane(device, filter, snap_lengths[i], buffer_bytes, message, sizeof message);
      free(filter);
    }
    if (c->lanes[i] == NULL) {
      release(env, c);
      free(c);
      napi_throw_error(env, NULL, message);
      return NULL;
    }
    c->fds[i] = pcap_get_selectable_fd(c->lanes[i]);
    c->lane_count = (int)i + 1;
  }
  c->priority_count = c->lane_count;
  c->whole_lane = -1;
  if (whole_frames && c->lane_count > 1) {
    c->priority_count = c->lane_count - 1;
    c->whole_lane = c->lane_count - 1;
  }
  napi_value handle, link_type, result;
  if (napi_create_reference(env, argv[4], 1, &c->frame_ref) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &c->header_ref) != napi_ok ||
      napi_create_external(env, c, finalize, NULL, &handle) != napi_ok) {
    release(env, c);
    free(c);
    return throw_pcap(env, "open", "cannot make the handle");
  }
  if (napi_create_int32(env, pcap_datalink(c->lanes[0]), &link_type) != napi_ok || napi_create_object(env, &result) != napi_ok ||
      napi_set_named_property(env, result, "handle", handle) != napi_ok ||
      napi_set_named_property(env, result, "linkType", link_type) != napi_ok) {
    return NULL;
  }
  return result;
}

static napi_value int_result(napi_env env, int32_t n) {
  napi_value value;
  napi_create_int32(env, n, &value);
  return value;
}

/*
 * The whole-frame companion's copy of the cut-short frame `*header`/`*data` from lane 0, if it has
 * one: frames it holds from before (whose lane-0 copy the kernel dropped) are skipped; a later one
 * (the companion dropped this frame's copy) stays pending for the frame it belongs to, and this
 * frame goes on cut short, to be counted as truncated. An error on the companion is treated as no copy.
 */
static void take_whole(Capture *c, const struct pcap_pkthdr **header, const u_char **data) {
  const struct pcap_pkthdr *want = *header;
  for (int n = 0; n < WHOLE_SKIP_MAX; n++) {
    if (!c->whole_pending) {
      if (pcap_next_ex(c->lanes[c->whole_lane], &c->whole_header, &c->whole_data) != 1) return;
      c->whole_pending = 1;
    }
    const struct pcap_pkthdr *have = c->whole_header;
    if (have->len == want->len && have->caplen >= want->caplen && memcmp(c->whole_data, *data, want->caplen) == 0) {
      *header = c->whole_header;
      *data = c->whole_data;
      c->whole_pending = 0;
      return;
    }
    // Each tap may take its own timestamp (a veth peer's packet comes without one), so the copies
    // of one frame are matched by their bytes, and the time only tells a stale frame from a later one.
    int older = have->ts.tv_sec < want->ts.tv_sec || (have->ts.tv_sec == want->ts.tv_sec && have->ts.tv_usec < want->ts.tv_usec);
    if (older) {
      c->whole_pending = 0;
      continue;
    }
    return;
  }
}

/* The mapping of this process that holds `address`, from /proc/self/maps; false if none does. */
static bool find_mapping(uintptr_t address, uintptr_t *start, uintptr_t *end) {
  FILE *maps = fopen("/proc/self/maps", "re");
  if (maps == NULL) return false;
  char line[512];
  bool found = false;
  while (!found && fgets(line, sizeof line, maps) != NULL) {
    uintptr_t from, to;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &from, &to) == 2 && from <= address && address < to) {
      *start = from;
      *end = to;
      found = true;
    }
    // A line longer than the buffer (a long path) is read on in pieces that do not parse.
  }
  fclose(maps);
  return found;
}

/* The kernel's checksum state of the packet at `data` that libpcap handed the callback of `lane` (see the top). */
static uint32_t checksum_state(Capture *c, int lane, const struct pcap_pkthdr *header, const u_char *data) {
  uintptr_t at = (uintptr_t)data;
  if (c->ring_start[lane] == 0 && !find_mapping(at, &c->ring_start[lane], &c->ring_end[lane])) c->ring_start[lane] = UINTPTR_MAX;
  if (at < c->ring_start[lane] || at >= c->ring_end[lane]) return CHECKSUM_UNKNOWN;
  uintptr_t lowest = at - c->ring_start[lane] < RING_LOOK_BACK ? c->ring_start[lane] : at - RING_LOOK_BACK;
  const size_t before_packet = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll);
  for (uintptr_t p = (at - before_packet) & ~(uintptr_t)(TPACKET_ALIGNMENT - 1); p >= lowest && p + before_packet <= at;
       p -= TPACKET_ALIGNMENT) {
    const struct tpacket2_hdr *frame = (const struct tpacket2_hdr *)p;
    const struct sockaddr_ll *link = (const struct sockaddr_ll *)(p + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
    if (link->sll_family != AF_PACKET || (frame->tp_status & TP_STATUS_USER) == 0 || header->len < frame->tp_len ||
        p + frame->tp_mac != at + (header->len - frame->tp_len)) {
      continue;
    }
    if (frame->tp_status & TP_STATUS_CSUMNOTREADY) return CHECKSUM_LEFT_TO_OFFLOAD;
    return frame->tp_status & TP_STATUS_CSUM_VALID ? CHECKSUM_VALIDATED : CHECKSUM_UNKNOWN;
  }
  return CHECKSUM_UNKNOWN;
}

/* pcap_dispatch's callback: the packet copied into frame/header while its ring frame is still ours. */
static void took_packet(u_char *user, const struct pcap_pkthdr *header, const u_char *data) {
  Capture *c = (Capture *)user;
  int lane = c->taking_lane;
  // Read before take_whole: the companion's copy is of the same skb, so this state is its state too.
  uint32_t checksum = checksum_state(c, lane, header, data);
  const struct pcap_pkthdr *whole = header;
  if (lane == 0 && c->whole_lane > 0 && header->caplen < header->len) take_whole(c, &whole, &data);
  size_t n = whole->caplen < c->frame_bytes ? whole->caplen : c->frame_bytes;
  memcpy(c->frame, data, n);
  c->header[0] = (uint32_t)whole->ts.tv_sec;
  c->header[1] = (uint32_t)whole->ts.tv_usec;
  c->header[2] = (uint32_t)n;
  c->header[3] = whole->len;
  c->header[4] = (uint32_t)lane;
  c->header[5] = checksum;
  c->took = 1;
}

/* One packet of one lane: 1 with the packet copied into frame/header, 0 none, -1 error. */
static int take(Capture *c, int lane) {
  c->taking_lane = lane;
  c->took = 0;
  int status = pcap_dispatch(c->lanes[lane], 1, took_packet, (u_char *)c);
  if (status < 0) {
    c->failed_lane = lane;
    return -1;
  }
  return c->took;
}

/*
 * The first lane with a packet, in lane order — except that while packets come from lanes
 * other than the first, the lanes above are skipped until LANE_RUN of them have come, and that
 * the last lane goes first once in LAST_LANE_EVERY reads.
 */
static int take_by_priority(Capture *c) {
  if (c->priority_count > 1 && ++c->since_last_lane >= LAST_LANE_EVERY) {
    c->since_last_lane = 0;
    int status = take(c, c->priority_count - 1);
    if (status != 0) return status;
  }
  int start = c->run >= LANE_RUN ? 0 : c->current_lane;
  for (int pass = 0; pass < 2; pass++) {
    // Pass 0 looks from `start` on; pass 1 at the lanes before it that pass 0 skipped.
    int from = pass == 0 ? start : 0, to = pass == 0 ? c->priority_count : start;
    for (int lane = from; lane < to; lane++) {
      int status = take(c, lane);
      if (status < 0) return status;
      if (status == 1) {
        if (from == 0) c->run = 0;
        c->current_lane = lane;
        if (lane > 0) c->run++;
        return 1;
      }
    }
  }
  c->current_lane = 0;
  c->run = 0;
  return 0;
}

static napi_value next_packet(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t timeout_ms;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[1], &timeout_ms) != napi_ok) {
    napi_throw_type_error(env, NULL, "next(handle, timeoutMs)");
    return NULL;
  }
  Capture *c = capture_arg(env, argv[0]);
  if (c == NULL) return NULL;
  for (int waited = 0;; waited = 1) {
    int status = take_by_priority(c);
    if (status != 0 || waited) return int_result(env, status);
    struct pollfd ready[MAX_LANES];
    // Not the whole-frame companion: it is read only when lane 0 has a frame cut short.
    for (int i = 0; i < c->priority_count; i++) ready[i] = (struct pollfd){.fd = c->fds[i], .events = POLLIN, .revents = 0};
    if (poll(ready, (nfds_t)c->priority_count, timeout_ms) < 0 && errno != EINTR) {
      c->failed_lane = -1;
      c->poll_errno = errno;
      return int_result(env, -1);
    }
  }
}

static napi_value stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  Capture *c = capture_arg(env, argv[0]);
  if (c == NULL) return NULL;
  napi_value result, value;
  napi_create_array_with_length(env, 2 * (size_t)c->lane_count, &result);
  for (int i = 0; i < c->lane_count; i++) {
    struct pcap_stat s;
    memset(&s, 0, sizeof s);
    pcap_stats(c->lanes[i], &s);
    napi_create_uint32(env, s.ps_recv, &value);
    napi_set_element(env, result, 2 * (uint32_t)i, value);
    napi_create_uint32(env, s.ps_drop, &value);
    napi_set_element(env, result, 2 * (uint32_t)i + 1, value);
  }
  return result;
}

static napi_value last_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  Capture *c = capture_arg(env, argv[0]);
  if (c == NULL) return NULL;
  char message[PCAP_ERRBUF_SIZE + 32];
  if (c->failed_lane < 0) snprintf(message, sizeof message, "poll: %s", strerror(c->poll_errno));
  else snprintf(message, sizeof message, "%s", pcap_geterr(c->lanes[c->failed_lane]));
  napi_value text;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  return text;
}

static napi_value close_capture(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    return NULL;
  }
  release(env, (Capture *)data);
  return NULL;
}

static napi_value lro_enabled(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  char device[IFNAMSIZ];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], device, sizeof device, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "lroEnabled(device)");
    return NULL;
  }
  struct ethtool_value value = {.cmd = ETHTOOL_GFLAGS, .data = 0};
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", device);
  request.ifr_data = (void *)&value;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int status = fd < 0 ? -1 : ioctl(fd, SIOCETHTOOL, &request);
  if (fd >= 0) close(fd);
  if (status < 0) {
    napi_get_null(env, &result);
  } else {
    napi_get_boolean(env, (value.data & ETH_FLAG_LRO) != 0, &result);
  }
  return result;
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"open", NULL, open_capture, NULL, NULL, NULL, napi_enumerable, NULL},
      {"next", NULL, next_packet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lastError", NULL, last_error, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_capture, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lroEnabled", NULL, lro_enabled, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
