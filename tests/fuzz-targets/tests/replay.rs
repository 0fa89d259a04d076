//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs
//! of past crashes (`fuzz/regressions/<target>/`) through the targets' bodies
//! on stable Rust: every one must pass the target's checks. No fuzzing happens here; `tests/fuzz.sh` fuzzes.
#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::path::{Path, PathBuf};

use kvsync_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The corpus, then the inputs that once failed (`fuzz/regressions/<target>/`,
/// kept apart so that minimising the corpus never drops them).
fn replay(target: &str) {
    let (_, run) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let mut files = files(&fuzz_dir().join("corpus").join(target));
    assert!(!files.is_empty(), "no corpus for {target}");
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        files.extend(self::files(&regressions));
    }
    for file in files {
        // On failure the last line names the input; `cargo fuzz run <target> <file>` reproduces it.
        eprintln!("{target}: {}", file.display());
        run(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn engine_request() {
    replay("engine_request");
}

#[test]
fn name_template() {
    replay("name_template");
}

#[test]
fn storage_record() {
    replay("storage_record");
}

#[test]
fn policy() {
    replay("policy");
}

#[test]
fn config_hcl() {
    replay("config_hcl");
}

/// Every fuzz binary has a body in [`TARGETS`] (and so a replay above).
#[test]
fn every_fuzz_target_is_replayed() {
    let mut binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    binaries.sort();
    names.sort();
    assert_eq!(binaries, names);
}
