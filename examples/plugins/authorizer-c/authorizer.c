/*
 * Bearer-token authorizer for Portico, in C.
 *
 * Plugin config: a string of "token=user" entries separated by commas or
 * spaces, e.g. "s3cr3t=alice, t0ken=bob". A request without a bearer token
 * gets a 401, one with an unknown token a 403, both with a JSON body; a good
 * token lets the request through with "x-portico-user: USER" added and the
 * principal set to USER.
 */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

#define MAX_TOKENS 64

static struct { char *token; char *user; } tokens[MAX_TOKENS];
static int ntokens;

static int is_sep(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Parses "a=b, c=d" into the token table. Returns 0 when nothing usable. */
static int parse_config(const char *s, size_t n) {
  ntokens = 0;
  size_t i = 0;
  while (i < n && ntokens < MAX_TOKENS) {
    while (i < n && is_sep(s[i])) i++;
    size_t start = i;
    while (i < n && !is_sep(s[i])) i++;
    if (i == start) break;
    const char *eq = memchr(s + start, '=', i - start);
    if (!eq || eq == s + start || eq == s + i - 1) return 0;
    size_t tl = (size_t)(eq - (s + start)), ul = i - start - tl - 1;
    tokens[ntokens].token = strndup(s + start, tl);
    tokens[ntokens].user = strndup(eq + 1, ul);
    ntokens++;
  }
  return ntokens > 0;
}

PROXY_WASM_EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t ctx, uint32_t parent) { (void)ctx; (void)parent; }

PROXY_WASM_EXPORT(proxy_on_vm_start)
uint32_t proxy_on_vm_start(uint32_t ctx, uint32_t size) { (void)ctx; (void)size; return 1; }

PROXY_WASM_EXPORT(proxy_on_configure)
uint32_t proxy_on_configure(uint32_t ctx, uint32_t size) {
  (void)ctx;
  pw_bytes cfg = pw_get_buffer(PW_PLUGIN_CONFIGURATION, 0, size);
  int ok = cfg.data && parse_config(cfg.data, cfg.size);
  free(cfg.data);
  if (!ok) pw_log(PW_ERROR, "authorizer-c: config must be \"token=user[, token=user...]\"");
  return ok;
}

static const pw_header json_headers[] = {
    {"content-type", "application/json"},
    {"www-authenticate", "Bearer"},
};

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
  (void)ctx; (void)n; (void)eos;
  pw_bytes auth = pw_get_header(PW_REQUEST_HEADERS, "authorization");
  if (!auth.data || auth.size <= 7 || strncmp(auth.data, "Bearer ", 7) != 0) {
    free(auth.data);
    pw_send_local_response(401, "{\"message\":\"Unauthorized\"}", json_headers, 2);
    return PW_PAUSE;
  }
  const char *tok = auth.data + 7;
  size_t tl = auth.size - 7;
  for (int i = 0; i < ntokens; i++) {
    if (strlen(tokens[i].token) == tl && memcmp(tokens[i].token, tok, tl) == 0) {
      free(auth.data);
      pw_replace_header(PW_REQUEST_HEADERS, "x-portico-user", tokens[i].user);
      pw_set_property("portico.principal", tokens[i].user, strlen(tokens[i].user));
      return PW_CONTINUE;
    }
  }
  free(auth.data);
  pw_send_local_response(403, "{\"message\":\"Forbidden\"}", json_headers, 1);
  return PW_PAUSE;
}

PROXY_WASM_EXPORT(proxy_on_done)
uint32_t proxy_on_done(uint32_t ctx) { (void)ctx; return 1; }

PROXY_WASM_EXPORT(proxy_on_delete)
void proxy_on_delete(uint32_t ctx) { (void)ctx; }
