//! The storage a server opens: the redb file (or memory), or a PostgreSQL
//! database, under the encryption barrier, and the key it is sealed with.
//! `kvsync operator init` creates them; every other command opens them and
//! checks the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::NewToken;
use crate::config::{Config, PostgresStorage, Storage};
use crate::env::{self, Env};
use crate::storage::postgres::{self, ConnectOptions};
use crate::storage::{
    Backend, Barrier, EncryptionKey, OpenError, PostgresBackend, RedbBackend, SharedBackend,
    SharedKeyring,
};

/// Storage under its encryption barrier, and the barrier's keyring.
#[derive(Clone)]
pub struct Sealed {
    pub backend: SharedBackend,
    pub keyring: SharedKeyring,
}

impl Sealed {
    fn of<B: Backend>(barrier: Barrier<B>) -> Self {
        let barrier = Arc::new(barrier);
        Sealed {
            backend: barrier.clone(),
            keyring: barrier,
        }
    }
}

/// How the storage is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// By the server.
    Serve,
    /// By a command that works on the storage itself (`sync run`): with
    /// redb, refused, with advice, while a server holds the file.
    Offline,
}

/// The storage key: `KVSYNC_ENCRYPTION_KEY` when set, else the key file.
pub fn load_key(config: &Config, env: &Env) -> anyhow::Result<EncryptionKey> {
    if let Some(b64) = &env.encryption_key {
        return EncryptionKey::from_base64(b64.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", env::ENCRYPTION_KEY));
    }
    let file = key_file(config)?;
    if file.exists() {
        crate::private_fs::check_key_file(file)?;
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the encryption key file {} ({e}); set {} or run `kvsync operator init`",
            file.display(),
            env::ENCRYPTION_KEY
        )
    })?;
    EncryptionKey::from_base64(text.trim())
        .map_err(|e| anyhow::anyhow!("encryption key file {}: {e}", file.display()))
}

/// The configured key file; PostgreSQL storage has no default one.
fn key_file(config: &Config) -> anyhow::Result<&Path> {
    config.encryption_key_file.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "storage \"postgresql\" needs `encryption_key_file` in the config file, or the key in {}",
            env::ENCRYPTION_KEY
        )
    })
}

/// The message when the storage file is held by a running server.
pub fn in_use_message(storage_dir: &Path) -> String {
    format!(
        "the storage at {} is in use by a running kvsync server; stop it or use `kvsync sync status`",
        storage_dir.display()
    )
}

/// The settings of PostgreSQL storage: the stanza's, completed from the
/// environment.
fn postgres_settings(pg: &PostgresStorage, env: &Env) -> anyhow::Result<postgres::Settings> {
    let connect = ConnectOptions::resolve(
        pg.connection_url.as_deref().map(String::as_str),
        &env.postgres,
    )
    .map_err(|e| anyhow::anyhow!("storage \"postgresql\": {e}"))?;
    Ok(postgres::Settings {
        connect,
        table: pg.table.clone(),
        max_parallel: pg.max_parallel,
    })
}

/// Opens PostgreSQL storage; `create`: create or upgrade its schema.
async fn open_postgres(
    pg: &PostgresStorage,
    env: &Env,
    create: bool,
    config_path: &Path,
) -> anyhow::Result<PostgresBackend> {
    let settings = postgres_settings(pg, env)?;
    let where_ = format!(
        "PostgreSQL storage (table {} at {})",
        settings.table,
        settings.connect.describe()
    );
    match PostgresBackend::open(&settings, create).await {
        Ok(Some(backend)) => Ok(backend),
        Ok(None) => Err(not_initialized(&where_, config_path)),
        Err(e) => Err(anyhow::anyhow!("cannot open {where_}: {e}")),
    }
}

fn not_initialized(where_: &str, config_path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{where_} is not initialized: run `kvsync operator init --config {}` first",
        config_path.display()
    )
}

