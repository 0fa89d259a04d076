//! The tables of PostgreSQL storage and their versioned migrations.
//!
//! For the configured `table` (default `kvsync_store`):
//!
//! * `<table>`: `key bytea PRIMARY KEY, value bytea, version bigint` — keys as their UTF-8
//!   bytes, so PostgreSQL orders them by byte whatever the database's encoding and collation
//!   (as redb does); values as the barrier sealed them; `version` the commit that wrote the row.
//! * `<table>_commit`: one row, the global commit counter (the version of the last commit).
//! * `<table>_schema`: one row per applied migration (`version`, `description`, `applied_at`).
//!
//! Migrations run in one transaction under an advisory lock of the store, so hosts starting
//! together apply each once; `kvsync operator init` creates the schema, a server brings an older
//! one up to date and refuses a missing or newer one.

use tokio_postgres::Client;

use super::super::StorageError;
use super::pg_error;

pub use kvsync_host_core::settings::check_table_name;

/// The names derived from the configured table, already quoted where SQL needs it.
#[derive(Debug, Clone)]
pub(super) struct Names {
    /// The configured table name, unquoted.
    pub(super) table: String,
    pub(super) data: String,
    pub(super) commit: String,
    pub(super) schema: String,
    /// The `LISTEN`/`NOTIFY` channel of commits (unquoted: `pg_notify` takes it as text).
    pub(super) channel: String,
    /// The first key of every advisory lock this store takes, so that two stores in one
    /// database never wait on each other.
    pub(super) lock_class: i32,
}

impl Names {
    pub(super) fn new(table: &str) -> Result<Self, StorageError> {
        check_table_name(table).map_err(StorageError::Invalid)?;
        Ok(Names {
            table: table.to_owned(),
            data: format!("\"{table}\""),
            commit: format!("\"{table}_commit\""),
            schema: format!("\"{table}_schema\""),
            channel: format!("{table}_changes"),
            lock_class: fnv1a32(format!("kvsync:{table}").as_bytes()),
        })
    }
}

/// FNV-1a, 32 bits: a hash every kvsync version computes alike (advisory lock keys are shared
/// by every host of a store, so this function may never change).
pub(super) fn fnv1a32(bytes: &[u8]) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// A step of the schema.
struct Migration {
    version: i32,
    description: &'static str,
    /// Statements, with `{data}`, `{commit}` standing for the quoted names.
    statements: &'static [&'static str],
}

/// Every migration, oldest first. Append new ones; never edit an applied one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "data table (bytea keys in byte order), global commit counter",
    statements: &[
        "CREATE TABLE {data} (
            key bytea PRIMARY KEY,
            value bytea NOT NULL,
            version bigint NOT NULL CHECK (version > 0)
        )",
        "CREATE TABLE {commit} (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            version bigint NOT NULL
        )",
        "INSERT INTO {commit} (id, version) VALUES (true, 0)",
    ],
}];

/// The schema version this kvsync writes and reads.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Where the schema stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// No schema yet (and none was created).
    Missing,
    /// At the latest version; `applied` lists the migrations this call ran.
    Ready { applied: Vec<i32> },
}

/// Brings the schema up to date: creates it when `create`, applies what is missing, refuses a
/// schema newer than this kvsync knows.
pub(super) async fn migrate(
    client: &mut Client,
    names: &Names,
    create: bool,
) -> Result<SchemaState, StorageError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error("begin migration", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&names.lock_class])
        .await
        .map_err(|e| pg_error("lock the schema", &e))?;
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            // Unqualified, as the tables are created: found through the `search_path`.
            &[&names.schema],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error("read the schema", &e))?;
    if !exists {
        if !create {
            return Ok(SchemaState::Missing);
        }
        tx.batch_execute(&format!(
            "CREATE TABLE {} (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
            names.schema
        ))
        .await
        .map_err(|e| pg_error("create the schema table", &e))?;
    }
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {}", names.schema),
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error("read the schema version", &e))?;
    if current == 0 && !create {
        return Ok(SchemaState::Missing);
    }
    let latest = latest();
    if current > latest {
        return Err(StorageError::Unavailable(format!(
            "the PostgreSQL schema of table {} is at version {current}, newer than this kvsync knows ({latest}): upgrade kvsync",
            names.table
        )));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        for statement in migration.statements {
            let sql = statement
                .replace("{data}", &names.data)
                .replace("{commit}", &names.commit);
            tx.batch_execute(&sql)
                .await
                .map_err(|e| pg_error(&format!("schema migration {}", migration.version), &e))?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (version, description) VALUES ($1, $2)",
                names.schema
            ),
            &[&migration.version, &migration.description],
        )
        .await
        .map_err(|e| pg_error("record the migration", &e))?;
        applied.push(migration.version);
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("commit the migration", &e))?;
    Ok(SchemaState::Ready { applied })
}

#[cfg(test)]
mod tests {
    use kvsync_host_core::settings::MAX_TABLE_NAME;

    use super::*;

    #[test]
    fn table_names() {
        for good in ["kvsync_store", "_t", "a1", &"x".repeat(MAX_TABLE_NAME)] {
            assert!(check_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Upper",
            "with-dash",
            "quote\"",
            "sp ace",
            "é",
            &"x".repeat(MAX_TABLE_NAME + 1),
        ] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
        let names = Names::new("kvsync_store").unwrap();
        assert_eq!(names.data, "\"kvsync_store\"");
        assert_eq!(names.channel, "kvsync_store_changes");
        assert_ne!(
            names.lock_class,
            Names::new("other_store").unwrap().lock_class
        );
    }

    #[test]
    fn fnv_is_stable() {
        // Shared by every host of a store: these values may never change.
        assert_eq!(
            fnv1a32(b""),
            i32::from_ne_bytes(0x811c_9dc5u32.to_ne_bytes())
        );
        assert_eq!(
            fnv1a32(b"a"),
            i32::from_ne_bytes(0xe40c_292cu32.to_ne_bytes())
        );
    }

    #[test]
    fn migrations_are_ordered() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(latest(), 1);
    }
}
