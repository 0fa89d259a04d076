//! The storage a server opens: the redb file (or memory) under the
//! encryption barrier, and the key it is sealed with. `kvsync operator init`
//! creates them; every other command opens them and checks the key.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::NewToken;
use crate::config::Config;
use crate::env::{self, Env};
use crate::storage::{Barrier, EncryptionKey, OpenError, RedbBackend, SharedBackend};

/// How the storage file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// By the server.
    Serve,
    /// By a command that works on the storage itself (`sync run`): refused,
    /// with advice, while a server holds it.
    Offline,
}

/// The storage key: `KVSYNC_ENCRYPTION_KEY` when set, else the key file.
pub fn load_key(config: &Config, env: &Env) -> anyhow::Result<EncryptionKey> {
    if let Some(b64) = &env.encryption_key {
        return EncryptionKey::from_base64(b64.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", env::ENCRYPTION_KEY));
    }
    let text = std::fs::read_to_string(&config.encryption_key_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the encryption key file {} ({e}); set {} or run `kvsync operator init`",
            config.encryption_key_file.display(),
            env::ENCRYPTION_KEY
        )
    })?;
    EncryptionKey::from_base64(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "encryption key file {}: {e}",
            config.encryption_key_file.display()
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

/// The configured storage, initialized and sealed with the key it was
/// initialized with (`config_path` is named in the advice when it is not).
pub async fn open(
    config: &Config,
    config_path: &Path,
    env: &Env,
    access: Access,
) -> anyhow::Result<SharedBackend> {
    let key = load_key(config, env)?;
    let file = config.storage_file();
    let cannot_open =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot open storage {}: {e}", file.display());
    let redb = match access {
        Access::Serve => RedbBackend::open(&file).map_err(|e| cannot_open(&e))?,
        Access::Offline => match RedbBackend::open_exclusive(&file) {
            Ok(redb) => redb,
            Err(OpenError::InUse(_)) => anyhow::bail!("{}", in_use_message(&config.storage_dir)),
            Err(OpenError::Storage(e)) => return Err(cannot_open(&e)),
        },
    };
    let barrier = Barrier::new(redb, key);
    if !barrier.is_initialized().await? {
        anyhow::bail!(
            "storage at {} is not initialized: run `kvsync operator init --config {}` first",
            config.storage_dir.display(),
            config_path.display()
        );
    }
    barrier.check_key().await?;
    Ok(Arc::new(barrier))
}

/// Fresh encrypted storage in memory, under a random key.
pub async fn in_memory() -> anyhow::Result<SharedBackend> {
    let barrier = Barrier::new(RedbBackend::in_memory()?, EncryptionKey::generate()?);
    barrier.init_key_check().await?;
    Ok(Arc::new(barrier))
}

/// What [`init`] did.
#[derive(Debug)]
pub struct Initialized {
    /// The root token, to be shown once.
    pub root: NewToken,
    /// The key came from `KVSYNC_ENCRYPTION_KEY` (no key file was written).
    pub key_from_env: bool,
}

/// `kvsync operator init`: creates the storage, its encryption key (written
/// to the key file with mode 0600, unless the environment supplies it) and
/// the initial root token. Refused on storage that is already initialized.
pub async fn init(config: &Config, env: &Env) -> anyhow::Result<Initialized> {
    std::fs::create_dir_all(&config.storage_dir)
        .with_context(|| format!("cannot create {}", config.storage_dir.display()))?;
    let key_from_env = env.encryption_key.is_some();
    let key = if key_from_env {
        load_key(config, env)?
    } else {
        EncryptionKey::generate()?
    };
    let redb = RedbBackend::open(&config.storage_file())?;
    let barrier = Barrier::new(redb, key.clone());
    if barrier.is_initialized().await? {
        anyhow::bail!(
            "storage at {} is already initialized",
            config.storage_dir.display()
        );
    }
    if !key_from_env {
        write_key_file(&config.encryption_key_file, &key)?;
    }
    barrier.init_key_check().await?;
    let backend: SharedBackend = Arc::new(barrier);
    let (tokens, _) = super::identity(&backend).await?;
    let root = tokens.create_root(None).await?;
    Ok(Initialized { root, key_from_env })
}

fn write_key_file(path: &Path, key: &EncryptionKey) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
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

    fn error(opened: anyhow::Result<SharedBackend>) -> String {
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
        assert!(!done.key_from_env);
        assert!(done.root.token.expose().starts_with("hvs."));
        assert!(config.encryption_key_file.exists());
        let e = init(&config, &env).await.unwrap_err();
        assert!(e.to_string().contains("already initialized"), "{e}");

        let held = open(&config, path, &env, Access::Serve).await.unwrap();
        let e = error(open(&config, path, &env, Access::Offline).await);
        assert_eq!(e, in_use_message(&config.storage_dir));
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
