//! P12: the cost of authorization on the request path. KV reads with a
//! non-root token holding a 20-rule policy against the same reads with the
//! root token, on one server, rounds interleaved. The non-root request pays
//! for what the root one skips nowhere: both go through the host's early
//! check and the engine's exact check; the non-root ACL has rules to walk.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::servers::Vault;
use super::{Bench, Bound, Row, TOKEN};
use crate::bench::load::Load;
use crate::bench::stats::Summary;

/// A policy of 20 rules (exact paths, prefixes and `+` segments, one `deny`),
/// the last of which grants the read the load makes.
fn policy() -> String {
    let mut rules = String::new();
    for i in 0..19 {
        let (path, caps) = match i % 4 {
            0 => (format!("secret/data/team-{i}/*"), r#"["read", "list"]"#),
            1 => (format!("secret/metadata/team-{i}/+/x"), r#"["list"]"#),
            2 => (format!("sys/sync/destinations/gh/app-{i}"), r#"["read"]"#),
            _ => (format!("secret/data/team-{i}/locked"), r#"["deny"]"#),
        };
        rules.push_str(&format!("path \"{path}\" {{ capabilities = {caps} }}\n"));
    }
    rules.push_str("path \"secret/data/bench\" { capabilities = [\"read\"] }\n");
    rules
}

impl Bench<'_> {
    pub(super) async fn acl(&self) -> anyhow::Result<Vec<Row>> {
        let server = self.start("p12-kvsync", &self.kvsync_dev(&[]))?;
        let vault = Vault::new(&server.url);
        vault
            .write("secret/data/bench", json!({"data": {"password": "p"}}))
            .await?;
        vault
            .write("sys/policies/acl/bench-20", json!({"policy": policy()}))
            .await?;
        let created = vault
            .write(
                "auth/token/create",
                json!({"policies": ["bench-20"], "no_default_policy": true}),
            )
            .await?;
        let token = created
            .pointer("/auth/client_token")
            .and_then(Value::as_str)
            .context("auth/token/create gave no client_token")?
            .to_string();
        let url = format!("{}/v1/secret/data/bench", server.url);
        let root = Load::get(&url, Some(TOKEN), self.opts.connections);
        let named = Load::get(&url, Some(&token), self.opts.connections);
        self.load(&root, self.opts.warmup_seconds).await?;
        self.load(&named, self.opts.warmup_seconds).await?;
        let (mut on_root, mut on_named) = (Vec::new(), Vec::new());
        for round in 0..self.opts.rounds {
            // Alternate which one goes first.
            let order = if round % 2 == 0 {
                [(&root, true), (&named, false)]
            } else {
                [(&named, false), (&root, true)]
            };
            for (load, is_root) in order {
                let run = self.load(load, self.opts.seconds).await?;
                eprintln!(
                    "   round {round} {:<8} {:>9.0} req/s",
                    if is_root { "root" } else { "20-rule" },
                    run.rps
                );
                if is_root {
                    on_root.push(run.rps);
                } else {
                    on_named.push(run.rps);
                }
            }
        }
        let ratios: Vec<f64> = on_named.iter().zip(&on_root).map(|(n, r)| n / r).collect();
        let s = Summary::of(&ratios).context("no P12 rounds")?;
        let median = |v: &[f64]| Summary::of(v).map_or(f64::NAN, |s| s.median);
        drop(server);
        Ok(vec![Row::ratio(
            "P12",
            "authorization: KV read req/s, non-root token with a 20-rule policy ÷ root token",
            &s,
            Bound::AtLeast(0.95),
            format!(
                "`GET /v1/secret/data/bench` on one server, {} connections, {} rounds of {} s: 20-rule policy {:.0} req/s, root {:.0} req/s (medians)",
                self.opts.connections,
                self.opts.rounds,
                self.opts.seconds,
                median(&on_named),
                median(&on_root),
            ),
        )])
    }
}
