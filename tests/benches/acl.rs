//! ACL evaluation (`kvsync::auth::policy`) for a KV-v2 read, with
//!
//! * the root policy (the fast path);
//! * one policy of 20 rules and one of 200 (a mix of exact, prefix and `+`
//!   rules over several mounts; several `+` and prefix rules sit on the
//!   request path, so every evaluation has candidates to rank);
//!
//! plus a LIST of the same mount, and the cost of compiling each ACL (what
//! a cache of compiled ACLs saves per request).
//!
//! Run: `cargo bench -p kvsync-tests --bench acl` (add `-- --quick` for a
//! short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kvsync::auth::policy::{Acl, Operation, Policy, default_policy, root_policy};

const READ_PATH: &str = "secret/data/apps/billing/db";
const LIST_PATH: &str = "secret/metadata/apps/billing/";

/// A policy of `n` rules (n ≥ 5). Four of them match the benchmarked paths
/// (the winner for the read is the `+` rule, which outranks the prefix
/// rules); the others are spread over ten mounts, a fifth of them `+` rules
/// under `secret/` that every request there must try.
fn policy_text(n: usize) -> String {
    let mut text = String::from(concat!(
        "path \"secret/*\" { capabilities = [\"deny\"] }\n",
        "path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n",
        "path \"secret/data/apps/+/db\" { capabilities = [\"read\", \"update\"] }\n",
        "path \"secret/metadata/apps/*\" { capabilities = [\"list\"] }\n",
    ));
    for i in 0..n - 4 {
        let mount = i % 10;
        let rule = match i % 5 {
            0 => format!(
                "path \"kv{mount}/data/app{i}/config\" {{ capabilities = [\"read\", \"update\"] }}"
            ),
            1 => format!("path \"kv{mount}/data/app{i}/*\" {{ capabilities = [\"read\"] }}"),
            2 => format!("path \"kv{mount}/data/+/svc{i}\" {{ capabilities = [\"read\"] }}"),
            3 => {
                format!("path \"secret/data/team{i}/*\" {{ capabilities = [\"read\", \"list\"] }}")
            }
            _ => format!("path \"secret/+/team{i}/db\" {{ capabilities = [\"read\"] }}"),
        };
        text.push_str(&rule);
        text.push('\n');
    }
    text
}

fn acl_of(n: usize) -> Acl {
    let policy = Policy::parse("bench", &policy_text(n)).unwrap();
    Acl::new("", [&policy, &default_policy()])
}

fn evaluate(c: &mut Criterion) {
    let root = Acl::new("", [&root_policy()]);
    let small = acl_of(20);
    let large = acl_of(200);
    for acl in [&root, &small, &large] {
        assert!(acl.allows(Operation::Read, READ_PATH).allowed());
        assert!(acl.allows(Operation::List, LIST_PATH).allowed());
        assert!(!acl.is_root() || acl.allows(Operation::Delete, READ_PATH).allowed());
    }
    assert!(!small.allows(Operation::Delete, READ_PATH).allowed());

    let mut g = c.benchmark_group("acl read secret/data/apps/billing/db");
    for (name, acl) in [("root", &root), ("20 rules", &small), ("200 rules", &large)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(acl.allows(Operation::Read, black_box(READ_PATH)).allowed()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("acl list secret/metadata/apps/billing/");
    for (name, acl) in [("root", &root), ("20 rules", &small), ("200 rules", &large)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(acl.allows(Operation::List, black_box(LIST_PATH)).allowed()))
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let small = Policy::parse("bench", &policy_text(20)).unwrap();
    let large = Policy::parse("bench", &policy_text(200)).unwrap();
    let default = default_policy();
    let mut g = c.benchmark_group("acl compile (+ default policy)");
    g.bench_function("20 rules", |b| {
        b.iter(|| black_box(Acl::new("", [&small, &default])))
    });
    g.bench_function("200 rules", |b| {
        b.iter(|| black_box(Acl::new("", [&large, &default])))
    });
    g.finish();
}

criterion_group! {
    name = acl_benches;
    config = common::config();
    targets = evaluate, compile
}
criterion_main!(acl_benches);
