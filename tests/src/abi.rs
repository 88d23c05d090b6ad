//! The proxy-wasm ABI 0.2.1 hostcalls (`env.proxy_*`), answering as Envoy does: same status
//! codes, same availability rules for header maps and buffers (a map the stream no longer
//! holds is `BadArgument`, which the Rust SDK turns into a panic — exactly what would crash the
//! filter in Envoy), and results returned through memory the guest allocates.

use std::time::Duration;

use wasmtime::{Caller, Extern, Linker, Result, bail};

use crate::scenario::{HttpCall, LogLevel};
use crate::state::{HeaderMap, LocalReply, Metric, MetricKind, PendingCall, Queue, VmCtx};

/// `WasmResult` as Envoy numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    Unimplemented = 12,
}

impl From<Status> for i32 {
    fn from(s: Status) -> i32 {
        s as i32
    }
}

const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const CALL_RESPONSE_HEADERS: i32 = 6;

const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const CALL_RESPONSE_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

const STREAM_REQUEST: i32 = 0;
const STREAM_RESPONSE: i32 = 1;

type C<'a> = Caller<'a, VmCtx>;

fn memory(caller: &mut C<'_>) -> Result<wasmtime::Memory> {
    if let Some(m) = caller.data().memory {
        return Ok(m);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => {
            caller.data_mut().memory = Some(m);
            Ok(m)
        }
        _ => bail!("module exports no memory"),
    }
}

/// Reads guest memory; `None` means out of bounds (Envoy answers `InvalidMemoryAccess`).
pub(crate) fn read(caller: &mut C<'_>, ptr: i32, len: i32) -> Result<Option<Vec<u8>>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&*caller);
    Ok(ptr
        .checked_add(len)
        .and_then(|end| data.get(ptr..end))
        .map(<[u8]>::to_vec))
}

