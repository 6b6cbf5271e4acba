//! Running SQL for clients: off the async runtime, streaming, cancellable, with timeouts.
//!
//! Every DuckDB call runs on a blocking thread. A query's thread prepares and executes the
//! statement and then fetches one chunk at a time into a small bounded channel, so a result of
//! any size is streamed in bounded memory: when the client reads slowly, the thread waits.
//! Each running query is registered by id with an [`Interrupter`], which is how cancellation,
//! timeouts and shutdown stop it.
//!
//! Transactions own one connection for their whole life; statements inside a transaction take
//! turns on it. Statements outside a transaction get a fresh connection each. A read-only grant
//! runs every statement inside a `READ ONLY` DuckDB transaction and may not end it early.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::arrow_types::{column_definitions, quote_ident};
use crate::auth::Grant;
use crate::blocking::Blocking;
use crate::database::{Database, Databases};
use crate::duck::{Conn, Interrupter, StatementKind};
use crate::error::{Result, ServerError};
use crate::expiring::{ExpiringMap, Owner};
use crate::params::bind_row;

/// Batches buffered between a query's thread and the client; the bound on a result's memory.
const STREAM_BUFFER: usize = 4;

/// A client transaction: one connection held from BEGIN to COMMIT or ROLLBACK.
pub struct Transaction {
    /// The transaction's id, as the client sees it.
    pub id: Uuid,
    /// The database it runs in.
    pub database: Arc<Database>,
    /// Whether it was begun read-only.
    pub read_only: bool,
    /// The token that began it: only it may use or end it.
    pub owner: Owner,
    conn: Mutex<Conn>,
}

/// Where a statement runs.
#[derive(Clone)]
pub enum Target {
    /// On a new connection to this database.
    Fresh(Arc<Database>),
    /// Inside this transaction.
    Transaction(Arc<Transaction>),
}

impl Target {
    /// The database the statement runs in.
    pub fn database(&self) -> &Arc<Database> {
        match self {
            Target::Fresh(db) => db,
            Target::Transaction(t) => &t.database,
        }
    }
}

/// A statement's result schema, parameter schema and kind, known without running it.
#[derive(Debug, Clone)]
pub struct Description {
    /// What kind of statement it is.
    pub kind: StatementKind,
    /// Whether running it may change the database (see [`crate::duck::Prepared::modifies`]).
    pub writes: bool,
    /// The schema of its result.
    pub schema: Schema,
    /// One field per parameter.
    pub parameters: Schema,
}

/// How to create or reuse the target table of a bulk ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Create the table; fail if it exists.
    Create,
    /// Append to the table; fail if it does not exist.
    Append,
    /// Append, creating the table if it does not exist.
    CreateAppend,
    /// Replace the table if it exists, else create it.
    Replace,
}

/// Where ingested rows go.
#[derive(Debug, Clone)]
pub struct IngestTarget {
    /// Schema name (DuckDB schema), `main` when `None`.
    pub schema: Option<String>,
    /// Table name.
    pub table: String,
    /// Whether the table is temporary.
    pub temporary: bool,
    /// Create/append/replace behaviour.
    pub mode: IngestMode,
}

#[derive(Debug, Clone, Copy)]
enum StopReason {
    Cancelled,
    Timeout(Duration),
    Shutdown,
}

impl StopReason {
    fn error(self) -> ServerError {
        match self {
            StopReason::Cancelled => ServerError::Cancelled,
            StopReason::Timeout(d) => ServerError::Timeout(d),
            StopReason::Shutdown => ServerError::ShuttingDown,
        }
    }
}

struct Running {
    interrupter: Interrupter,
    reason: Option<StopReason>,
    /// The token that started it: only it may cancel it.
    owner: Owner,
}

/// How many transactions one token may hold open, and the server in all.
const TRANSACTIONS_PER_TOKEN: usize = 64;
const TRANSACTIONS_TOTAL: usize = 4_096;

/// The server's SQL engine.
pub struct Engine {
    databases: Arc<Databases>,
    query_timeout: Option<Duration>,
    running: Mutex<HashMap<Uuid, Running>>,
    /// The timeout timers of statements in flight, ended when their statement finishes (a
    /// timer left to sleep out the whole timeout would outlive the query by up to 30 minutes).
    timers: Mutex<HashMap<Uuid, tokio::task::AbortHandle>>,
    /// Queries stopped (cancelled, timed out) before they started, so they never start.
    stopped_early: ExpiringMap<Uuid, StopReason>,
    /// Open transactions, each its token's, rolled back once idle past the idle timeout.
    transactions: ExpiringMap<Uuid, Arc<Transaction>>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another request panicked; the maps stay consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce(&Blocking) -> Result<T> + Send + 'static) -> Result<T> {
    crate::blocking::run(f).await?
}

