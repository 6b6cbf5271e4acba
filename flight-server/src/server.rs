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
use crate::service::OpenDuckService;

/// The `/health` answer. Anyone sees whether the server is up and how many databases it
/// serves; names, and why a database is unavailable, only a token granted them (send it as
/// `Authorization: Bearer …`). `status` is `degraded` while a database cannot be served.
fn health(engine: &Engine, grant: Option<&crate::auth::Grant>) -> serde_json::Value {
    let dbs = engine.databases();
    let unavailable = dbs.unavailable();
    let mut body = serde_json::json!({
        "status": if unavailable.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "duckdb": crate::duck::library_version(),
        "database_count": dbs.names().len(),
        "unavailable_count": unavailable.len(),
        "running_queries": engine.running_count(),
    });
    if let Some(grant) = grant {
        let names: Vec<String> = dbs.names().into_iter().filter(|n| grant.allows(n)).collect();
        let reasons: serde_json::Map<String, serde_json::Value> =
            unavailable.into_iter().filter(|(n, _)| grant.allows(n)).map(|(n, why)| (n, why.into())).collect();
        body["databases"] = names.into();
        body["unavailable"] = reasons.into();
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
        let engine = Engine::new(databases, config.query_timeout);
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
        let (sweeper_engine, sweeper_service) = (Arc::downgrade(&engine), Arc::downgrade(&service));
        let idle = config.transaction_idle_timeout;
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                match (sweeper_engine.upgrade(), sweeper_service.upgrade()) {
                    (Some(e), Some(s)) => {
                        e.expire_transactions(idle);
                        s.sweep();
                    }
                    _ => return,
                }
            }
        });
        let sealer = tokio::spawn(seal_loop(Arc::downgrade(&engine), config.seal_interval, config.seal_log_bytes, config.lease_ttl));
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
        sweeper.abort();
        sealer.abort();
        engine.shutdown();
        let dbs = engine.databases().clone();
        // Sealing blocks (CHECKPOINT, uploads): off the async threads.
        let _ = tokio::task::spawn_blocking(move || dbs.close_all()).await;
        served.map_err(|e| ServerError::Internal(format!("server failed: {e}")))
    }
}

/// Seals layered databases when due (see [`crate::database::Database::seal_due`]) and renews
/// their write leases, until the engine is gone.
async fn seal_loop(engine: std::sync::Weak<Engine>, interval: Duration, max_log: u64, lease_ttl: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_renewal = tokio::time::Instant::now();
    let mut last_discovery = tokio::time::Instant::now();
    let mut last_gc = tokio::time::Instant::now();
    let gc_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let registry = engine.databases().clone();
        let dbs = registry.all();
        drop(engine);
        if let Some(layers) = registry.layers().filter(|l| l.gc_interval.is_some_and(|i| last_gc.elapsed() >= i)) {
            last_gc = tokio::time::Instant::now();
            let (storage, grace) = (layers.storage.clone(), layers.gc_grace);
            let running = gc_running.clone();
            if !running.swap(true, std::sync::atomic::Ordering::SeqCst) {
                tokio::spawn(async move {
                    match openduck_layers::gc::collect_garbage(storage.meta.as_ref(), storage.store.as_ref(), "", grace).await {
                        Ok(r) if r.unreferenced.is_empty() && r.orphans.is_empty() => {}
                        Ok(r) => tracing::info!(layers = r.unreferenced.len(), orphans = r.orphans.len(), "garbage collected"),
                        Err(e) => {
                            tracing::warn!(error = %e, "garbage collection failed; retried later")
                        }
                    }
                    running.store(false, std::sync::atomic::Ordering::SeqCst);
                });
            }
        }
        if registry.layers().is_some() && last_discovery.elapsed() >= Duration::from_secs(1) {
            last_discovery = tokio::time::Instant::now();
            let followers = registry.clone();
            let _ = tokio::task::spawn_blocking(move || followers.refresh_followers()).await;
            match tokio::task::spawn_blocking(move || registry.open_new()).await {
                Ok(Ok(names)) if !names.is_empty() => {
                    tracing::info!(databases = ?names, "opened new databases")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "looking for new databases failed"),
                _ => {}
            }
        }
        let renew = last_renewal.elapsed() >= lease_ttl / 3;
        for db in dbs {
            if renew {
                if let Err(e) = db.renew_lease(lease_ttl).await {
                    tracing::error!(database = db.name(), error = %e, "renewing the write lease failed");
                }
            }
            if db.seal_due(interval, max_log) {
                let name = db.name().to_string();
                match tokio::task::spawn_blocking(move || db.seal()).await {
                    Ok(Ok(snapshot)) => tracing::debug!(database = %name, ?snapshot, "sealed"),
                    Ok(Err(e)) => {
                        tracing::error!(database = %name, error = %e, "sealing failed; retrying")
                    }
                    Err(e) => tracing::error!(database = %name, error = %e, "sealer thread failed"),
                }
            }
        }
        if renew {
            last_renewal = tokio::time::Instant::now();
        }
    }
}