pub(crate) fn write(caller: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<bool> {
    let mem = memory(caller)?;
    Ok(mem.write(&mut *caller, ptr as u32 as usize, bytes).is_ok())
}

pub(crate) fn write_u32(caller: &mut C<'_>, ptr: i32, v: u32) -> Result<bool> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the guest allocates and stores pointer and size, as Envoy's
/// `copyToPointerSize` does: an empty value is a null pointer with size 0.
fn give(caller: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<Status> {
    let mut ptr = 0u32;
    if !bytes.is_empty() {
        let alloc = match caller.data().alloc.clone() {
            Some(f) => f,
            None => bail!("module exports no proxy_on_memory_allocate"),
        };
        let size = i32::try_from(bytes.len())?;
        ptr = alloc.call(&mut *caller, size)? as u32;
        if ptr == 0 || !write(caller, ptr as i32, bytes)? {
            return Ok(Status::InvalidMemoryAccess);
        }
    }
    if !write_u32(caller, ptr_ptr, ptr)? || !write_u32(caller, size_ptr, bytes.len() as u32)? {
        return Ok(Status::InvalidMemoryAccess);
    }
    Ok(Status::Ok)
}

pub(crate) fn deserialize_map(bytes: &[u8]) -> Option<HeaderMap> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let n = word(0)?;
    let mut p = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut map = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let klen = word(4 + i * 8)?;
        let vlen = word(8 + i * 8)?;
        let key = bytes.get(p..p.checked_add(klen)?)?;
        p = p.checked_add(klen + 1)?;
        let value = bytes.get(p..p.checked_add(vlen)?)?;
        p = p.checked_add(vlen + 1)?;
        map.push((
            String::from_utf8_lossy(key).to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
    Some(map)
}

/// Which header map `map_type` names for the current context, and whether Envoy holds it now.
enum MapRef {
    Available(HeaderMap),
    /// Envoy has no map there: reads of values are `BadArgument`, except in the access-log
    /// phase, where they are `NotFound`.
    Missing {
        access_log: bool,
    },
}

fn map_get(ctx: &mut VmCtx, map_type: i32) -> MapRef {
    if map_type == CALL_RESPONSE_HEADERS {
        return match &ctx.call_response {
            Some(r) => MapRef::Available(r.headers.clone()),
            None => MapRef::Missing { access_log: false },
        };
    }
    let Some(s) = ctx.stream() else {
        return MapRef::Missing { access_log: false };
    };
    let access_log = s.access_log_phase;
    match map_type {
        REQUEST_HEADERS if s.request_headers_visible || access_log => {
            MapRef::Available(s.request_headers.clone())
        }
        RESPONSE_HEADERS
            if s.response_headers_visible || (access_log && !s.response_headers.is_empty()) =>
        {
            MapRef::Available(s.response_headers.clone())
        }
        _ => MapRef::Missing { access_log },
    }
}

/// Mutable access to a map the filter may change now; `None` is `BadArgument`.
fn map_mut(ctx: &mut VmCtx, map_type: i32) -> Option<&mut HeaderMap> {
    let s = ctx.stream()?;
    match map_type {
        REQUEST_HEADERS if s.request_headers_visible => Some(&mut s.request_headers),
        RESPONSE_HEADERS if s.response_headers_visible => Some(&mut s.response_headers),
        _ => None,
    }
}

/// Envoy keeps pseudo-headers ahead of the others.
pub(crate) fn add_header(map: &mut HeaderMap, key: String, value: Vec<u8>) {
    if key.starts_with(':') {
        let at = map.iter().take_while(|(k, _)| k.starts_with(':')).count();
        map.insert(at, (key, value));
    } else {
        map.push((key, value));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

macro_rules! read_or_fail {
    ($caller:expr, $ptr:expr, $len:expr) => {
        match read($caller, $ptr, $len)? {
            Some(v) => v,
            None => return Ok(Status::InvalidMemoryAccess.into()),
        }
    };
}

/// Names the buffers Envoy exposes to the current context.
fn buffer_get(ctx: &mut VmCtx, buffer_type: i32) -> Option<Vec<u8>> {
    match buffer_type {
        VM_CONFIGURATION => Some(ctx.shared.borrow().vm_configuration.clone()),
        PLUGIN_CONFIGURATION => ctx.plugin_config.clone(),
        CALL_RESPONSE_BODY => ctx.call_response.as_ref().map(|r| r.body.clone()),
        // Envoy wraps a null body in an empty buffer: `Ok` with nothing, not `NotFound`.
        REQUEST_BODY => Some(
            ctx.stream()
                .filter(|s| s.request_body_visible)
                .map(|s| s.request_body.clone())
                .unwrap_or_default(),
        ),
        RESPONSE_BODY => Some(
            ctx.stream()
                .filter(|s| s.response_body_visible)
                .map(|s| s.response_body.clone())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// Registers every hostcall of the ABI, area by area.
pub(crate) fn add_to_linker(linker: &mut Linker<VmCtx>) -> Result<()> {
    log_and_clock(linker)?;
    buffers(linker)?;
    header_maps(linker)?;
    properties(linker)?;
    shared_data(linker)?;
    shared_queues(linker)?;
    stream_control(linker)?;
    http_calls(linker)?;
    contexts(linker)?;
    metrics(linker)?;
    Ok(())
}

/// The log, its level, the clock and the root's tick.
fn log_and_clock(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let msg = read_or_fail!(&mut caller, ptr, len);
            let Some(level) = LogLevel::from_abi(level) else {
                return Ok(Status::BadArgument.into());
            };
            caller.data().log(level, text(&msg));
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: C<'_>, ret: i32| -> Result<i32> {
            let level = caller.data().shared.borrow().log_level as u32;
            write_u32(&mut caller, ret, level)?;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: C<'_>, ret: i32| -> Result<i32> {
            let now = crate::host::unix_nanos(caller.data().shared.borrow().now);
            write(&mut caller, ret, &now.to_le_bytes())?;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: C<'_>, period: i32| -> Result<i32> {
            let now = caller.data().shared.borrow().now;
            let ctx = caller.data_mut();
            if period == 0 {
                ctx.tick_period = None;
                ctx.next_tick = None;
            } else {
                let p = Duration::from_millis(u64::from(period as u32));
                ctx.tick_period = Some(p);
                ctx.next_tick = Some(now + p);
            }
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// Bodies, call answers and configurations: the buffers a stream or the root can read and replace.
fn buffers(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: C<'_>,
         ty: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let Some(buf) = buffer_get(caller.data_mut(), ty) else {
                return Ok(Status::NotFound.into());
            };
            let start = start as u32 as usize;
            if start > buf.len() {
                return Ok(Status::BadArgument.into());
            }
            let end = start.saturating_add(max as u32 as usize).min(buf.len());
            let slice = buf.get(start..end).unwrap_or_default();
            if slice.is_empty() {
                return Ok(Status::Ok.into());
            }
            Ok(give(&mut caller, slice, ptr_ptr, size_ptr)?.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: C<'_>, ty: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let data = read_or_fail!(&mut caller, ptr, len);
            let ctx = caller.data_mut();
            let Some(s) = ctx.stream() else {
                return Ok(Status::NotFound.into());
            };
            let buf = match ty {
                REQUEST_BODY if s.request_body_visible => &mut s.request_body,
                RESPONSE_BODY if s.response_body_visible => &mut s.response_body,
                _ => return Ok(Status::NotFound.into()),
            };
            // Envoy's Buffer::copyFrom: replace a prefix, or append at/after the end.
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            if start == 0 {
                let drain = size.min(buf.len());
                buf.drain(..drain);
                buf.splice(0..0, data);
            } else if start >= buf.len() {
                buf.extend_from_slice(&data);
            } else {
                return Ok(Status::BadArgument.into());
            }
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// Header maps (request, response, trailers, call answers), with Envoy's availability rules.
fn header_maps(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: C<'_>, ty: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let map = match map_get(caller.data_mut(), ty) {
                MapRef::Available(m) => m,
                MapRef::Missing { .. } => Vec::new(),
            };
            let bytes = if map.is_empty() {
                Vec::new()
            } else {
                mcp_auth_filter::header_map::encode(&map)
            };
            Ok(give(&mut caller, &bytes, ptr_ptr, size_ptr)?.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: C<'_>, ty: i32, ptr: i32, len: i32| -> Result<i32> {
            let data = read_or_fail!(&mut caller, ptr, len);
            let Some(pairs) = deserialize_map(&data) else {
                return Ok(Status::BadArgument.into());
            };
            let Some(map) = map_mut(caller.data_mut(), ty) else {
                return Ok(Status::BadArgument.into());
            };
            map.clear();
            for (k, v) in pairs {
                add_header(map, k, v);
            }
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: C<'_>,
         ty: i32,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let key = text(&read_or_fail!(&mut caller, kp, kl)).to_ascii_lowercase();
            let map = match map_get(caller.data_mut(), ty) {
                MapRef::Available(m) => m,
                MapRef::Missing { access_log: true } => return Ok(Status::NotFound.into()),
                MapRef::Missing { access_log: false } => return Ok(Status::BadArgument.into()),
            };
            match map.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => Ok(give(&mut caller, v, ptr_ptr, size_ptr)?.into()),
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: C<'_>, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            let key = text(&read_or_fail!(&mut caller, kp, kl)).to_ascii_lowercase();
            let value = read_or_fail!(&mut caller, vp, vl);
            let Some(map) = map_mut(caller.data_mut(), ty) else {
                return Ok(Status::BadArgument.into());
            };
            add_header(map, key, value);
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: C<'_>, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            let key = text(&read_or_fail!(&mut caller, kp, kl)).to_ascii_lowercase();
            let value = read_or_fail!(&mut caller, vp, vl);
            let Some(map) = map_mut(caller.data_mut(), ty) else {
                return Ok(Status::BadArgument.into());
            };
            // Envoy's setCopy: the first entry keeps its place, the others go.
            match map.iter().position(|(k, _)| *k == key) {
                Some(at) => {
                    let mut i = 0;
                    map.retain(|(k, _)| {
                        let keep = *k != key || i == at;
                        i += 1;
                        keep
                    });
                    if let Some(entry) = map.iter_mut().find(|(k, _)| *k == key) {
                        entry.1 = value;
                    }
                }
                None => add_header(map, key, value),
            }
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: C<'_>, ty: i32, kp: i32, kl: i32| -> Result<i32> {
            let key = text(&read_or_fail!(&mut caller, kp, kl)).to_ascii_lowercase();
            let Some(map) = map_mut(caller.data_mut(), ty) else {
                return Ok(Status::BadArgument.into());
            };
            map.retain(|(k, _)| *k != key);
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut caller: C<'_>, ty: i32, ret: i32| -> Result<i32> {
            let size = match map_get(caller.data_mut(), ty) {
                MapRef::Available(m) => m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
                MapRef::Missing { .. } => return Ok(Status::BadArgument.into()),
            };
            write_u32(&mut caller, ret, size as u32)?;
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// Properties (`xds.route_name`, `plugin_root_id`, …), addressed by NUL-separated paths.
fn properties(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let path = read_or_fail!(&mut caller, pp, pl);
            let path = property_path(&path);
            match crate::host::property(caller.data_mut(), &path) {
                Some(v) => Ok(give(&mut caller, &v, ptr_ptr, size_ptr)?.into()),
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
            let path = property_path(&read_or_fail!(&mut caller, pp, pl));
            let value = read_or_fail!(&mut caller, vp, vl);
            // Envoy stores these in the stream's filter state; the root context has none.
            match caller.data_mut().stream() {
                Some(s) => {
                    s.properties.insert(path, value);
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    Ok(())
}

/// Process-wide key/value data with compare-and-swap, shared by every VM of the host.
fn shared_data(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: C<'_>,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            let key = read_or_fail!(&mut caller, kp, kl);
            let entry = caller.data().shared.borrow().shared_data.get(&key).cloned();
            let Some((value, cas)) = entry else {
                return Ok(Status::NotFound.into());
            };
            let status = give(&mut caller, &value, ptr_ptr, size_ptr)?;
            if status != Status::Ok || !write_u32(&mut caller, cas_ptr, cas)? {
                return Ok(Status::InvalidMemoryAccess.into());
            }
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            let key = read_or_fail!(&mut caller, kp, kl);
            let value = read_or_fail!(&mut caller, vp, vl);
            let shared = caller.data().shared.clone();
            Ok(
                crate::host::set_shared_data(&mut shared.borrow_mut(), key, value, cas as u32)
                    .into(),
            )
        },
    )?;
    Ok(())
}

/// Shared queues: registered by one VM, resolved and fed by the others.
fn shared_queues(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: C<'_>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let name = text(&read_or_fail!(&mut caller, np, nl));
            let (vm, root) = (caller.data().index, caller.data().root_id);
            let id = {
                let shared = caller.data().shared.clone();
                let mut sh = shared.borrow_mut();
                let key = (sh.vm_id.clone(), name);
                let id = match sh.queue_names.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id = sh.next_queue;
                        sh.next_queue += 1;
                        sh.queue_names.insert(key, id);
                        id
                    }
                };
                let q = sh.queues.entry(id).or_insert_with(|| Queue {
                    owner_vm: vm,
                    owner_context: root,
                    items: Default::default(),
                });
                q.owner_vm = vm;
                q.owner_context = root;
                id
            };
            write_u32(&mut caller, ret, id)?;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let vm_id = text(&read_or_fail!(&mut caller, vp, vl));
            let name = text(&read_or_fail!(&mut caller, np, nl));
            let id = caller
                .data()
                .shared
                .borrow()
                .queue_names
                .get(&(vm_id, name))
                .copied();
            match id {
                Some(id) => {
                    write_u32(&mut caller, ret, id)?;
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: C<'_>, id: i32, vp: i32, vl: i32| -> Result<i32> {
            let value = read_or_fail!(&mut caller, vp, vl);
            let shared = caller.data().shared.clone();
            let mut sh = shared.borrow_mut();
            let Some(q) = sh.queues.get_mut(&(id as u32)) else {
                return Ok(Status::NotFound.into());
            };
            q.items.push_back(value);
            let note = (q.owner_vm, q.owner_context, id as u32);
            // Envoy posts on_queue_ready to the owner's thread: it runs later, never re-entrantly.
            sh.queue_ready.push_back(note);
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: C<'_>, id: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let item = {
                let shared = caller.data().shared.clone();
                let mut sh = shared.borrow_mut();
                let Some(q) = sh.queues.get_mut(&(id as u32)) else {
                    return Ok(Status::NotFound.into());
                };
                let Some(item) = q.items.pop_front() else {
                    return Ok(Status::Empty.into());
                };
                item
            };
            Ok(give(&mut caller, &item, ptr_ptr, size_ptr)?.into())
        },
    )?;
    Ok(())
}

/// What a filter does to its stream: continue it, close it, or answer it locally.
fn stream_control(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: C<'_>, ty: i32| -> Result<i32> {
            let Some(s) = caller.data_mut().stream() else {
                return Ok(Status::Ok.into());
            };
            match ty {
                STREAM_REQUEST => s.continue_request = true,
                STREAM_RESPONSE => s.continue_response = true,
                2 => return Ok(Status::Ok.into()),
                3 => return Ok(Status::Unimplemented.into()),
                _ => return Ok(Status::BadArgument.into()),
            }
            // Envoy drops its request-side pointers at once, whichever side continues.
            s.request_headers_visible = false;
            s.request_body_visible = false;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: C<'_>, ty: i32| -> Result<i32> {
            if !(0..=3).contains(&ty) {
                return Ok(Status::BadArgument.into());
            }
            if let Some(s) = caller.data_mut().stream()
                && (ty == STREAM_REQUEST || ty == STREAM_RESPONSE)
            {
                s.reset = true;
            }
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: C<'_>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> Result<i32> {
            let details = text(&read_or_fail!(&mut caller, dp, dl));
            let body = read_or_fail!(&mut caller, bp, bl);
            let headers = read_or_fail!(&mut caller, hp, hl);
            let Some(headers) = deserialize_map(&headers) else {
                return Ok(Status::BadArgument.into());
            };
            if let Some(s) = caller.data_mut().stream() {
                // Envoy sends it after the callback returns; the last call wins.
                s.pending_local = Some(LocalReply {
                    status: status as u32,
                    details: details.replace(char::is_whitespace, "_"),
                    body,
                    headers,
                });
            }
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// Outbound calls (`dispatch_http_call`) and the status of their answers.
fn http_calls(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32|
         -> Result<i32> {
            let upstream = text(&read_or_fail!(&mut caller, up, ul));
            let headers = read_or_fail!(&mut caller, hp, hl);
            let body = read_or_fail!(&mut caller, bp, bl);
            let _trailers = read_or_fail!(&mut caller, tp, tl);
            let Some(mut headers) = deserialize_map(&headers) else {
                return Ok(Status::BadArgument.into());
            };
            if timeout < 0 {
                return Ok(Status::BadArgument.into());
            }
            let shared = caller.data().shared.clone();
            let token = {
                let mut sh = shared.borrow_mut();
                if let Some(clusters) = &sh.clusters
                    && !clusters.contains(&upstream)
                {
                    return Ok(Status::BadArgument.into());
                }
                let has = |name: &str| headers.iter().any(|(k, _)| k == name);
                if !has(":path") || !has(":method") || !has(":authority") {
                    return Ok(Status::BadArgument.into());
                }
                if !body.is_empty() {
                    headers.retain(|(k, _)| k != "content-length");
                    headers.push(("content-length".into(), body.len().to_string().into_bytes()));
                }
                let token = sh.next_token;
                sh.next_token += 1;
                let timeout = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
                let call = HttpCall {
                    vm: caller.data().index,
                    context_id: caller.data().current,
                    token,
                    upstream,
                    headers,
                    body,
                    timeout,
                };
                let deadline = timeout.map(|t| sh.now + t);
                sh.all_calls.push(call.clone());
                sh.pending_calls.push(PendingCall { call, deadline });
                token
            };
            write_u32(&mut caller, ret, token)?;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            write_u32(&mut caller, code_ptr, 0)?;
            Ok(give(&mut caller, b"", ptr_ptr, size_ptr)?.into())
        },
    )?;
    Ok(())
}

/// The effective context of a callback, and `proxy_done`.
fn contexts(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: C<'_>, id: i32| -> Result<i32> {
            let ctx = caller.data_mut();
            let id = id as u32;
            if id == ctx.root_id || ctx.streams.contains_key(&id) {
                ctx.current = id;
                Ok(Status::Ok.into())
            } else {
                Ok(Status::BadArgument.into())
            }
        },
    )?;

    linker.func_wrap("env", "proxy_done", |mut caller: C<'_>| -> Result<i32> {
        caller.data_mut().done_called = true;
        Ok(Status::Ok.into())
    })?;
    Ok(())
}

/// Counters, gauges and histograms: defined, incremented, recorded and read.
fn metrics(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: C<'_>, ty: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let name = text(&read_or_fail!(&mut caller, np, nl));
            let kind = match ty {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(Status::BadArgument.into()),
            };
            let id = {
                let ctx = caller.data_mut();
                let slot = ty as usize;
                let next = ctx.next_metric_id.get_mut(slot);
                let Some(next) = next else {
                    return Ok(Status::BadArgument.into());
                };
                // Envoy keeps the metric type in the low two bits of the id.
                let id = (*next << 2) | ty as u32;
                *next += 1;
                ctx.metric_ids.insert(id, name.clone());
                ctx.shared
                    .borrow_mut()
                    .metrics
                    .entry(name)
                    .or_insert(Metric {
                        kind,
                        value: 0,
                        samples: Vec::new(),
                    });
                id
            };
            write_u32(&mut caller, ret, id)?;
            Ok(Status::Ok.into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: C<'_>, id: i32, offset: i64| -> Result<i32> {
            Ok(with_metric(caller.data(), id, |m| match m.kind {
                MetricKind::Counter if offset > 0 => {
                    m.value += offset;
                    Status::Ok
                }
                MetricKind::Gauge => {
                    m.value += offset;
                    Status::Ok
                }
                _ => Status::BadArgument,
            })
            .into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: C<'_>, id: i32, value: i64| -> Result<i32> {
            Ok(with_metric(caller.data(), id, |m| {
                match m.kind {
                    MetricKind::Counter => m.value += value,
                    MetricKind::Gauge => m.value = value,
                    MetricKind::Histogram => {
                        m.value += 1;
                        m.samples.push(value as u64);
                    }
                }
                Status::Ok
            })
            .into())
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: C<'_>, id: i32, ret: i32| -> Result<i32> {
            let value = {
                let ctx = caller.data();
                let Some(name) = ctx.metric_ids.get(&(id as u32)) else {
                    return Ok(Status::NotFound.into());
                };
                let sh = ctx.shared.borrow();
                match sh.metrics.get(name) {
                    Some(m) if m.kind != MetricKind::Histogram => m.value,
                    Some(_) => return Ok(Status::BadArgument.into()),
                    None => return Ok(Status::NotFound.into()),
                }
            };
            write(&mut caller, ret, &value.to_le_bytes())?;
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// `f` on the metric this VM defined as `id`; `NotFound` when there is none.
fn with_metric(ctx: &VmCtx, id: i32, f: impl FnOnce(&mut Metric) -> Status) -> Status {
    let Some(name) = ctx.metric_ids.get(&(id as u32)) else {
        return Status::NotFound;
    };
    match ctx.shared.borrow_mut().metrics.get_mut(name) {
        Some(m) => f(m),
        None => Status::NotFound,
    }
}

/// Property paths travel as NUL-separated segments; the host keys them dotted.
fn property_path(raw: &[u8]) -> String {
    raw.split(|b| *b == 0)
        .map(|seg| String::from_utf8_lossy(seg).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}
