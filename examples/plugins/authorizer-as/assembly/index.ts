// Bearer-token authorizer for Portico, in AssemblyScript, on the third-party
// SDK @gcoredev/proxy-wasm-sdk-as.
//
// Plugin config: "token=user" entries separated by commas or spaces. No
// bearer token: 401; unknown token: 403; good token: the request goes on with
// "x-portico-user: USER" and principal USER.
//
// Written for the request path (see README.md). The configuration lives in a
// RootContext, as the SDK has it. Requests need no state of their own, so
// the plugin exports its own stream callbacks instead of the SDK's, which
// create a Context object per request and build debug-log strings on every
// create, done, log and delete whatever the log level: about 25 allocations
// per request, more than the whole check costs. The check itself works on
// bytes: the header value stays the UTF-8 the host hands over, and the names,
// tokens and users are encoded once, at configuration.
export {
  malloc,
  proxy_abi_version_0_2_1,
  proxy_on_vm_start,
  proxy_on_configure,
} from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext,
  registerRootContext,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  send_local_response,
  makeHeaderPair,
  Headers,
  log,
  LogLevelValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import {
  ensureRootContext,
  get_header_map_value,
  replace_header_map_value,
  HeaderMapTypeValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly/runtime";
import { proxy_set_property } from "@gcoredev/proxy-wasm-sdk-as/assembly/imports";

const AUTHORIZATION = String.UTF8.encode("authorization");
const USER_HEADER = String.UTF8.encode("x-portico-user");
const BEARER = String.UTF8.encode("Bearer ");
const PRINCIPAL = String.UTF8.encode("portico.principal");

class Entry {
  constructor(public token: ArrayBuffer, public user: ArrayBuffer) {}
}

// The token table, filled by the root context's onConfigure.
const tokens = new Array<Entry>();

class AuthzRoot extends RootContext {
  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    tokens.length = 0;
    const text = this.getConfiguration().replaceAll(",", " ").replaceAll("\n", " ").replaceAll("\t", " ");
    const parts = text.split(" ");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (p.length == 0) continue;
      const eq = p.indexOf("=");
      if (eq <= 0 || eq == p.length - 1) {
        log(LogLevelValues.error, 'authorizer-as: config must be "token=user[, token=user...]"');
        return false;
      }
      tokens.push(new Entry(String.UTF8.encode(p.substring(0, eq)), String.UTF8.encode(p.substring(eq + 1))));
    }
    if (tokens.length == 0) {
      log(LogLevelValues.error, 'authorizer-as: config must be "token=user[, token=user...]"');
      return false;
    }
    return true;
  }
}

registerRootContext((context_id: u32) => {
  return new AuthzRoot(context_id);
}, "authorizer-as");

// bytesEqual reports whether a[from:] holds exactly the bytes of b.
function bytesEqual(a: ArrayBuffer, from: i32, b: ArrayBuffer): bool {
  const n = b.byteLength;
  return a.byteLength - from == n && memory.compare(changetype<usize>(a) + from, changetype<usize>(b), n) == 0;
}

export function proxy_on_context_create(context_id: u32, root_context_id: u32): void {
  if (root_context_id == 0) ensureRootContext(context_id); // requests keep no state
}

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): FilterHeadersStatusValues {
  const auth = get_header_map_value(HeaderMapTypeValues.RequestHeaders, AUTHORIZATION);
  const prefix = BEARER.byteLength;
  if (auth.byteLength <= prefix || memory.compare(changetype<usize>(auth), changetype<usize>(BEARER), prefix) != 0) {
    const h: Headers = [makeHeaderPair("content-type", "application/json"), makeHeaderPair("www-authenticate", "Bearer")];
    send_local_response(401, "", String.UTF8.encode('{"message":"Unauthorized"}'), h, GrpcStatusValues.Unknown);
    return FilterHeadersStatusValues.StopIteration;
  }
  for (let i = 0; i < tokens.length; i++) {
    const e = unchecked(tokens[i]);
    if (bytesEqual(auth, prefix, e.token)) {
      replace_header_map_value(HeaderMapTypeValues.RequestHeaders, USER_HEADER, e.user);
      // The SDK's set_property encodes its path on every call.
      proxy_set_property(changetype<usize>(PRINCIPAL), PRINCIPAL.byteLength, changetype<usize>(e.user), e.user.byteLength);
      return FilterHeadersStatusValues.Continue;
    }
  }
  const h: Headers = [makeHeaderPair("content-type", "application/json")];
  send_local_response(403, "", String.UTF8.encode('{"message":"Forbidden"}'), h, GrpcStatusValues.Unknown);
  return FilterHeadersStatusValues.StopIteration;
}
