//! [`ConnectOptions`]: where and how PostgreSQL storage connects.
//!
//! The `connection_url` (from the stanza, else `KVSYNC_PG_CONNECTION_URL`) is a libpq URL
//! (`postgres://user:password@host:port/dbname?sslmode=verify-full`) or libpq's `key=value`
//! form; whatever it leaves out comes from libpq's variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`),
//! as libpq reads them. The password never leaves this module in text: [`ConnectOptions::describe`]
//! and every error name the server without it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use super::super::StorageError;
use crate::env::PostgresEnv;

/// The connect timeout when neither the URL nor `PGCONNECT_TIMEOUT` sets one.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The application name PostgreSQL shows for kvsync's sessions, unless set.
const APPLICATION_NAME: &str = "kvsync";

/// libpq's `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS, unverified, unless a root certificate is given (then as `VerifyCa`).
    Require,
    /// TLS, the server's certificate chain verified (not its name).
    VerifyCa,
    /// TLS, the chain and the server's name verified.
    VerifyFull,
}

impl TlsMode {
    fn parse(mode: &str) -> Result<Self, StorageError> {
        Ok(match mode {
            "disable" | "allow" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(StorageError::Invalid(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// The resolved connection settings.
#[derive(Clone)]
pub struct ConnectOptions {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: TlsMode,
    /// `sslrootcert`: the PEM file of the certificates to trust (else the system's).
    pub(super) root_cert: Option<PathBuf>,
}

// `tokio_postgres::Config`'s own `Debug` hides the password; `describe` is shorter.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ConnectOptions {
    /// Resolves `url` (the stanza's `connection_url`), else the environment's URL, then fills
    /// in what it leaves out from libpq's variables.
    pub fn resolve(url: Option<&str>, env: &PostgresEnv) -> Result<Self, StorageError> {
        let url = url.or(env.connection_url.as_deref().map(String::as_str));
        let (rest, sslmode, sslrootcert) = match url {
            Some(url) => split_tls_params(url)?,
            None => (String::new(), None, None),
        };
        let secret = password_in(url.unwrap_or_default());
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
            StorageError::Invalid(redact(
                &format!("the PostgreSQL connection URL is not valid: {e}"),
                secret.as_deref(),
            ))
        })?;
        if config.get_hosts().is_empty() {
            let hosts = env.host.as_deref().unwrap_or("localhost");
            for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                if host.starts_with('/') {
                    config.host_path(host);
                } else {
                    config.host(host);
                }
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = &env.port
        {
            for port in port.split(',').map(str::trim) {
                let port = port.parse::<u16>().map_err(|_| {
                    StorageError::Invalid(format!("PGPORT {port:?} is not a port number"))
                })?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            match &env.user {
                Some(user) => config.user(user),
                None => {
                    return Err(StorageError::Invalid(
                        "PostgreSQL storage needs a user: in connection_url (postgres://USER@host/db) or PGUSER".into(),
                    ));
                }
            };
        }
        if config.get_password().is_none()
            && let Some(password) = &env.password
        {
            config.password(password.as_bytes());
        }
        if config.get_dbname().is_none()
            && let Some(dbname) = &env.dbname
        {
            config.dbname(dbname);
        }
        if config.get_application_name().is_none() {
            config.application_name(env.application_name.as_deref().unwrap_or(APPLICATION_NAME));
        }
        if config.get_connect_timeout().is_none() {
            let timeout = match &env.connect_timeout {
                Some(secs) => secs
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        StorageError::Invalid(format!(
                            "PGCONNECT_TIMEOUT {secs:?} is not a number of seconds"
                        ))
                    })?,
                None => DEFAULT_CONNECT_TIMEOUT,
            };
            config.connect_timeout(timeout);
        }
        let tls = match sslmode.or_else(|| env.sslmode.clone()) {
            Some(mode) => TlsMode::parse(&mode)?,
            None => TlsMode::Prefer,
        };
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        Ok(ConnectOptions {
            config,
            tls,
            root_cert: sslrootcert
                .map(PathBuf::from)
                .or_else(|| env.sslrootcert.clone()),
        })
    }

    /// The server and the settings, without the password: `postgres://user@host:port/db
    /// (sslmode=require)`.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                let port = self
                    .config
                    .get_ports()
                    .get(i)
                    .or(self.config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                format!("{name}:{port}")
            })
            .collect();
        format!(
            "postgres://{}@{}/{} (sslmode={})",
            self.config.get_user().unwrap_or_default(),
            hosts.join(","),
            self.config
                .get_dbname()
                .or(self.config.get_user())
                .unwrap_or_default(),
            self.tls.name()
        )
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or a `key=value` string (the client
/// library knows only some of libpq's modes; kvsync applies them itself).
fn split_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), StorageError> {
    let mut sslmode = None;
    let mut sslrootcert = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "sslmode" => sslmode = Some(value.into_owned()),
                "sslrootcert" => sslrootcert = Some(value.into_owned()),
                _ => {
                    kept.append_pair(&key, &value);
                }
            }
        }
        let kept = kept.finish();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        };
        return Ok((rest, sslmode, sslrootcert));
    }
    // `key=value` pairs separated by spaces (quoted values of other keys are kept whole).
    let mut kept = Vec::new();
    for pair in url.split_whitespace() {
        match pair.split_once('=') {
            Some(("sslmode", value)) => sslmode = Some(value.trim_matches('\'').to_owned()),
            Some(("sslrootcert", value)) => {
                sslrootcert = Some(value.trim_matches('\'').to_owned());
            }
            _ => kept.push(pair),
        }
    }
    Ok((kept.join(" "), sslmode, sslrootcert))
}

