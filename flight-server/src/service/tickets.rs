//! Statement tickets: self-contained, so `GetFlightInfo` only prepares and `DoGet` executes.

use arrow_flight::sql::{Any, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightInfo, Ticket};
use prost::Message;
use tonic::Status;
use uuid::Uuid;

/// What a `DoGet` ticket for a statement carries.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct TicketBody {
    /// Query id, for cancellation.
    pub(super) q: Uuid,
    /// Database name.
    pub(super) db: String,
    /// SQL of a plain statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sql: Option<String>,
    /// Prepared statement handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ps: Option<Uuid>,
    /// Transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) txn: Option<Uuid>,
    /// The statement already ran (it changes data, so it ran when described): `DoGet` returns
    /// its held result, and never runs it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) ran: bool,
}

impl TicketBody {
    /// The `DoGet` ticket carrying this body (a Flight SQL `TicketStatementQuery`, JSON inside).
    pub(super) fn to_ticket(&self) -> Result<Ticket, Status> {
        let json = serde_json::to_vec(self).map_err(|e| Status::internal(e.to_string()))?;
        let ticket = TicketStatementQuery { statement_handle: json.into() };
        Ok(Ticket::new(ticket.as_any().encode_to_vec()))
    }

    /// The body of a statement ticket's handle.
    pub(super) fn from_handle(handle: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(handle).map_err(|_| Status::invalid_argument("malformed statement ticket"))
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
        assert!(TicketBody::from_handle(b"not json").is_err());
    }
}
