//! The line between the async server and work that blocks a thread, drawn in the types.
//!
//! DuckDB's calls block, and so must the storage calls a database makes while DuckDB waits
//! (shipping the log before a commit is acknowledged, sealing a checkpoint). Waiting on async
//! storage from a thread of the async runtime would deadlock it or panic, so every function that
//! does takes a [`Blocking`], and only [`run`] makes one, on Tokio's blocking pool. Calling such
//! a function from async code does not compile for want of one.

use std::future::Future;
use std::marker::PhantomData;

use tokio::runtime::Handle;

use crate::error::{Result, ServerError};

/// Proof that the current thread may block: it is one of Tokio's blocking threads. Not `Send`,
/// so it cannot leave that thread.
pub struct Blocking {
    rt: Handle,
    _this_thread: PhantomData<*const ()>,
}

impl Blocking {
    /// Waits for `work` (async storage) on this thread.
    pub fn wait<F: Future>(&self, work: F) -> F::Output {
        self.rt.block_on(work)
    }

    /// The runtime, for work that DuckDB calls back into later on its own threads (which may
    /// block too).
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }
}

/// Runs `f` on Tokio's blocking pool, where it may wait (see [`Blocking`]).
pub async fn run<T: Send + 'static>(f: impl FnOnce(&Blocking) -> T + Send + 'static) -> Result<T> {
    spawn(f).await.map_err(|e| ServerError::Internal(format!("worker thread failed: {e}")))
}

/// Starts `f` on Tokio's blocking pool, where it may wait (see [`Blocking`]); for work that runs
/// on after its caller moves on. Must be called within the runtime.
pub fn spawn<T: Send + 'static>(f: impl FnOnce(&Blocking) -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || f(&Blocking { rt, _this_thread: PhantomData }))
}
