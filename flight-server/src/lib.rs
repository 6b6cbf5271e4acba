//! OpenDuck's Arrow Flight SQL server over embedded DuckDB.
//!
//! The pieces, each in its own module:
//! - [`blocking`]: the line between async code and work that blocks a thread, in the types.
//! - [`auth`]: bearer tokens, the Basic-auth handshake and per-database grants.
//! - [`duck`]: safe wrappers over DuckDB's C API.
//! - [`database`]: the named DuckDB databases a server owns, opened locked down.
//! - [`engine`]: running SQL off the async runtime: streaming, cancellation, timeouts,
//!   transactions, bulk ingest.
//! - [`service`]: the Flight SQL protocol, one method per command.
//! - [`server`]: one port for gRPC and `GET /health`, graceful shutdown.
//! - [`maintenance`]: the background jobs (sealing, leases, discovery, GC, idle handles), one task each.
//! - [`params`], [`arrow_types`]: Arrow values and types to DuckDB's.
//! - [`error`]: how DuckDB and protocol errors become gRPC statuses.
//! - [`log`]: how logs show clients' SQL (a bounded prefix and a digest).
//! - [`expiring`]: the handles kept for clients between calls, per token, expiring, bounded.
//! - [`threads`]: stacks large enough for DuckDB's recursion on every thread that runs it.

#![warn(missing_docs)]

pub mod arrow_types;
pub mod auth;
pub mod blocking;
pub mod config;
pub mod database;
pub mod duck;
pub mod engine;
pub mod error;
pub mod expiring;
pub mod log;
pub mod maintenance;
pub mod params;
pub mod server;
pub mod service;
pub mod threads;
