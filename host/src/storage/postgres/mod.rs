//! [`PostgresBackend`]: storage in a PostgreSQL database that several kvsync hosts share, behind
//! the same [`Backend`] contract as redb.
//!
//! * **What PostgreSQL sees**: key names and the values the barrier sealed (ciphertext), the
//!   version of each key, and the commit counter. Never plaintext, never the encryption key.
//! * **Versions** come from one counter row (`<table>_commit`). A commit bumps it in its last
//!   statement and holds the row lock until it is durable, so versions are the commit order
//!   (and the order of the notifications below), each key's version only grows, and a conflict
//!   consumes no version — as with redb.
//! * **Commits** (`READ COMMITTED`, two round trips): `BEGIN`, an advisory lock per key named by
//!   a condition or an operation (`pg_advisory_xact_lock(<store>, hash(key))`, in ascending
//!   order, so two commits never wait on each other in a cycle), the conditions read after the
//!   locks are held; then one statement that bumps the counter, deletes and upserts the rows and
//!   notifies, and `COMMIT`. The lock stands for the key whether or not its row exists, so a
//!   concurrent insert of an absent key (a phantom) cannot slip between the check and the write;
//!   a failed condition rolls back (`Conflict`, nothing written). A commit runs to its end even
//!   when its caller stops waiting, so no connection goes back to the pool inside a transaction;
//!   a connection whose state is unknown after an error is dropped.
//! * **Listing** in byte order (`bytea` keys), with delimiter folding that seeks past each folded
//!   group inside PostgreSQL (a recursive query, one index probe per group), one round trip per
//!   page.
//! * **Caching**: see [`cache`] — reads are served from memory while nothing this host saw is
//!   missing from the cache; commits notify (`pg_notify(<table>_changes, ...)`, the version and
//!   the keys) and every host's listener drops what they changed. The same notifications feed
//!   [`Backend::watch`].
//! * **Pool**: at most `max_parallel` connections (deadpool), plus one for the listener.

mod cache;
mod connect;
mod schema;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::AsyncMessage;

pub use self::connect::{ConnectOptions, TlsMode};
pub use self::schema::{SchemaState, check_table_name};

/// The schema version this kvsync writes and reads.
pub fn schema_version() -> i32 {
    schema::latest()
}

use self::cache::Cache;
use self::schema::Names;
use self::tls::MakeRustls;
use super::watch::Feed;
use super::{Backend, Change, Changes, Condition, Entry, Op, Page, StorageError, effective_limit};

/// How long a storage call waits for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Largest `pg_notify` payload kvsync sends (PostgreSQL's limit is 8000 bytes); a commit whose
/// keys do not fit notifies "anything may have changed".
const MAX_PAYLOAD: usize = 7900;
/// The listener's reconnection delays.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The settings of a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect: ConnectOptions,
    /// The data table; the commit and schema tables and the channel are named after it.
    pub table: String,
    /// Most connections of the pool.
    pub max_parallel: usize,
}

/// Maps a client error to [`StorageError::Unavailable`]. The client's errors name the server's
/// complaint and never the connection's password (which kvsync does not put in any query).
pub(super) fn pg_error(context: &str, err: &tokio_postgres::Error) -> StorageError {
    StorageError::Unavailable(format!("PostgreSQL: {context}: {}", with_causes(err)))
}

/// An error and its causes (`error performing TLS handshake: invalid peer certificate: ...`).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    // Bounded: error chains are short; a cycle would be a bug elsewhere.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Unavailable(format!("PostgreSQL: stored {what} is out of range"))
}

fn version_of(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| corrupt("version"))
}

/// The SQL of each operation, with the store's names in it.
struct Sql {
    get: String,
    list: String,
    list_folded: String,
    lock: String,
    check: String,
    write: String,
    counter: String,
}

