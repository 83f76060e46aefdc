/*
 * proxy_wasm.h: proxy-wasm ABI v0.2.1 for C and C++ guests.
 *
 * Build (Debian: clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32):
 *   clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -mexec-model=reactor \
 *     -Wl,--strip-all -I sdk/c -o plugin.wasm plugin.c
 * C++: add -fno-exceptions (and libc++-19-dev-wasm32 libc++abi-19-dev-wasm32).
 *
 * In exactly one source file, define PROXY_WASM_IMPLEMENTATION before
 * including this header: it emits the ABI version marker, the memory
 * allocator the host uses to hand data to the plugin, and the helpers.
 * Callbacks are plain functions exported with PROXY_WASM_EXPORT, e.g.
 *
 *   PROXY_WASM_EXPORT(proxy_on_request_headers)
 *   uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) { ... }
 *
 * Buffers returned by the host (pw_get_* helpers) are malloc'd: free() them.
 */
#ifndef PROXY_WASM_H
#define PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROXY_WASM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PROXY_WASM_EXPORT(name) __attribute__((export_name(#name)))

/* proxy_status_t */
enum {
  PW_OK = 0, PW_NOT_FOUND = 1, PW_BAD_ARGUMENT = 2, PW_SERIALIZATION_FAILURE = 3,
  PW_PARSE_FAILURE = 4, PW_INVALID_MEMORY_ACCESS = 6, PW_EMPTY = 7, PW_CAS_MISMATCH = 8,
  PW_INTERNAL_FAILURE = 10, PW_UNIMPLEMENTED = 12
};
/* proxy_action_t */
enum { PW_CONTINUE = 0, PW_PAUSE = 1 };
/* proxy_log_level_t */
enum { PW_TRACE = 0, PW_DEBUG = 1, PW_INFO = 2, PW_WARN = 3, PW_ERROR = 4, PW_CRITICAL = 5 };
/* proxy_buffer_type_t */
enum {
  PW_REQUEST_BODY = 0, PW_RESPONSE_BODY = 1, PW_DOWNSTREAM_DATA = 2, PW_UPSTREAM_DATA = 3,
  PW_HTTP_CALL_RESPONSE_BODY = 4, PW_GRPC_MESSAGE = 5, PW_VM_CONFIGURATION = 6,
  PW_PLUGIN_CONFIGURATION = 7, PW_FOREIGN_FUNCTION_ARGUMENTS = 8
};
/* proxy_map_type_t */
enum {
  PW_REQUEST_HEADERS = 0, PW_REQUEST_TRAILERS = 1, PW_RESPONSE_HEADERS = 2, PW_RESPONSE_TRAILERS = 3,
  PW_GRPC_INITIAL_METADATA = 4, PW_GRPC_TRAILING_METADATA = 5, PW_HTTP_CALL_RESPONSE_HEADERS = 6,
  PW_HTTP_CALL_RESPONSE_TRAILERS = 7
};
/* proxy_stream_type_t */
enum { PW_STREAM_REQUEST = 0, PW_STREAM_RESPONSE = 1, PW_STREAM_DOWNSTREAM = 2, PW_STREAM_UPSTREAM = 3 };
/* proxy_metric_type_t */
enum { PW_COUNTER = 0, PW_GAUGE = 1, PW_HISTOGRAM = 2 };

