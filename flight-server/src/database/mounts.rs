//! The FUSE filesystems a server mounts in its data directory: snapshot files (`.fuse`) and, with
//! `--fuse-heads`, the heads it writes (`.heads`).

use std::path::Path;

use openduck_layers::fuse::Mount;
use openduck_layers::head_fs::HeadMount;

use crate::config::{FuseMode, LayeredStorage};
use crate::error::{Result, ServerError};

/// Runs `mount` as `mode` asks: `None` when FUSE is off, or unavailable under `auto` (then
/// `fallback` says what happens instead); an error under `on`. `what` names the filesystem.
pub(super) fn fuse_mount<M>(mode: FuseMode, what: &str, fallback: &str, mount: impl FnOnce() -> std::io::Result<M>) -> Result<Option<M>> {
    if mode == FuseMode::Off {
        return Ok(None);
    }
    match mount() {
        Ok(m) => {
            tracing::info!("serving {what} through FUSE");
            Ok(Some(m))
        }
        Err(e) if mode == FuseMode::Auto => {
            tracing::info!(error = %e, "FUSE is not available; {fallback}");
            Ok(None)
        }
        Err(e) => Err(ServerError::Storage(format!("cannot mount the FUSE filesystem for {what} (--fuse on): {e}"))),
    }
}

/// Mounts the FUSE snapshot filesystem at `<data-dir>/.fuse` as `layers.fuse` asks; `None` when
/// snapshots are materialised instead.
pub(super) fn mount_snapshots(dir: &Path, layers: &LayeredStorage) -> Result<Option<Mount>> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| ServerError::Internal("no runtime".into()))?;
    let storage = layers.storage.clone();
    fuse_mount(layers.fuse, "snapshot files", "snapshots are materialised into the data directory", || {
        openduck_layers::fuse::mount(storage, &dir.join(".fuse"), 256 << 20, rt)
    })
}

/// Mounts the FUSE head filesystem at `<data-dir>/.heads` (local files under
/// `<data-dir>/.heads-local`) when `--fuse-heads` asks; `None` when heads are local files.
pub(super) fn mount_heads(dir: &Path, layers: &LayeredStorage) -> Result<Option<HeadMount>> {
    let mode = if layers.fuse_heads { layers.fuse } else { FuseMode::Off };
    fuse_mount(mode, "database heads", "heads are local files, diffed at each seal", || {
        openduck_layers::head_fs::mount_heads(&dir.join(".heads"), &dir.join(".heads-local"))
    })
}