impl Sql {
    fn new(n: &Names) -> Self {
        let (data, commit) = (&n.data, &n.commit);
        Sql {
            get: format!(
                "SELECT c.version, d.value, d.version FROM {commit} c \
                 LEFT JOIN {data} d ON d.key = $1::bytea"
            ),
            // $1: first key (inclusive), $2: end (exclusive), $3: how many.
            list: format!(
                "SELECT c.version, k.key FROM {commit} c LEFT JOIN LATERAL \
                 (SELECT key FROM {data} WHERE key >= $1::bytea AND key < $2::bytea \
                  ORDER BY key LIMIT $3::int8) k ON true ORDER BY k.key"
            ),
            // As `list`, one key per folded group: after a key whose part past the prefix
            // ($5 - 1 bytes) holds the delimiter ($4), the walk continues at the first key past
            // the group (group || 0xFF: no UTF-8 key has that byte, so every member sorts
            // before it); after any other key, at the key's immediate successor (key || 0x00).
            list_folded: format!(
                "WITH RECURSIVE walk(key, n) AS ( \
                   (SELECT key, 1 FROM {data} WHERE key >= $1::bytea AND key < $2::bytea \
                    ORDER BY key LIMIT 1) \
                   UNION ALL \
                   SELECT nx.key, walk.n + 1 FROM walk CROSS JOIN LATERAL ( \
                     SELECT key FROM {data} \
                     WHERE key >= (CASE WHEN position($4::bytea IN substring(walk.key FROM $5::int4)) > 0 \
                       THEN substring(walk.key FROM 1 FOR $5::int4 - 2 \
                              + position($4::bytea IN substring(walk.key FROM $5::int4)) \
                              + length($4::bytea)) || '\\xff'::bytea \
                       ELSE walk.key || '\\x00'::bytea END) \
                     AND key < $2::bytea ORDER BY key LIMIT 1) nx \
                   WHERE walk.n < $3::int8 \
                 ) \
                 SELECT c.version, w.key FROM {commit} c LEFT JOIN walk w ON true ORDER BY w.key"
            ),
            lock: "SELECT pg_advisory_xact_lock($1::int4, l) \
                   FROM unnest($2::int4[]) WITH ORDINALITY AS u(l, i) ORDER BY i"
                .to_owned(),
            check: format!("SELECT key, version FROM {data} WHERE key = ANY($1::bytea[])"),
            // $1: keys to delete, $2/$3: keys and values to upsert, $4: channel, $5: payload kind,
            // $6: payload keys.
            write: format!(
                "WITH c AS (UPDATE {commit} SET version = version + 1 RETURNING version), \
                 d AS (DELETE FROM {data} WHERE key = ANY($1::bytea[])), \
                 p AS (INSERT INTO {data} (key, value, version) \
                       SELECT u.k, u.v, (SELECT version FROM c) \
                       FROM unnest($2::bytea[], $3::bytea[]) AS u(k, v) \
                       ON CONFLICT (key) DO UPDATE \
                       SET value = EXCLUDED.value, version = EXCLUDED.version) \
                 SELECT version, pg_notify($4::text, $5::text || version::text || $6::text)::text FROM c"
            ),
            counter: format!("SELECT version FROM {commit}"),
        }
    }
}

struct Inner {
    pool: Pool,
    names: Names,
    sql: Sql,
    cache: Cache,
    feed: Feed,
    connect: ConnectOptions,
    tls: MakeRustls,
    description: String,
}

