/*
 * raw_send: sending complete IP packets through IPPROTO_RAW sockets, for src/io/raw-send.ts.
 *
 * Why our own addon: every shard worker thread sends through its own raw socket, so the addon
 * must load in several threads at once. The `raw-socket` package (NAN, NODE_MODULE) is not
 * context-aware and Node refuses to load it in a second thread while the first still has it
 * ("Module did not self-register"). A Node-API module is context-aware by construction
 * (https://nodejs.org/api/addons.html#worker-support), and this one keeps no global state:
 * a socket is a file descriptor owned by the JavaScript object that opened it.
 *
 * All synchronous:
 *   open(family 4|6)                          -> fd; throws Error("socket: <strerror>")
 *   sendBatch(fd, family, packets, lengths, dstAddrs, count, failure)
 *                                             -> packets sent, with sendmmsg(2): packet i is
 *                                                lengths[i] bytes, laid end to end in `packets`,
 *                                                to the 16 bytes at dstAddrs[16 i] (the first 4
 *                                                for IPv4). A packet the kernel refuses (a
 *                                                full socket buffer: a dropped packet, not an
 *                                                exception on the hot path) is skipped and
 *                                                counted in failure[0], its errno in failure[1];
 *                                                the rest are still sent.
 *                                                A packet refused with EMSGSIZE (larger than
 *                                                the MTU of the route, or of the kernel's path
 *                                                MTU cache, toward its destination) is also
 *                                                counted in failure[2] (the caller zeroes it)
 *                                                and its index written at failure[3 + k] while
 *                                                the array has room: not a loss but a segment
 *                                                to cut smaller (src/io/raw-send.ts).
 *   pathMtu(family, address)                  -> the MTU of the route toward `address` (4 or 16
 *                                                bytes), as the kernel would use for a socket of
 *                                                ours: the device's, a route's `mtu` attribute,
 *                                                or a smaller path MTU it has learned. A connected
 *                                                UDP socket and getsockopt IP_MTU / IPV6_MTU
 *                                                (ip(7), ipv6(7)): connect(2) on UDP sends
 *                                                nothing, it only looks the route up. -errno on
 *                                                failure (no route: -ENETUNREACH).
 *   openLink(interface)                       -> [fd, ifindex]: an AF_PACKET socket on the
 *                                                interface for sending whole Ethernet frames, each
 *                                                after a virtio-net header (PACKET_VNET_HDR,
 *                                                packet(7)) that asks the kernel or the NIC to
 *                                                finish the TCP checksum and, for a frame that
 *                                                carries several segments, to cut it into them
 *                                                (GSO/TSO; src/wire/link-frame.ts writes them).
 *                                                Protocol 0: it is never handed a packet.
 *                                                Throws Error("<call>: <strerror>").
 *   linkMtu(fd, interface)                    -> the interface's MTU (SIOCGIFMTU), or -errno
 *   sendLinkBatch(fd, ifindex, mtu, packets, lengths, count, failure)
 *                                             -> frames sent, as sendBatch. The kernel checks
 *                                                no segment size of a GSO frame against the MTU
 *                                                (only a frame's whole length, and only when it
 *                                                is one segment), so this does, for every frame:
 *                                                one whose segments would be larger than `mtu`
 *                                                is refused here with EMSGSIZE, as the IP stack
 *                                                would refuse an IP packet over the route's MTU.
 *   close(fd)                                 (only a socket this thread opened)
 *   errorName(errno)                          -> strerror text, for counters and logs
 *
 * The sockets a thread opened and has not closed are closed when its Node-API environment is
 * torn down: a worker thread that ends without running its `finally` (terminated, or out of
 * heap) would otherwise leave them open in the process for good.
 *
 * IPPROTO_RAW implies IP_HDRINCL (raw(7)); for AF_INET6 Linux sets it the same way, so the
 * kernel sends our IP header as written. Such a socket is never handed incoming packets.
 * The socket is non-blocking: a thread must never sleep in sendmmsg(2) while its flows wait.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>

#include "napi_args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stdio.h>
#include <unistd.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return NULL;                                                            \
  } while (0)

static int32_t int_arg(napi_env env, napi_value value, int32_t *out) {
  return napi_get_value_int32(env, value, out) == napi_ok;
}

static napi_value make_int(napi_env env, int32_t n) {
  napi_value result;
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

/* The most sockets one thread holds open at once: a RawSender has two (IPv4 and IPv6). */
#define MAX_OPEN 64

/* The environment's instance data: the sockets it opened and has not closed. */
typedef struct {
  int fds[MAX_OPEN];
  int count;
} open_sockets;