/// The configured storage, initialized and sealed with the key it was
/// initialized with (`config_path` is named in the advice when it is not),
/// and a description of it for the start-up banner.
pub async fn open(
    config: &Config,
    config_path: &Path,
    env: &Env,
    access: Access,
) -> anyhow::Result<(Sealed, String)> {
    let key = load_key(config, env)?;
    match &config.storage {
        Storage::Redb { dir } => {
            let file = dir.join(crate::config::STORAGE_FILE);
            let cannot_open = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!("cannot open storage {}: {e}", file.display())
            };
            let redb = match access {
                Access::Serve => RedbBackend::open(&file).map_err(|e| cannot_open(&e))?,
                Access::Offline => match RedbBackend::open_exclusive(&file) {
                    Ok(redb) => redb,
                    Err(OpenError::InUse(_)) => anyhow::bail!("{}", in_use_message(dir)),
                    Err(OpenError::Storage(e)) => return Err(cannot_open(&e)),
                },
            };
            let where_ = format!("storage at {}", dir.display());
            let backend = sealed(redb, key, &where_, config_path).await?;
            Ok((backend, format!("redb (path: {})", dir.display())))
        }
        Storage::Postgres(pg) => {
            let backend = open_postgres(pg, env, false, config_path).await?;
            let description = format!(
                "postgresql ({}, table: {})",
                backend.describe(),
                backend.table()
            );
            let where_ = format!("PostgreSQL storage ({description})");
            Ok((
                sealed(backend, key, &where_, config_path).await?,
                description,
            ))
        }
    }
}

/// `backend` under the barrier of `key`, once its initialization and key are checked.
async fn sealed<B: Backend>(
    backend: B,
    key: EncryptionKey,
    where_: &str,
    config_path: &Path,
) -> anyhow::Result<Sealed> {
    let barrier = Barrier::new(backend, key);
    if !barrier.is_initialized().await? {
        return Err(not_initialized(where_, config_path));
    }
    barrier.check_key().await?;
    // Loads the keyring now, so a damaged one stops the start; storage from before keyrings
    // gets one here.
    barrier.key_status().await?;
    Ok(Sealed::of(barrier))
}

/// Fresh encrypted storage in memory, under a random key.
pub async fn in_memory() -> anyhow::Result<Sealed> {
    let barrier = Barrier::new(RedbBackend::in_memory()?, EncryptionKey::generate()?);
    barrier.init_key_check().await?;
    Ok(Sealed::of(barrier))
}

/// What [`init`] did.
#[derive(Debug)]
pub struct Initialized {
    /// The root token, to be shown once.
    pub root: NewToken,
    /// Where the key was written; `None`: it came from `KVSYNC_ENCRYPTION_KEY`.
    pub key_file: Option<PathBuf>,
    /// What was initialized (`redb (path: ...)`, or the PostgreSQL server,
    /// table and schema version).
    pub storage: String,
}

