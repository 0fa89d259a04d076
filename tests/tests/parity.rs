//! Parity of the two hosts: the request fixtures in `tests/parity/` replayed
//! through the Rust host's runtime (`kvsync_tests::parity`) and through the
//! Node.js host (`host/node/replay.mjs`, the same component bytes transpiled by
//! jco and run by V8) must give byte-identical output: every status, header,
//! body, effect and sync report. Both start from empty storage with a fixed
//! clock and the same counter-based random stream.
//!
//! Needs `node` and the Node packages (`npm ci` in host/node, done by
//! tests/setup.sh); skipped, saying so, only when `node` is not installed.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/parity"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in tests/parity");
    files
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn node(args: &[&str]) -> String {
    let dir = repo().join("host/node");
    let out = Command::new("node")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_host_answers_every_fixture_byte_for_byte_as_the_rust_host() {
    if !node_available() {
        eprintln!("SKIPPED: `node` is not installed; the parity test needs Node.js >= 20.19");
        return;
    }
    let node_dir = repo().join("host/node");
    assert!(
        node_dir.join("node_modules").is_dir(),
        "the Node packages are not installed: run `npm ci` in {} (tests/setup.sh does)",
        node_dir.display()
    );
    // The component this test binary embeds is the one the Node host transpiles.
    let wasm = repo().join("target/wasm/wasm32-wasip2/wasm-release/kvsync_component.wasm");
    let on_disk = std::fs::read(&wasm).expect("the component the Rust build produced");
    assert!(
        on_disk == kvsync::runtime::ENGINE_COMPONENT,
        "{} differs from the component embedded in this build: rebuild (cargo build --workspace --all-targets)",
        wasm.display()
    );
    node(&["build.mjs", "--wasm", wasm.to_str().unwrap()]);

    let files = fixtures();
    let rust = kvsync_tests::parity::replay_files(&files).await.unwrap();
    let paths: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["replay.mjs"];
    args.extend(paths);
    let js = node(&args);

    if rust != js {
        let (r, j): (Vec<&str>, Vec<&str>) = (rust.lines().collect(), js.lines().collect());
        let first = r
            .iter()
            .zip(&j)
            .position(|(a, b)| a != b)
            .unwrap_or(r.len().min(j.len()));
        panic!(
            "the hosts differ (Rust {} lines, Node {} lines); first difference at line {}:\n\
             rust: {}\nnode: {}",
            r.len(),
            j.len(),
            first + 1,
            r.get(first).unwrap_or(&"<none>"),
            j.get(first).unwrap_or(&"<none>"),
        );
    }
    // The fixtures really exercised the engine: requests answered, sync ran.
    assert!(rust.lines().count() > 100, "{rust}");
    assert!(
        rust.contains(r#""processed":2"#),
        "no sync run processed work"
    );
    assert!(rust.contains(r#""status":404"#) && rust.contains(r#""status":400"#));
}