/// The password written in a connection URL, to keep it out of error texts.
fn password_in(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `text` with every occurrence of `secret` replaced by `*****`.
pub(super) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "*****"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn resolve(url: Option<&str>, env: &PostgresEnv) -> ConnectOptions {
        ConnectOptions::resolve(url, env).unwrap()
    }

    #[test]
    fn url_then_environment() {
        let env = PostgresEnv {
            host: Some("env-host".into()),
            port: Some("6543".into()),
            user: Some("env-user".into()),
            password: Some(Zeroizing::new("env-pw".into())),
            dbname: Some("env-db".into()),
            sslmode: Some("verify-full".into()),
            ..PostgresEnv::default()
        };
        let o = resolve(
            Some("postgres://kv:url%20pw@db.example:5433/store?sslmode=require&connect_timeout=3"),
            &env,
        );
        assert_eq!(o.config.get_user(), Some("kv"));
        assert_eq!(o.config.get_password(), Some(&b"url pw"[..]));
        assert_eq!(o.config.get_dbname(), Some("store"));
        assert_eq!(o.config.get_ports(), &[5433]);
        assert_eq!(o.tls, TlsMode::Require);
        assert_eq!(
            o.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(o.config.get_application_name(), Some("kvsync"));
        assert_eq!(
            o.describe(),
            "postgres://kv@db.example:5433/store (sslmode=require)"
        );
        assert!(!format!("{o:?}").contains("url pw"));

        // Only the environment.
        let o = resolve(None, &env);
        assert_eq!(o.config.get_user(), Some("env-user"));
        assert_eq!(o.config.get_password(), Some(&b"env-pw"[..]));
        assert_eq!(o.tls, TlsMode::VerifyFull);
        assert_eq!(
            o.describe(),
            "postgres://env-user@env-host:6543/env-db (sslmode=verify-full)"
        );

        // The environment's URL, when the stanza has none; libpq's modes kvsync applies itself.
        let env = PostgresEnv {
            connection_url: Some(Zeroizing::new(
                "postgresql://a:b@h/d?sslmode=verify-ca&sslrootcert=/etc/ca.pem".into(),
            )),
            ..PostgresEnv::default()
        };
        let o = resolve(None, &env);
        assert_eq!(o.tls, TlsMode::VerifyCa);
        assert_eq!(o.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.describe(), "postgres://a@h:5432/d (sslmode=verify-ca)");

        // key=value form
        let o = resolve(
            Some("host=h1 port=7000 user=u password=p dbname=x sslmode=disable"),
            &PostgresEnv::default(),
        );
        assert_eq!(o.tls, TlsMode::Disable);
        assert_eq!(o.describe(), "postgres://u@h1:7000/x (sslmode=disable)");
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in [
            "postgres://kv:hunter2-secret@db:notaport/x",
            "postgres://kv:hunter2-secret@db/x?bogus_option=1",
            "postgres://kv:hunter2-secret@db/x?sslmode=sometimes",
        ] {
            let err = ConnectOptions::resolve(Some(url), &PostgresEnv::default()).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err =
            ConnectOptions::resolve(Some("postgres://db/x"), &PostgresEnv::default()).unwrap_err();
        assert!(err.to_string().contains("needs a user"), "{err}");
    }
}
