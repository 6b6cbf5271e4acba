//! OpenDuck's Arrow Flight SQL server over embedded DuckDB.
//!
//! The pieces, each in its own module:
//! - [`auth`]: bearer tokens, the Basic-auth handshake and per-database grants.
//! - [`duck`]: safe wrappers over DuckDB's C API.
//! - [`database`]: the named DuckDB databases a server owns, opened locked down.
//! - [`error`]: how DuckDB and protocol errors become gRPC statuses.

pub mod arrow_types;
pub mod auth;
pub mod config;
pub mod database;
pub mod duck;
pub mod engine;
pub mod error;
pub mod params;
pub mod server;
pub mod service;
