//! The procedure of each target P1–P14 (listed in `BENCHMARKS.md`), each
//! measured side by side with its baseline in the same run, several
//! rounds, reported as the median ratio and its spread.
//!
//! One file per group of targets measured together: `api_path` (P1, P2),
//! `instances` (P3, P4), `sync_to_aws` (P5, P9), `provider_calls` (P6, P7),
//! `write_path` (P8), `startup` (P10), `scale` (P11), `acl` (P12), `postgres` (P13),
//! `tenants` (P4 with namespaces, start-up with namespaces, P14); `servers` starts the
//! processes they measure and holds the small Vault client that sets them up.

use std::path::PathBuf;

use super::stats::Summary;

mod acl;
mod api_path;
mod instances;
mod postgres;
mod provider_calls;
mod scale;
mod servers;
mod startup;
mod sync_to_aws;
mod tenants;
mod write_path;

/// The dev root token of every server a run starts.
const TOKEN: &str = "root";

/// How a run is shaped (`kvsync-bench all --help`).
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Length of one load round.
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub connections: usize,
    /// Secrets of P5 (created, then updated).
    pub sync_count: usize,
    /// Writes measured per round of P9.
    pub propagation_samples: usize,
    /// Only these targets (`P1`, ...); empty: all.
    pub only: Vec<String>,
    /// Tenants (namespaces) of P4 and of the start-up with namespaces.
    pub namespaces: usize,
    /// Tenants of OpenBao's P4 (at most `namespaces`): each costs it about
    /// 0.7 MiB and 20 ms to set up, so 10,000 would take 7 GiB of a shared machine.
    pub bao_namespaces: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 5,
            seconds: 10,
            warmup_seconds: 3,
            connections: 64,
            sync_count: 1000,
            propagation_samples: 200,
            only: Vec::new(),
            namespaces: 10_000,
            bao_namespaces: 1_000,
        }
    }
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `kvsync` (release) and `kvsync-bench`.
    pub kvsync: PathBuf,
    pub bench: PathBuf,
    /// `moto_server` of the virtualenv.
    pub moto_server: PathBuf,
    /// OpenBao's `bao`, the peer of the tenant targets (none: not measured).
    pub bao: Option<PathBuf>,
    /// Logs, caches and scripts of this run.
    pub work: PathBuf,
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: &'static str,
    pub what: &'static str,
    pub measured: String,
    pub target: String,
    /// Whether the target is met (none: information only, or failed).
    pub met: Option<bool>,
    /// Baseline figures and caveats.
    pub note: String,
}

/// Which way a ratio must go.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Row {
    /// A row whose figure is a ratio with a bound.
    fn ratio(id: &'static str, what: &'static str, s: &Summary, bound: Bound, note: String) -> Row {
        let (target, met) = match bound {
            Bound::AtLeast(min) => (format!("≥ {min:.2}"), s.median >= min),
            Bound::AtMost(max) => (format!("≤ {max:.2}"), s.median <= max),
        };
        Row {
            id,
            what,
            measured: ratio_text(s, 2),
            target,
            met: Some(met),
            note,
        }
    }

    /// A row of a procedure that failed with `e`.
    fn failed(id: &'static str, what: &'static str, e: &anyhow::Error) -> Row {
        Row {
            id,
            what,
            measured: FAILED.into(),
            target: String::new(),
            met: None,
            note: format!("{e:#}"),
        }
    }

    /// Whether the procedure behind this row failed.
    pub fn is_failure(&self) -> bool {
        self.measured == FAILED
    }
}

/// What a failed row shows as its figure.
const FAILED: &str = "failed";

fn ratio_text(s: &Summary, digits: usize) -> String {
    format!(
        "{:.d$} ({:.d$}–{:.d$}, n={})",
        s.median,
        s.min,
        s.max,
        s.n,
        d = digits
    )
}

struct Bench<'a> {
    opts: &'a Options,
    paths: &'a Paths,
}