/* Host functions (all of ABI v0.2.1). */
PROXY_WASM_IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char *msg, size_t size);
PROXY_WASM_IMPORT(proxy_get_log_level) uint32_t proxy_get_log_level(uint32_t *level);
PROXY_WASM_IMPORT(proxy_get_current_time_nanoseconds) uint32_t proxy_get_current_time_nanoseconds(uint64_t *ns);
PROXY_WASM_IMPORT(proxy_set_tick_period_milliseconds) uint32_t proxy_set_tick_period_milliseconds(uint32_t ms);
PROXY_WASM_IMPORT(proxy_get_buffer_bytes) uint32_t proxy_get_buffer_bytes(uint32_t type, size_t start, size_t max, char **ptr, size_t *size);
PROXY_WASM_IMPORT(proxy_get_buffer_status) uint32_t proxy_get_buffer_status(uint32_t type, size_t *size, uint32_t *flags);
PROXY_WASM_IMPORT(proxy_set_buffer_bytes) uint32_t proxy_set_buffer_bytes(uint32_t type, size_t start, size_t size, const char *data, size_t data_size);
PROXY_WASM_IMPORT(proxy_get_header_map_size) uint32_t proxy_get_header_map_size(uint32_t type, size_t *size);
PROXY_WASM_IMPORT(proxy_get_header_map_pairs) uint32_t proxy_get_header_map_pairs(uint32_t type, char **ptr, size_t *size);
PROXY_WASM_IMPORT(proxy_set_header_map_pairs) uint32_t proxy_set_header_map_pairs(uint32_t type, const char *ptr, size_t size);
PROXY_WASM_IMPORT(proxy_get_header_map_value) uint32_t proxy_get_header_map_value(uint32_t type, const char *key, size_t key_size, char **value, size_t *value_size);
PROXY_WASM_IMPORT(proxy_add_header_map_value) uint32_t proxy_add_header_map_value(uint32_t type, const char *key, size_t key_size, const char *value, size_t value_size);
PROXY_WASM_IMPORT(proxy_replace_header_map_value) uint32_t proxy_replace_header_map_value(uint32_t type, const char *key, size_t key_size, const char *value, size_t value_size);
PROXY_WASM_IMPORT(proxy_remove_header_map_value) uint32_t proxy_remove_header_map_value(uint32_t type, const char *key, size_t key_size);
PROXY_WASM_IMPORT(proxy_continue_stream) uint32_t proxy_continue_stream(uint32_t stream);
PROXY_WASM_IMPORT(proxy_close_stream) uint32_t proxy_close_stream(uint32_t stream);
PROXY_WASM_IMPORT(proxy_get_status) uint32_t proxy_get_status(uint32_t *code, char **msg, size_t *msg_size);
PROXY_WASM_IMPORT(proxy_send_local_response) uint32_t proxy_send_local_response(uint32_t status, const char *details, size_t details_size,
    const char *body, size_t body_size, const char *headers, size_t headers_size, int32_t grpc_status);
PROXY_WASM_IMPORT(proxy_http_call) uint32_t proxy_http_call(const char *upstream, size_t upstream_size, const char *headers, size_t headers_size,
    const char *body, size_t body_size, const char *trailers, size_t trailers_size, uint32_t timeout_ms, uint32_t *token);
PROXY_WASM_IMPORT(proxy_grpc_call) uint32_t proxy_grpc_call(const char *up, size_t up_size, const char *svc, size_t svc_size, const char *method, size_t method_size,
    const char *md, size_t md_size, const char *msg, size_t msg_size, uint32_t timeout_ms, uint32_t *token);
PROXY_WASM_IMPORT(proxy_grpc_stream) uint32_t proxy_grpc_stream(const char *up, size_t up_size, const char *svc, size_t svc_size, const char *method, size_t method_size,
    const char *md, size_t md_size, uint32_t *token);