static open_sockets *sockets_of(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

/* Instance data finalizer: runs when the environment (the thread's Node instance) goes away. */
static void close_all(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  open_sockets *sockets = data;
  for (int i = 0; i < sockets->count; i++) close(sockets->fds[i]);
  free(sockets);
}

/* An Error "<call>: <strerror>", with code EPERM for a missing privilege. */
static napi_value throw_errno(napi_env env, const char *call, int error) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", call, strerror(error));
  napi_throw_error(env, error == EPERM || error == EACCES ? "EPERM" : NULL, message);
  return NULL;
}

/* Keeps `fd` for close_all; false (and `fd` closed, an Error thrown) when the thread holds too many. */
static bool keep_socket(napi_env env, int fd) {
  open_sockets *sockets = sockets_of(env);
  if (sockets == NULL || sockets->count == MAX_OPEN) {
    close(fd);
    napi_throw_error(env, NULL, "socket: this thread holds too many raw sockets");
    return false;
  }
  sockets->fds[sockets->count++] = fd;
  return true;
}

static napi_value open_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t family;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !int_arg(env, argv[0], &family) || (family != 4 && family != 6)) {
    napi_throw_type_error(env, NULL, "open(family): family is 4 or 6");
    return NULL;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (!keep_socket(env, fd)) return NULL;
  return make_int(env, fd);
}

/* The most packets one sendBatch takes (the JavaScript side's batch). */
#define MAX_BATCH 64

/*
 * A packet refused: counted in failure[0], its errno in failure[1]; one refused as too big
 * (EMSGSIZE) also in failure[2], its index at failure[3 + k] while the array has room.
 */
static void refused(int32_t *failure, size_t failure_count, int error, uint32_t index) {
  failure[0]++;
  failure[1] = error;
  if (error == EMSGSIZE && failure_count >= 3) {
    if ((size_t)failure[2] + 3 < failure_count) failure[3 + failure[2]] = (int32_t)index;
    failure[2]++;
  }
}

/*
 * sendmmsg(2) of `count` messages, going on after any it cannot send (it stops at the first);
 * `indices[i]` is message i's index in the caller's batch (NULL: i). Returns the number sent.
 */
static uint32_t send_messages(int fd, struct mmsghdr *messages, const uint32_t *indices, uint32_t count, void *failure, size_t failure_count) {
  uint32_t sent = 0;
  for (uint32_t next = 0; next < count;) {
    int n = sendmmsg(fd, messages + next, count - next, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      refused((int32_t *)failure, failure_count, n < 0 ? errno : EAGAIN, indices == NULL ? next : indices[next]);
      next++;
      continue;
    }
    sent += (uint32_t)n;
    next += (uint32_t)n;
  }
  return sent;
}