/// Runs the selected targets and returns the table rows, in order.
pub async fn run(opts: &Options, paths: &Paths) -> Vec<Row> {
    let b = Bench { opts, paths };
    let wanted = |ids: &[&str]| {
        opts.only.is_empty()
            || ids
                .iter()
                .any(|id| opts.only.iter().any(|o| o.eq_ignore_ascii_case(id)))
    };
    /// Each procedure, the targets it measures and what it does.
    const SECTIONS: [(&[&str], &str); 13] = [
        (
            &["P1", "P2"],
            "KV reads through the component, natively, and a bare hyper server",
        ),
        (&["P3"], "instantiation"),
        (&["P4-instance"], "memory per idle engine instance"),
        (
            &["P4", "P4-bao"],
            "memory per idle tenant (namespaces), kvsync and OpenBao",
        ),
        (
            &["P5", "P9"],
            "sync through kvsync to moto vs the direct SDK program",
        ),
        (
            &["P6", "P7"],
            "provider calls, counted at a proxy in front of moto",
        ),
        (&["P8"], "KV writes with 5 associations vs none"),
        (&["P10"], "start-up"),
        (&["P10-ns"], "start-up with namespaces ÷ without"),
        (&["P11"], "reconciliation of 100,000 associations vs 10,000"),
        (&["P12"], "KV reads with a 20-rule policy vs the root token"),
        (
            &["P13"],
            "PostgreSQL storage vs redb; two hosts vs one syncing to moto",
        ),
        (
            &["P14", "P14-bao"],
            "noisy neighbour: one tenant's reads while another floods, kvsync and OpenBao",
        ),
    ];
    let mut rows = Vec::new();
    for (ids, title) in SECTIONS {
        if !wanted(ids) {
            continue;
        }
        eprintln!("== {}: {title}", ids.join("/"));
        let out = match ids.first().copied() {
            Some("P1") => b.api_path().await,
            Some("P3") => b.instantiation().await,
            Some("P4-instance") => b.memory().await,
            Some("P4") => b.memory_per_tenant().await,
            Some("P5") => b.sync_to_moto().await,
            Some("P6") => b.provider_calls().await,
            Some("P8") => b.write_path().await,
            Some("P10") => b.startup().await,
            Some("P10-ns") => b.startup_with_tenants().await,
            Some("P11") => b.scale().await,
            Some("P12") => b.acl().await,
            Some("P13") => b.postgres().await,
            Some("P14") => b.noisy_neighbour().await,
            _ => Err(anyhow::anyhow!("no procedure measures {}", ids.join("/"))),
        };
        match out {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => {
                eprintln!("!! {}: {e:#}", ids.join("/"));
                rows.extend(ids.iter().map(|id| Row::failed(id, "", &e)));
            }
        }
    }
    rows.sort_by_key(|r| order_of(r.id));
    rows
}

/// Where a row goes: by the target's number (`P4-bao`: 4), then its name.
fn order_of(id: &str) -> (u32, &str) {
    let digits = id
        .get(1..)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        })
        .unwrap_or("");
    (digits.parse().unwrap_or(u32::MAX), id)
}

/// The results as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | What | Measured: median (min–max, rounds) | Target | Met |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.id, r.what, r.measured, r.target, met
        ));
    }
    out.push_str("\nBaselines and notes:\n\n");
    for r in rows {
        if !r.note.is_empty() {
            out.push_str(&format!("- {}: {}\n", r.id, r.note));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_by_target_number_then_name() {
        let mut ids = vec![
            "P14-bao",
            "P10-ns",
            "P4-instance",
            "P14",
            "P4",
            "P10",
            "P4-bao",
        ];
        ids.sort_by_key(|id| order_of(id));
        assert_eq!(
            ids,
            [
                "P4",
                "P4-bao",
                "P4-instance",
                "P10",
                "P10-ns",
                "P14",
                "P14-bao"
            ]
        );
    }
}
