// Bearer-token authorizer for Portico, in AssemblyScript, on the third-party
// SDK @gcoredev/proxy-wasm-sdk-as.
//
// Plugin config: "token=user" entries separated by commas or spaces. No
// bearer token: 401; unknown token: 403; good token: the request goes on with
// "x-portico-user: USER" and principal USER.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  stream_context,
  send_local_response,
  set_property,
  makeHeaderPair,
  Headers,
  log,
  LogLevelValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class AuthzRoot extends RootContext {
  tokens: Map<string, string> = new Map<string, string>();

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
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
      this.tokens.set(p.substring(0, eq), p.substring(eq + 1));
    }
    if (this.tokens.size == 0) {
      log(LogLevelValues.error, 'authorizer-as: config must be "token=user[, token=user...]"');
      return false;
    }
    return true;
  }

  createContext(context_id: u32): Context {
    return new Authz(context_id, this);
  }
}

class Authz extends Context {
  root: AuthzRoot;

  constructor(context_id: u32, root: AuthzRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const auth = stream_context.headers.request.get("authorization");
    if (!auth.startsWith("Bearer ") || auth.length <= 7) {
      const h: Headers = [makeHeaderPair("content-type", "application/json"), makeHeaderPair("www-authenticate", "Bearer")];
      send_local_response(401, "", String.UTF8.encode('{"message":"Unauthorized"}'), h, GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    const token = auth.substring(7);
    if (!this.root.tokens.has(token)) {
      const h: Headers = [makeHeaderPair("content-type", "application/json")];
      send_local_response(403, "", String.UTF8.encode('{"message":"Forbidden"}'), h, GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    const user = this.root.tokens.get(token);
    stream_context.headers.request.replace("x-portico-user", user);
    set_property("portico.principal", String.UTF8.encode(user));
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new AuthzRoot(context_id);
}, "authorizer-as");
