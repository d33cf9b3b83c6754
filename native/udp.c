/*
 * udp: a connected UDP socket that sends and receives datagrams in batches, for
 * src/io/udp-batch.ts (a shard worker's queries to the upstream resolver).
 *
 * Why our own addon rather than node:dgram: a relay's upstream traffic is one small datagram
 * each way per query, tens of thousands a second. node:dgram makes one system call per datagram
 * in each direction, allocates a Buffer and an address object for every datagram it receives,
 * and enters JavaScript once per datagram. Here `flush` sends every query queued during a turn of
 * the event loop with one sendmmsg(2), and a readable socket is drained with recvmmsg(2) into
 * slots of a buffer that JavaScript allocated once, with one call into JavaScript per batch.
 *
 *   open(address, port, receiveBufferBytes, recvSlots, recvLengths, sendBuffer, sendLengths,
 *        onDatagrams) -> handle
 *       a non-blocking socket connected to address:port, an IPv4 or IPv6 literal (so only the resolver's datagrams are
 *       received, from a random local port: RFC 5452 §9.2), polled by this thread's event loop.
 *       recvSlots is a Uint8Array of N slots of RECV_SLOT_BYTES; recvLengths a Uint32Array of N.
 *       onDatagrams(count) is called with the slots filled; a datagram longer than its slot
 *       is cut to the slot and its DNS TC bit set, so the relay fetches it again over TCP.
 *   flush(handle, count) -> datagrams sent, or -errno: sends the datagrams laid end to end in
 *       sendBuffer, of the lengths in sendLengths[0, count).
 *   close(handle)
 * Throws Error("<call>: <strerror>") when the socket cannot be made.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>

#include "napi_args.h"
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The largest batch either way: matches the slot arrays' length limit on the JavaScript side. */
#define MAX_BATCH 64
/* The DNS header's flags byte that holds TC (RFC 1035 §4.1.1). */
#define DNS_FLAGS_BYTE 2
#define DNS_TC_BIT 0x02

typedef struct {
  uv_poll_t poll;
  int fd;
  int closing;
  /* The JavaScript handle and the libuv handle: freed when both have let go. */
  int owners;
  napi_env env;
  napi_async_cleanup_hook_handle cleanup;
  napi_ref callback;
  napi_ref refs[2];
  napi_async_context async_context;
  uint8_t *recv_slots;
  size_t slot_bytes;
  uint32_t *recv_lengths;
  uint32_t recv_capacity;
  uint8_t *send_buffer;
  size_t send_bytes;
  uint32_t *send_lengths;
  uint32_t send_capacity;
} Udp;

static void release(Udp *u) {
  if (--u->owners == 0) free(u);
}

static void on_closed(uv_handle_t *handle) {
  Udp *u = (Udp *)handle->data;
  /* Node waits for this before it closes the event loop of an ending thread. */
  if (u->cleanup != NULL) napi_remove_async_cleanup_hook(u->cleanup);
  u->cleanup = NULL;
  release(u);
}

/* Stops polling and closes the socket; libuv lets go of the handle on a later turn. */
static void close_udp(Udp *u) {
  if (u->closing) return;
  u->closing = 1;
  uv_poll_stop(&u->poll);
  close(u->fd);
  uv_close((uv_handle_t *)&u->poll, on_closed);
}

/* A thread that ends without closing its socket (a worker that died): close it first. */
static void cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle;
  close_udp((Udp *)arg);
}

/* The JavaScript handle was collected: a socket nobody closed is closed now, before the
   buffers it receives into (held by the references below) can go. */
static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  Udp *u = (Udp *)data;
  close_udp(u);
  if (u->callback != NULL) napi_delete_reference(env, u->callback);
  for (int i = 0; i < 2; i++) {
    if (u->refs[i] != NULL) napi_delete_reference(env, u->refs[i]);
  }
  if (u->async_context != NULL) napi_async_destroy(env, u->async_context);
  u->callback = NULL;
  release(u);
}

