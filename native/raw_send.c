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

#include <arpa/inet.h>
#include <errno.h>
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

static napi_value open_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t family;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !int_arg(env, argv[0], &family) || (family != 4 && family != 6)) {
    napi_throw_type_error(env, NULL, "open(family): family is 4 or 6");
    return NULL;
  }
  open_sockets *sockets = sockets_of(env);
  if (sockets == NULL || sockets->count == MAX_OPEN) {
    napi_throw_error(env, NULL, "socket: this thread holds too many raw sockets");
    return NULL;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) {
    char message[160];
    snprintf(message, sizeof message, "socket: %s", strerror(errno));
    napi_throw_error(env, errno == EPERM || errno == EACCES ? "EPERM" : NULL, message);
    return NULL;
  }
  sockets->fds[sockets->count++] = fd;
  return make_int(env, fd);
}

/* The most packets one sendBatch takes (the JavaScript side's batch). */
#define MAX_BATCH 64

static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int32_t fd, family;
  uint32_t count;
  void *packets, *lengths, *dsts, *failure;
  size_t packet_bytes, length_count, dst_bytes, failure_count;
  napi_typedarray_type type;
  napi_value backing;
  size_t byte_offset;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !int_arg(env, argv[0], &fd) || !int_arg(env, argv[1], &family) || (family != 4 && family != 6) ||
      napi_get_typedarray_info(env, argv[2], &type, &packet_bytes, &packets, &backing, &byte_offset) != napi_ok || type != napi_uint8_array ||
      napi_get_typedarray_info(env, argv[3], &type, &length_count, &lengths, &backing, &byte_offset) != napi_ok || type != napi_uint32_array ||
      napi_get_typedarray_info(env, argv[4], &type, &dst_bytes, &dsts, &backing, &byte_offset) != napi_ok || type != napi_uint8_array ||
      napi_get_value_uint32(env, argv[5], &count) != napi_ok ||
      napi_get_typedarray_info(env, argv[6], &type, &failure_count, &failure, &backing, &byte_offset) != napi_ok || type != napi_int32_array ||
      failure_count < 2) {
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
  uint32_t sent = 0;
  for (uint32_t next = 0; next < count;) {
    int n = sendmmsg(fd, messages + next, count - next, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      /* sendmmsg stops at the first packet it cannot send: count that one, and go on after it. */
      int error = n < 0 ? errno : EAGAIN;
      int32_t *f = (int32_t *)failure;
      f[0]++;
      f[1] = error;
      /* failure[2] counts the packets too big for their route, failure[3 + k] their indices. */
      if (error == EMSGSIZE && failure_count >= 3) {
        if ((size_t)f[2] + 3 < failure_count) f[3 + f[2]] = (int32_t)next;
        f[2]++;
      }
      next++;
      continue;
    }
    sent += (uint32_t)n;
    next += (uint32_t)n;
  }
  return make_int(env, (int32_t)sent);
}

static napi_value path_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t family;
  void *address;
  size_t address_bytes;
  napi_typedarray_type type;
  napi_value backing;
  size_t byte_offset;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !int_arg(env, argv[0], &family) || (family != 4 && family != 6) ||
      napi_get_typedarray_info(env, argv[1], &type, &address_bytes, &address, &backing, &byte_offset) != napi_ok ||
      type != napi_uint8_array || address_bytes < (family == 4 ? 4u : 16u)) {
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
