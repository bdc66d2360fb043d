//! The module's environment, and the two WASI calls that hand it over.
//!
//! wasmtime-wasi's own `environ_sizes_get` and `environ_get` copy the whole
//! environment (two `String`s a variable) on each of the two calls, and write it
//! into the guest a piece at a time; with a dozen CGI variables that was an
//! eighth of a trivial invocation's instructions in the worker (callgrind). So
//! the environment is encoded once per invocation as the block the guest asks
//! for (`NAME=value\0` back to back), and these two calls, shadowing
//! wasmtime-wasi's in the linker, copy it in whole.
//!
//! What the guest passes are pointers into its own memory, untrusted: each is
//! checked against the memory's bounds and its alignment before anything is
//! written, and a bad one is a trap, exactly as in wasmtime-wasi (the WASI
//! preview 1 rule: "If an out-of-bounds pointer is passed to a function and the
//! function needs to dereference it, the function shall trap"). Nothing here
//! reads guest memory, and nothing here may write outside the ranges it checked.

use std::io::Write as _;

use wasmtime::{Caller, Extern, Linker};

use super::InvocationState;

/// The WASI module whose calls these shadow.
const MODULE: &str = "wasi_snapshot_preview1";
/// `errno::overflow`: the environment does not fit in 32-bit sizes.
const ERRNO_OVERFLOW: i32 = 61;

/// An environment, encoded the way `environ_get` hands it over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environ {
    /// `NAME=value\0` for each variable, in order.
    block: Vec<u8>,
    /// Where each variable starts in `block`.
    starts: Vec<usize>,
}

impl Environ {
    /// An environment that starts as a copy of `base` and has room for `extra` more bytes.
    pub fn extending(base: &Environ, extra: usize) -> Self {
        let mut block = Vec::with_capacity(base.block.len() + extra);
        block.extend_from_slice(&base.block);
        let mut starts = Vec::with_capacity(base.starts.len() + 16);
        starts.extend_from_slice(&base.starts);
        Self { block, starts }
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.starts.push(self.block.len());
        self.block.extend_from_slice(name.as_bytes());
        self.block.push(b'=');
        self.block.extend_from_slice(value.as_bytes());
        self.block.push(0);
    }

    /// A variable whose value is written by `value` (a number, say), with no string in between.
    pub fn push_display(&mut self, name: &str, value: impl std::fmt::Display) {
        self.starts.push(self.block.len());
        self.block.extend_from_slice(name.as_bytes());
        self.block.push(b'=');
        // Writing into a `Vec` cannot fail.
        let _ = write!(self.block, "{value}");
        self.block.push(0);
    }

    /// A request header as its CGI variable: `HTTP_` and the name in upper case,
    /// with `-` as `_` (`x-my-header` is `HTTP_X_MY_HEADER`).
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.starts.push(self.block.len());
        self.block.extend_from_slice(b"HTTP_");
        self.block.extend(name.bytes().map(|b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }));
        self.block.push(b'=');
        self.block.extend_from_slice(value.as_bytes());
        self.block.push(0);
    }

    /// The variables as `(name, value)`, for tests and logs.
    #[cfg(test)]
    pub fn vars(&self) -> Vec<(String, String)> {
        self.block
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| {
                let text = String::from_utf8_lossy(v);
                let (name, value) = text.split_once('=').unwrap_or((&text, ""));
                (name.to_string(), value.to_string())
            })
            .collect()
    }
}

