/*
 * Bearer-token authorizer for Portico, in C.
 *
 * Plugin config: a string of "token=user" entries separated by commas or
 * spaces, e.g. "s3cr3t=alice, t0ken=bob". A request without a bearer token
 * gets a 401, one with an unknown token a 403, both with a JSON body; a good
 * token lets the request through with "x-portico-user: USER" added and the
 * principal set to USER.
 *
 * Written for the request path: it exports only the callbacks it uses (the
 * host calls no other, and each callback is a trip into the VM), keeps the
 * tokens with their lengths so that a request costs no strlen, and hands the
 * host sizes it knows at compile time (PW_LIT).
 */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

#define MAX_TOKENS 64
#define BEARER "Bearer "

static struct {
  char *token, *user;
  size_t token_len, user_len;
} tokens[MAX_TOKENS];
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
    tokens[ntokens].token_len = tl;
    tokens[ntokens].user = strndup(eq + 1, ul);
    tokens[ntokens].user_len = ul;
    ntokens++;
  }
  return ntokens > 0;
}

/* Every context starts here; this plugin keeps no state per request. */
PROXY_WASM_EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t ctx, uint32_t parent) { (void)ctx; (void)parent; }

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
  const size_t bl = sizeof BEARER - 1;
  if (auth.size <= bl || memcmp(auth.data, BEARER, bl) != 0) {
    free(auth.data);
    pw_send_local_response(401, "{\"message\":\"Unauthorized\"}", json_headers, 2);
    return PW_PAUSE;
  }
  const char *tok = auth.data + bl;
  size_t tl = auth.size - bl;
  for (int i = 0; i < ntokens; i++) {
    if (tokens[i].token_len == tl && memcmp(tokens[i].token, tok, tl) == 0) {
      free(auth.data);
      proxy_replace_header_map_value(PW_REQUEST_HEADERS, PW_LIT("x-portico-user"), tokens[i].user, tokens[i].user_len);
      proxy_set_property(PW_LIT("portico.principal"), tokens[i].user, tokens[i].user_len);
      return PW_CONTINUE;
    }
  }
  free(auth.data);
  pw_send_local_response(403, "{\"message\":\"Forbidden\"}", json_headers, 1);
  return PW_PAUSE;
}
