//! Secrets that reach the server through its environment: taking them out of it
//! for good. `remove_var` alone only edits libc's `environ` array; the kernel
//! serves `/proc/<pid>/environ` from the original block of `NAME=value` strings
//! on the initial stack (between `env_start` and `env_end` of
//! `/proc/self/stat`), which any process of the same user (and root) can read
//! for the whole life of the server. So the value is also overwritten in place.
//!
//! It must never log or return the secret's bytes anywhere but to its caller, and
//! [`scrub_env`] must only run while the process has a single thread.

use std::ffi::CString;

/// Removes `name` from the environment and zeroes its value in the kernel's
/// copy. Call it before any thread is started (first thing in `main`): it edits
/// the environment, which other threads may read without a lock.
pub fn scrub_env(name: &str) {
    let Ok(c_name) = CString::new(name) else { return };
    // SAFETY: getenv reads the environment; no other thread exists yet (see the
    // function's contract), so nothing modifies it concurrently. The pointer it
    // returns is either null or the start of a NUL-terminated value.
    let value = unsafe { libc::getenv(c_name.as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: `value` is non-null and NUL-terminated (see above).
    let len = unsafe { libc::strlen(value) };
    let in_block = kernel_env_block().is_some_and(|(start, end)| {
        let at = value as usize;
        at >= start && at.saturating_add(len) < end
    });
    // SAFETY: single-threaded (the contract), so no one reads the environment
    // meanwhile. unsetenv only shifts the pointers of `environ`; it neither frees
    // nor writes the string `value` points to.
    unsafe { std::env::remove_var(name) };
    if !in_block {
        // Set after start (by setenv): not what /proc shows; nothing to overwrite.
        return;
    }
    for i in 0..len {
        // SAFETY: `value..value+len` lies inside the process's own initial
        // environment block [env_start, env_end), which the kernel maps
        // writable on the main thread's stack and never unmaps; nothing refers to
        // the string any more (it was just removed from `environ`, and every
        // reader copied it: clap's settings hold their own String). Volatile, so
        // the writes cannot be dropped as dead stores.
        unsafe { value.add(i).write_volatile(0) };
    }
}

/// `[env_start, env_end)` of this process: fields 50 and 51 of `/proc/self/stat`.
fn kernel_env_block() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces and parentheses)
    // start with field 3.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let start = rest.nth(50 - 3)?.parse().ok()?;
    let end = rest.next()?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_env_block_is_found() {
        let (start, end) = super::kernel_env_block().expect("env_start/env_end in /proc/self/stat");
        assert!(end > start);
    }
}