static void on_readable(uv_poll_t *poll, int status, int events) {
  Udp *u = (Udp *)poll->data;
  (void)events;
  if (u->closing) return;
  if (status < 0) return;
  struct mmsghdr messages[MAX_BATCH];
  struct iovec vectors[MAX_BATCH];
  uint32_t n = u->recv_capacity < MAX_BATCH ? u->recv_capacity : MAX_BATCH;
  /* A bounded number of batches per wake-up, so that a flood cannot hold the event loop. */
  for (int round = 0; round < 4 && !u->closing; round++) {
    memset(messages, 0, sizeof(struct mmsghdr) * n);
    for (uint32_t i = 0; i < n; i++) {
      vectors[i].iov_base = u->recv_slots + (size_t)i * u->slot_bytes;
      vectors[i].iov_len = u->slot_bytes;
      messages[i].msg_hdr.msg_iov = &vectors[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(u->fd, messages, n, MSG_DONTWAIT, NULL);
    /* Nothing waiting, or an error: ECONNREFUSED is an ICMP port unreachable (the resolver
       restarting), whose queries time out. */
    if (received <= 0) return;
    for (int i = 0; i < received; i++) {
      uint32_t length = messages[i].msg_len;
      if (messages[i].msg_hdr.msg_flags & MSG_TRUNC) {
        /* Cut to the slot: to the relay, a truncated answer (slots hold more than the header). */
        length = (uint32_t)u->slot_bytes;
        ((uint8_t *)vectors[i].iov_base)[DNS_FLAGS_BYTE] |= DNS_TC_BIT;
      }
      u->recv_lengths[i] = length;
    }
    napi_env env = u->env;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value callback, global, count, result;
    if (napi_get_reference_value(env, u->callback, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok &&
        napi_create_uint32(env, (uint32_t)received, &count) == napi_ok) {
      /* make_callback: the callback runs as Node's own I/O callbacks do, with its microtasks after it. */
      if (napi_make_callback(env, u->async_context, global, callback, 1, &count, &result) == napi_pending_exception) {
        napi_value exception;
        napi_get_and_clear_last_exception(env, &exception);
        napi_fatal_exception(env, exception);
      }
    }
    napi_close_handle_scope(env, scope);
    if ((uint32_t)received < n) return;
  }
}

static napi_value throw_errno(napi_env env, const char *what, int error) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value open_udp(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  char host[64];
  int32_t port, receive_buffer_bytes;
  void *recv_slots, *recv_lengths, *send_buffer, *send_lengths;
  size_t recv_slot_bytes, recv_count, send_bytes, send_count;
  napi_valuetype callback_type;
  uint8_t address[16];
  int family = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 8 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, NULL) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || port <= 0 || port > 65535 ||
      napi_get_value_int32(env, argv[2], &receive_buffer_bytes) != napi_ok ||
      !typed_array(env, argv[3], napi_uint8_array, &recv_slots, &recv_slot_bytes) ||
      !typed_array(env, argv[4], napi_uint32_array, &recv_lengths, &recv_count) || recv_count == 0 ||
      recv_slot_bytes % recv_count != 0 || recv_slot_bytes / recv_count <= DNS_FLAGS_BYTE ||
      !typed_array(env, argv[5], napi_uint8_array, &send_buffer, &send_bytes) ||
      !typed_array(env, argv[6], napi_uint32_array, &send_lengths, &send_count) || send_count == 0 ||
      napi_typeof(env, argv[7], &callback_type) != napi_ok || callback_type != napi_function) {
    napi_throw_type_error(env, NULL, "open(address, port, receiveBufferBytes, recvSlots, recvLengths, sendBuffer, sendLengths, onDatagrams)");
    return NULL;
  }
  if (inet_pton(AF_INET, host, address) == 1) family = 4;
  else if (inet_pton(AF_INET6, host, address) == 1) family = 6;
  else return throw_errno(env, "open: not an IP address", EINVAL);
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_errno(env, "open", EINVAL);

  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  /* Answers come in bursts; the kernel caps this at net.core.rmem_max. */
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  int status;
  if (family == 4) {
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    memcpy(&to.sin_addr, address, 4);
    status = connect(fd, (struct sockaddr *)&to, sizeof to);
  } else {
    struct sockaddr_in6 to;
    memset(&to, 0, sizeof to);
    to.sin6_family = AF_INET6;
    to.sin6_port = htons((uint16_t)port);
    memcpy(&to.sin6_addr, address, 16);
    status = connect(fd, (struct sockaddr *)&to, sizeof to);
  }
  if (status != 0) {
    int error = errno;
    close(fd);
    return throw_errno(env, "connect", error);
  }

  Udp *u = calloc(1, sizeof *u);
  if (u == NULL) {
    close(fd);
    return throw_errno(env, "open", ENOMEM);
  }
  u->fd = fd;
  u->env = env;
  u->recv_slots = recv_slots;
  u->recv_capacity = (uint32_t)recv_count;
  u->slot_bytes = recv_slot_bytes / recv_count;
  u->recv_lengths = recv_lengths;
  u->send_buffer = send_buffer;
  u->send_bytes = send_bytes;
  u->send_lengths = send_lengths;
  u->send_capacity = (uint32_t)send_count;
  napi_value resource_name, handle;
  if (uv_poll_init_socket(loop, &u->poll, fd) != 0) {
    close(fd);
    free(u);
    return throw_errno(env, "uv_poll_init", EINVAL);
  }
  u->poll.data = u;
  u->owners = 1; /* the poll handle; the external below is the second */
  /* The poll callback writes to the receive slots and lengths: they must outlive any JavaScript
     object that drops them without closing. (flush only runs while its caller holds the rest.) */
  if (napi_create_reference(env, argv[7], 1, &u->callback) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &u->refs[0]) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &u->refs[1]) != napi_ok ||
      napi_create_string_utf8(env, "stateless-tcp:udp", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, NULL, resource_name, &u->async_context) != napi_ok ||
      napi_create_external(env, u, finalize, NULL, &handle) != napi_ok) {
    close_udp(u);
    return throw_errno(env, "open", EINVAL);
  }
  u->owners = 2;
  if (napi_add_async_cleanup_hook(env, cleanup_hook, u, &u->cleanup) != napi_ok ||
      uv_poll_start(&u->poll, UV_READABLE, on_readable) != 0) {
    close_udp(u);
    return throw_errno(env, "open", EINVAL);
  }
  return handle;
}