impl Engine {
    /// An engine over `databases`.
    pub fn new(databases: Arc<Databases>, query_timeout: Option<Duration>, transaction_idle: Duration) -> Arc<Self> {
        Arc::new(Engine {
            databases,
            query_timeout,
            running: Mutex::new(HashMap::new()),
            timers: Mutex::new(HashMap::new()),
            stopped_early: ExpiringMap::new(Duration::from_secs(3600), 10_000, 100_000),
            transactions: ExpiringMap::new(transaction_idle, TRANSACTIONS_PER_TOKEN, TRANSACTIONS_TOTAL),
            stopping: AtomicBool::new(false),
        })
    }

    /// The databases this engine serves.
    pub fn databases(&self) -> &Arc<Databases> {
        &self.databases
    }

    /// Resolves where a call runs: its transaction if it names one, else the named (or default)
    /// database, checking the grant either way.
    pub fn target(&self, grant: &Grant, database: Option<&str>, transaction: Option<&[u8]>) -> Result<Target> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ServerError::ShuttingDown);
        }
        if let Some(raw) = transaction.filter(|t| !t.is_empty()) {
            let t = self.transaction(raw, grant)?;
            if !grant.allows(t.database.name()) {
                return Err(ServerError::DatabaseNotGranted(t.database.name().to_string()));
            }
            if grant.read_only && !t.read_only {
                return Err(ServerError::ReadOnly("joining a read-write transaction".into()));
            }
            if let Some(name) = database {
                if name != t.database.name() {
                    return Err(ServerError::InvalidArgument(format!(
                        "transaction belongs to database '{}', not '{name}'",
                        t.database.name()
                    )));
                }
            }
            return Ok(Target::Transaction(t));
        }
        let name = database.unwrap_or(self.databases.default_name());
        if !grant.allows(name) {
            return Err(ServerError::DatabaseNotGranted(name.to_string()));
        }
        Ok(Target::Fresh(self.databases.get(Some(name))?))
    }

    /// Resolves a call that reads snapshot `id` of a database (read-only), checking the grant.
    pub async fn snapshot_target(&self, grant: &Grant, database: Option<&str>, id: i64) -> Result<Target> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ServerError::ShuttingDown);
        }
        let name = database.unwrap_or(self.databases.default_name());
        if !grant.allows(name) {
            return Err(ServerError::DatabaseNotGranted(name.to_string()));
        }
        Ok(Target::Fresh(self.databases.snapshot(name, id).await?))
    }

    /// The transaction `raw` of the calling token (another token's is unknown to it).
    fn transaction(&self, raw: &[u8], grant: &Grant) -> Result<Arc<Transaction>> {
        let id = Uuid::from_slice(raw).map_err(|_| ServerError::InvalidArgument("malformed transaction id".into()))?;
        self.transactions.get(&id, grant.owner).ok_or_else(|| ServerError::NotFound(format!("unknown transaction {id} (ended or expired)")))
    }

    /// Runs `f` on the target's connection (guarded: see [`Conn::guard`]), inside a read-only
    /// transaction for read-only grants.
    /// A statement failing because DuckDB invalidated the database makes the database reopen
    /// ([`Database::recover`]); the statement's own error stands.
    fn with_conn<R>(b: &Blocking, target: &Target, read_only: bool, f: impl FnOnce(&Conn) -> Result<R>) -> Result<R> {
        let r = match target {
            Target::Fresh(db) => (|| {
                let conn = db.client_connection()?;
                if read_only {
                    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
                }
                let r = f(&conn);
                if read_only {
                    // Nothing can have been written; a failed statement leaves nothing to undo.
                    let _ = conn.execute_batch("ROLLBACK");
                }
                r
            })(),
            Target::Transaction(t) => {
                let conn = lock(&t.conn);
                f(&conn)
            }
        };
        if let Err(e) = &r {
            target.database().recover(b, e);
        }
        r
    }

    /// Runs a statement so that layered storage stays consistent. `run` sets the flag when the
    /// statement may write. Outside a client transaction, a change is made durable before it is
    /// acknowledged (inside one, at commit).
    fn durably<R>(b: &Blocking, target: &Target, run: impl FnOnce(&std::cell::Cell<bool>) -> Result<R>) -> Result<R> {
        let wrote = std::cell::Cell::new(false);
        let Target::Fresh(db) = target else {
            return run(&wrote);
        };
        if !db.is_layered() {
            return run(&wrote);
        }
        let r = run(&wrote)?;
        if wrote.get() {
            db.make_durable(b)?;
        }
        Ok(r)
    }

    /// Runs a client's `CHECKPOINT` ([`is_checkpoint`]) with `f`, on a connection of the
    /// server's own (the guard refuses checkpoints on clients' connections): through the sealer
    /// on layered storage, so the server's log and snapshots never disagree. Refused inside a
    /// transaction, to read-only grants and on followers.
    fn checkpoint<R>(b: &Blocking, target: &Target, read_only: bool, f: impl FnOnce(&Conn) -> Result<R>) -> Result<R> {
        let db = match target {
            Target::Transaction(_) => {
                return Err(ServerError::InvalidArgument(
                    "CHECKPOINT inside a transaction: end the transaction first (the server seals a checkpoint as a snapshot)".into(),
                ))
            }
            Target::Fresh(db) => db,
        };
        if read_only {
            return Err(ServerError::ReadOnly("CHECKPOINT".into()));
        }
        if let Some(reason) = db.follower_reason() {
            return Err(ServerError::NotWriter(reason));
        }
        let conn = db.connect()?;
        db.sealing(b, || f(&conn)).map(|(r, _)| r)
    }

    /// Runs `f` on the connection a statement needs: the server's own for a lone `CHECKPOINT`
    /// (see [`Engine::checkpoint`]), else the target's guarded one, keeping storage consistent.
    fn run_statement<R>(
        b: &Blocking,
        target: &Target,
        read_only: bool,
        sql: &str,
        f: impl FnOnce(&Conn, &std::cell::Cell<bool>) -> Result<R>,
    ) -> Result<R> {
        if is_checkpoint(sql, target.database().name()) {
            let unused = std::cell::Cell::new(false);
            return Self::checkpoint(b, target, read_only, |conn| f(conn, &unused));
        }
        Self::durably(b, target, |wrote| Self::with_conn(b, target, read_only, |conn| f(conn, wrote)))
    }

    /// Refuses statements a grant or target does not allow.
    fn check_kind(kind: StatementKind, target: &Target, read_only: bool) -> Result<()> {
        // (Anything else that writes meets DuckDB's own read-only error.)
        if matches!(kind, StatementKind::Dml | StatementKind::Ddl) {
            if let Some(reason) = target.database().follower_reason() {
                return Err(ServerError::NotWriter(reason));
            }
        }
        if kind == StatementKind::Forbidden {
            return Err(ServerError::PermissionDenied(
                "ATTACH, DETACH, LOAD, EXPORT and COPY FROM DATABASE are not allowed on an OpenDuck server".into(),
            ));
        }
        if kind == StatementKind::Transaction {
            if read_only {
                return Err(ServerError::ReadOnly("transaction control".into()));
            }
            if matches!(target, Target::Transaction(_)) {
                return Err(ServerError::InvalidArgument(
                    "BEGIN/COMMIT/ROLLBACK inside a Flight SQL transaction: use EndTransaction instead".into(),
                ));
            }
        }
        Ok(())
    }

    /// Runs `f` with a connection to the target (read-only grants inside a read-only transaction).
    pub async fn with_connection<R: Send + 'static>(
        &self,
        grant: &Grant,
        target: Target,
        f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let read_only = grant.read_only;
        blocking(move |b| Self::with_conn(b, &target, read_only, f)).await
    }

    /// Describes a statement without running it.
    pub async fn describe(self: &Arc<Self>, grant: &Grant, target: Target, sql: String) -> Result<Description> {
        let (read_only, owner, id) = (grant.read_only, grant.owner, Uuid::new_v4());
        let engine = self.clone();
        self.run_supervised(id, owner, move |b| {
            let checkpoint = is_checkpoint(&sql, target.database().name());
            let describe = |conn: &Conn| {
                // Preparing plans (constant folding included), which can take long: supervised.
                engine.register(id, owner, conn.interrupter())?;
                let p = conn.prepare(&sql)?;
                Self::check_kind(p.kind(), &target, read_only)?;
                // CALL, PRAGMA and the like may only read (`CALL range(9)`): DuckDB's binder knows.
                let writes = match p.kind() {
                    StatementKind::Select | StatementKind::Explain => false,
                    StatementKind::Other | StatementKind::Forbidden => checkpoint || p.modifies(),
                    StatementKind::Dml | StatementKind::Ddl | StatementKind::Transaction => true,
                };
                Ok(Description { kind: p.kind(), writes, schema: p.result_schema()?, parameters: p.parameter_schema()? })
            };
            let r = if checkpoint {
                // Described by the server's own connection: preparing runs nothing.
                target.database().connect().and_then(|c| describe(&c))
            } else {
                Self::with_conn(b, &target, read_only, describe)
            };
            r
        })
        .await
    }

    /// The result schema of a query once parameters are bound, for statements whose schema
    /// depends on parameter types (`SELECT ? AS x`). Runs the query under `LIMIT 0`.
    pub async fn schema_with_params(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        sql: String,
        params: Vec<RecordBatch>,
    ) -> Result<Schema> {
        let (read_only, owner, id) = (grant.read_only, grant.owner, Uuid::new_v4());
        let engine = self.clone();
        self.run_supervised(id, owner, move |b| {
            let r = Self::with_conn(b, &target, read_only, |conn| {
                engine.register(id, owner, conn.interrupter())?;
                let body = sql.trim_end().trim_end_matches(';');
                let wrapped = format!("SELECT * FROM (\n{body}\n) LIMIT 0");
                let mut stmt = conn.prepare(&wrapped)?;
                if let Some((Some(batch), row)) = param_rows(&params, stmt.parameter_count())?.first() {
                    bind_row(&mut stmt, batch, *row)?;
                }
                let stream = stmt.execute_streaming()?;
                Ok(stream.schema().as_ref().clone())
            });
            r
        })
        .await
    }

    fn register(&self, id: Uuid, owner: Owner, interrupter: Interrupter) -> Result<()> {
        if let Some(reason) = self.stopped_early.take(&id, owner) {
            return Err(reason.error());
        }
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ServerError::ShuttingDown);
        }
        lock(&self.running).insert(id, Running { interrupter, reason: None, owner });
        Ok(())
    }

    /// Unregisters a query and turns an interrupt error into the reason it was interrupted.
    fn finish<T>(&self, id: Uuid, r: Result<T>) -> Result<T> {
        if let Some(timer) = lock(&self.timers).remove(&id) {
            timer.abort();
        }
        let reason = lock(&self.running).remove(&id).and_then(|r| r.reason);
        match (r, reason) {
            (Err(ServerError::DuckDb(e)), Some(reason)) if e.0.to_lowercase().contains("interrupt") => Err(reason.error()),
            (r, _) => r,
        }
    }

    fn stop(&self, id: &Uuid, reason: StopReason) -> bool {
        let mut running = lock(&self.running);
        match running.get_mut(id) {
            Some(r) => {
                r.reason = Some(reason);
                r.interrupter.interrupt();
                true
            }
            None => false,
        }
    }

    /// Runs `f`, a statement's work that registers under `id` ([`Engine::register`]), on a
    /// blocking thread, [supervised](Engine::supervise), and unregisters it after.
    async fn run_supervised<T: Send + 'static>(
        self: &Arc<Self>,
        id: Uuid,
        owner: Owner,
        f: impl FnOnce(&Blocking) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.clone();
        let work = blocking(move |b| {
            let r = f(b);
            engine.finish(id, r)
        });
        self.supervise(id, owner, work).await
    }

    /// Awaits `work` (a statement being prepared or started) on behalf of a client:
    /// - for at most the query timeout, which so covers the whole statement: past it the client
    ///   gets the timeout error even while DuckDB is still planning (constant folding cannot be
    ///   interrupted), and the statement is interrupted when DuckDB next checks;
    /// - if the client goes away (this future is dropped), the statement is interrupted, and one
    ///   that changes data is rolled back.
    ///
    /// Either way a statement still waiting for a thread never starts.
    async fn supervise<T>(&self, id: Uuid, owner: Owner, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        struct StopOnDrop<'a> {
            engine: &'a Engine,
            id: Uuid,
            owner: Owner,
            reason: Option<StopReason>,
        }
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                if let Some(reason) = self.reason {
                    if !self.engine.stop(&self.id, reason) {
                        let _ = self.engine.stopped_early.insert(self.id, self.owner, reason);
                    }
                }
            }
        }
        let mut guard = StopOnDrop { engine: self, id, owner, reason: Some(StopReason::Cancelled) };
        let r = match self.query_timeout {
            None => work.await,
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => {
                    guard.reason = Some(StopReason::Timeout(limit));
                    tracing::warn!(query = %id, timeout = ?limit, "statement timed out before its first result");
                    return Err(ServerError::Timeout(limit));
                }
            },
        };
        guard.reason = None;
        r
    }

    fn arm_timeout(self: &Arc<Self>, id: Uuid) {
        if let Some(limit) = self.query_timeout {
            let engine = Arc::downgrade(self);
            let timer = tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                if let Some(engine) = engine.upgrade() {
                    lock(&engine.timers).remove(&id);
                    if engine.stop(&id, StopReason::Timeout(limit)) {
                        tracing::warn!(query = %id, timeout = ?limit, "query timed out; interrupted");
                    }
                }
            });
            lock(&self.timers).insert(id, timer.abort_handle());
        }
    }

    /// Cancels query `id`, running or not yet started. Returns whether it was running.
    /// Only the token that started a query cancels it (another token's cancel changes nothing).
    pub fn cancel(&self, grant: &Grant, id: Uuid) -> bool {
        let running_for = lock(&self.running).get(&id).map(|r| r.owner);
        match running_for {
            Some(owner) if owner == grant.owner => {
                if self.stop(&id, StopReason::Cancelled) {
                    tracing::info!(query = %id, "query cancelled by client");
                    return true;
                }
                false
            }
            Some(_) => false,
            None => {
                // Remembered for a while, in bounded memory; when full, the early cancel is lost
                // (the query then runs, as if the cancel had come after it).
                let _ = self.stopped_early.insert(id, grant.owner, StopReason::Cancelled);
                false
            }
        }
    }

    /// Runs a query and streams its result. Returns once the query has started (its schema is
    /// known) or failed. `params` holds one row per execution; all results are concatenated.
    pub async fn query(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        id: Uuid,
        sql: String,
        params: Vec<RecordBatch>,
    ) -> Result<(SchemaRef, mpsc::Receiver<Result<RecordBatch>>)> {
        self.stream(grant, target, id, sql, params, false).await
    }

    /// Like [`Engine::query`] for a fragment of a hybrid plan: only a query (SELECT) runs; any
    /// other statement is refused once prepared, before it runs.
    pub async fn query_fragment(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        id: Uuid,
        sql: String,
    ) -> Result<(SchemaRef, mpsc::Receiver<Result<RecordBatch>>)> {
        self.stream(grant, target, id, sql, Vec::new(), true).await
    }

    async fn stream(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        id: Uuid,
        sql: String,
        params: Vec<RecordBatch>,
        queries_only: bool,
    ) -> Result<(SchemaRef, mpsc::Receiver<Result<RecordBatch>>)> {
        let (read_only, owner) = (grant.read_only, grant.owner);
        let (schema_tx, schema_rx) = oneshot::channel::<Result<SchemaRef>>();
        let (batch_tx, batch_rx) = mpsc::channel(STREAM_BUFFER);
        let engine = self.clone();
        self.arm_timeout(id);
        // When the client goes away (the receiver is dropped), stop the query even if it is
        // busy computing and has nothing to send yet.
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let watch_tx = batch_tx.clone();
        let watcher = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = watch_tx.closed() => {
                    if let Some(engine) = watcher.upgrade() {
                        if engine.stop(&id, StopReason::Cancelled) {
                            tracing::info!(query = %id, "client went away; query interrupted");
                        }
                    }
                }
                _ = done_rx => {}
            }
        });
        // Not awaited: the query runs on while its batches stream out.
        drop(crate::blocking::spawn(move |b| {
            let _done = done_tx;
            let mut schema_tx = Some(schema_tx);
            let r = Self::run_statement(b, &target, read_only, &sql, |conn, wrote| {
                engine.register(id, owner, conn.interrupter())?;
                let on_schema = |schema: SchemaRef| {
                    if let Some(tx) = schema_tx.take() {
                        let _ = tx.send(Ok(schema));
                    }
                    Ok(())
                };
                // When the client went away, stop reading; dropping the stream ends the query.
                let on_batch = |batch| Ok(batch_tx.blocking_send(Ok(batch)).is_ok());
                Self::execute_rows(conn, &sql, &target, read_only, queries_only, &params, wrote, on_schema, on_batch)
            });
            let r = engine.finish(id, r);
            if let Err(e) = r {
                match schema_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => {
                        let _ = batch_tx.blocking_send(Err(e));
                    }
                }
            }
        }));
        let schema = self
            .supervise(id, owner, async {
                schema_rx.await.map_err(|_| ServerError::Internal("query thread ended without a result".into()))?
            })
            .await?;
        Ok((schema, batch_rx))
    }

    /// Prepares and runs `sql` on `conn` once per parameter row, handing the result's schema to
    /// `on_schema` (once) and its batches to `on_batch`, which returns whether to go on. With
    /// `queries_only`, anything but a SELECT is refused before it runs.
    #[allow(clippy::too_many_arguments)]
    fn execute_rows(
        conn: &Conn,
        sql: &str,
        target: &Target,
        read_only: bool,
        queries_only: bool,
        params: &[RecordBatch],
        wrote: &std::cell::Cell<bool>,
        mut on_schema: impl FnMut(SchemaRef) -> Result<()>,
        mut on_batch: impl FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        let mut stmt = conn.prepare(sql)?;
        Self::check_kind(stmt.kind(), target, read_only)?;
        if queries_only && stmt.kind() != StatementKind::Select {
            return Err(ServerError::InvalidArgument("a fragment is a query (SELECT)".into()));
        }
        if matches!(stmt.kind(), StatementKind::Dml | StatementKind::Ddl) && !stmt.frees_space() {
            target.database().check_size()?;
        }
        wrote.set(stmt.kind().may_write());
        let mut first_schema: Option<SchemaRef> = None;
        for (batch, row) in param_rows(params, stmt.parameter_count())? {
            if let Some(batch) = batch {
                bind_row(&mut stmt, batch, row)?;
            }
            let mut stream = stmt.execute_streaming()?;
            match &first_schema {
                None => {
                    first_schema = Some(stream.schema());
                    on_schema(stream.schema())?;
                }
                Some(s) if s.fields() != stream.schema().fields() => {
                    return Err(ServerError::InvalidArgument("parameter rows produced results of different schemas".into()));
                }
                Some(_) => {}
            }
            while let Some(batch) = stream.next_batch()? {
                if !on_batch(batch)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs a statement that changes data and returns its whole result, at most `max_bytes` of
    /// it: for statements run when described, whose result then waits in memory for its fetch.
    /// The change commits only once the whole result is in; past `max_bytes` it is rolled back,
    /// and inside a client's transaction the transaction with it (DuckDB cannot undo one
    /// statement of a transaction).
    pub async fn execute_collected(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        id: Uuid,
        sql: String,
        params: Vec<RecordBatch>,
        max_bytes: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (read_only, owner) = (grant.read_only, grant.owner);
        let engine = self.clone();
        self.arm_timeout(id);
        self.run_supervised(id, owner, move |b| {
            let own_txn = matches!(target, Target::Fresh(_)) && !read_only && !is_checkpoint(&sql, target.database().name());
            let too_big = || {
                let rolled_back = if own_txn { "the statement was rolled back" } else { "its transaction was rolled back" };
                ServerError::LimitExceeded(format!(
                    "the statement returned more than {} MiB, and {rolled_back}: a statement that changes data runs when it is described and its result waits in memory until fetched (return less, e.g. RETURNING fewer columns, or split the change)",
                    max_bytes >> 20
                ))
            };
            let r = Self::run_statement(b, &target, read_only, &sql, |conn, wrote| {
                engine.register(id, owner, conn.interrupter())?;
                if own_txn {
                    conn.execute_batch("BEGIN TRANSACTION")?;
                }
                let (mut schema, mut batches, mut bytes) = (None, Vec::new(), 0usize);
                let r = Self::execute_rows(
                    conn,
                    &sql,
                    &target,
                    read_only,
                    false,
                    &params,
                    wrote,
                    |s| {
                        schema = Some(s);
                        Ok(())
                    },
                    |batch| {
                        bytes += batch.get_array_memory_size();
                        if bytes > max_bytes {
                            return Err(too_big());
                        }
                        batches.push(batch);
                        Ok(true)
                    },
                );
                match &r {
                    Ok(()) if own_txn => conn.execute_batch("COMMIT")?,
                    Err(ServerError::LimitExceeded(_)) if !own_txn => conn.execute_batch("ROLLBACK")?,
                    Err(_) if own_txn => {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    _ => {}
                }
                r?;
                Ok((schema.ok_or_else(|| ServerError::Internal("statement produced no schema".into()))?, batches))
            });
            if let (Err(ServerError::LimitExceeded(_)), Target::Transaction(t)) = (&r, &target) {
                engine.transactions.remove_any(&t.id);
            }
            r
        })
        .await
    }

    /// Runs a statement for its effect; returns the number of rows changed, summed over all
    /// parameter rows.
    pub async fn update(self: &Arc<Self>, grant: &Grant, target: Target, sql: String, params: Vec<RecordBatch>) -> Result<i64> {
        let (read_only, owner) = (grant.read_only, grant.owner);
        let id = Uuid::new_v4();
        let engine = self.clone();
        self.arm_timeout(id);
        self.run_supervised(id, owner, move |b| {
            let r = Self::run_statement(b, &target, read_only, &sql, |conn, wrote| {
                engine.register(id, owner, conn.interrupter())?;
                let mut stmt = conn.prepare(&sql)?;
                Self::check_kind(stmt.kind(), &target, read_only)?;
                if read_only && stmt.kind().may_write() {
                    return Err(ServerError::ReadOnly(format!("{:?} statement", stmt.kind())));
                }
                if matches!(stmt.kind(), StatementKind::Dml | StatementKind::Ddl) && !stmt.frees_space() {
                    target.database().check_size()?;
                }
                wrote.set(stmt.kind().may_write());
                let mut total: u64 = 0;
                for (batch, row) in param_rows(&params, stmt.parameter_count())? {
                    if let Some(batch) = batch {
                        bind_row(&mut stmt, batch, row)?;
                    }
                    total += stmt.execute_update()?;
                }
                Ok(total as i64)
            });
            r
        })
        .await
    }

    /// Bulk-loads a stream of record batches into a table through DuckDB's appender, in one
    /// DuckDB transaction (unless already inside a client transaction). Returns the row count.
    pub async fn ingest(
        self: &Arc<Self>,
        grant: &Grant,
        target: Target,
        dest: IngestTarget,
        schema: SchemaRef,
        mut batches: mpsc::Receiver<Result<RecordBatch>>,
    ) -> Result<i64> {
        if grant.read_only {
            return Err(ServerError::ReadOnly("bulk ingest".into()));
        }
        if let Some(reason) = target.database().follower_reason() {
            return Err(ServerError::NotWriter(reason));
        }
        let (id, owner) = (Uuid::new_v4(), grant.owner);
        let engine = self.clone();
        blocking(move |b| {
            let r = Self::durably(b, &target, |wrote| {
                Self::with_conn(b, &target, false, |conn| {
                    engine.register(id, owner, conn.interrupter())?;
                    wrote.set(true);
                    let own_txn = matches!(target, Target::Fresh(_));
                    if own_txn {
                        conn.execute_batch("BEGIN TRANSACTION")?;
                    }
                    let r = (|| {
                        target.database().check_size()?;
                        prepare_ingest_table(conn, &dest, &schema)?;
                        let mut app = conn.appender(None, dest.schema.as_deref(), &dest.table).map_err(|e| {
                            if e.0.contains("could not be found") {
                                ServerError::NotFound(format!("Catalog Error: Table with name {} does not exist", dest.table))
                            } else {
                                e.into()
                            }
                        })?;
                        let mut rows: i64 = 0;
                        while let Some(batch) = batches.blocking_recv() {
                            let batch = batch?;
                            rows += batch.num_rows() as i64;
                            app.append_batch(&batch)?;
                        }
                        app.close()?;
                        Ok(rows)
                    })();
                    if own_txn {
                        match &r {
                            Ok(_) => conn.execute_batch("COMMIT")?,
                            Err(_) => {
                                let _ = conn.execute_batch("ROLLBACK");
                            }
                        }
                    }
                    r
                })
            });
            engine.finish(id, r)
        })
        .await
    }

    /// Begins a transaction on `db`; returns its id.
    pub async fn begin(&self, grant: &Grant, db: Arc<Database>) -> Result<Uuid> {
        if !grant.allows(db.name()) {
            return Err(ServerError::DatabaseNotGranted(db.name().to_string()));
        }
        let read_only = grant.read_only;
        let conn_db = db.clone();
        let conn = blocking(move |_| {
            let conn = conn_db.client_connection()?;
            conn.execute_batch(if read_only { "BEGIN TRANSACTION READ ONLY" } else { "BEGIN TRANSACTION" })?;
            Ok(conn)
        })
        .await?;
        let id = Uuid::new_v4();
        let owner = grant.owner;
        let t = Arc::new(Transaction { id, database: db, read_only, owner, conn: Mutex::new(conn) });
        if let Err(full) = self.transactions.insert(id, owner, t.clone()) {
            // Dropping the connection rolls the new transaction back.
            tokio::task::spawn_blocking(move || drop(t));
            return Err(ServerError::LimitExceeded(format!("too many open transactions: {full}; commit or roll back some first")));
        }
        tracing::debug!(transaction = %id, "transaction begun");
        Ok(id)
    }

    /// Commits or rolls back a transaction.
    pub async fn end(&self, grant: &Grant, raw_id: &[u8], commit: bool) -> Result<()> {
        let t = self.transaction(raw_id, grant)?;
        if !grant.allows(t.database.name()) {
            return Err(ServerError::DatabaseNotGranted(t.database.name().to_string()));
        }
        self.transactions.take(&t.id, grant.owner);
        let id = t.id;
        blocking(move |b| {
            let conn = lock(&t.conn);
            conn.execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })?;
            drop(conn);
            if commit && !t.read_only {
                t.database.make_durable(b)?;
            }
            Ok(())
        })
        .await?;
        tracing::debug!(transaction = %id, commit, "transaction ended");
        Ok(())
    }

    /// Rolls back transactions idle for longer than the idle timeout.
    pub fn expire_transactions(&self) {
        for t in self.transactions.sweep() {
            tracing::warn!(transaction = %t.id, "rolling back idle transaction");
            // Dropping the connection rolls the transaction back.
            tokio::task::spawn_blocking(move || drop(t));
        }
    }

    /// Stops accepting work and interrupts every running query.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let ids: Vec<Uuid> = lock(&self.running).keys().copied().collect();
        for id in &ids {
            self.stop(id, StopReason::Shutdown);
        }
        if !ids.is_empty() {
            tracing::warn!(count = ids.len(), "interrupted running queries for shutdown");
        }
        // Open transactions are rolled back when their connections drop.
        drop(self.transactions.drain());
    }

    /// Number of timeout timers still pending (each ends with its statement).
    #[cfg(test)]
    fn pending_timers(&self) -> usize {
        lock(&self.timers).len()
    }

    /// Number of queries running now.
    pub fn running_count(&self) -> usize {
        lock(&self.running).len()
    }
}

