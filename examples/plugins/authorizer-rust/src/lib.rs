//! Bearer-token authorizer for Portico, in Rust.
//!
//! Plugin config: "token=user" entries separated by commas or spaces. No
//! bearer token: 401; unknown token: 403; good token: the request goes on with
//! "x-portico-user: USER" and principal USER.

use portico_proxy_wasm::{self as pw, Action, HttpContext, LogLevel, RootContext};
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Default)]
struct Root {
    tokens: Rc<HashMap<String, String>>,
}

impl RootContext for Root {
    fn on_configure(&mut self, config: Vec<u8>) -> bool {
        let text = String::from_utf8_lossy(&config);
        let mut tokens = HashMap::new();
        for entry in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((t, u)) if !t.is_empty() && !u.is_empty() => {
                    tokens.insert(t.to_string(), u.to_string());
                }
                _ => {
                    pw::log(LogLevel::Error, "authorizer-rust: config must be \"token=user[, token=user...]\"");
                    return false;
                }
            }
        }
        if tokens.is_empty() {
            pw::log(LogLevel::Error, "authorizer-rust: config must be \"token=user[, token=user...]\"");
            return false;
        }
        self.tokens = Rc::new(tokens);
        true
    }

    fn create_http_context(&self, _id: u32) -> Box<dyn HttpContext> {
        Box::new(Authz { tokens: self.tokens.clone() })
    }
}

struct Authz {
    tokens: Rc<HashMap<String, String>>,
}

const JSON: (&str, &str) = ("content-type", "application/json");

impl HttpContext for Authz {
    fn on_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let auth = pw::get_request_header("authorization").unwrap_or_default();
        let token = match auth.strip_prefix("Bearer ") {
            Some(t) if !t.is_empty() => t,
            _ => {
                let _ = pw::send_local_response(401, &[JSON, ("www-authenticate", "Bearer")], b"{\"message\":\"Unauthorized\"}");
                return Action::Pause;
            }
        };
        match self.tokens.get(token) {
            Some(user) => {
                let _ = pw::set_request_header("x-portico-user", user);
                let _ = pw::set_property("portico.principal", user.as_bytes());
                Action::Continue
            }
            None => {
                let _ = pw::send_local_response(403, &[JSON], b"{\"message\":\"Forbidden\"}");
                Action::Pause
            }
        }
    }
}

pw::plugin!(|_id| Box::new(Root::default()));
