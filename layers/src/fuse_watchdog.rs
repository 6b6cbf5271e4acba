//! Unwedging a killed server's FUSE mounts.
//!
//! The server is both the daemon of its FUSE filesystems and a client of them (DuckDB opens the
//! files). When it is killed while one of its threads waits on the filesystem, that thread can
//! never be answered — the daemon threads died with the process — and it holds the process's
//! file table, so the kernel never closes the FUSE device and the process stays a zombie in
//! uninterruptible sleep. The only ways out are aborting the FUSE connection or unmounting.
//!
//! So the server starts a small watchdog process ([`spawn`]), which knows the mount points
//! and polls the server; once the server is gone or a zombie, the watchdog aborts each mount's
//! connection (`/sys/fs/fuse/connections/<dev>/abort`, mounting `fusectl` if needed) and
//! detaches the mount — only a mount named after the dead server's process id
//! ([`source_name`]), so a restarted server's new mount at the same path is left alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The argument that makes the server binary run [`run`] (see the server's `main`).
pub const SUBCOMMAND: &str = "fuse-watchdog";

/// The name a FUSE filesystem of process `pid` is mounted under (`<kind>-<pid>`), so that the
/// watchdog can tell a dead server's mount from the next server's at the same path.
pub fn source_name(kind: &str, pid: u32) -> String {
    format!("{kind}-{pid}")
}

/// The device (`major:minor`) of the FUSE mount at `path` whose source name ends in `-<pid>`,
/// from `/proc/self/mountinfo` (never touching the mount itself, which may be wedged).
pub fn mounted_device(path: &Path, pid: u32) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (want, suffix) = (path.to_str()?, format!("-{pid}"));
    // "id parent major:minor root mount-point options... - fstype source super-options"
    info.lines().rev().find_map(|l| {
        let (head, tail) = l.split_once(" - ")?;
        let f: Vec<&str> = head.split(' ').collect();
        let source = tail.split(' ').nth(1)?;
        (f.len() > 4 && f[4] == want && source.ends_with(&suffix)).then(|| f[2].to_string())
    })
}

/// Starts `exe fuse-watchdog <pid> <mount>...` watching this process and `mounts` (mounted
/// with names from [`source_name`]).
pub fn spawn(exe: &Path, mounts: &[PathBuf]) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND).arg(std::process::id().to_string());
    for m in mounts {
        cmd.arg(std::fs::canonicalize(m).unwrap_or_else(|_| m.clone()));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn()
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The watchdog's body: waits until process `parent` is gone or a zombie, then releases each of
/// `mounts` that still holds the device it had at the start.
pub fn run(parent: u32, mounts: &[PathBuf]) {
    while matches!(state(parent), Some(s) if s != 'Z' && s != 'X') {
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in mounts {
        // Only the dead server's own mount: a new server may already have mounted the path.
        let Some(device) = mounted_device(path, parent) else {
            continue;
        };
        let minor = device.rsplit(':').next().unwrap_or_default();
        let connections = Path::new("/sys/fs/fuse/connections");
        if std::fs::read_dir(connections).map(|mut d| d.next().is_none()).unwrap_or(true) {
            let _ = Command::new("mount").args(["-t", "fusectl", "none"]).arg(connections).output();
        }
        let _ = std::fs::write(connections.join(minor).join("abort"), b"1");
        let _ = Command::new("umount").arg("-l").arg(path).output();
        tracing::warn!(path = %path.display(), "released the FUSE mount of a server that died");
    }
}
