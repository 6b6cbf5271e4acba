//! OpenDuck's wire contract on top of Arrow Flight SQL, in one place: the names of the headers it
//! adds, and its own messages (`openduck/v1/*.proto`). The server and the extension both use this
//! crate; nothing else spells these names.
//!
//! As in DataFusion's `proto` crate, the Rust code generated from the `.proto` files is checked in
//! (`src/generated/`), so building needs no `protoc`; `scripts/regen-proto.sh` regenerates it.

#![warn(missing_docs)]

/// Header a client sends to pick a database other than the server's default.
pub const DATABASE_HEADER: &str = "x-openduck-database";

/// Header selecting a snapshot (by id) of the database: the call then reads that snapshot,
/// read-only. `ATTACH 'openduck:mydb?snapshot=ID'` sends it on every call.
pub const SNAPSHOT_HEADER: &str = "x-openduck-snapshot";

/// Version 1 of OpenDuck's messages.
pub mod v1 {
    #![allow(missing_docs)]
    include!("generated/openduck.v1.rs");
}

#[cfg(test)]
mod tests {
    use super::v1::StatementTicket;
    use prost::Message;

    #[test]
    fn statement_tickets_round_trip() {
        let ticket = StatementTicket {
            query_id: vec![7; 16],
            database: "mydb".into(),
            sql: Some("SELECT 1".into()),
            prepared_statement: vec![],
            transaction: vec![9; 16],
            ran: true,
        };
        let bytes = ticket.encode_to_vec();
        assert_eq!(StatementTicket::decode(bytes.as_slice()).unwrap(), ticket);
        // An unset SQL stays unset (a prepared statement's ticket), unlike an empty one.
        let prepared = StatementTicket { sql: None, prepared_statement: vec![1; 16], ..ticket.clone() };
        assert_eq!(StatementTicket::decode(prepared.encode_to_vec().as_slice()).unwrap().sql, None);
        assert!(StatementTicket::decode(&b"\xff\xff"[..]).is_err());
    }
}
