//! Child processes of a benchmark run: servers pinned to a core, started on an
//! ephemeral loopback port, ready when they print their address; stopped
//! (killed and reaped) when dropped. Their output goes to a log file.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The core the server under test runs on, and the core of the load.
pub const SERVER_CORE: usize = 1;
pub const LOAD_CORE: usize = 0;

/// A command to start: program, arguments, extra environment.
#[derive(Clone, Debug)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Pin to this core with `taskset -c` (none: inherit).
    pub core: Option<usize>,
}

impl Spec {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Spec {
        Spec {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            core: None,
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Spec {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn on_core(mut self, core: usize) -> Spec {
        self.core = Some(core);
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = match self.core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// A running child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    /// The URL it printed (`Api Address: <url>`), or the one it was given.
    pub url: String,
}

/// The line prefix kvsync and the baselines print their address with.
pub const ADDRESS_LINE: &str = "Api Address: ";

impl Proc {
    /// Starts `spec` and waits (at most `timeout`) for a stdout line starting
    /// with `prefix`; the rest of that line is the process's URL. Everything
    /// else it prints goes to `<log_dir>/<name>.log`.
    pub fn start(
        name: &str,
        spec: &Spec,
        log_dir: &Path,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Proc> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = spec
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            let mut log = log;
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(rest) = line.trim().strip_prefix(&prefix) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
                let _ = writeln!(log, "{line}");
            }
        });
        let mut proc = Proc {
            name: name.to_string(),
            child,
            url: String::new(),
        };
        match rx.recv_timeout(timeout) {
            Ok(url) => {
                proc.url = url;
                Ok(proc)
            }
            Err(_) => bail!(
                "{name} did not print its address within {timeout:?} (see {})",
                log_path.display()
            ),
        }
    }

    /// Starts `spec`, which serves on `url`, and waits until a GET of
    /// `url + ready_path` answers (any status).
    pub fn start_polled(
        name: &str,
        spec: &Spec,
        log_dir: &Path,
        url: &str,
        ready_path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Proc> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = spec
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program.display()))?;
        let mut proc = Proc {
            name: name.to_string(),
            child,
            url: url.to_string(),
        };
        let addr = socket_of(url)?;
        let deadline = Instant::now() + timeout;
        while http_status(addr, ready_path).is_none() {
            if Instant::now() > deadline || proc.exited() {
                bail!("{name} did not start (see {})", log_path.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proc)
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        self.kill();
    }

    /// Asks the process to stop (SIGTERM) and waits for it, at most `within`;
    /// past that it is killed. A server with a storage file stops this way so
    /// that its next start does not begin with a recovery.
    pub fn terminate(mut self, within: Duration) -> anyhow::Result<()> {
        terminate(&mut self.child, &self.name, within)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops `child` with SIGTERM, waiting at most `within`; past that it is
/// killed and that is an error.
pub fn terminate(child: &mut Child, name: &str, within: Duration) -> anyhow::Result<()> {
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    if !sent.success() {
        bail!("kill -TERM {} ({name}) failed", child.id());
    }
    let deadline = Instant::now() + within;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The socket address of an `http://host:port` URL.
pub fn socket_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .parse()
        .with_context(|| format!("not a host:port address: {hostport}"))
}

/// One `GET path` over a fresh connection: the status, or none when the
/// server cannot be reached or answers garbage.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_status_with(addr, path, &[])
}

/// [`http_status`] of a request with these extra headers.
pub fn http_status_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of a process, in bytes (`/proc/<pid>/statm`).
pub fn rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}
