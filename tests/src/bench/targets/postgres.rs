//! P13: PostgreSQL storage against redb, one host each (KV reads and writes), and the sync
//! throughput of two hosts on one PostgreSQL database against one (moto).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::servers::Vault;
use super::sync_to_aws::{aws_destination, pushed, wait_value};
use super::{Bench, Bound, Row};
use crate::bench::aws;
use crate::bench::load::{Keys, Load};
use crate::bench::procs::{LOAD_CORE, Proc, SERVER_CORE, Spec};
use crate::bench::stats::Summary;

/// A server started from a configuration file, and its root token.
struct Configured {
    proc: Proc,
    vault: Vault,
    token: String,
}

impl Bench<'_> {
    /// Writes `<work>/<name>/kvsync.hcl` with `storage` and `extra`, initialises the storage
    /// (`operator init`) and returns the config file and the root token.
    fn init_configured(
        &self,
        name: &str,
        storage: &str,
        extra: &str,
    ) -> anyhow::Result<(PathBuf, String)> {
        let dir = self.paths.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("kvsync.hcl");
        std::fs::write(
            &config,
            format!(
                "{storage}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\nencryption_key_file = \"{}\"\n{extra}\n",
                dir.join("encryption.key").display()
            ),
        )?;
        let out = Command::new(&self.paths.kvsync)
            .args(["operator", "init", "--config"])
            .arg(&config)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("Initial Root Token: "))
            .map(|t| t.trim().to_string())
            .with_context(|| {
                format!(
                    "operator init of {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        Ok((config, token))
    }

    /// Starts a server of `config` on the server core, with `env`.
    fn start_configured(
        &self,
        name: &str,
        config: &Path,
        token: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Configured> {
        let mut spec = Spec::new(
            &self.paths.kvsync,
            &["server", "--config", &config.display().to_string()],
        )
        .env("TOKIO_WORKER_THREADS", "1")
        .env(
            "KVSYNC_CACHE_DIR",
            self.paths.work.join("cache").display().to_string(),
        )
        .on_core(SERVER_CORE);
        for (k, v) in env {
            spec = spec.env(k, v.clone());
        }
        let proc = self.start(name, &spec)?;
        let vault = Vault::with_token(&proc.url, token);
        Ok(Configured {
            proc,
            vault,
            token: token.to_string(),
        })
    }

    pub(super) async fn postgres(&self) -> anyhow::Result<Vec<Row>> {
        let pg = crate::postgres::shared()?;
        let url = pg.create_database("p13")?;
        let pg_storage = format!(
            "storage \"postgresql\" {{\n  connection_url = \"{url}\"\n  ha_enabled = \"true\"\n}}"
        );
        let redb_dir = self.paths.work.join("p13-redb-data");
        std::fs::create_dir_all(&redb_dir)?;
        let redb_storage = format!("storage \"redb\" {{ path = \"{}\" }}", redb_dir.display());
        let (redb_config, redb_token) = self.init_configured("p13-redb", &redb_storage, "")?;
        // No coalescing: every change is pushed as soon as a loop gets to it.
        let (pg_config, pg_token) =
            self.init_configured("p13-pg", &pg_storage, "sync_coalesce_window = \"0s\"")?;
        let mut rows = Vec::new();
        {
            let redb = self.start_configured("p13-redb", &redb_config, &redb_token, &[])?;
            let pg = self.start_configured("p13-pg", &pg_config, &pg_token, &[])?;
            rows.extend(self.pg_against_redb(&redb, &pg).await?);
        }
        rows.push(self.two_hosts_against_one(&pg_config, &pg_token).await?);
        Ok(rows)
    }

    /// KV reads and writes, PostgreSQL ÷ redb, rounds alternating which goes first.
    async fn pg_against_redb(
        &self,
        redb: &Configured,
        pg: &Configured,
    ) -> anyhow::Result<Vec<Row>> {
        let c = self.opts.connections;
        let dir = self.paths.work.clone();
        let mut loads = Vec::new();
        for (name, server) in [("redb", redb), ("pg", pg)] {
            server
                .vault
                .write(
                    "sys/mounts/secret",
                    json!({"type": "kv", "options": {"version": "2"}}),
                )
                .await?;
            server
                .vault
                .write("secret/data/p13/read", json!({"data": {"value": "v"}}))
                .await?;
            let base = format!("{}/v1/secret/data/p13", server.proc.url);
            let read = Load::get(&format!("{base}/read"), Some(&server.token), c);
            let write = Load::kv_writes(
                &format!("{base}/w"),
                &server.token,
                c,
                &dir,
                &format!("p13-{name}-write"),
                Keys::NewEach,
            )?;
            self.load(&read, self.opts.warmup_seconds).await?;
            self.load(&write, self.opts.warmup_seconds).await?;
            loads.push((read, write));
        }
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        let (mut figures_r, mut figures_w) = (Vec::new(), Vec::new());
        for round in 0..self.opts.rounds {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut rps = [[0.0; 2]; 2];
            for i in order {
                let (read, write) = loads.get(i).context("load")?;
                let r = self.load(read, self.opts.seconds).await?;
                let w = self.load(write, self.opts.seconds).await?;
                if let Some(slot) = rps.get_mut(i) {
                    *slot = [r.rps, w.rps];
                }
            }
            let [[redb_r, redb_w], [pg_r, pg_w]] = rps;
            eprintln!(
                "   round {round}: reads redb {redb_r:.0} pg {pg_r:.0} req/s; writes redb {redb_w:.0} pg {pg_w:.0} req/s"
            );
            reads.push(pg_r / redb_r);
            writes.push(pg_w / redb_w);
            figures_r.push((redb_r, pg_r));
            figures_w.push((redb_w, pg_w));
        }
        let med = |v: Vec<f64>| Summary::of(&v).map(|s| s.median).unwrap_or(f64::NAN);
        let note = |f: &[(f64, f64)]| {
            format!(
                "{c} connections, one host each on the server core: redb {:.0} req/s, PostgreSQL {:.0} req/s (medians; PostgreSQL, a local server, shares the machine's cores)",
                med(f.iter().map(|x| x.0).collect()),
                med(f.iter().map(|x| x.1).collect())
            )
        };
        let r = Summary::of(&reads).context("no rounds")?;
        let w = Summary::of(&writes).context("no rounds")?;
        Ok(vec![
            Row::ratio(
                "P13",
                "PostgreSQL storage: KV read req/s ÷ redb, one host",
                &r,
                Bound::AtLeast(0.7),
                note(&figures_r),
            ),
            Row {
                id: "P13",
                what: "PostgreSQL storage: KV write req/s ÷ redb, one host (a new secret per write)",
                measured: super::ratio_text(&w, 2),
                target: "information".into(),
                met: Some(true),
                note: note(&figures_w),
            },
        ])
    }

    /// Sync throughput to moto of two hosts on one database against one: `K` secrets in
    /// `D` destinations (spread over the shards), every secret changed once, timed until
    /// moto holds every new value.
    async fn two_hosts_against_one(&self, config: &Path, token: &str) -> anyhow::Result<Row> {
        const D: usize = 4;
        let k = (self.opts.sync_count / 4).max(D);
        let moto = aws::start_moto(&self.paths.moto_server, LOAD_CORE, self.log_dir())?;
        let empty = self.paths.work.join("aws-empty-config");
        std::fs::write(&empty, "")?;
        let empty = empty.display().to_string();
        let env = [
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.url.clone()),
            ("AWS_ENDPOINT_URL", moto.url.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("AWS_CONFIG_FILE", empty.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE", empty),
        ];
        let sm = aws::client(&moto.url);
        let a = self.start_configured("p13-a", config, token, &env)?;
        a.vault
            .write("sys/activation-flags/secrets-sync/activate", json!({}))
            .await?;
        for d in 0..D {
            aws_destination(&a.vault, &format!("p13-d{d}")).await?;
        }
        for i in 0..k {
            a.vault
                .put_and_associate(&format!("p13-d{}", i % D), &format!("p13/s{i:04}"), "0")
                .await?;
        }
        let mut times = Vec::new();
        let mut b: Option<Configured> = None;
        // An untimed round first: both timed rounds then change secrets last written a
        // round ago.
        for (hosts, value) in [(1, "warm"), (1, "1"), (2, "2")] {
            if hosts == 2 && b.is_none() {
                b = Some(self.start_configured("p13-b", config, token, &env)?);
            }
            let began = Instant::now();
            for i in 0..k {
                // Through both hosts when there are two.
                let vault = match (&b, i % 2) {
                    (Some(b), 1) => &b.vault,
                    _ => &a.vault,
                };
                vault
                    .write(
                        &format!("secret/data/p13/s{i:04}"),
                        json!({"data": {"v": value}}),
                    )
                    .await?;
            }
            for i in 0..k {
                wait_value(
                    &sm,
                    &format!("p13/s{i:04}"),
                    &pushed(value),
                    Duration::from_secs(120),
                )
                .await?;
            }
            times.push(began.elapsed());
        }
        let &[_, one, two] = times.as_slice() else {
            bail!("three timings expected");
        };
        let ratio = one.as_secs_f64() / two.as_secs_f64();
        drop((b, a, moto));
        Ok(Row {
            id: "P13",
            what: "sync throughput to moto, two hosts on one PostgreSQL ÷ one host",
            measured: format!("{ratio:.2}"),
            target: "information".into(),
            met: Some(true),
            note: format!(
                "{k} secrets over {D} aws-sm destinations, each changed once (writes spread over the hosts; after an untimed round), until moto holds every value: one host {:.2} s, two hosts {:.2} s. The first host holds every shard lease (no rebalancing yet), so the second host adds requests, not sync loops; both share the machine's two cores",
                one.as_secs_f64(),
                two.as_secs_f64()
            ),
        })
    }
}