PROXY_WASM_IMPORT(proxy_grpc_send) uint32_t proxy_grpc_send(uint32_t token, const char *msg, size_t size, uint32_t end_stream);
PROXY_WASM_IMPORT(proxy_grpc_cancel) uint32_t proxy_grpc_cancel(uint32_t token);
PROXY_WASM_IMPORT(proxy_grpc_close) uint32_t proxy_grpc_close(uint32_t token);
PROXY_WASM_IMPORT(proxy_get_shared_data) uint32_t proxy_get_shared_data(const char *key, size_t key_size, char **value, size_t *value_size, uint32_t *cas);
PROXY_WASM_IMPORT(proxy_set_shared_data) uint32_t proxy_set_shared_data(const char *key, size_t key_size, const char *value, size_t value_size, uint32_t cas);
PROXY_WASM_IMPORT(proxy_register_shared_queue) uint32_t proxy_register_shared_queue(const char *name, size_t name_size, uint32_t *id);
PROXY_WASM_IMPORT(proxy_resolve_shared_queue) uint32_t proxy_resolve_shared_queue(const char *vm, size_t vm_size, const char *name, size_t name_size, uint32_t *id);
PROXY_WASM_IMPORT(proxy_enqueue_shared_queue) uint32_t proxy_enqueue_shared_queue(uint32_t id, const char *value, size_t size);
PROXY_WASM_IMPORT(proxy_dequeue_shared_queue) uint32_t proxy_dequeue_shared_queue(uint32_t id, char **value, size_t *size);
PROXY_WASM_IMPORT(proxy_define_metric) uint32_t proxy_define_metric(uint32_t type, const char *name, size_t name_size, uint32_t *id);
PROXY_WASM_IMPORT(proxy_increment_metric) uint32_t proxy_increment_metric(uint32_t id, int64_t delta);
PROXY_WASM_IMPORT(proxy_record_metric) uint32_t proxy_record_metric(uint32_t id, uint64_t value);
PROXY_WASM_IMPORT(proxy_get_metric) uint32_t proxy_get_metric(uint32_t id, uint64_t *value);
PROXY_WASM_IMPORT(proxy_get_property) uint32_t proxy_get_property(const char *path, size_t path_size, char **value, size_t *value_size);
PROXY_WASM_IMPORT(proxy_set_property) uint32_t proxy_set_property(const char *path, size_t path_size, const char *value, size_t value_size);
PROXY_WASM_IMPORT(proxy_set_effective_context) uint32_t proxy_set_effective_context(uint32_t ctx);
PROXY_WASM_IMPORT(proxy_done) uint32_t proxy_done(void);
PROXY_WASM_IMPORT(proxy_call_foreign_function) uint32_t proxy_call_foreign_function(const char *name, size_t name_size, const char *args, size_t args_size,
    char **result, size_t *result_size);

/* A byte string owned by the caller (free data with free()). */
typedef struct { char *data; size_t size; } pw_bytes;

/* A string literal as the (pointer, size) pair the host functions take:
 *   proxy_replace_header_map_value(PW_REQUEST_HEADERS, PW_LIT("x-user"), v, n);
 * Sizes known at compile time spare the plugin a strlen per call. */
#define PW_LIT(s) ("" s ""), (sizeof(s) - 1)

/* A header for pw_send_local_response / pw_http_call. */
typedef struct { const char *key; const char *value; } pw_header;

/* Helpers (defined with PROXY_WASM_IMPLEMENTATION). */
void pw_log(uint32_t level, const char *msg);
/* Returns the plugin configuration; free .data. */
pw_bytes pw_plugin_config(void);
/* Returns a header's value, or {NULL, 0} when absent; free .data. */
pw_bytes pw_get_header(uint32_t map, const char *name);
uint32_t pw_add_header(uint32_t map, const char *name, const char *value);
uint32_t pw_replace_header(uint32_t map, const char *name, const char *value);
uint32_t pw_remove_header(uint32_t map, const char *name);
/* Serialises n headers in the ABI's map format; free .data. */
pw_bytes pw_serialize_headers(const pw_header *h, size_t n);
uint32_t pw_send_local_response(uint32_t status, const char *body, const pw_header *h, size_t n);
/* path is dotted ("request.path"); returns {NULL,0} when absent. */
pw_bytes pw_get_property(const char *path);
uint32_t pw_set_property(const char *path, const char *value, size_t size);
/* Returns a buffer's bytes (request or response body, call response). */
pw_bytes pw_get_buffer(uint32_t type, size_t start, size_t max);
uint32_t pw_http_call(const char *upstream, const pw_header *h, size_t n, const char *body, size_t body_size,
                      uint32_t timeout_ms, uint32_t *token);

#ifdef PROXY_WASM_IMPLEMENTATION

PROXY_WASM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PROXY_WASM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
  return malloc(size ? size : 1);
}

void pw_log(uint32_t level, const char *msg) { proxy_log(level, msg, strlen(msg)); }

pw_bytes pw_get_buffer(uint32_t type, size_t start, size_t max) {
  pw_bytes b = {NULL, 0};
  if (proxy_get_buffer_bytes(type, start, max, &b.data, &b.size) != PW_OK) {
    b.data = NULL;
    b.size = 0;
  }
  return b;
}

