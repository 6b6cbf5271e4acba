//! Stacks for the threads that run DuckDB.
//!
//! DuckDB parses, binds, plans and evaluates recursively on whichever thread runs the query: the
//! Tokio blocking-pool thread a request runs on, or one of DuckDB's own worker threads. Tokio's
//! threads default to 2 MiB and glibc's to 8 MiB; a chain of CTEs or `json_structure` over
//! deeply nested JSON (which SQL can build at run time: `repeat('[', n)`) recurses past both and
//! aborts the whole process. Every such thread gets [`STACK_BYTES`] instead: address space only,
//! the kernel commits a page when it is first touched. `json_structure` needs ~160 bytes a
//! level, so nesting of about six million levels fits.

use std::io;

extern "C" {
    // glibc (not in the `libc` crate): the attributes of threads created without any.
    fn pthread_setattr_default_np(attr: *const libc::pthread_attr_t) -> libc::c_int;
}

/// The stack size of threads that may run DuckDB code.
pub const STACK_BYTES: usize = 1 << 30;

/// Makes [`STACK_BYTES`] the default stack of threads created from now on without an explicit
/// size: DuckDB's worker threads (C++ `std::thread`). Call before opening any database.
pub fn set_default_stack() -> io::Result<()> {
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_attr_init(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut rc = libc::pthread_attr_setstacksize(&mut attr, STACK_BYTES);
        if rc == 0 {
            rc = pthread_setattr_default_np(&attr);
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// The server's Tokio runtime: its workers and blocking pool (where DuckDB runs for requests)
/// with [`STACK_BYTES`] stacks, and DuckDB's own threads defaulting to the same.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    set_default_stack()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(STACK_BYTES).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_threads_get_the_large_stack() {
        let rt = runtime().unwrap();
        // Recurse through ~64 MiB of stack: far past Tokio's and glibc's defaults.
        fn deep(n: usize) -> usize {
            let pad = [n as u8; 1024];
            if n == 0 {
                return pad[0] as usize;
            }
            std::hint::black_box(&pad);
            deep(n - 1) + 1
        }
        let depth = rt.block_on(rt.spawn_blocking(|| deep(64 * 1024))).unwrap();
        assert_eq!(depth, 64 * 1024);
    }
}