/// `kvsync operator init`: creates the storage (PostgreSQL: its schema, by
/// the migrations), its encryption key (written to the key file with mode
/// 0600, unless the environment supplies it) and the initial root token.
/// Refused on storage that is already initialized.
pub async fn init(config: &Config, env: &Env) -> anyhow::Result<Initialized> {
    let key_from_env = env.encryption_key.is_some();
    let key = if key_from_env {
        load_key(config, env)?
    } else {
        key_file(config)?;
        EncryptionKey::generate()?
    };
    match &config.storage {
        Storage::Redb { dir } => {
            crate::private_fs::create_dir(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let redb = RedbBackend::open(&dir.join(crate::config::STORAGE_FILE))?;
            let storage = format!("redb (path: {})", dir.display());
            initialize(
                redb,
                key,
                config,
                key_from_env,
                &format!("storage at {}", dir.display()),
                storage,
            )
            .await
        }
        Storage::Postgres(pg) => {
            let backend = open_postgres(pg, env, true, Path::new("-")).await?;
            let storage = format!(
                "postgresql ({}, table: {}, schema version {})",
                backend.describe(),
                backend.table(),
                postgres::schema_version()
            );
            let where_ = format!("PostgreSQL storage ({storage})");
            initialize(backend, key, config, key_from_env, &where_, storage).await
        }
    }
}

async fn initialize<B: Backend>(
    backend: B,
    key: EncryptionKey,
    config: &Config,
    key_from_env: bool,
    where_: &str,
    storage: String,
) -> anyhow::Result<Initialized> {
    let barrier = Barrier::new(backend, key.clone());
    if barrier.is_initialized().await? {
        anyhow::bail!("{where_} is already initialized");
    }
    let key_file = if key_from_env {
        None
    } else {
        let file = key_file(config)?;
        write_key_file(file, &key)?;
        Some(file.to_path_buf())
    };
    barrier.init_key_check().await?;
    let backend: SharedBackend = Arc::new(barrier);
    let (tokens, _) = super::identity(&backend).await?;
    let root = tokens.create_root(None).await?;
    Ok(Initialized {
        root,
        key_file,
        storage,
    })
}

fn write_key_file(path: &Path, key: &EncryptionKey) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private_fs::create_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create the key file {}: {e}", path.display()))?;
    file.write_all(key.to_base64().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(opened: anyhow::Result<(Sealed, String)>) -> String {
        match opened {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        }
    }

    fn config(dir: &Path) -> Config {
        Config::parse(&format!(
            r#"storage "redb" {{ path = "{}" }}
               listener "tcp" {{ tls_disable = 1 }}"#,
            dir.display()
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn init_then_open_and_what_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let path = Path::new("kvsync.hcl");
        let env = Env::default();
        let e = error(open(&config, path, &env, Access::Serve).await);
        assert!(e.contains("cannot read the encryption key file"), "{e}");

        let done = init(&config, &env).await.unwrap();
        assert_eq!(done.key_file, config.encryption_key_file);
        assert!(done.root.token.expose().starts_with("hvs."));
        assert!(config.encryption_key_file.as_ref().unwrap().exists());
        let e = init(&config, &env).await.unwrap_err();
        assert!(e.to_string().contains("already initialized"), "{e}");

        let held = open(&config, path, &env, Access::Serve).await.unwrap();
        let e = error(open(&config, path, &env, Access::Offline).await);
        assert_eq!(e, in_use_message(dir.path()));
        drop(held);
        open(&config, path, &env, Access::Offline).await.unwrap();

        let other_key = Env {
            encryption_key: Some(zeroize::Zeroizing::new(
                EncryptionKey::generate().unwrap().to_base64(),
            )),
            ..Env::default()
        };
        assert!(
            open(&config, path, &other_key, Access::Serve)
                .await
                .is_err()
        );
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn init_creates_private_files_and_open_refuses_a_shared_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let config = config(&dir);
        let env = Env::default();
        init(&config, &env).await.unwrap();
        let key = config.encryption_key_file.clone().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(crate::config::STORAGE_FILE)), 0o600);
        assert_eq!(mode(&key), 0o600);

        let path = Path::new("kvsync.hcl");
        for loose in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = error(open(&config, path, &env, Access::Serve).await);
            assert!(e.contains(&key.display().to_string()), "{e}");
            assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        open(&config, path, &env, Access::Serve).await.unwrap();
    }

    #[tokio::test]
    async fn uninitialized_storage_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let env = Env {
            encryption_key: Some(zeroize::Zeroizing::new(
                EncryptionKey::generate().unwrap().to_base64(),
            )),
            ..Env::default()
        };
        let e = error(open(&config, Path::new("my.hcl"), &env, Access::Serve).await);
        assert!(
            e.contains("run `kvsync operator init --config my.hcl` first"),
            "{e}"
        );
    }
}
