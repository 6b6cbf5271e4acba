//! The server's background work: one task per job, each on its own schedule, all ending when the
//! server stops ([`Maintenance::stop`]) or its engine is gone.
//!
//! | job | every | what |
//! |---|---|---|
//! | [`seal`] | 500 ms | seals each layered database whose log is due: non-empty and older than `--seal-interval`, or past `--seal-log-mib` ([`Database::seal_due`]); compaction and retention follow a seal |
//! | [`renew_leases`] | a third of `--lease-ttl` | renews this server's write leases |
//! | [`discover`] | 1 s | opens databases created elsewhere (`openduck db create`, clones), moves followers to newer snapshots, takes over databases whose writer's lease lapsed |
//! | [`collect_garbage`] | `--gc-interval` | deletes layers and objects nothing has needed for `--gc-grace` |
//! | [`expire_handles`] | 10 s | rolls back transactions idle past `--transaction-idle-timeout`, drops expired client handles |
//!
//! [`Database::seal_due`]: crate::database::Database::seal_due

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::database::Databases;
use crate::engine::Engine;
use crate::service::OpenDuckService;

/// The running background jobs.
pub struct Maintenance {
    tasks: Vec<JoinHandle<()>>,
}

impl Maintenance {
    /// Starts every job that applies (the layered-storage ones only with layered storage).
    pub fn start(engine: &Arc<Engine>, service: &Arc<OpenDuckService>, config: &ServerConfig) -> Self {
        let weak = Arc::downgrade(engine);
        let mut tasks = vec![tokio::spawn(expire_handles(weak.clone(), Arc::downgrade(service)))];
        if let Some(layers) = engine.databases().layers() {
            tasks.push(tokio::spawn(seal(weak.clone(), config.seal_interval, config.seal_log_bytes)));
            tasks.push(tokio::spawn(renew_leases(weak.clone(), layers.lease_ttl)));
            tasks.push(tokio::spawn(discover(weak.clone())));
            if let Some(interval) = layers.gc_interval {
                tasks.push(tokio::spawn(collect_garbage(weak, interval, layers.gc_grace)));
            }
        }
        Maintenance { tasks }
    }

    /// Stops every job (a job in the middle of a blocking step finishes that step).
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Runs `job` with the engine's database registry every `period` until the engine is gone.
async fn every<F, Fut>(engine: Weak<Engine>, period: Duration, mut job: F)
where
    F: FnMut(Arc<Databases>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(registry) = engine.upgrade().map(|e| e.databases().clone()) else { return };
        job(registry).await;
    }
}

/// Seals the databases whose log is due.
pub async fn seal(engine: Weak<Engine>, interval: Duration, max_log: u64) {
    every(engine, Duration::from_millis(500), |registry| async move {
        for db in registry.all().into_iter().filter(|db| db.seal_due(interval, max_log)) {
            let name = db.name().to_string();
            match crate::blocking::run(move |b| db.seal(b)).await {
                Ok(Ok(snapshot)) => tracing::debug!(database = %name, ?snapshot, "sealed"),
                Ok(Err(e)) => tracing::error!(database = %name, error = %e, "sealing failed; retrying"),
                Err(e) => tracing::error!(database = %name, error = %e, "sealer thread failed"),
            }
        }
    })
    .await
}

/// Renews this server's write leases, three times per lease lifetime.
pub async fn renew_leases(engine: Weak<Engine>, lease_ttl: Duration) {
    every(engine, lease_ttl / 3, |registry| async move {
        for db in registry.all() {
            if let Err(e) = db.renew_lease(lease_ttl).await {
                tracing::error!(database = db.name(), error = %e, "renewing the write lease failed");
            }
        }
    })
    .await
}

/// Opens new databases, refreshes followers and takes over databases whose writer is gone.
pub async fn discover(engine: Weak<Engine>) {
    every(engine, Duration::from_secs(1), |registry| async move {
        let followers = registry.clone();
        let _ = crate::blocking::run(move |b| followers.refresh_followers(b)).await;
        match crate::blocking::run(move |b| registry.open_new(b)).await {
            Ok(Ok(names)) if !names.is_empty() => tracing::info!(databases = ?names, "opened new databases"),
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for new databases failed"),
            _ => {}
        }
    })
    .await
}

/// Deletes layers and objects nothing has needed for `grace`. A run waits for the one before.
pub async fn collect_garbage(engine: Weak<Engine>, interval: Duration, grace: Duration) {
    // The first run comes one interval after the start.
    tokio::time::sleep(interval).await;
    every(engine, interval, |registry| async move {
        let Some(storage) = registry.layers().map(|l| l.storage.clone()) else { return };
        match openduck_layers::gc::collect_garbage(storage.meta.as_ref(), storage.store.as_ref(), "", grace).await {
            Ok(r) if r.unreferenced.is_empty() && r.orphans.is_empty() => {}
            Ok(r) => tracing::info!(layers = r.unreferenced.len(), orphans = r.orphans.len(), "garbage collected"),
            Err(e) => tracing::warn!(error = %e, "garbage collection failed; retried later"),
        }
    })
    .await
}

/// Rolls back idle transactions and drops expired handles of clients.
pub async fn expire_handles(engine: Weak<Engine>, service: Weak<OpenDuckService>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let (Some(engine), Some(service)) = (engine.upgrade(), service.upgrade()) else { return };
        engine.expire_transactions();
        service.sweep();
    }
}
