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
 *   open(device, filter, snapLength, bufferBytes, frame, header) -> { handle, linkType }
 *       immediate mode (TPACKET_V3 would otherwise hold packets until a block fills), not
 *       promiscuous, BPF filter applied, non-blocking. Each packet is copied into `frame`
 *       (a Uint8Array of ≥ snapLength bytes) and its header into `header` (a Uint32Array of 4:
 *       tv_sec, tv_usec, caplen, len), both kept referenced until close. Throws Error(pcap's text).
 *   next(handle, timeoutMs) -> 1: a packet is in frame/header; 0: none within timeoutMs;
 *       -1: error (lastError(handle) says which)
 *   stats(handle) -> [received, dropped, interfaceDropped]      (pcap_stats)
 *   lastError(handle) -> string
 *   close(handle)
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  pcap_t *pcap;
  int fd;
  uint8_t *frame;
  size_t frame_bytes;
  uint32_t *header;
  napi_ref frame_ref;
  napi_ref header_ref;
} Capture;

static void release(napi_env env, Capture *c) {
  if (c->pcap != NULL) {
    pcap_close(c->pcap);
    c->pcap = NULL;
  }
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
  if (c->pcap == NULL) {
    napi_throw_error(env, NULL, "capture already closed");
    return NULL;
  }
  return c;
}

static int typed_array(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value backing;
  size_t offset;
  return napi_get_typedarray_info(env, value, &type, length, data, &backing, &offset) == napi_ok && type == want;
}

