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

/// The DoAction type that splits a query between client and server (`openduck/v1/hybrid.proto`):
/// body a `SplitRequest`, one result whose body is a `SplitResponse`.
pub const SPLIT_ACTION: &str = "openduck.v1.split";

/// What ListActions says of [`SPLIT_ACTION`].
pub const SPLIT_ACTION_DESCRIPTION: &str = "Splits a DuckDB query between the client and this server (hybrid execution).\n\
     Request Message: openduck.v1.SplitRequest\n\
     Response Message: openduck.v1.SplitResponse";

/// Version 1 of OpenDuck's messages.
pub mod v1 {
    #![allow(missing_docs)]
    include!("generated/openduck.v1.rs");
}

#[cfg(test)]
mod tests {
    use super::v1::{Fragment, FragmentCommand, Location, Relation, SplitRequest, SplitResponse, StatementTicket};
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

    #[test]
    fn hybrid_messages_round_trip() {
        let request = SplitRequest {
            sql: "SELECT 1".into(),
            relations: vec![Relation {
                reference: vec!["cloud".into(), "sales".into()],
                location: Location::Remote as i32,
                catalog: String::new(),
                schema: "main".into(),
                table: "sales".into(),
                arrow_schema: vec![1, 2, 3],
                estimated_rows: Some(5),
            }],
            settings: [("TimeZone".to_string(), "UTC".to_string())].into_iter().collect(),
            transaction: vec![],
        };
        assert_eq!(SplitRequest::decode(request.encode_to_vec().as_slice()).unwrap(), request);
        let response = SplitResponse {
            local_sql: "SELECT * FROM __openduck_fragment_0".into(),
            fragments: vec![Fragment {
                id: 0,
                plan: vec![9; 4],
                sql: "SELECT 1 AS c0".into(),
                column_count: 1,
                estimated_rows: None,
                explain: "[REMOTE] Projection".into(),
                arrow_schema: vec![],
            }],
            fallback_reason: String::new(),
            explain: "[LOCAL] …".into(),
        };
        assert_eq!(SplitResponse::decode(response.encode_to_vec().as_slice()).unwrap(), response);
        let command = FragmentCommand { plan: vec![], sql: "SELECT 1 AS c0".into(), transaction: vec![7; 16] };
        assert_eq!(FragmentCommand::decode(command.encode_to_vec().as_slice()).unwrap(), command);
        assert_eq!(Relation::decode(&[0x10, 0x02][..]).unwrap().location(), Location::Remote);
    }
}