static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int32_t fd, family;
  uint32_t count;
  void *packets, *lengths, *dsts, *failure;
  size_t packet_bytes, length_count, dst_bytes, failure_count;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !int_arg(env, argv[0], &fd) || !int_arg(env, argv[1], &family) || (family != 4 && family != 6) ||
      !typed_array(env, argv[2], napi_uint8_array, &packets, &packet_bytes) ||
      !typed_array(env, argv[3], napi_uint32_array, &lengths, &length_count) ||
      !typed_array(env, argv[4], napi_uint8_array, &dsts, &dst_bytes) || napi_get_value_uint32(env, argv[5], &count) != napi_ok ||
      !typed_array(env, argv[6], napi_int32_array, &failure, &failure_count) || failure_count < 2) {
    napi_throw_type_error(env, NULL, "sendBatch(fd, family, packets, lengths, dstAddrs, count, failure)");
    return NULL;
  }
  if (count > MAX_BATCH || count > length_count || (size_t)count * 16 > dst_bytes) {
    napi_throw_range_error(env, NULL, "sendBatch: more packets than the batch holds");
    return NULL;
  }
  struct mmsghdr messages[MAX_BATCH];
  struct iovec vectors[MAX_BATCH];
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } to[MAX_BATCH];
  memset(messages, 0, sizeof(struct mmsghdr) * count);
  memset(to, 0, sizeof to[0] * count);
  size_t offset = 0;
  for (uint32_t i = 0; i < count; i++) {
    size_t length = ((uint32_t *)lengths)[i];
    if (offset + length > packet_bytes) {
      napi_throw_range_error(env, NULL, "sendBatch: packets beyond the buffer");
      return NULL;
    }
    vectors[i].iov_base = (uint8_t *)packets + offset;
    vectors[i].iov_len = length;
    offset += length;
    const uint8_t *dst = (const uint8_t *)dsts + (size_t)i * 16;
    if (family == 4) {
      to[i].v4.sin_family = AF_INET;
      memcpy(&to[i].v4.sin_addr, dst, 4);
      messages[i].msg_hdr.msg_namelen = sizeof to[i].v4;
    } else {
      /* sin6_port 0: for a raw socket it would name the protocol, and 0 means the socket's own. */
      to[i].v6.sin6_family = AF_INET6;
      memcpy(&to[i].v6.sin6_addr, dst, 16);
      messages[i].msg_hdr.msg_namelen = sizeof to[i].v6;
    }
    messages[i].msg_hdr.msg_name = &to[i];
    messages[i].msg_hdr.msg_iov = &vectors[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  return make_int(env, (int32_t)send_messages(fd, messages, NULL, count, failure, failure_count));
}

static napi_value path_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t family;
  void *address;
  size_t address_bytes;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !int_arg(env, argv[0], &family) || (family != 4 && family != 6) ||
      !typed_array(env, argv[1], napi_uint8_array, &address, &address_bytes) || address_bytes < (family == 4 ? 4u : 16u)) {
    napi_throw_type_error(env, NULL, "pathMtu(family, address)");
    return NULL;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_int(env, -errno);
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } to;
  memset(&to, 0, sizeof to);
  socklen_t to_length;
  if (family == 4) {
    to.v4.sin_family = AF_INET;
    to.v4.sin_port = htons(9); /* any port: nothing is sent */
    memcpy(&to.v4.sin_addr, address, 4);
    to_length = sizeof to.v4;
  } else {
    to.v6.sin6_family = AF_INET6;
    to.v6.sin6_port = htons(9);
    memcpy(&to.v6.sin6_addr, address, 16);
    to_length = sizeof to.v6;
  }
  int mtu = 0;
  socklen_t mtu_length = sizeof mtu;
  int result;
  if (connect(fd, (struct sockaddr *)&to, to_length) < 0) {
    result = -errno;
  } else if (getsockopt(fd, family == 4 ? IPPROTO_IP : IPPROTO_IPV6, family == 4 ? IP_MTU : IPV6_MTU, &mtu, &mtu_length) < 0) {
    result = -errno;
  } else {
    result = mtu;
  }
  close(fd);
  return make_int(env, result);
}

/* The interface name argument: false (a TypeError thrown) when it is not a string that fits. */
static bool interface_arg(napi_env env, napi_value value, char name[IFNAMSIZ]) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, name, IFNAMSIZ, &length) != napi_ok || length == 0 || length >= IFNAMSIZ - 1) {
    napi_throw_type_error(env, NULL, "an interface name is a string of 1 to 15 bytes");
    return false;
  }
  return true;
}

static napi_value open_link(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[IFNAMSIZ];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !interface_arg(env, argv[0], name)) return NULL;
  unsigned ifindex = if_nametoindex(name);
  if (ifindex == 0) return throw_errno(env, "if_nametoindex", errno);
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int on = 1;
  struct sockaddr_ll link = {.sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)ifindex};
  const char *failed = NULL;
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) != 0) failed = "setsockopt(PACKET_VNET_HDR)";
  else if (bind(fd, (struct sockaddr *)&link, sizeof link) != 0) failed = "bind";
  if (failed != NULL) {
    int error = errno;
    close(fd);
    return throw_errno(env, failed, error);
  }
  if (!keep_socket(env, fd)) return NULL;
  napi_value result;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_set_element(env, result, 0, make_int(env, fd)));
  CHECK(napi_set_element(env, result, 1, make_int(env, (int32_t)ifindex)));
  return result;
}

static napi_value link_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  char name[IFNAMSIZ];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !int_arg(env, argv[0], &fd) || !interface_arg(env, argv[1], name)) return NULL;
  struct ifreq request;
  memset(&request, 0, sizeof request);
  memcpy(request.ifr_name, name, IFNAMSIZ);
  if (ioctl(fd, SIOCGIFMTU, &request) != 0) return make_int(env, -errno);
  return make_int(env, request.ifr_mtu);
}

/* The virtio-net header's 16-bit fields are little-endian here (the kernel's vio_le() on the hosts we build for). */
static uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}

/* Bytes of the largest IP packet that `frame` (virtio-net header, Ethernet, IP, TCP, data) puts on the wire. */
static size_t wire_packet_bytes(const uint8_t *frame, size_t length) {
  const struct virtio_net_hdr *vnet = (const struct virtio_net_hdr *)frame;
  size_t frame_bytes = length - sizeof *vnet;
  if (vnet->gso_type == VIRTIO_NET_HDR_GSO_NONE) return frame_bytes - ETH_HLEN;
  size_t segment = le16((const uint8_t *)&vnet->hdr_len) + (size_t)le16((const uint8_t *)&vnet->gso_size) - ETH_HLEN;
  return segment < frame_bytes - ETH_HLEN ? segment : frame_bytes - ETH_HLEN;
}