static napi_value throw_pcap(napi_env env, const char *what, const char *detail) {
  char message[PCAP_ERRBUF_SIZE + 64];
  snprintf(message, sizeof message, "%s: %s", what, detail);
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value open_capture(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  char device[256];
  size_t filter_length;
  int32_t snap_length, buffer_bytes;
  void *frame, *header;
  size_t frame_bytes, header_words;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_get_value_string_utf8(env, argv[0], device, sizeof device, NULL) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], NULL, 0, &filter_length) != napi_ok ||
      napi_get_value_int32(env, argv[2], &snap_length) != napi_ok ||
      napi_get_value_int32(env, argv[3], &buffer_bytes) != napi_ok ||
      !typed_array(env, argv[4], napi_uint8_array, &frame, &frame_bytes) ||
      !typed_array(env, argv[5], napi_uint32_array, &header, &header_words) || header_words < 4 ||
      snap_length <= 0 || frame_bytes < (size_t)snap_length) {
    napi_throw_type_error(env, NULL, "open(device, filter, snapLength, bufferBytes, frame, header)");
    return NULL;
  }
  char *filter = malloc(filter_length + 1);
  if (filter == NULL) return throw_pcap(env, "open", "out of memory");
  napi_get_value_string_utf8(env, argv[1], filter, filter_length + 1, NULL);

  char errbuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t *pcap = pcap_create(device, errbuf);
  if (pcap == NULL) {
    free(filter);
    return throw_pcap(env, "pcap_create", errbuf);
  }
  const char *failed = NULL;
  if (pcap_set_snaplen(pcap, snap_length) != 0) failed = "pcap_set_snaplen";
  else if (pcap_set_promisc(pcap, 0) != 0) failed = "pcap_set_promisc";
  else if (pcap_set_buffer_size(pcap, buffer_bytes) != 0) failed = "pcap_set_buffer_size";
  else if (pcap_set_immediate_mode(pcap, 1) != 0) failed = "pcap_set_immediate_mode";
  if (failed != NULL) {
    free(filter);
    pcap_close(pcap);
    return throw_pcap(env, failed, "rejected before activation");
  }
  int status = pcap_activate(pcap);
  if (status < 0) {
    // pcap_geterr has the detail for PCAP_ERROR; the others are described by pcap_statustostr.
    char detail[PCAP_ERRBUF_SIZE + 64];
    snprintf(detail, sizeof detail, "%s%s%s", pcap_statustostr(status), status == PCAP_ERROR ? ": " : "",
             status == PCAP_ERROR ? pcap_geterr(pcap) : "");
    free(filter);
    pcap_close(pcap);
    return throw_pcap(env, "pcap_activate", detail);
  }
  struct bpf_program program;
  if (pcap_compile(pcap, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    char detail[PCAP_ERRBUF_SIZE];
    snprintf(detail, sizeof detail, "%s", pcap_geterr(pcap));
    free(filter);
    pcap_close(pcap);
    return throw_pcap(env, "pcap_compile", detail);
  }
  free(filter);
  status = pcap_setfilter(pcap, &program);
  pcap_freecode(&program);
  if (status != 0 || pcap_setnonblock(pcap, 1, errbuf) != 0) {
    char detail[PCAP_ERRBUF_SIZE];
    snprintf(detail, sizeof detail, "%s", status != 0 ? pcap_geterr(pcap) : errbuf);
    pcap_close(pcap);
    return throw_pcap(env, status != 0 ? "pcap_setfilter" : "pcap_setnonblock", detail);
  }
  int fd = pcap_get_selectable_fd(pcap);
  if (fd < 0) {
    pcap_close(pcap);
    return throw_pcap(env, "pcap_get_selectable_fd", "no descriptor to wait on");
  }

  Capture *c = calloc(1, sizeof *c);
  if (c == NULL) {
    pcap_close(pcap);
    return throw_pcap(env, "open", "out of memory");
  }
  c->pcap = pcap;
  c->fd = fd;
  c->frame = frame;
  c->frame_bytes = frame_bytes;
  c->header = header;
  napi_value handle, link_type, result;
  if (napi_create_reference(env, argv[4], 1, &c->frame_ref) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &c->header_ref) != napi_ok ||
      napi_create_external(env, c, finalize, NULL, &handle) != napi_ok) {
    release(env, c);
    free(c);
    return throw_pcap(env, "open", "cannot make the handle");
  }
  if (napi_create_int32(env, pcap_datalink(pcap), &link_type) != napi_ok || napi_create_object(env, &result) != napi_ok ||
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
    struct pcap_pkthdr *header;
    const u_char *data;
    int status = pcap_next_ex(c->pcap, &header, &data);
    if (status == 1) {
      size_t n = header->caplen < c->frame_bytes ? header->caplen : c->frame_bytes;
      memcpy(c->frame, data, n);
      c->header[0] = (uint32_t)header->ts.tv_sec;
      c->header[1] = (uint32_t)header->ts.tv_usec;
      c->header[2] = (uint32_t)n;
      c->header[3] = header->len;
      return int_result(env, 1);
    }
    if (status < 0) return int_result(env, -1);
    if (waited) return int_result(env, 0);
    struct pollfd ready = {.fd = c->fd, .events = POLLIN, .revents = 0};
    if (poll(&ready, 1, timeout_ms) < 0 && errno != EINTR) return int_result(env, -1);
  }
}

static napi_value stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  Capture *c = capture_arg(env, argv[0]);
  if (c == NULL) return NULL;
  struct pcap_stat s;
  memset(&s, 0, sizeof s);
  pcap_stats(c->pcap, &s);
  napi_value result, value;
  napi_create_array_with_length(env, 3, &result);
  const uint32_t numbers[3] = {s.ps_recv, s.ps_drop, s.ps_ifdrop};
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_uint32(env, numbers[i], &value);
    napi_set_element(env, result, i, value);
  }
  return result;
}

static napi_value last_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  Capture *c = capture_arg(env, argv[0]);
  if (c == NULL) return NULL;
  napi_value text;
  napi_create_string_utf8(env, pcap_geterr(c->pcap), NAPI_AUTO_LENGTH, &text);
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

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"open", NULL, open_capture, NULL, NULL, NULL, napi_enumerable, NULL},
      {"next", NULL, next_packet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lastError", NULL, last_error, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_capture, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
