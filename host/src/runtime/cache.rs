//! Compiles the component once per machine: the machine code is serialized to a
//! cache directory keyed by the component's digest and the engine's
//! compatibility hash, so restarts and test binaries only deserialize it.
//!
//! The cache holds native code the server runs, so it is trusted only as far as
//! nobody else can write it:
//!
//! * the directory is created 0700; a directory (or artifact) not owned by the
//!   server's user, or writable by group or others, is not used at all: the
//!   component is compiled in memory and a warning names the directory and why;
//! * each artifact starts with a header, [`MAGIC`] and the SHA-256 of the
//!   serialized code, written to a private temporary file and renamed into place;
//!   a file whose header or digest does not match (truncated, corrupted, an old
//!   format) is recompiled and overwritten, with a warning. The digest is checked
//!   over the very bytes that are then loaded.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::private_fs;

/// The first bytes of a cached artifact (then its SHA-256, then the code).
const MAGIC: &[u8] = b"kvsync-cwasm-v1\n";
const DIGEST_LEN: usize = 32;

fn cache_file(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let digest = Sha256::digest(wasm);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let name = format!(
        "engine-{}-{:016x}.cwasm",
        hex::encode(digest.first_chunk::<16>().unwrap_or(&[0; 16])),
        hasher.finish()
    );
    dir.join(name)
}

pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> anyhow::Result<Component> {
    let Some(dir) = cache_dir else {
        return compile(engine, wasm);
    };
    if let Err(e) = private_fs::create_dir(dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot create the component cache; compiling in memory");
        return compile(engine, wasm);
    }
    if let Some(why) = untrusted(dir) {
        tracing::warn!(dir = %dir.display(), "not using the component cache, which is {why}; compiling in memory");
        return compile(engine, wasm);
    }
    let file = cache_file(engine, wasm, dir);
    match read_artifact(&file) {
        Cached::Missing => {}
        Cached::Verified(code) => match deserialize(engine, &code) {
            Ok(component) => {
                tracing::debug!(file = %file.display(), "loaded the compiled component from the cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %file.display(), "recompiling an unusable cached component");
            }
        },
        Cached::Rejected(why) => {
            tracing::warn!(file = %file.display(), "recompiling the cached component: {why}");
        }
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&component, dir, &file) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot cache the compiled component");
    }
    Ok(component)
}

/// Why the directory `dir` (a symbolic link to it is followed) may hold someone
/// else's code, if it may.
fn untrusted(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(meta) => private_fs::untrusted(&meta),
        Err(e) => Some(format!("unreadable ({e})")),
    }
}

enum Cached {
    Missing,
    /// The code, its digest checked.
    Verified(Vec<u8>),
    /// Present but not to be loaded, and why.
    Rejected(String),
}

fn read_artifact(file: &Path) -> Cached {
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cached::Missing,
        Err(e) => return Cached::Rejected(format!("unreadable ({e})")),
        Ok(meta) if !meta.is_file() => return Cached::Rejected("not a regular file".into()),
        Ok(meta) => {
            if let Some(why) = private_fs::untrusted(&meta) {
                return Cached::Rejected(format!("the file is {why}"));
            }
        }
    }
    let mut bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => return Cached::Rejected(format!("unreadable ({e})")),
    };
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Cached::Rejected("no kvsync header (corrupted, or an older format)".into());
    };
    let Some((digest, code)) = rest.split_first_chunk::<DIGEST_LEN>() else {
        return Cached::Rejected("truncated header".into());
    };
    if Sha256::digest(code).as_slice() != digest {
        return Cached::Rejected("its SHA-256 does not match its header (corrupted)".into());
    }
    bytes.drain(..MAGIC.len() + DIGEST_LEN);
    Cached::Verified(bytes)
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("cannot compile the engine component: {e}"))
}

#[expect(
    unsafe_code,
    reason = "loading a precompiled component trusts its bytes: see SAFETY below"
)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `code` is exactly what `store` serialized: it was read from a file
    // owned by this user, writable by nobody else, in a directory with the same
    // guarantees, and its SHA-256 matched the header written with it, over these
    // very bytes (no second read of the file). The file name binds it to the exact
    // component bytes and to this engine's compatibility hash, and wasmtime checks
    // its own header and version before use.
    unsafe { Component::deserialize(engine, code) }
}

fn store(component: &Component, dir: &Path, file: &Path) -> anyhow::Result<()> {
    let code = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("cannot serialize the component: {e}"))?;
    // Write a private temporary file then rename it, so a reader never sees a partial file.
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), rand_suffix()));
    let written = (|| -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(MAGIC)?;
        out.write_all(&Sha256::digest(&code))?;
        out.write_all(&code)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest component: its preamble (magic, version 0x0d, layer 1).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn only_file(dir: &Path) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }

    #[test]
    fn a_tampered_artifact_is_recompiled_and_overwritten() {
        let engine = Engine::default();
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cache");
        load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = only_file(&dir);
        let good = std::fs::read(&file).unwrap();
        assert!(
            good.starts_with(MAGIC),
            "the artifact carries no checked header"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Loading from the cache leaves the file as it is.
        load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), good);

        // A flipped bit in the machine code, a truncated file, a file without the header.
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let truncated = good[..good.len() - 1].to_vec();
        let headerless = good[MAGIC.len() + 32..].to_vec();
        for bad in [flipped, truncated, headerless, Vec::new()] {
            std::fs::write(&file, &bad).unwrap();
            load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), good, "not overwritten");
        }
    }

    #[test]
    fn an_untrusted_directory_is_neither_read_nor_written() {
        let engine = Engine::default();
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cache");
        load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
        let file = only_file(&dir);
        let planted = b"planted by another user".to_vec();

        for loose in [0o777, 0o720, 0o702] {
            std::fs::write(&file, &planted).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).unwrap();
            load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), planted, "mode {loose:o}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A file writable by others, in a private directory, is not trusted either.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
        assert!(std::fs::read(&file).unwrap().starts_with(MAGIC));

        // Owned by another user (only root can arrange that here).
        if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&dir).unwrap()) == 0 {
            std::fs::write(&file, &planted).unwrap();
            std::os::unix::fs::chown(&dir, Some(1), None).unwrap();
            load_component(&engine, EMPTY_COMPONENT, Some(&dir)).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), planted);
        }
    }
}
