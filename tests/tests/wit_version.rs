//! The WIT package `kvsync:engine` is published with a version, and a change
//! of the WIT must come with a version bump: `wit/CHECKSUMS` maps each released
//! version to the SHA-256 of its normalised WIT (every `.wit` file under `wit/`,
//! in name order, with comments removed and whitespace collapsed, so editing
//! documentation needs no bump). This test fails when the WIT of the current
//! version is not the one recorded for it.
//!
//! To change the WIT: bump the version in `package kvsync:engine@X.Y.Z;`
//! (semver: a new import or export is a minor bump, a changed or removed one a
//! major bump, before 1.0 the minor acts as major), then append the line this
//! test prints to `wit/CHECKSUMS`.
#![expect(clippy::unwrap_used, reason = "test code")]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("wit")
}

/// The WIT without comments, each run of whitespace one space.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

fn version_of(text: &str) -> String {
    let decl = normalise(text);
    let (_, rest) = decl.split_once("package kvsync:engine@").unwrap();
    rest.split(';').next().unwrap().trim().to_string()
}

fn parse(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    )
}

#[test]
fn the_wit_changes_only_with_a_version_bump() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wit_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    let mut version = None;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("package kvsync:engine@") {
            version = Some(version_of(&text));
        }
        hasher.update(normalise(&text).as_bytes());
        hasher.update(b"\n");
    }
    let version = version.expect("a `package kvsync:engine@X.Y.Z;` declaration");
    let digest = hex::encode(hasher.finalize());
    let line = format!("{version} {digest}");

    let recorded = std::fs::read_to_string(wit_dir().join("CHECKSUMS")).unwrap();
    let entries: Vec<(&str, &str)> = recorded
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    match entries.iter().find(|(v, _)| *v == version) {
        Some((_, sum)) => assert_eq!(
            *sum, digest,
            "wit/ changed but its version is still {version}: bump the version in \
             wit/world.wit and append `<new version> <sha256>` to wit/CHECKSUMS (this \
             test prints the line for the version it finds); the WIT of {version} is released"
        ),
        None => panic!("wit/CHECKSUMS has no line for version {version}: append `{line}`"),
    }
    let newest = entries.iter().map(|(v, _)| parse(v)).max().unwrap();
    assert_eq!(
        parse(&version),
        newest,
        "wit/world.wit declares {version}, older than a version in wit/CHECKSUMS"
    );
}

#[test]
fn normalising_ignores_comments_and_layout_only() {
    assert_eq!(
        normalise("/// doc\nfoo: func(a: u32)   -> bool; // note\n"),
        normalise("foo: func(a: u32) -> bool;")
    );
    assert_ne!(normalise("foo: func();"), normalise("bar: func();"));
    assert_eq!(version_of("package kvsync:engine@1.2.3;\n"), "1.2.3");
}
