//! Shared by the build scripts of `host` and `tests`: builds one workspace crate
//! for `wasm32-wasip2` with a nested cargo, into `target/wasm`, and exports the
//! path of the resulting component to the crate being built as `env!(<env_var>)`.
//!
//! Build scripts may panic: a failed component build must fail the build.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a build script fails the build by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `package` is the cargo package name, `artifact` the `.wasm` file stem.
pub fn build_component(package: &str, artifact: &str, env_var: &str) {
    println!("cargo:rerun-if-env-changed={env_var}");
    if let Ok(prebuilt) = std::env::var(env_var) {
        println!("cargo:rustc-env={env_var}={prebuilt}");
        return;
    }
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = workspace_root(&manifest_dir);
    let crate_dir = crate_dir_of(&root, package);
    for watched in [
        crate_dir.join("src"),
        crate_dir.join("Cargo.toml"),
        root.join("wit"),
        // The `wasm-release` profile lives in the workspace manifest.
        root.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let target_dir = root.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--quiet",
        "-p",
        package,
        "--target",
        "wasm32-wasip2",
        "--profile",
        "wasm-release",
        "--target-dir",
    ]);
    cmd.arg(&target_dir);
    // Keep the outer build's target, flags, wrappers and jobserver out of the wasm build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().to_string();
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "RUSTDOCFLAGS"
            );
        if leaks {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the wasm32-wasip2 component build");
    if !status.success() {
        panic!(
            "building {package} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
        );
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("wasm-release")
        .join(format!("{artifact}.wasm"));
    assert!(wasm.exists(), "component not found at {}", wasm.display());
    println!("cargo:rustc-env={env_var}={}", wasm.display());
}

fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("Cargo.toml").is_file())
        .expect("workspace root with wit/")
        .to_path_buf()
}

fn crate_dir_of(root: &Path, package: &str) -> PathBuf {
    match package.strip_prefix("kvsync-test-guest-") {
        Some(guest) => root.join("tests").join("guests").join(guest),
        None => root.join("component"),
    }
}
