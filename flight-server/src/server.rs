//! One port for everything: Flight SQL over gRPC (HTTP/2) and `GET /health` (HTTP/1.1 or 2),
//! with graceful shutdown.
//!
//! Shutdown: the listener stops accepting, in-flight calls get `grace` to finish, then running
//! queries are interrupted (clients see CANCELLED/UNAVAILABLE, never a torn stream passed off as
//! complete), and finally every database is checkpointed and closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::http::header::CONTENT_TYPE;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::database::Databases;
use crate::engine::Engine;
use crate::error::{Result, ServerError};
use crate::maintenance::Maintenance;
use crate::service::OpenDuckService;

/// The `/health` answer. Anyone sees whether the server is up and how many databases it
/// serves; names, and why a database is unavailable, only a token granted them (send it as
/// `Authorization: Bearer …`), with the bytes of results sent so far. `status` is `degraded`
/// while a database cannot be served.
fn health(engine: &Engine, grant: Option<&crate::auth::Grant>) -> serde_json::Value {
    let dbs = engine.databases();
    let (names, unavailable) = (dbs.names(), dbs.unavailable());
    let mut body = serde_json::json!({
        "status": if unavailable.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "duckdb": crate::duck::library_version(),
        "database_count": names.len(),
        "unavailable_count": unavailable.len(),
        "running_queries": engine.running_count(),
    });
    if let Some(grant) = grant {
        let names: Vec<String> = names.into_iter().filter(|n| grant.allows(n)).collect();
        let reasons: serde_json::Map<String, serde_json::Value> =
            unavailable.into_iter().filter(|(n, _)| grant.allows(n)).map(|(n, why)| (n, why.into())).collect();
        body["databases"] = names.into();
        body["unavailable"] = reasons.into();
        body["result_bytes_sent"] = crate::service::result_bytes_sent().into();
    }
    body
}

/// A server bound to its port, not yet serving.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    service: Arc<OpenDuckService>,
    auth: Arc<Authenticator>,
    config: ServerConfig,
}

impl Server {
    /// Opens the databases and binds the port (use port 0 for any free port).
    pub async fn bind(config: ServerConfig, auth: Authenticator) -> Result<Self> {
        let databases = Arc::new(match &config.layers {
            Some(layers) => {
                Databases::open_layered(&config.data_dir, &config.default_database, config.duckdb.clone(), layers.clone()).await?
            }
            None => Databases::open_dir(&config.data_dir, &config.default_database, config.duckdb.clone())?,
        });
        let engine = Engine::new(databases, config.query_timeout, config.transaction_idle_timeout);
        let auth = Arc::new(auth);
        let service = Arc::new(OpenDuckService::new(engine.clone(), auth.clone(), &config)?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServerError::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
        Ok(Server { listener, engine, service, auth, config })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| ServerError::Internal(e.to_string()))
    }

    /// Serves until `shutdown` completes, then shuts down gracefully within `grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static, grace: Duration) -> Result<()> {
        let Server { listener, engine, service, auth, config } = self;
        let addr = listener.local_addr().ok();
        let flight = FlightServiceServer::from_arc(service.clone())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(usize::MAX);
        let health_engine = engine.clone();
        let router = tonic::service::Routes::new(flight).into_axum_router().route(
            "/health",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (engine, auth) = (health_engine.clone(), auth.clone());
                async move {
                    let grant = auth.authenticate(&tonic::metadata::MetadataMap::from_headers(headers)).ok();
                    let body = health(&engine, grant.as_ref());
                    ([(CONTENT_TYPE, "application/json")], body.to_string())
                }
            }),
        );
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_engine = engine.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!(grace = ?grace, "shutting down: no new connections; waiting for in-flight calls");
            let _ = signalled_tx.send(());
        };
        // After the grace period, interrupt whatever still runs so the server can stop.
        tokio::spawn(async move {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
                stop_engine.shutdown();
            }
        });
        let maintenance = Maintenance::start(&engine, &service, &config);
        tracing::info!(address = ?addr, databases = ?engine.databases().names(), "serving Flight SQL and /health");
        // Small request/response exchanges (one-row INSERTs) must not wait for delayed ACKs.
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            if let Ok(stream) = &conn {
                let _ = stream.set_nodelay(true);
            }
            conn
        });
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming_shutdown(incoming, signal)
            .await;
        maintenance.stop();
        engine.shutdown();
        let dbs = engine.databases().clone();
        // Sealing blocks (CHECKPOINT, uploads): off the async threads.
        let _ = crate::blocking::run(move |b| dbs.close_all(b)).await;
        served.map_err(|e| ServerError::Internal(format!("server failed: {e}")))
    }
}
