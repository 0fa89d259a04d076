//! The process environment. Every variable the `kvsync` command reads is
//! named here, and read once, at start-up ([`Env::from_process`]); the
//! commands receive the values. The connectors' endpoint overrides (named in
//! [`ConnectorEnv`]) are read here too, into [`Env::connectors`].

use std::ffi::OsString;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::auth::Token;
use crate::connectors::ConnectorEnv;

/// The storage encryption key, base64 of 32 bytes, instead of a key file.
pub const ENCRYPTION_KEY: &str = "KVSYNC_ENCRYPTION_KEY";
/// The log filter (`info`, `kvsync=debug`, ...); overrides `log_level`.
pub const LOG: &str = "KVSYNC_LOG";
/// Where the compiled component is cached.
pub const CACHE_DIR: &str = "KVSYNC_CACHE_DIR";
/// The cache's parent when `KVSYNC_CACHE_DIR` is not set (`<it>/kvsync`).
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// The user's home: `~/.cache/kvsync` and `~/.vault-token`.
pub const HOME: &str = "HOME";
/// The server `kvsync sync status` asks, as for the Vault CLI.
pub const VAULT_ADDR: &str = "VAULT_ADDR";
/// The token `kvsync sync status` sends.
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
/// A PEM file of the CA that signed the server's certificate.
pub const VAULT_CACERT: &str = "VAULT_CACERT";
/// `1`/`true`: do not verify the server's TLS certificate.
pub const VAULT_SKIP_VERIFY: &str = "VAULT_SKIP_VERIFY";
/// PostgreSQL storage: the connection URL when the `storage "postgresql"` stanza has no
/// `connection_url`.
pub const PG_CONNECTION_URL: &str = "KVSYNC_PG_CONNECTION_URL";
/// libpq's variables, the defaults of whatever the connection URL leaves out (as libpq and
/// Vault's PostgreSQL storage read them).
pub const PGHOST: &str = "PGHOST";
pub const PGPORT: &str = "PGPORT";
pub const PGUSER: &str = "PGUSER";
pub const PGPASSWORD: &str = "PGPASSWORD";
pub const PGDATABASE: &str = "PGDATABASE";
pub const PGSSLMODE: &str = "PGSSLMODE";
pub const PGSSLROOTCERT: &str = "PGSSLROOTCERT";
pub const PGAPPNAME: &str = "PGAPPNAME";
pub const PGCONNECT_TIMEOUT: &str = "PGCONNECT_TIMEOUT";

/// What the environment says, read once.
#[derive(Default, Clone)]
pub struct Env {
    /// [`ENCRYPTION_KEY`], when set.
    pub encryption_key: Option<Zeroizing<String>>,
    /// [`LOG`], when set.
    pub log: Option<String>,
    /// The default cache directory: [`CACHE_DIR`], else
    /// `$XDG_CACHE_HOME/kvsync`, else `$HOME/.cache/kvsync`.
    pub cache_dir: Option<PathBuf>,
    /// What a Vault client reads.
    pub vault: VaultEnv,
    /// Where the connectors reach their providers.
    pub connectors: ConnectorEnv,
    /// How PostgreSQL storage connects when its stanza leaves something out.
    pub postgres: PostgresEnv,
}

// The key is a secret: `Debug` says whether it is set, never what it is.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "*****"),
            )
            .field("log", &self.log)
            .field("cache_dir", &self.cache_dir)
            .field("vault", &self.vault)
            .field("connectors", &self.connectors)
            .field("postgres", &self.postgres)
            .finish()
    }
}

/// [`PG_CONNECTION_URL`] and libpq's `PG*` variables, each when set and not empty.
#[derive(Default, Clone)]
pub struct PostgresEnv {
    /// [`PG_CONNECTION_URL`] (it may hold a password).
    pub connection_url: Option<Zeroizing<String>>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub user: Option<String>,
    pub password: Option<Zeroizing<String>>,
    pub dbname: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<PathBuf>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<String>,
}