/// The PostgreSQL-backed storage. Cheap to share: wrap it in an `Arc`.
pub struct PostgresBackend {
    inner: Arc<Inner>,
    /// The listener task, stopped with the backend.
    listener: tokio::task::AbortHandle,
    applied: Vec<i32>,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("server", &self.inner.description)
            .field("table", &self.inner.names.table)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresBackend {
    /// Connects, brings the schema up to date (creating it when `create`: `operator init`) and
    /// starts listening for commits. `Ok(None)`: the database has no kvsync schema (and
    /// `create` was false).
    pub async fn open(settings: &Settings, create: bool) -> Result<Option<Self>, StorageError> {
        let names = Names::new(&settings.table)?;
        let tls = MakeRustls::new(&settings.connect)?;
        let description = settings.connect.describe();
        let manager = Manager::from_config(
            settings.connect.config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let connect_timeout = settings
            .connect
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(POOL_WAIT);
        let pool = Pool::builder(manager)
            .max_size(settings.max_parallel.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| StorageError::Unavailable(format!("PostgreSQL pool: {e}")))?;
        let inner = Arc::new(Inner {
            pool,
            sql: Sql::new(&names),
            names,
            cache: Cache::default(),
            feed: Feed::default(),
            connect: settings.connect.clone(),
            tls,
            description,
        });
        let applied = {
            let mut client = inner.client().await?;
            match schema::migrate(&mut client, &inner.names, create).await? {
                SchemaState::Missing => return Ok(None),
                SchemaState::Ready { applied } => applied,
            }
        };
        let listener = tokio::spawn(listen(Arc::clone(&inner))).abort_handle();
        Ok(Some(PostgresBackend {
            inner,
            listener,
            applied,
        }))
    }

    /// The server, without the password (`postgres://user@host:port/db (sslmode=...)`).
    pub fn describe(&self) -> &str {
        &self.inner.description
    }

    /// The data table.
    pub fn table(&self) -> &str {
        &self.inner.names.table
    }

    /// The migrations [`PostgresBackend::open`] applied (empty: the schema was up to date).
    pub fn applied_migrations(&self) -> &[i32] {
        &self.applied
    }

    /// Waits (at most `timeout`) until the listener hears commits, so that the cache serves and
    /// other hosts' commits reach [`Backend::watch`]. Whether it does.
    pub async fn wait_listening(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.cache.is_live() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Inner {
    async fn client(&self) -> Result<Object, StorageError> {
        self.pool.get().await.map_err(|e| {
            StorageError::Unavailable(format!(
                "PostgreSQL at {}: cannot get a connection: {}",
                self.description,
                with_causes(&e)
            ))
        })
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        // Ops apply in order: the last op of each key is what the commit leaves.
        let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put { key, value } => last.insert(key, Some(value)),
                Op::Delete { key } => last.insert(key, None),
            };
        }
        let mut deletes: Vec<&[u8]> = Vec::new();
        let mut put_keys: Vec<&[u8]> = Vec::new();
        let mut put_values: Vec<&[u8]> = Vec::new();
        for (key, value) in &last {
            match value {
                Some(value) => {
                    put_keys.push(key.as_bytes());
                    put_values.push(value.as_slice());
                }
                None => deletes.push(key.as_bytes()),
            }
        }
        let mut locks: Vec<i32> = conditions
            .iter()
            .map(|c| c.key.as_str())
            .chain(last.keys().map(String::as_str))
            .map(|key| schema::fnv1a32(key.as_bytes()))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let checked: Vec<&[u8]> = conditions.iter().map(|c| c.key.as_bytes()).collect();
        let (kind, payload) = payload_keys(last.keys());

        let client = self.client().await?;
        let lock = client
            .prepare_cached(&self.sql.lock)
            .await
            .map_err(|e| pg_error("prepare", &e))?;
        let check = client
            .prepare_cached(&self.sql.check)
            .await
            .map_err(|e| pg_error("prepare", &e))?;
        let write = client
            .prepare_cached(&self.sql.write)
            .await
            .map_err(|e| pg_error("prepare", &e))?;

        // Round trip 1: begin, lock every key, read the conditions' versions.
        let class = self.names.lock_class;
        let (begun, locked, current) = tokio::join!(
            client.batch_execute("BEGIN"),
            async {
                if locks.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.query(&lock, &[&class, &locks]).await
                }
            },
            async {
                if checked.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.query(&check, &[&checked]).await
                }
            },
        );
        let current = match (begun, locked, current) {
            (Ok(()), Ok(_), Ok(rows)) => rows,
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                // The transaction's state is unknown: the connection is not reused.
                drop(Object::take(client));
                return Err(pg_error("commit", &e));
            }
        };
        let mut versions: HashMap<Vec<u8>, i64> = HashMap::with_capacity(current.len());
        for row in current {
            let key: Vec<u8> = row.try_get(0).map_err(|e| pg_error("commit", &e))?;
            let version: i64 = row.try_get(1).map_err(|e| pg_error("commit", &e))?;
            versions.insert(key, version);
        }
        let holds = conditions.iter().all(|c| {
            let found = versions
                .get(c.key.as_bytes())
                .and_then(|v| u64::try_from(*v).ok());
            found == c.version
        });
        if !holds {
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
            return Err(StorageError::Conflict);
        }

        // Round trip 2: bump the counter, write, notify; commit (durable when it returns).
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &deletes,
            &put_keys,
            &put_values,
            &self.names.channel,
            &kind,
            &payload,
        ];
        let (written, committed) = tokio::join!(
            client.query_one(&write, &params),
            client.batch_execute("COMMIT"),
        );
        let version = match (written, committed) {
            (Ok(row), Ok(())) => version_of(
                row.try_get::<_, i64>(0)
                    .map_err(|e| pg_error("commit", &e))?,
            )?,
            (Err(e), Ok(())) => return Err(pg_error("commit", &e)),
            (_, Err(e)) => {
                drop(Object::take(client));
                return Err(pg_error("commit (its outcome is unknown)", &e));
            }
        };
        drop(client);
        self.cache
            .committed(version, last.keys().map(String::as_str));
        self.feed.committed(version, last.into_keys());
        Ok(version)
    }
}