/// Makes `linker`'s `environ_sizes_get` and `environ_get` these, which serve
/// [`InvocationState::environ`]. Call after wasmtime-wasi's own are added.
pub fn shadow_in(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(MODULE, "environ_sizes_get", environ_sizes_get)?;
    linker.func_wrap(MODULE, "environ_get", environ_get)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Writes the number of variables to `count_out` and the block's size to `size_out`.
fn environ_sizes_get(mut caller: Caller<'_, InvocationState>, count_out: i32, size_out: i32) -> wasmtime::Result<i32> {
    let (count, size) = {
        let environ = &caller.data().environ;
        (environ.starts.len(), environ.block.len())
    };
    let (Ok(count), Ok(size)) = (u32::try_from(count), u32::try_from(size)) else {
        return Ok(ERRNO_OVERFLOW);
    };
    let memory = memory_of(&mut caller)?;
    let mem = memory.data_mut(&mut caller);
    let count_at = checked_range(mem.len(), count_out, 4, 4)?;
    let size_at = checked_range(mem.len(), size_out, 4, 4)?;
    mem[count_at].copy_from_slice(&count.to_le_bytes());
    mem[size_at].copy_from_slice(&size.to_le_bytes());
    Ok(0)
}

/// Copies the block to `buf` and a pointer to each variable in it to `pointers`.
fn environ_get(mut caller: Caller<'_, InvocationState>, pointers: i32, buf: i32) -> wasmtime::Result<i32> {
    let memory = memory_of(&mut caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let environ = &state.environ;
    let Some(table_len) = environ.starts.len().checked_mul(4) else {
        return Ok(ERRNO_OVERFLOW);
    };
    let table_at = checked_range(mem.len(), pointers, table_len, 4)?;
    let block_at = checked_range(mem.len(), buf, environ.block.len(), 1)?;
    // `buf` and every offset into the block are in bounds of a memory no larger
    // than 4 GiB (checked above), so each pointer fits in 32 bits.
    let base = buf as u32;
    for (slot, start) in mem[table_at].chunks_exact_mut(4).zip(&environ.starts) {
        let pointer = base.wrapping_add(*start as u32);
        slot.copy_from_slice(&pointer.to_le_bytes());
    }
    mem[block_at].copy_from_slice(&environ.block);
    Ok(0)
}

/// The guest's exported linear memory, which every WASI call with pointers needs.
fn memory_of(caller: &mut Caller<'_, InvocationState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::format_err!("missing required memory export")),
    }
}

/// The range `len` bytes at guest pointer `at`, if it lies inside a memory of
/// `memory_len` bytes and `at` is a multiple of `align`; else the trap WASI asks for.
fn checked_range(memory_len: usize, at: i32, len: usize, align: u32) -> wasmtime::Result<std::ops::Range<usize>> {
    // A guest pointer is an unsigned 32-bit offset passed as an `i32`.
    let at = at as u32;
    if !at.is_multiple_of(align) {
        return Err(wasmtime::format_err!("pointer not aligned to {align}: {at:#x}"));
    }
    let start = at as usize;
    match start.checked_add(len) {
        Some(end) if end <= memory_len => Ok(start..end),
        _ => Err(wasmtime::format_err!("pointer out of bounds: {len} bytes at {at:#x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_name_equals_value_nul_in_order() {
        let mut base = Environ::default();
        base.push("GREETING", "hej");
        let mut env = Environ::extending(&base, 64);
        env.push_display("CONTENT_LENGTH", 15);
        env.push_header("x-my-header", "a=b");
        assert_eq!(env.block, b"GREETING=hej\0CONTENT_LENGTH=15\0HTTP_X_MY_HEADER=a=b\0");
        assert_eq!(env.starts, vec![0, 13, 31]);
        assert_eq!(base.starts.len(), 1, "the base is not changed");
    }

    #[test]
    fn ranges_outside_the_memory_or_misaligned_are_refused() {
        assert_eq!(checked_range(65536, 65532, 4, 4).ok(), Some(65532..65536));
        assert!(checked_range(65536, 65533, 4, 4).is_err(), "misaligned");
        assert!(checked_range(65536, 65536, 4, 4).is_err(), "past the end");
        assert!(checked_range(65536, -4, 4, 4).is_err(), "0xfffffffc");
        assert_eq!(checked_range(65536, 65536, 0, 1).ok(), Some(65536..65536), "an empty block at the end");
        assert!(checked_range(65536, 1, usize::MAX, 1).is_err(), "no overflow");
    }
}