/// Whether `sql` is a lone `CHECKPOINT` or `FORCE CHECKPOINT` (of `database`, if it names one),
/// which the server runs through its sealer. Any other way of checkpointing is refused by the guard.
fn is_checkpoint(sql: &str, database: &str) -> bool {
    let words: Vec<String> =
        sql.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace()).split_whitespace().map(str::to_ascii_lowercase).collect();
    let rest = match words.first().map(String::as_str) {
        Some("force") if words.get(1).map(String::as_str) == Some("checkpoint") => &words[2..],
        Some("checkpoint") => &words[1..],
        _ => return false,
    };
    match rest {
        [] => true,
        [name] => name.trim_matches('"') == database.to_ascii_lowercase(),
        _ => false,
    }
}

/// The parameter row for each execution: `(None, 0)` once when nothing is bound.
fn param_rows(params: &[RecordBatch], expected: usize) -> Result<Vec<(Option<&RecordBatch>, usize)>> {
    let rows: Vec<_> = params.iter().flat_map(|b| (0..b.num_rows()).map(move |r| (Some(b), r))).collect();
    if rows.is_empty() {
        if expected > 0 {
            return Err(ServerError::InvalidArgument(format!("statement has {expected} parameter(s) but none were bound")));
        }
        return Ok(vec![(None, 0)]);
    }
    Ok(rows)
}

