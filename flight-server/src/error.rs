//! Errors of the server and their gRPC status codes.
//!
//! DuckDB prefixes every message with its error class ("Catalog Error: …", "Parser Error: …");
//! that class decides the status a client sees, and the message reaches it unchanged.

use tonic::{Code, Status};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An error raised by DuckDB while preparing, binding or running SQL.
    #[error("{0}")]
    DuckDb(#[from] crate::duck::DuckError),
    /// An Arrow encoding or decoding error.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An error from arrow-flight's builders and codecs.
    #[error("flight error: {0}")]
    Flight(#[from] arrow_flight::error::FlightError),
    /// A database name the server does not serve.
    #[error("unknown database '{0}'")]
    UnknownDatabase(String),
    /// The caller's token does not grant this database.
    #[error("token is not allowed to use database '{0}'")]
    DatabaseNotGranted(String),
    /// The caller's token is read-only.
    #[error("token is read-only: {0} is not allowed")]
    ReadOnly(String),
    /// A statement the server never runs for clients.
    #[error("Permission Error: {0}")]
    PermissionDenied(String),
    /// A handle (ticket, prepared statement, transaction) the server does not know.
    #[error("{0}")]
    NotFound(String),
    /// Malformed input from the client.
    #[error("{0}")]
    InvalidArgument(String),
    /// The query ran past the configured timeout.
    #[error("query exceeded the configured timeout of {0:?} and was cancelled")]
    Timeout(std::time::Duration),
    /// The query was cancelled by the client or by shutdown.
    #[error("query was cancelled")]
    Cancelled,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// A change committed on the server could not be made durable in the object and metadata
    /// stores (they are down, or this server lost the database's write lease).
    #[error("the change was committed on the server but could not be made durable: {0}")]
    NotDurable(String),
    /// A write to a database this server only follows (another server holds its write lease).
    #[error("{0}")]
    NotWriter(String),
    /// Another server holds the database's write lease (the message names it).
    #[error("{0}")]
    LeaseHeld(String),
    /// The layered storage (object or metadata store) failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A request went past one of the server's limits (the message names it and how to stay
    /// within it).
    #[error("{0}")]
    LimitExceeded(String),
    /// An internal invariant failed; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            ServerError::DuckDb(e) => duckdb_code(&e.0),
            ServerError::Arrow(_) | ServerError::Flight(_) => Code::InvalidArgument,
            ServerError::UnknownDatabase(_) => Code::NotFound,
            ServerError::DatabaseNotGranted(_) | ServerError::ReadOnly(_) | ServerError::PermissionDenied(_) => Code::PermissionDenied,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::InvalidArgument(_) => Code::InvalidArgument,
            ServerError::Timeout(_) => Code::DeadlineExceeded,
            ServerError::Cancelled => Code::Cancelled,
            ServerError::ShuttingDown | ServerError::NotDurable(_) | ServerError::Storage(_) | ServerError::LeaseHeld(_) => {
                Code::Unavailable
            }
            ServerError::NotWriter(_) => Code::FailedPrecondition,
            ServerError::LimitExceeded(_) => Code::ResourceExhausted,
            ServerError::Internal(_) => Code::Internal,
        }
    }
}

/// Maps a DuckDB error message to a gRPC code by its error class.
pub fn duckdb_code(message: &str) -> Code {
    let class = message.split(':').next().unwrap_or("").trim();
    match class {
        "Catalog Error" => {
            if message.contains("does not exist") {
                Code::NotFound
            } else if message.contains("already exists") {
                Code::AlreadyExists
            } else {
                Code::InvalidArgument
            }
        }
        "Out of Memory Error" => Code::ResourceExhausted,
        "INTERRUPT Error" | "Interrupt Error" => Code::Cancelled,
        "Permission Error" => Code::PermissionDenied,
        "TransactionContext Error" | "Constraint Error" => Code::FailedPrecondition,
        "IO Error" | "Internal Error" | "FATAL Error" | "Fatal Error" => Code::Internal,
        _ if message.contains("Out of Memory") => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Result alias for the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_codes() {
        assert_eq!(duckdb_code("Catalog Error: Table with name x does not exist!"), Code::NotFound);
        assert_eq!(duckdb_code("Parser Error: syntax error at or near \"SELEC\""), Code::InvalidArgument);
        assert_eq!(duckdb_code("Out of Memory Error: failed to allocate"), Code::ResourceExhausted);
        assert_eq!(duckdb_code("Permission Error: file system operations are disabled"), Code::PermissionDenied);
        assert_eq!(duckdb_code("INTERRUPT Error: Interrupted!"), Code::Cancelled);
        assert_eq!(duckdb_code("Constraint Error: Duplicate key"), Code::FailedPrecondition);
    }
}
