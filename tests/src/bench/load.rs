//! The load generator: `wrk` (Debian's package), pinned to the load core,
//! keep-alive connections, one thread. Each run reports requests per second
//! and how busy wrk's own core was: a load generator that uses its whole core
//! caps the server it measures, and the ratio against it would flatter us.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::procs::LOAD_CORE;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rps: f64,
    /// CPU time wrk used ÷ wall time (1.0: its core was saturated).
    pub load_cpu: f64,
    /// Answers other than 2xx/3xx (only a load that allows them has any).
    pub refused: u64,
}

/// A load: URL, headers, and an optional Lua script (for writes).
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub script: Option<PathBuf>,
    pub connections: usize,
    /// Answers other than 2xx/3xx are counted, not an error: a load meant to
    /// be refused in part (a tenant flooding past its caps).
    pub refusals_allowed: bool,
}

/// Which secrets a write load goes to.
#[derive(Debug, Clone, Copy)]
pub enum Keys {
    /// The URL's, every time.
    One,
    /// A new one each write (`<url><counter>`): concurrent writers never
    /// contend for one key (a commit conflict is retried by the engine, and on
    /// a durable store a few writers of one key would measure those retries,
    /// not the store).
    NewEach,
    /// `<url><counter mod n>`: a bounded set, so a long load neither grows the
    /// store without end nor makes its connections contend for one key.
    Over(usize),
}

/// wrk is busy above this share of its core: the load may be the bottleneck.
pub const SATURATED: f64 = 0.90;

impl Load {
    pub fn get(url: &str, token: Option<&str>, connections: usize) -> Load {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("X-Vault-Token".to_string(), t.to_string()));
        }
        Load {
            url: url.to_string(),
            headers,
            script: None,
            connections,
            refusals_allowed: false,
        }
    }

    /// POSTs of `{"data":{"value":"<counter>"}}`, a new value every request
    /// (so every write is a change to sync), to the secrets `keys` says,
    /// written as a wrk Lua script.
    pub fn kv_writes(
        url: &str,
        token: &str,
        connections: usize,
        dir: &Path,
        name: &str,
        keys: Keys,
    ) -> anyhow::Result<Load> {
        let path = match keys {
            Keys::One => "nil".to_string(),
            Keys::NewEach => "wrk.path .. n".to_string(),
            Keys::Over(k) => format!("wrk.path .. (n % {})", k.max(1)),
        };
        Self::posts(
            url,
            token,
            connections,
            &dir.join(format!("{name}.lua")),
            &path,
        )
    }

    /// POSTs of a new value each to the path the Lua expression `path` gives (`nil`: the
    /// URL's).
    fn posts(
        url: &str,
        token: &str,
        connections: usize,
        script: &Path,
        path: &str,
    ) -> anyhow::Result<Load> {
        std::fs::write(
            script,
            format!(
                r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Vault-Token"] = "{token}"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, {path}, nil, '{{"data":{{"value":"v' .. n .. '"}}}}')
end
"#
            ),
        )?;
        Ok(Load {
            url: url.to_string(),
            headers: Vec::new(),
            script: Some(script.to_path_buf()),
            connections,
            refusals_allowed: false,
        })
    }

    /// Runs wrk for `duration` and checks every answer was a 2xx.
    pub fn run(&self, duration: Duration) -> anyhow::Result<Run> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(LOAD_CORE.to_string())
            .arg("wrk")
            .arg("-t1")
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)));
        for (k, v) in &self.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(s) = &self.script {
            cmd.arg("-s").arg(s);
        }
        cmd.arg(&self.url);
        let before = children_cpu_ticks()?;
        let started = Instant::now();
        let out = cmd.output().context("cannot run wrk (is it installed?)")?;
        let wall = started.elapsed().as_secs_f64();
        let after = children_cpu_ticks()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(
            &text,
            (after - before) as f64 / clock_ticks() / wall,
            self.refusals_allowed,
        )
    }
}

fn parse(text: &str, load_cpu: f64, refusals_allowed: bool) -> anyhow::Result<Run> {
    let mut refused = 0;
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        if !refusals_allowed {
            bail!("the server answered errors under load: {}", line.trim());
        }
        refused = line
            .rsplit(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .context("a count of refused answers")?;
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        // Timeouts and resets mean a broken run, not a slow one.
        if !line.contains("connect 0, read 0, write 0, timeout 0") {
            bail!("wrk saw socket errors: {}", line.trim());
        }
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk's output")?
        .trim()
        .parse::<f64>()?;
    Ok(Run {
        rps,
        load_cpu,
        refused,
    })
}

/// User + system CPU ticks of this process's reaped children (`/proc/self/stat`).
fn children_cpu_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_comm = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 16 and 17 of proc(5), counted from field 3 (the state).
    let cutime: u64 = fields.get(13).context("cutime")?.parse()?;
    let cstime: u64 = fields.get(14).context("cstime")?.parse()?;
    Ok(cutime + cstime)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 10s test @ http://127.0.0.1:1/v1/secret/data/x
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.01ms  500.00us  10.00ms   90.00%
    Req/Sec    31.00k     1.00k   33.00k    80.00%
  310000 requests in 10.00s, 100.00MB read
Requests/sec:  31000.50
Transfer/sec:     10.00MB
";

    #[test]
    fn reads_wrk_output() {
        let r = parse(OUT, 0.5, false).unwrap();
        assert_eq!((r.rps, r.refused), (31000.5, 0));
        let bad = OUT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 7\nRequests/sec",
        );
        assert!(parse(&bad, 0.5, false).is_err());
        assert_eq!(parse(&bad, 0.5, true).unwrap().refused, 7);
        let errs = OUT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse(&errs, 0.5, true).is_err());
        assert!(parse("nothing", 0.5, false).is_err());
    }
}
