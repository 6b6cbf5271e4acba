//! Statement tickets: self-contained, so `GetFlightInfo` only prepares and `DoGet` executes. The
//! format is `openduck_proto::v1::StatementTicket`.

use arrow_flight::sql::{Any, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightInfo, Ticket};
use openduck_proto::v1::StatementTicket;
use prost::Message;
use tonic::Status;
use uuid::Uuid;

/// What a `DoGet` ticket for a statement carries: [`StatementTicket`] (the wire contract, in
/// `openduck-proto`) with its ids as UUIDs.
pub(super) struct TicketBody {
    /// Query id, for cancellation.
    pub(super) q: Uuid,
    /// Database name.
    pub(super) db: String,
    /// SQL of a plain statement.
    pub(super) sql: Option<String>,
    /// Prepared statement handle.
    pub(super) ps: Option<Uuid>,
    /// Transaction id.
    pub(super) txn: Option<Uuid>,
    /// The statement already ran (it changes data, so it ran when described): `DoGet` returns
    /// its held result, and never runs it again.
    pub(super) ran: bool,
}

impl TicketBody {
    /// The `DoGet` ticket carrying this body (a Flight SQL `TicketStatementQuery` holding a
    /// [`StatementTicket`]).
    pub(super) fn to_ticket(&self) -> Result<Ticket, Status> {
        let handle = StatementTicket {
            query_id: self.q.as_bytes().to_vec(),
            database: self.db.clone(),
            sql: self.sql.clone(),
            prepared_statement: self.ps.map(|u| u.as_bytes().to_vec()).unwrap_or_default(),
            transaction: self.txn.map(|u| u.as_bytes().to_vec()).unwrap_or_default(),
            ran: self.ran,
        };
        let ticket = TicketStatementQuery { statement_handle: handle.encode_to_vec().into() };
        Ok(Ticket::new(ticket.as_any().encode_to_vec()))
    }

    /// The body of a statement ticket's handle.
    pub(super) fn from_handle(handle: &[u8]) -> Result<Self, Status> {
        let malformed = || Status::invalid_argument("malformed statement ticket");
        let t = StatementTicket::decode(handle).map_err(|_| malformed())?;
        let uuid = |bytes: &[u8]| Uuid::from_slice(bytes).map_err(|_| malformed());
        let optional = |bytes: &[u8]| if bytes.is_empty() { Ok(None) } else { uuid(bytes).map(Some) };
        Ok(TicketBody {
            q: uuid(&t.query_id)?,
            db: t.database,
            sql: t.sql,
            ps: optional(&t.prepared_statement)?,
            txn: optional(&t.transaction)?,
            ran: t.ran,
        })
    }

    /// The bodies of the statement tickets in a FlightInfo this server issued (others are
    /// skipped).
    pub(super) fn in_flight_info(info: &FlightInfo) -> Vec<Self> {
        info.endpoint
            .iter()
            .filter_map(|endpoint| endpoint.ticket.as_ref())
            .filter_map(|ticket| Any::decode(ticket.ticket.clone()).ok())
            .filter_map(|any| any.unpack::<TicketStatementQuery>().ok().flatten())
            .filter_map(|t| Self::from_handle(&t.statement_handle).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_through_a_flight_info() {
        let body = TicketBody { q: Uuid::new_v4(), db: "mydb".into(), sql: Some("SELECT 1".into()), ps: None, txn: None, ran: false };
        let ticket = body.to_ticket().unwrap();
        let info = FlightInfo::new().with_endpoint(arrow_flight::FlightEndpoint::new().with_ticket(ticket));
        let found = TicketBody::in_flight_info(&info);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].q, found[0].db.as_str(), found[0].sql.as_deref()), (body.q, "mydb", Some("SELECT 1")));
        assert!(TicketBody::from_handle(b"not a ticket").is_err());
        assert!(TicketBody::from_handle(&StatementTicket { query_id: vec![1; 3], ..Default::default() }.encode_to_vec()).is_err());
    }
}
