//! A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries (installed by
//! `tests/setup.sh`), `initdb` into a temporary directory as an unprivileged user
//! ([`PG_USER`], created when running as root), listening on 127.0.0.1 on an ephemeral port with
//! its socket in the same directory, TLS on (a test CA made with `openssl`, its certificate in
//! [`Postgres::ca_file`]; the server's names `localhost` only, so `127.0.0.1` fails a name
//! check). [`shared`] starts one per test binary run; a watchdog shell
//! stops it (fast shutdown) and removes its directory when the test process exits, however it
//! exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The system user PostgreSQL runs as when the tests run as root (it refuses to run as root).
pub const PG_USER: &str = "kvsync-pg";
/// The database superuser `initdb` creates, and its password (connections over TCP need it).
pub const SUPERUSER: &str = "kvsync";
pub const PASSWORD: &str = "kvsync-test-pw-7c2e";

/// A running test server.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
}

static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

/// The PostgreSQL of this test binary run, started on first use.
pub fn shared() -> anyhow::Result<&'static Postgres> {
    let started = SHARED.get_or_init(|| Postgres::start().map_err(|e| format!("{e:#}")));
    started.as_ref().map_err(|e| {
        anyhow::anyhow!("cannot start the test PostgreSQL (run tests/setup.sh first?): {e}")
    })
}

/// The directory of `initdb` and `postgres`: the newest under `/usr/lib/postgresql/*/bin`, else
/// `pg_config --bindir`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    if let Ok(out) = out {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").exists() {
            return Ok(bin);
        }
    }
    bail!("initdb not found under /usr/lib/postgresql/*/bin: apt-get install -y postgresql")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of [`PG_USER`], created first if missing.
fn pg_user() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(PG_USER).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ])
            .status()
            .context("useradd")?;
        if !status.success() && id("-u").is_none() {
            bail!("cannot create the user {PG_USER}");
        }
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => bail!("cannot read the ids of {PG_USER}"),
    }
}

/// `program` run as [`PG_USER`] when we are root (setpriv execs it: signals reach it directly).
fn as_pg_user(program: &Path, ids: Option<(u32, u32)>) -> Command {
    match ids {
        Some((uid, gid)) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

impl Postgres {
    fn start() -> anyhow::Result<Postgres> {
        let bin = bin_dir()?;
        let ids = if is_root() { Some(pg_user()?) } else { None };
        let dir = tempfile::Builder::new()
            .prefix("kvsync-pg-")
            .tempdir()
            .context("temporary directory")?
            .keep();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).context("chown")?;
        }
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let out = as_pg_user(&bin.join("initdb"), ids)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .context("initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        make_certificates(&dir.join("tls"), ids)?;
        // A port nobody holds now; a clash at start is retried with another.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match Self::launch(&bin, &dir, port, ids) {
                Ok(()) => {
                    return Ok(Postgres { port, dir, bin });
                }
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        bail!("postgres did not start: {last_error}")
    }

    /// Starts postgres under a watchdog that stops it when this process exits, then waits until
    /// it accepts connections.
    fn launch(bin: &Path, dir: &Path, port: u16, ids: Option<(u32, u32)>) -> anyhow::Result<()> {
        let mut postgres = as_pg_user(&bin.join("postgres"), ids);
        postgres
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            // Durability of PostgreSQL itself is not under test; the machine is shared.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("tls/server.pem").display()
            ))
            .arg("-c")
            .arg(format!(
                "ssl_key_file={}",
                dir.join("tls/server.key").display()
            ));
        let program: Vec<String> = std::iter::once(postgres.get_program())
            .chain(postgres.get_args())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect();
        // The watchdog: at most 4 hours; stops postgres once this process is gone.
        let script = format!(
            "{program} >{log} 2>&1 & pg=$!\n\
             i=0\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $pg 2>/dev/null && [ $i -lt 28800 ]; do sleep 0.5; i=$((i+1)); done\n\
             kill -INT $pg 2>/dev/null; wait $pg\n\
             rm -rf {dir}\n",
            program = program.join(" "),
            log = shell_quote(&dir.join("postgres.log").to_string_lossy()),
            parent = std::process::id(),
            dir = shell_quote(&dir.to_string_lossy()),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the watchdog")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        bail!("postgres on port {port} not ready within 60 s: {log}")
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// The PEM file of a CA that signed nothing here.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("tls/other-ca.pem")
    }

    /// A connection URL of database `db` (with the password).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` with psql in database `db`; its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .args(["-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A new, empty database named `name`; its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }
}

/// A test CA, a second unrelated one, and the server's key and certificate (for `localhost`),
/// the key readable by the server's user only, as PostgreSQL demands.
fn make_certificates(dir: &Path, ids: Option<(u32, u32)>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("openssl")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=kvsync test CA"),
        ("other-ca", "/CN=unrelated CA"),
    ] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem]);
        openssl(&args)?;
    }
    let mut args = vec!["req", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        for file in ["server.key", "server.pem"] {
            std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
