//! The request headers of OpenDuck's own on top of Flight SQL: which database, which snapshot.

use tonic::metadata::MetadataMap;
use tonic::Status;

/// Header a client may send to pick a database other than the server default.
pub const DATABASE_HEADER: &str = "x-openduck-database";

/// Header selecting a snapshot (by id) of the database: the call then reads that snapshot,
/// read-only. `ATTACH 'openduck:mydb?snapshot=ID'` sends it on every call.
pub const SNAPSHOT_HEADER: &str = "x-openduck-snapshot";

pub(super) fn header_database(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    match metadata.get(DATABASE_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| Status::invalid_argument(format!("{DATABASE_HEADER} header is not valid ASCII"))),
    }
}

pub(super) fn header_snapshot(metadata: &MetadataMap) -> Result<Option<i64>, Status> {
    match metadata.get(SNAPSHOT_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("{SNAPSHOT_HEADER} header must be a snapshot id (an integer)"))),
    }
}
