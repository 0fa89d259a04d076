//! The engine's hot internals compiled natively (no wasm, no wasmtime):
//!
//! * `template`: `secret_name_template` parsing and rendering (the default
//!   templates of aws-sm and gh, and one using `truncate_sha256`);
//! * `normalize`: normalisation of a rendered name to a destination's
//!   character set (`NameRule::apply`);
//! * `native round trip`: `kvsync_component::handle` with the in-memory fakes
//!   of every import, for `GET sys/health` and a KV-v2 read.
//!
//! Run: `cargo bench -p kvsync-tests --bench engine` (add `-- --quick` for a
//! short run).
#![expect(
    clippy::unwrap_used,
    reason = "benchmark code: a failed setup ends the run by panicking"
)]

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kvsync_component::env::Fakes;
use kvsync_component::sync::names::normalize::{AWS_SM, AZURE_KV, GH};
use kvsync_component::sync::names::{Template, TemplateContext};
use kvsync_component::{Caller, Request};

/// The aws-sm / gcp-sm / in-mem default (secret-path granularity).
const AWS_TEMPLATE: &str = "vault/{{ .MountAccessor }}/{{ .SecretPath }}";
/// The gh / vercel-project default (secret-key granularity).
const GH_TEMPLATE: &str = "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}";
/// A user template with a pipeline, and a value long enough to be hashed.
const SHA_TEMPLATE: &str =
    "{{ .MountBaseName }}-{{ .SecretPath | replace \"/\" \"-\" | truncate_sha256 24 }}";

fn context() -> TemplateContext {
    TemplateContext {
        destination_type: "gh".into(),
        destination_name: "my-dest".into(),
        namespace_path: String::new(),
        namespace_base_name: String::new(),
        namespace_id: "root".into(),
        mount_path: "path/to/kv1/".into(),
        mount_base_name: "kv1".into(),
        mount_accessor: "kv_1234abcd".into(),
        secret_path: "apps/payments/prod/database-credentials".into(),
        secret_base_name: "database-credentials".into(),
        secret_key: Some("password".into()),
    }
}

fn template(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("template");
    for (name, src) in [
        ("aws-sm default", AWS_TEMPLATE),
        ("gh default", GH_TEMPLATE),
        ("truncate_sha256", SHA_TEMPLATE),
    ] {
        g.bench_function(format!("parse {name}"), |b| {
            b.iter(|| Template::parse(black_box(src)).unwrap())
        });
        let t = Template::parse(src).unwrap();
        g.bench_function(format!("render {name}"), |b| {
            b.iter(|| black_box(&t).render(black_box(&ctx)).unwrap())
        });
    }
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("normalize");
    for (name, rule, src) in [
        ("aws-sm", AWS_SM, AWS_TEMPLATE),
        ("azure-kv", AZURE_KV, AWS_TEMPLATE),
        ("gh", GH, GH_TEMPLATE),
    ] {
        let rendered = Template::parse(src).unwrap().render(&ctx).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| rule.apply(black_box(&rendered)).unwrap())
        });
    }
    g.finish();
}

fn request(method: &str, path: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
        caller: Some(Caller {
            token: "root".into(),
            accessor: "acc".into(),
            display_name: "root".into(),
            policies: vec!["root".into()],
            path: "auth/token/root".into(),
            creation_time: 0,
        }),
        ..Request::default()
    }
}

/// One request through the native engine; panics unless it succeeds.
fn call(fakes: &Fakes, method: &str, path: &str, body: &[u8]) {
    let resp = kvsync_component::handle(&fakes.env(), request(method, path, body)).response;
    assert!(
        resp.status < 300,
        "{method} {path}: {} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    black_box(resp);
}

fn round_trip(c: &mut Criterion) {
    let fakes = Fakes::default();
    call(
        &fakes,
        "POST",
        "sys/mounts/secret",
        br#"{"type":"kv","options":{"version":"2"}}"#,
    );
    call(
        &fakes,
        "POST",
        "secret/data/bench",
        br#"{"data":{"k":"v"}}"#,
    );
    let mut g = c.benchmark_group("native round trip");
    g.bench_function("GET sys/health", |b| {
        b.iter(|| call(&fakes, "GET", "sys/health", b""))
    });
    g.bench_function("GET secret/data/bench", |b| {
        b.iter(|| call(&fakes, "GET", "secret/data/bench", b""))
    });
    g.finish();
}

criterion_group! {
    name = engine_benches;
    config = common::config();
    targets = template, normalize, round_trip
}
criterion_main!(engine_benches);
