//! proxy-wasm ABI v0.2.1 guest SDK for Portico plugins, std only.
//!
//! A plugin is a `cdylib` crate that declares its root context with
//! [`plugin!`]:
//!
//! ```ignore
//! portico_proxy_wasm::plugin!(|_id| Box::new(MyRoot::default()));
//! ```
//!
//! Build it with Debian's toolchain (`apt-get install rustc cargo
//! libstd-rust-dev-wasm32`), offline: `cargo build --release --target
//! wasm32-wasi`.

use std::cell::RefCell;
use std::collections::HashMap;

pub mod hostcalls;

pub use hostcalls::*;

/// What a stream callback tells the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pass the request or response on.
    Continue = 0,
    /// Hold it until `continue_request`/`send_local_response`.
    Pause = 1,
}

/// Log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// A plugin's root context: configuration and the factory of HTTP contexts.
pub trait RootContext {
    fn on_vm_start(&mut self, _vm_config: Vec<u8>) -> bool {
        true
    }
    fn on_configure(&mut self, _config: Vec<u8>) -> bool {
        true
    }
    fn on_tick(&mut self) {}
    fn on_queue_ready(&mut self, _queue_id: u32) {}
    fn create_http_context(&self, context_id: u32) -> Box<dyn HttpContext>;
}

/// One request and its response.
pub trait HttpContext {
    fn on_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }
    fn on_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_response_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }
    /// Return false to keep the context until `done()` is called.
    fn on_done(&mut self) -> bool {
        true
    }
    fn on_log(&mut self) {}
    /// Called with the response of an `http_call` this context made.
    fn on_http_call_response(&mut self, _token: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}
}

type RootFactory = fn(u32) -> Box<dyn RootContext>;

struct State {
    factory: Option<RootFactory>,
    roots: HashMap<u32, Box<dyn RootContext>>,
    streams: HashMap<u32, Box<dyn HttpContext>>,
    callouts: HashMap<u32, u32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        factory: None,
        roots: HashMap::new(),
        streams: HashMap::new(),
        callouts: HashMap::new(),
    });
}

/// Registers the plugin's root context factory; [`plugin!`] does it.
pub fn set_root_context(f: RootFactory) {
    STATE.with(|s| s.borrow_mut().factory = Some(f));
}

/// Declares the plugin: `portico_proxy_wasm::plugin!(|id| Box::new(MyRoot::new()));`
/// It exports the hook this crate calls before the first root context is made.
#[macro_export]
macro_rules! plugin {
    ($factory:expr) => {
        #[no_mangle]
        pub extern "C" fn portico_proxy_wasm_register() {
            $crate::set_root_context($factory);
        }
    };
}

extern "C" {
    fn portico_proxy_wasm_register();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(if size == 0 { 1 } else { size });
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    if parent_id == 0 {
        let factory = STATE.with(|s| s.borrow().factory);
        let factory = match factory {
            Some(f) => f,
            None => {
                unsafe { portico_proxy_wasm_register() };
                match STATE.with(|s| s.borrow().factory) {
                    Some(f) => f,
                    None => return,
                }
            }
        };
        let root = factory(context_id);
        STATE.with(|s| s.borrow_mut().roots.insert(context_id, root));
        return;
    }
    let ctx = STATE.with(|s| s.borrow().roots.get(&parent_id).map(|r| r.create_http_context(context_id)));
    if let Some(c) = ctx {
        STATE.with(|s| s.borrow_mut().streams.insert(context_id, c));
    }
}

fn with_root<R>(id: u32, default: R, f: impl FnOnce(&mut dyn RootContext) -> R) -> R {
    CURRENT.with(|c| c.set(0));
    // Take the context out while it runs, so that its code may call back
    // into this crate.
    let taken = STATE.with(|s| s.borrow_mut().roots.remove(&id));
    match taken {
        Some(mut r) => {
            let out = f(r.as_mut());
            STATE.with(|s| s.borrow_mut().roots.insert(id, r));
            out
        }
        None => default,
    }
}

thread_local! {
    static CURRENT: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// The stream context of the running callback (0 in root callbacks).
pub fn current_context() -> u32 {
    CURRENT.with(|c| c.get())
}

fn with_stream<R>(id: u32, default: R, f: impl FnOnce(&mut dyn HttpContext) -> R) -> R {
    CURRENT.with(|c| c.set(id));
    let taken = STATE.with(|s| s.borrow_mut().streams.remove(&id));
    match taken {
        Some(mut c) => {
            let out = f(c.as_mut());
            STATE.with(|s| s.borrow_mut().streams.insert(id, c));
            out
        }
        None => default,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> u32 {
    let cfg = get_buffer(BufferType::VmConfiguration, 0, size).unwrap_or_default();
    with_root(id, false, |r| r.on_vm_start(cfg)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> u32 {
    let cfg = get_buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default();
    with_root(id, false, |r| r.on_configure(cfg)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    with_root(id, (), |r| r.on_tick())
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(id: u32, queue: u32) {
    with_root(id, (), |r| r.on_queue_ready(queue))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_request_headers(n, eos != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_request_body(n, eos != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(id: u32, n: usize) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_request_trailers(n)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_response_headers(n, eos != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_response_body(n, eos != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(id: u32, n: usize) -> u32 {
    with_stream(id, Action::Continue, |c| c.on_response_trailers(n)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_done(id: u32) -> u32 {
    with_stream(id, true, |c| c.on_done()) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    with_stream(id, (), |c| c.on_log())
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.streams.remove(&id).is_none() {
            s.roots.remove(&id);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(_root: u32, token: u32, n: usize, body: usize, trailers: usize) {
    let caller = STATE.with(|s| s.borrow_mut().callouts.remove(&token));
    if let Some(ctx) = caller {
        if set_effective_context(ctx).is_err() {
            return;
        }
        with_stream(ctx, (), |c| c.on_http_call_response(token, n, body, trailers))
    }
}

pub(crate) fn remember_callout(token: u32, context_id: u32) {
    STATE.with(|s| s.borrow_mut().callouts.insert(token, context_id));
}