pw_bytes pw_plugin_config(void) {
  size_t size = 0;
  uint32_t flags = 0;
  if (proxy_get_buffer_status(PW_PLUGIN_CONFIGURATION, &size, &flags) != PW_OK) {
    pw_bytes none = {NULL, 0};
    return none;
  }
  return pw_get_buffer(PW_PLUGIN_CONFIGURATION, 0, size);
}

pw_bytes pw_get_header(uint32_t map, const char *name) {
  pw_bytes b = {NULL, 0};
  if (proxy_get_header_map_value(map, name, strlen(name), &b.data, &b.size) != PW_OK) {
    b.data = NULL;
    b.size = 0;
  }
  return b;
}

uint32_t pw_add_header(uint32_t map, const char *name, const char *value) {
  return proxy_add_header_map_value(map, name, strlen(name), value, strlen(value));
}

uint32_t pw_replace_header(uint32_t map, const char *name, const char *value) {
  return proxy_replace_header_map_value(map, name, strlen(name), value, strlen(value));
}

uint32_t pw_remove_header(uint32_t map, const char *name) {
  return proxy_remove_header_map_value(map, name, strlen(name));
}

static void pw_put_u32(char *p, uint32_t v) {
  p[0] = (char)(v & 0xff);
  p[1] = (char)((v >> 8) & 0xff);
  p[2] = (char)((v >> 16) & 0xff);
  p[3] = (char)((v >> 24) & 0xff);
}

pw_bytes pw_serialize_headers(const pw_header *h, size_t n) {
  size_t size = 4 + 8 * n;
  for (size_t i = 0; i < n; i++) size += strlen(h[i].key) + strlen(h[i].value) + 2;
  pw_bytes b = {(char *)malloc(size), size};
  if (!b.data) {
    b.size = 0;
    return b;
  }
  pw_put_u32(b.data, (uint32_t)n);
  char *p = b.data + 4;
  for (size_t i = 0; i < n; i++) {
    pw_put_u32(p, (uint32_t)strlen(h[i].key));
    pw_put_u32(p + 4, (uint32_t)strlen(h[i].value));
    p += 8;
  }
  for (size_t i = 0; i < n; i++) {
    size_t kl = strlen(h[i].key), vl = strlen(h[i].value);
    memcpy(p, h[i].key, kl);
    p[kl] = 0;
    p += kl + 1;
    memcpy(p, h[i].value, vl);
    p[vl] = 0;
    p += vl + 1;
  }
  return b;
}

uint32_t pw_send_local_response(uint32_t status, const char *body, const pw_header *h, size_t n) {
  pw_bytes hs = pw_serialize_headers(h, n);
  uint32_t r = proxy_send_local_response(status, "", 0, body, body ? strlen(body) : 0, hs.data, hs.size, -1);
  free(hs.data);
  return r;
}

pw_bytes pw_get_property(const char *path) {
  /* Paths travel NUL-separated: "request.path" -> "request\0path". */
  size_t n = strlen(path);
  char *p = (char *)malloc(n + 1);
  pw_bytes b = {NULL, 0};
  if (!p) return b;
  for (size_t i = 0; i < n; i++) p[i] = path[i] == '.' ? 0 : path[i];
  if (proxy_get_property(p, n, &b.data, &b.size) != PW_OK) {
    b.data = NULL;
    b.size = 0;
  }
  free(p);
  return b;
}

uint32_t pw_set_property(const char *path, const char *value, size_t size) {
  return proxy_set_property(path, strlen(path), value, size);
}

uint32_t pw_http_call(const char *upstream, const pw_header *h, size_t n, const char *body, size_t body_size,
                      uint32_t timeout_ms, uint32_t *token) {
  pw_bytes hs = pw_serialize_headers(h, n);
  uint32_t r = proxy_http_call(upstream, strlen(upstream), hs.data, hs.size, body, body_size, NULL, 0, timeout_ms, token);
  free(hs.data);
  return r;
}

#endif /* PROXY_WASM_IMPLEMENTATION */

#ifdef __cplusplus
}
#endif
#endif /* PROXY_WASM_H */