static napi_value send_link_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int32_t fd, ifindex, mtu;
  uint32_t count;
  void *packets, *lengths, *failure;
  size_t packet_bytes, length_count, failure_count;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !int_arg(env, argv[0], &fd) || !int_arg(env, argv[1], &ifindex) || !int_arg(env, argv[2], &mtu) ||
      !typed_array(env, argv[3], napi_uint8_array, &packets, &packet_bytes) ||
      !typed_array(env, argv[4], napi_uint32_array, &lengths, &length_count) || napi_get_value_uint32(env, argv[5], &count) != napi_ok ||
      !typed_array(env, argv[6], napi_int32_array, &failure, &failure_count) || failure_count < 2) {
    napi_throw_type_error(env, NULL, "sendLinkBatch(fd, ifindex, mtu, packets, lengths, count, failure)");
    return NULL;
  }
  if (count > MAX_BATCH || count > length_count) {
    napi_throw_range_error(env, NULL, "sendLinkBatch: more packets than the batch holds");
    return NULL;
  }
  struct mmsghdr messages[MAX_BATCH];
  struct iovec vectors[MAX_BATCH];
  struct sockaddr_ll to[MAX_BATCH];
  uint32_t indices[MAX_BATCH];
  uint32_t queued = 0;
  size_t offset = 0;
  for (uint32_t i = 0; i < count; i++) {
    size_t length = ((uint32_t *)lengths)[i];
    if (offset + length > packet_bytes || length < sizeof(struct virtio_net_hdr) + ETH_HLEN) {
      napi_throw_range_error(env, NULL, "sendLinkBatch: a frame beyond the buffer or shorter than its headers");
      return NULL;
    }
    const uint8_t *frame = (const uint8_t *)packets + offset;
    offset += length;
    if (mtu > 0 && wire_packet_bytes(frame, length) > (size_t)mtu) {
      refused((int32_t *)failure, failure_count, EMSGSIZE, i);
      continue;
    }
    const uint8_t *ethernet = frame + sizeof(struct virtio_net_hdr);
    memset(&to[queued], 0, sizeof to[queued]);
    to[queued].sll_family = AF_PACKET;
    to[queued].sll_ifindex = ifindex;
    /* The frame's own EtherType, as the kernel would parse it: it sets skb->protocol. */
    memcpy(&to[queued].sll_protocol, ethernet + 12, 2);
    to[queued].sll_halen = ETH_ALEN;
    memcpy(to[queued].sll_addr, ethernet, ETH_ALEN);
    vectors[queued].iov_base = (void *)frame;
    vectors[queued].iov_len = length;
    memset(&messages[queued], 0, sizeof messages[queued]);
    messages[queued].msg_hdr.msg_name = &to[queued];
    messages[queued].msg_hdr.msg_namelen = sizeof to[queued];
    messages[queued].msg_hdr.msg_iov = &vectors[queued];
    messages[queued].msg_hdr.msg_iovlen = 1;
    indices[queued++] = i;
  }
  return make_int(env, (int32_t)send_messages(fd, messages, indices, queued, failure, failure_count));
}

static napi_value close_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  open_sockets *sockets = sockets_of(env);
  if (argc < 1 || !int_arg(env, argv[0], &fd) || sockets == NULL) return NULL;
  for (int i = 0; i < sockets->count; i++) {
    if (sockets->fds[i] != fd) continue;
    close(fd);
    sockets->fds[i] = sockets->fds[--sockets->count];
    break;
  }
  return NULL;
}

static napi_value error_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code;
  napi_value result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !int_arg(env, argv[0], &code)) code = 0;
  CHECK(napi_create_string_utf8(env, strerror(code), NAPI_AUTO_LENGTH, &result));
  return result;
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"open", NULL, open_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pathMtu", NULL, path_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openLink", NULL, open_link, NULL, NULL, NULL, napi_enumerable, NULL},
      {"linkMtu", NULL, link_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendLinkBatch", NULL, send_link_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"errorName", NULL, error_name, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  open_sockets *sockets = calloc(1, sizeof *sockets);
  if (sockets == NULL) return NULL;
  if (napi_set_instance_data(env, sockets, close_all, NULL) != napi_ok) {
    free(sockets);
    return NULL;
  }
  return exports;
}
