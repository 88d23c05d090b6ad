//! The few WASI preview1 calls a Rust `wasm32-wasip1` module makes and Envoy answers itself:
//! clocks (from the host's virtual clock, so `SystemTime::now()` inside the module agrees with
//! `proxy_get_current_time_nanoseconds`), randomness, stdout/stderr (into the log, as Envoy
//! does), an empty environment and argument list, and `proc_exit` as a trap.

use rand::RngCore;
use wasmtime::{Linker, Result, bail};

use crate::abi::{read, write, write_u32};
use crate::state::VmCtx;

const M: &str = "wasi_snapshot_preview1";
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ESPIPE: i32 = 70;
const EFAULT: i32 = 21;

type C<'a> = wasmtime::Caller<'a, VmCtx>;

pub(crate) fn add_to_linker(linker: &mut Linker<VmCtx>) -> Result<()> {
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut caller: C<'_>, id: i32, _precision: i64, ret: i32| -> Result<i32> {
            let (now, boot) = {
                let sh = caller.data().shared.borrow();
                (sh.now, sh.boot)
            };
            let nanos = match id {
                // Monotonic clocks count from the host's start, as a real process's would.
                1..=3 => now
                    .duration_since(boot)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
                0 => crate::host::unix_nanos(now),
                _ => return Ok(EINVAL),
            };
            Ok(if write(&mut caller, ret, &nanos.to_le_bytes())? {
                ESUCCESS
            } else {
                EFAULT
            })
        },
    )?;
    linker.func_wrap(
        M,
        "clock_res_get",
        |mut caller: C<'_>, _id: i32, ret: i32| -> Result<i32> {
            Ok(if write(&mut caller, ret, &1u64.to_le_bytes())? {
                ESUCCESS
            } else {
                EFAULT
            })
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut caller: C<'_>, ptr: i32, len: i32| -> Result<i32> {
            let mut buf = vec![0u8; len as u32 as usize];
            rand::thread_rng().fill_bytes(&mut buf);
            Ok(if write(&mut caller, ptr, &buf)? {
                ESUCCESS
            } else {
                EFAULT
            })
        },
    )?;
    linker.func_wrap(
        M,
        "fd_write",
        |mut caller: C<'_>, fd: i32, iovs: i32, n: i32, ret: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let mut out = Vec::new();
            for i in 0..n {
                let Some(iov) = read(&mut caller, iovs.wrapping_add(i * 8), 8)? else {
                    return Ok(EFAULT);
                };
                let word = |at: usize| {
                    iov.get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_le_bytes)
                        .unwrap_or(0)
                };
                let Some(bytes) = read(&mut caller, word(0) as i32, word(4) as i32)? else {
                    return Ok(EFAULT);
                };
                out.extend_from_slice(&bytes);
            }
            let written = out.len() as u32;
            let ctx = caller.data_mut();
            if fd == 1 {
                ctx.stdout.extend_from_slice(&out);
            } else {
                ctx.stderr.extend_from_slice(&out);
            }
            ctx.flush_stdio(false);
            Ok(if write_u32(&mut caller, ret, written)? {
                ESUCCESS
            } else {
                EFAULT
            })
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            M,
            name,
            |mut caller: C<'_>, count: i32, size: i32| -> Result<i32> {
                let ok = write_u32(&mut caller, count, 0)? && write_u32(&mut caller, size, 0)?;
                Ok(if ok { ESUCCESS } else { EFAULT })
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(M, name, |_: C<'_>, _a: i32, _b: i32| -> Result<i32> {
            Ok(ESUCCESS)
        })?;
    }
    linker.func_wrap(
        M,
        "proc_exit",
        |mut caller: C<'_>, code: i32| -> Result<()> {
            caller.data_mut().flush_stdio(true);
            bail!("proc_exit({code}) called by the module")
        },
    )?;
    linker.func_wrap(M, "sched_yield", |_: C<'_>| -> Result<i32> { Ok(ESUCCESS) })?;
    linker.func_wrap(M, "fd_close", |_: C<'_>, _fd: i32| -> Result<i32> {
        Ok(ESUCCESS)
    })?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_: C<'_>, _fd: i32, _off: i64, _whence: i32, _ret: i32| -> Result<i32> { Ok(ESPIPE) },
    )?;
    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |mut caller: C<'_>, fd: i32, ret: i32| -> Result<i32> {
            if !(0..=2).contains(&fd) {
                return Ok(EBADF);
            }
            // fdstat: filetype (character device), flags, rights base, rights inheriting.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            Ok(if write(&mut caller, ret, &stat)? {
                ESUCCESS
            } else {
                EFAULT
            })
        },
    )?;
    // No preopened directories: wasi-libc asks once and stops at EBADF.
    linker.func_wrap(
        M,
        "fd_prestat_get",
        |_: C<'_>, _fd: i32, _ret: i32| -> Result<i32> { Ok(EBADF) },
    )?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_: C<'_>, _fd: i32, _p: i32, _l: i32| -> Result<i32> { Ok(EBADF) },
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |_: C<'_>, _fd: i32, _iovs: i32, _n: i32, _ret: i32| -> Result<i32> { Ok(ENOSYS) },
    )?;
    Ok(())
}