/// The `pg_notify` payload of a commit's keys: kind `k` and `\n`-separated keys, each with `%`,
/// controls and non-ASCII bytes percent-encoded (the payload is ASCII whatever the database's
/// encoding); kind `a` ("anything may have changed") when they do not fit. The version goes
/// between the kind and the keys.
fn payload_keys<'a>(keys: impl Iterator<Item = &'a String>) -> (&'static str, String) {
    let mut payload = String::new();
    for key in keys {
        payload.push('\n');
        for &b in key.as_bytes() {
            if b == b'%' || !(0x20..0x7f).contains(&b) {
                payload.push_str(&format!("%{b:02X}"));
            } else {
                payload.push(char::from(b));
            }
        }
        if payload.len() > MAX_PAYLOAD {
            return ("a", String::new());
        }
    }
    ("k", payload)
}

/// A notification's version and keys (`None`: anything may have changed); `None` when it is not
/// one of kvsync's.
fn parse_payload(payload: &str) -> Option<(u64, Option<Vec<String>>)> {
    let mut lines = payload.split('\n');
    let head = lines.next()?;
    let (kind, version) = head.split_at_checked(1)?;
    let version = version.parse::<u64>().ok()?;
    match kind {
        "a" => Some((version, None)),
        "k" => {
            let keys = lines
                .map(|line| percent_decode(line).and_then(|bytes| String::from_utf8(bytes).ok()))
                .collect::<Option<Vec<String>>>()?;
            Some((version, Some(keys)))
        }
        _ => None,
    }
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The listener: one connection of its own that `LISTEN`s on the store's channel, applies each
/// commit's notification to the cache and the watch feed, and reconnects when it is lost.
async fn listen(inner: Arc<Inner>) {
    let mut delay = RECONNECT_MIN;
    loop {
        let result = listen_once(&inner, &mut delay).await;
        inner.cache.lost();
        inner.feed.send(Change::Lost);
        if let Err(e) = result {
            tracing::warn!(
                "PostgreSQL listener of table {} stopped ({e}); reconnecting in {delay:?}",
                inner.names.table
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

async fn listen_once(inner: &Inner, delay: &mut Duration) -> Result<(), StorageError> {
    let (client, mut connection) = inner
        .connect
        .config
        .connect(inner.tls.clone())
        .await
        .map_err(|e| pg_error("listener connection", &e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be polled for the client's queries to progress; it hands the
    // notifications over.
    let driver = tokio::spawn(async move {
        loop {
            match futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver.abort_handle());
    client
        .batch_execute(&format!("LISTEN \"{}\"", inner.names.channel))
        .await
        .map_err(|e| pg_error("LISTEN", &e))?;
    // Every commit after this counter is notified to us (we listen since before reading it).
    let counter: i64 = client
        .query_one(&inner.sql.counter, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error("read the commit counter", &e))?;
    inner.cache.resumed(version_of(counter)?);
    inner.feed.send(Change::Reset);
    *delay = RECONNECT_MIN;
    while let Some(notification) = rx.recv().await {
        if notification.channel() != inner.names.channel {
            continue;
        }
        let Some((version, keys)) = parse_payload(notification.payload()) else {
            return Err(StorageError::Unavailable(
                "a notification on the store's channel is not kvsync's".into(),
            ));
        };
        inner.cache.notified(version, keys.as_deref());
        inner.feed.send(match keys {
            Some(keys) => Change::Keys {
                version,
                keys: keys.into(),
            },
            None => Change::Reset,
        });
    }
    Err(StorageError::Unavailable("the connection closed".into()))
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let inner = &self.inner;
        if let Some(hit) = inner.cache.get(key) {
            return Ok(hit);
        }
        let client = inner.client().await?;
        let get = client
            .prepare_cached(&inner.sql.get)
            .await
            .map_err(|e| pg_error("prepare", &e))?;
        let row = client
            .query_one(&get, &[&key.as_bytes()])
            .await
            .map_err(|e| pg_error("read", &e))?;
        drop(client);
        let snapshot: i64 = row.try_get(0).map_err(|e| pg_error("read", &e))?;
        let value: Option<Vec<u8>> = row.try_get(1).map_err(|e| pg_error("read", &e))?;
        let version: Option<i64> = row.try_get(2).map_err(|e| pg_error("read", &e))?;
        let entry = match (value, version) {
            (Some(value), Some(version)) => Some(Entry {
                value,
                version: version_of(version)?,
            }),
            _ => None,
        };
        inner.cache.fill(key, version_of(snapshot)?, &entry);
        Ok(entry)
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        let inner = &self.inner;
        let limit = effective_limit(limit);
        let mut delim_buf = [0u8; 4];
        let delim = delimiter.map(|d| d.encode_utf8(&mut delim_buf).as_bytes().to_vec());
        // Keys under `prefix` lie in [prefix, prefix || 0xFF): no UTF-8 key holds 0xFF.
        let mut start = prefix.as_bytes().to_vec();
        match after {
            None => {}
            Some(after) => match delimiter.and_then(|d| group_of(after, d)) {
                // `after` lies inside a folded group (or is one): skip the whole group.
                Some(group) => {
                    start.extend_from_slice(group.as_bytes());
                    start.push(0xFF);
                }
                None => {
                    start.extend_from_slice(after.as_bytes());
                    start.push(0x00);
                }
            },
        }
        let mut end = prefix.as_bytes().to_vec();
        end.push(0xFF);
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);

        let client = inner.client().await?;
        let rows = match &delim {
            None => {
                let list = client
                    .prepare_cached(&inner.sql.list)
                    .await
                    .map_err(|e| pg_error("prepare", &e))?;
                client.query(&list, &[&start, &end, &fetch]).await
            }
            Some(delim) => {
                let list = client
                    .prepare_cached(&inner.sql.list_folded)
                    .await
                    .map_err(|e| pg_error("prepare", &e))?;
                let rel_start = i32::try_from(prefix.len())
                    .ok()
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| StorageError::Invalid("list prefix too long".into()))?;
                client
                    .query(&list, &[&start, &end, &fetch, delim, &rel_start])
                    .await
            }
        }
        .map_err(|e| pg_error("list", &e))?;
        drop(client);

        let mut keys = Vec::with_capacity(rows.len().min(limit));
        let mut more = false;
        let mut snapshot = 0;
        for row in rows {
            snapshot = row.try_get::<_, i64>(0).map_err(|e| pg_error("list", &e))?;
            let Some(key) = row
                .try_get::<_, Option<Vec<u8>>>(1)
                .map_err(|e| pg_error("list", &e))?
            else {
                continue;
            };
            if keys.len() == limit {
                more = true;
                break;
            }
            let key = String::from_utf8(key).map_err(|_| corrupt("key"))?;
            let rel = key
                .strip_prefix(prefix)
                .ok_or_else(|| corrupt("key order"))?;
            let rel = match delimiter.and_then(|d| group_of(rel, d)) {
                Some(group) => group.to_owned(),
                None => rel.to_owned(),
            };
            keys.push(rel);
        }
        inner.cache.observe(version_of(snapshot)?);
        let next = if more { keys.last().cloned() } else { None };
        Ok(Page { keys, next })
    }

    /// Runs in a task of its own: if the returned future is dropped, the commit still runs to
    /// completion (or conflict), and its connection goes back to the pool outside a transaction.
    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { inner.commit(conditions, ops).await })
            .await
            .map_err(|_| StorageError::Unavailable("commit task failed".into()))?
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn watch(&self) -> Option<Changes> {
        Some(self.inner.feed.subscribe())
    }
}

/// The part of `rel` up to and including the first `delimiter`, if it contains one.
fn group_of(rel: &str, delimiter: char) -> Option<&str> {
    rel.find(delimiter)
        .and_then(|i| rel.get(..i + delimiter.len_utf8()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let keys: Vec<String> = vec![
            "tenants/root/kv/a".into(),
            "100%\n*".into(),
            "é/ü".into(),
            String::new(),
        ];
        let (kind, keys_part) = payload_keys(keys.iter());
        assert_eq!(kind, "k");
        assert!(keys_part.is_ascii());
        let payload = format!("{kind}42{keys_part}");
        assert_eq!(parse_payload(&payload), Some((42, Some(keys))));
        assert_eq!(parse_payload("k7"), Some((7, Some(vec![]))));
        assert_eq!(parse_payload("a9"), Some((9, None)));
        for bad in ["", "x1", "k", "kx", "k1\n%zz", "k1\n%C3"] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
        let many: Vec<String> = (0..2000).map(|i| format!("tenants/root/key/{i}")).collect();
        assert_eq!(payload_keys(many.iter()), ("a", String::new()));
    }
}