static Udp *udp_arg(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "not a udp handle");
    return NULL;
  }
  Udp *u = (Udp *)data;
  if (u->closing) {
    napi_throw_error(env, NULL, "udp socket already closed");
    return NULL;
  }
  return u;
}

static napi_value make_int(napi_env env, int32_t n) {
  napi_value value;
  napi_create_int32(env, n, &value);
  return value;
}

static napi_value flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_uint32(env, argv[1], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "flush(handle, count)");
    return NULL;
  }
  Udp *u = udp_arg(env, argv[0]);
  if (u == NULL) return NULL;
  if (count > u->send_capacity || count > MAX_BATCH) {
    napi_throw_range_error(env, NULL, "flush: more datagrams than the batch holds");
    return NULL;
  }
  struct mmsghdr messages[MAX_BATCH];
  struct iovec vectors[MAX_BATCH];
  memset(messages, 0, sizeof(struct mmsghdr) * count);
  size_t offset = 0;
  for (uint32_t i = 0; i < count; i++) {
    size_t length = u->send_lengths[i];
    if (offset + length > u->send_bytes) {
      napi_throw_range_error(env, NULL, "flush: datagrams beyond the send buffer");
      return NULL;
    }
    vectors[i].iov_base = u->send_buffer + offset;
    vectors[i].iov_len = length;
    messages[i].msg_hdr.msg_iov = &vectors[i];
    messages[i].msg_hdr.msg_iovlen = 1;
    offset += length;
  }
  uint32_t sent = 0;
  while (sent < count) {
    int n = sendmmsg(u->fd, messages + sent, count - sent, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* A full socket buffer or an ICMP error: the rest are lost, and the relay's resends recover them. */
      return make_int(env, sent > 0 ? (int32_t)sent : -errno);
    }
    sent += (uint32_t)n;
  }
  return make_int(env, (int32_t)sent);
}

static napi_value close_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    return NULL;
  }
  close_udp((Udp *)data);
  return NULL;
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"open", NULL, open_udp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flush", NULL, flush, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_socket, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
