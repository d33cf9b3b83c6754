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
 * Three functions, all synchronous:
 *   open(family 4|6)                          -> fd; throws Error("socket: <strerror>")
 *   send(fd, family, packet, length, dstAddr) -> bytes sent, or -errno (never throws: a full
 *                                                socket buffer is a dropped packet, not an
 *                                                exception on the hot path)
 *   close(fd)
 *   errorName(errno)                          -> strerror text, for counters and logs
 *
 * IPPROTO_RAW implies IP_HDRINCL (raw(7)); for AF_INET6 Linux sets it the same way, so the
 * kernel sends our IP header as written. Such a socket is never handed incoming packets.
 * The socket is non-blocking: a thread must never sleep in sendto(2) while its flows wait.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
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
  if (fd < 0) {
    char message[160];
    snprintf(message, sizeof message, "socket: %s", strerror(errno));
    napi_throw_error(env, errno == EPERM || errno == EACCES ? "EPERM" : NULL, message);
    return NULL;
  }
  return make_int(env, fd);
}

static napi_value send_packet(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t fd, family, length;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !int_arg(env, argv[0], &fd) || !int_arg(env, argv[1], &family) || !int_arg(env, argv[3], &length)) {
    napi_throw_type_error(env, NULL, "send(fd, family, packet, length, dst)");
    return NULL;
  }
  void *packet;
  size_t packet_bytes;
  void *dst;
  size_t dst_bytes;
  napi_typedarray_type type;
  napi_value backing;
  size_t byte_offset;
  if (napi_get_typedarray_info(env, argv[2], &type, &packet_bytes, &packet, &backing, &byte_offset) != napi_ok ||
      type != napi_uint8_array ||
      napi_get_typedarray_info(env, argv[4], &type, &dst_bytes, &dst, &backing, &byte_offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "send: packet and dst are Uint8Arrays");
    return NULL;
  }
  if (length < 0 || (size_t)length > packet_bytes || dst_bytes < (family == 4 ? 4u : 16u)) {
    napi_throw_range_error(env, NULL, "send: length beyond the packet, or a short address");
    return NULL;
  }

  ssize_t sent;
  if (family == 4) {
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    memcpy(&to.sin_addr, dst, 4);
    sent = sendto(fd, packet, (size_t)length, 0, (const struct sockaddr *)&to, sizeof to);
  } else {
    // sin6_port 0: for a raw socket it would name the protocol, and 0 means the socket's own.
    struct sockaddr_in6 to;
    memset(&to, 0, sizeof to);
    to.sin6_family = AF_INET6;
    memcpy(&to.sin6_addr, dst, 16);
    sent = sendto(fd, packet, (size_t)length, 0, (const struct sockaddr *)&to, sizeof to);
  }
  return make_int(env, sent < 0 ? -errno : (int32_t)sent);
}

static napi_value close_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc >= 1 && int_arg(env, argv[0], &fd) && fd >= 0) close(fd);
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
      {"send", NULL, send_packet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"errorName", NULL, error_name, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
