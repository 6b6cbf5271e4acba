//! The request headers of OpenDuck's own on top of Flight SQL: which database, which snapshot.

use openduck_proto::{DATABASE_HEADER, SNAPSHOT_HEADER};
use tonic::metadata::MetadataMap;
use tonic::Status;

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
