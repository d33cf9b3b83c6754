/*
 * What the three addons (capture.c, raw_send.c, udp.c) share to read their arguments.
 */
#ifndef STATELESS_TCP_NAPI_ARGS_H
#define STATELESS_TCP_NAPI_ARGS_H

#include <node_api.h>
#include <stddef.h>

/* Whether `value` is a typed array of type `want`: then its bytes and its length in elements. */
static inline int typed_array(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value backing;
  size_t offset;
  return napi_get_typedarray_info(env, value, &type, length, data, &backing, &offset) == napi_ok && type == want;
}

#endif