// The URL and the password are secrets: `Debug` says whether they are set.
impl std::fmt::Debug for PostgresEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEnv")
            .field(
                "connection_url",
                &self.connection_url.as_ref().map(|_| "*****"),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "*****"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresEnv {
    fn from_lookup(text: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| text(name).filter(|v| !v.is_empty());
        PostgresEnv {
            connection_url: set(PG_CONNECTION_URL).map(Zeroizing::new),
            host: set(PGHOST),
            port: set(PGPORT),
            user: set(PGUSER),
            password: set(PGPASSWORD).map(Zeroizing::new),
            dbname: set(PGDATABASE),
            sslmode: set(PGSSLMODE),
            sslrootcert: set(PGSSLROOTCERT).map(PathBuf::from),
            application_name: set(PGAPPNAME),
            connect_timeout: set(PGCONNECT_TIMEOUT),
        }
    }
}

/// The Vault CLI's variables, as `kvsync sync status` reads them.
#[derive(Debug, Default, Clone)]
pub struct VaultEnv {
    /// [`VAULT_ADDR`], when set.
    pub address: Option<String>,
    /// [`VAULT_TOKEN`], when set.
    pub token: Option<Token>,
    /// [`VAULT_CACERT`], when set and not empty.
    pub ca_cert: Option<PathBuf>,
    /// [`VAULT_SKIP_VERIFY`] is `1` or true.
    pub skip_verify: bool,
    /// `$HOME/.vault-token`, the token's last resort.
    pub token_file: Option<PathBuf>,
}

impl Env {
    /// Reads this process's environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads an environment through `lookup` (a name's value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let text = |name: &str| lookup(name).and_then(|v| v.into_string().ok());
        let home = lookup(HOME).map(PathBuf::from);
        let cache_dir = lookup(CACHE_DIR)
            .map(PathBuf::from)
            .or_else(|| lookup(XDG_CACHE_HOME).map(|d| PathBuf::from(d).join("kvsync")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache").join("kvsync")));
        Env {
            encryption_key: text(ENCRYPTION_KEY).map(Zeroizing::new),
            log: text(LOG),
            cache_dir,
            vault: VaultEnv {
                address: text(VAULT_ADDR),
                token: text(VAULT_TOKEN).map(Token::new),
                ca_cert: text(VAULT_CACERT)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                skip_verify: text(VAULT_SKIP_VERIFY)
                    .is_some_and(|v| matches!(v.trim(), "1" | "true" | "t" | "TRUE" | "True")),
                token_file: home.map(|h| h.join(".vault-token")),
            },
            postgres: PostgresEnv::from_lookup(text),
            connectors: ConnectorEnv::from_lookup(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn reads_every_variable_once_into_values() {
        let e = env(&[
            (ENCRYPTION_KEY, "a2V5"),
            (LOG, "debug"),
            (HOME, "/home/op"),
            (VAULT_ADDR, "https://vault.example:8200/"),
            (VAULT_TOKEN, "s.tok"),
            (VAULT_CACERT, "/etc/ca.pem"),
            (VAULT_SKIP_VERIFY, "true"),
        ]);
        assert_eq!(
            e.encryption_key.as_deref().map(String::as_str),
            Some("a2V5")
        );
        assert_eq!(e.log.as_deref(), Some("debug"));
        assert_eq!(e.cache_dir, Some(PathBuf::from("/home/op/.cache/kvsync")));
        assert_eq!(
            e.vault.address.as_deref(),
            Some("https://vault.example:8200/")
        );
        assert_eq!(e.vault.token.as_ref().map(Token::expose), Some("s.tok"));
        assert_eq!(e.vault.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(e.vault.skip_verify);
        assert_eq!(
            e.vault.token_file,
            Some(PathBuf::from("/home/op/.vault-token"))
        );
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("s.tok") && !debug.contains("a2V5"),
            "{debug}"
        );
    }

    #[test]
    fn reads_postgres_variables_and_hides_secrets() {
        let e = env(&[
            (PG_CONNECTION_URL, "postgres://u:url-secret@db/x"),
            (PGHOST, "db.example"),
            (PGPORT, "5433"),
            (PGUSER, "kv"),
            (PGPASSWORD, "pw-secret"),
            (PGDATABASE, "kvsync"),
            (PGSSLMODE, "verify-full"),
            (PGSSLROOTCERT, "/etc/ca.pem"),
            (PGAPPNAME, ""),
        ]);
        let pg = &e.postgres;
        assert_eq!(
            pg.connection_url.as_deref().map(String::as_str),
            Some("postgres://u:url-secret@db/x")
        );
        assert_eq!(pg.host.as_deref(), Some("db.example"));
        assert_eq!(pg.port.as_deref(), Some("5433"));
        assert_eq!(pg.user.as_deref(), Some("kv"));
        assert_eq!(
            pg.password.as_deref().map(String::as_str),
            Some("pw-secret")
        );
        assert_eq!(pg.dbname.as_deref(), Some("kvsync"));
        assert_eq!(pg.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(pg.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(pg.application_name, None);
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("url-secret") && !debug.contains("pw-secret"),
            "{debug}"
        );
    }

    #[test]
    fn cache_dir_falls_back_in_order() {
        assert_eq!(
            env(&[(CACHE_DIR, "/c"), (XDG_CACHE_HOME, "/x"), (HOME, "/h")]).cache_dir,
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            env(&[(XDG_CACHE_HOME, "/x"), (HOME, "/h")]).cache_dir,
            Some(PathBuf::from("/x/kvsync"))
        );
        assert_eq!(env(&[]).cache_dir, None);
    }

    #[test]
    fn empty_or_false_values_count_as_unset() {
        let e = env(&[(VAULT_CACERT, ""), (VAULT_SKIP_VERIFY, "0")]);
        assert_eq!(e.vault.ca_cert, None);
        assert!(!e.vault.skip_verify);
        assert_eq!(e.vault.token_file, None);
    }
}