fn prepare_ingest_table(conn: &Conn, dest: &IngestTarget, schema: &Schema) -> Result<()> {
    let name = match &dest.schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&dest.table)),
        None => quote_ident(&dest.table),
    };
    let columns = column_definitions(schema).map_err(ServerError::InvalidArgument)?;
    let temp = if dest.temporary { "TEMPORARY " } else { "" };
    let sql = match dest.mode {
        IngestMode::Create => format!("CREATE {temp}TABLE {name} ({columns})"),
        IngestMode::CreateAppend => format!("CREATE {temp}TABLE IF NOT EXISTS {name} ({columns})"),
        IngestMode::Replace => format!("CREATE OR REPLACE {temp}TABLE {name} ({columns})"),
        IngestMode::Append => return Ok(()),
    };
    conn.execute_batch(&sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DuckDbSettings;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_finished_statement_leaves_no_timeout_timer_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = Arc::new(Databases::open_dir(dir.path(), "db", DuckDbSettings::default()).unwrap());
        let engine = Engine::new(dbs, Some(Duration::from_secs(3600)), Duration::from_secs(900));
        let grant = Grant::all();
        for i in 0..20 {
            let target = engine.target(&grant, None, None).unwrap();
            engine.update(&grant, target, format!("CREATE OR REPLACE TABLE t{} AS SELECT 1 AS x", i % 2), vec![]).await.unwrap();
            let target = engine.target(&grant, None, None).unwrap();
            let (_, mut rx) = engine.query(&grant, target, Uuid::new_v4(), "SELECT 42".into(), vec![]).await.unwrap();
            while rx.recv().await.is_some() {}
        }
        // The query's thread finishes just after its last batch is sent.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while engine.pending_timers() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.pending_timers(), 0, "timers outlived their statements");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_invalidated_database_is_reopened_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = Arc::new(Databases::open_dir(dir.path(), "db", DuckDbSettings::default()).unwrap());
        let engine = Engine::new(dbs.clone(), None, Duration::from_secs(900));
        let grant = Grant::all();
        let target = || engine.target(&grant, None, None).unwrap();
        engine.update(&grant, target(), "CREATE TABLE t AS SELECT range AS i FROM range(100)".into(), vec![]).await.unwrap();
        // A fatal error inside DuckDB invalidates the instance: every statement fails after it.
        dbs.get(None).unwrap().connect().unwrap().invalidate_for_test("a fatal error, for the test");
        let err = engine.update(&grant, target(), "INSERT INTO t VALUES (100)".into(), vec![]).await.unwrap_err();
        assert!(err.to_string().contains("invalidated"), "{err}");
        // The failing statement made the server open the database again, data and all.
        let (_, mut rx) = engine.query(&grant, target(), Uuid::new_v4(), "SELECT count(*) FROM t".into(), vec![]).await.unwrap();
        let batch = rx.recv().await.unwrap().unwrap();
        assert_eq!(batch.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0), 100);
        assert_eq!(engine.update(&grant, target(), "INSERT INTO t VALUES (100)".into(), vec![]).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_invalidated_layered_database_is_reopened_and_sealed() {
        use crate::config::{FuseMode, LayeredStorage};
        use openduck_layers::compaction::CompactionPolicy;
        use openduck_layers::object_store::LocalDirStore;
        use openduck_layers::retention::Retention;
        let dir = tempfile::tempdir().unwrap();
        let meta =
            openduck_layers::storage::open_metadata(&format!("sqlite://{}", dir.path().join("meta.sqlite").display())).await.unwrap();
        let storage = openduck_layers::storage::Storage {
            store: Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap()),
            meta: meta.clone(),
            describe: "test".into(),
        };
        let layers = LayeredStorage {
            storage,
            holder: "test".into(),
            lease_ttl: Duration::from_secs(60),
            fuse: FuseMode::Off,
            fuse_heads: false,
            compaction: CompactionPolicy { max_layers: 0, max_bytes: 1 << 20 },
            retention: Retention { keep_last: 100, keep_for: Duration::from_secs(3600) },
            gc_interval: None,
            gc_grace: Duration::from_secs(3600),
        };
        let dbs = Arc::new(Databases::open_layered(&dir.path().join("disk"), "db", DuckDbSettings::default(), layers).await.unwrap());
        let engine = Engine::new(dbs.clone(), None, Duration::from_secs(900));
        let grant = Grant::all();
        let target = || engine.target(&grant, None, None).unwrap();
        engine.update(&grant, target(), "CREATE TABLE t AS SELECT range AS i FROM range(100)".into(), vec![]).await.unwrap();
        let before = meta.snapshots("db").await.unwrap().len();
        dbs.get(None).unwrap().connect().unwrap().invalidate_for_test("a fatal error, for the test");
        assert!(engine.update(&grant, target(), "INSERT INTO t VALUES (100)".into(), vec![]).await.is_err());
        // Reopened and sealed: a new snapshot holds the acknowledged rows, and commits go on.
        assert!(meta.snapshots("db").await.unwrap().len() > before, "the reopened database was sealed");
        assert_eq!(engine.update(&grant, target(), "INSERT INTO t VALUES (100)".into(), vec![]).await.unwrap(), 1);
        let (_, mut rx) =
            engine.query(&grant, target(), Uuid::new_v4(), "SELECT count(*) FROM openduck_snapshots()".into(), vec![]).await.unwrap();
        assert!(rx.recv().await.unwrap().is_ok(), "the server's own functions are back too");
    }
}
