//! Safe wrappers over the host functions of ABI v0.2.1.

use std::ptr::null_mut;

/// An error status from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: Status = Status(1);
pub const BAD_ARGUMENT: Status = Status(2);
pub const EMPTY: Status = Status(7);
pub const CAS_MISMATCH: Status = Status(8);
pub const UNIMPLEMENTED: Status = Status(12);

fn check(s: u32) -> Result<(), Status> {
    if s == 0 {
        Ok(())
    } else {
        Err(Status(s))
    }
}

#[derive(Clone, Copy)]
pub enum BufferType {
    RequestBody = 0,
    ResponseBody = 1,
    HttpCallResponseBody = 4,
    VmConfiguration = 6,
    PluginConfiguration = 7,
}

#[derive(Clone, Copy)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

#[derive(Clone, Copy)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

extern "C" {
    fn proxy_log(level: u32, msg: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
    fn proxy_get_buffer_bytes(t: u32, start: usize, max: usize, ret: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(t: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_header_map_pairs(t: u32, ret: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(t: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(t: u32, k: *const u8, ks: usize, ret: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_add_header_map_value(t: u32, k: *const u8, ks: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_replace_header_map_value(t: u32, k: *const u8, ks: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_remove_header_map_value(t: u32, k: *const u8, ks: usize) -> u32;
    fn proxy_continue_stream(t: u32) -> u32;
    fn proxy_close_stream(t: u32) -> u32;
    fn proxy_send_local_response(status: u32, d: *const u8, ds: usize, b: *const u8, bs: usize, h: *const u8, hs: usize, grpc: i32) -> u32;
    fn proxy_http_call(u: *const u8, us: usize, h: *const u8, hs: usize, b: *const u8, bs: usize, t: *const u8, ts: usize, timeout: u32, token: *mut u32) -> u32;
    fn proxy_get_shared_data(k: *const u8, ks: usize, ret: *mut *mut u8, size: *mut usize, cas: *mut u32) -> u32;
    fn proxy_set_shared_data(k: *const u8, ks: usize, v: *const u8, vs: usize, cas: u32) -> u32;
    fn proxy_register_shared_queue(n: *const u8, ns: usize, id: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, v: *const u8, vs: usize) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, ret: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_define_metric(t: u32, n: *const u8, ns: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_record_metric(id: u32, v: u64) -> u32;
    fn proxy_get_metric(id: u32, ret: *mut u64) -> u32;
    fn proxy_get_property(p: *const u8, ps: usize, ret: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_property(p: *const u8, ps: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_done() -> u32;
}

/// Takes ownership of host-allocated bytes (allocated by
/// `proxy_on_memory_allocate`, so by this module's allocator).
unsafe fn owned(ptr: *mut u8, size: usize) -> Vec<u8> {
    if ptr.is_null() || size == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(ptr, size, size)
}

pub fn log(level: crate::LogLevel, msg: &str) {
    unsafe {
        proxy_log(level as u32, msg.as_ptr(), msg.len());
    }
}

pub fn log_level() -> u32 {
    let mut l = 0u32;
    unsafe { proxy_get_log_level(&mut l) };
    l
}

pub fn now_nanos() -> u64 {
    let mut v = 0u64;
    unsafe { proxy_get_current_time_nanoseconds(&mut v) };
    v
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn get_buffer(t: BufferType, start: usize, max: usize) -> Result<Vec<u8>, Status> {
    let mut p = null_mut();
    let mut n = 0usize;
    unsafe {
        check(proxy_get_buffer_bytes(t as u32, start, max, &mut p, &mut n))?;
        Ok(owned(p, n))
    }
}

/// Replaces the whole buffer (request or response body).
pub fn set_buffer(t: BufferType, data: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_set_buffer_bytes(t as u32, 0, usize::MAX, data.as_ptr(), data.len()) })
}

pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub fn deserialize_map(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if b.len() < 4 {
        return out;
    }
    let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let n = u32at(0);
    if 4 + 8 * n > b.len() {
        return out;
    }
    let mut off = 4 + 8 * n;
    for i in 0..n {
        let (kl, vl) = (u32at(4 + 8 * i), u32at(8 + 8 * i));
        if off + kl + vl + 2 > b.len() {
            break;
        }
        let k = String::from_utf8_lossy(&b[off..off + kl]).into_owned();
        let v = String::from_utf8_lossy(&b[off + kl + 1..off + kl + 1 + vl]).into_owned();
        out.push((k, v));
        off += kl + vl + 2;
    }
    out
}

pub fn get_map(t: MapType) -> Vec<(String, String)> {
    let mut p = null_mut();
    let mut n = 0usize;
    unsafe {
        if proxy_get_header_map_pairs(t as u32, &mut p, &mut n) != 0 {
            return Vec::new();
        }
        deserialize_map(&owned(p, n))
    }
}

pub fn set_map(t: MapType, pairs: &[(&str, &str)]) -> Result<(), Status> {
    let b = serialize_map(pairs);
    check(unsafe { proxy_set_header_map_pairs(t as u32, b.as_ptr(), b.len()) })
}

pub fn get_map_value(t: MapType, key: &str) -> Option<String> {
    let mut p = null_mut();
    let mut n = 0usize;
    unsafe {
        if proxy_get_header_map_value(t as u32, key.as_ptr(), key.len(), &mut p, &mut n) != 0 {
            return None;
        }
        Some(String::from_utf8_lossy(&owned(p, n)).into_owned())
    }
}

pub fn add_map_value(t: MapType, key: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_add_header_map_value(t as u32, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn set_map_value(t: MapType, key: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_replace_header_map_value(t as u32, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn remove_map_value(t: MapType, key: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(t as u32, key.as_ptr(), key.len()) })
}

pub fn get_request_header(name: &str) -> Option<String> {
    get_map_value(MapType::RequestHeaders, name)
}

pub fn set_request_header(name: &str, value: &str) -> Result<(), Status> {
    set_map_value(MapType::RequestHeaders, name, value)
}

pub fn get_response_header(name: &str) -> Option<String> {
    get_map_value(MapType::ResponseHeaders, name)
}

pub fn set_response_header(name: &str, value: &str) -> Result<(), Status> {
    set_map_value(MapType::ResponseHeaders, name, value)
}

pub fn continue_request() -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(0) })
}

pub fn continue_response() -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(1) })
}

pub fn close_request() -> Result<(), Status> {
    check(unsafe { proxy_close_stream(0) })
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let h = serialize_map(headers);
    check(unsafe { proxy_send_local_response(status, std::ptr::null(), 0, body.as_ptr(), body.len(), h.as_ptr(), h.len(), -1) })
}

/// Calls an upstream named in the plugin's config; the response arrives in
/// `HttpContext::on_http_call_response` of the calling context.
pub fn http_call(upstream: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> Result<u32, Status> {
    let h = serialize_map(headers);
    let mut token = 0u32;
    check(unsafe {
        proxy_http_call(upstream.as_ptr(), upstream.len(), h.as_ptr(), h.len(), body.as_ptr(), body.len(), std::ptr::null(), 0, timeout_ms, &mut token)
    })?;
    crate::remember_callout(token, crate::current_context());
    Ok(token)
}

pub fn get_http_call_response_header(name: &str) -> Option<String> {
    get_map_value(MapType::HttpCallResponseHeaders, name)
}

pub fn get_http_call_response_body(max: usize) -> Vec<u8> {
    get_buffer(BufferType::HttpCallResponseBody, 0, max).unwrap_or_default()
}

/// Property by dotted path ("request.path"); segments travel NUL-separated.
pub fn get_property(path: &str) -> Option<Vec<u8>> {
    let p: Vec<u8> = path.bytes().map(|c| if c == b'.' { 0 } else { c }).collect();
    let mut out = null_mut();
    let mut n = 0usize;
    unsafe {
        if proxy_get_property(p.as_ptr(), p.len(), &mut out, &mut n) != 0 {
            return None;
        }
        Some(owned(out, n))
    }
}

pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

pub fn get_shared_data(key: &str) -> Result<(Vec<u8>, u32), Status> {
    let mut p = null_mut();
    let mut n = 0usize;
    let mut cas = 0u32;
    unsafe {
        check(proxy_get_shared_data(key.as_ptr(), key.len(), &mut p, &mut n, &mut cas))?;
        Ok((owned(p, n), cas))
    }
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

pub fn register_queue(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    check(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn enqueue(id: u32, value: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) })
}

pub fn dequeue(id: u32) -> Result<Vec<u8>, Status> {
    let mut p = null_mut();
    let mut n = 0usize;
    unsafe {
        check(proxy_dequeue_shared_queue(id, &mut p, &mut n))?;
        Ok(owned(p, n))
    }
}

pub fn define_metric(t: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(t as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, delta: i64) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(id, delta) })
}

pub fn record_metric(id: u32, v: u64) -> Result<(), Status> {
    check(unsafe { proxy_record_metric(id, v) })
}

pub fn get_metric(id: u32) -> Result<u64, Status> {
    let mut v = 0u64;
    check(unsafe { proxy_get_metric(id, &mut v) })?;
    Ok(v)
}

pub fn set_effective_context(id: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_effective_context(id) })
}

pub fn done() -> Result<(), Status> {
    check(unsafe { proxy_done() })
}
