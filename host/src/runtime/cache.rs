//! Compiles the component once per machine: the machine code is serialized to a
//! cache directory keyed by the component's digest and the engine's
//! compatibility hash, so restarts and test binaries only deserialize it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

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
    let file = cache_file(engine, wasm, dir);
    if let Some(component) = deserialize(engine, &file) {
        tracing::debug!(file = %file.display(), "loaded the compiled component from the cache");
        return Ok(component);
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&component, dir, &file) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot cache the compiled component");
    }
    Ok(component)
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("cannot compile the engine component: {e}"))
}

#[expect(
    unsafe_code,
    reason = "loading a precompiled component trusts the file: see SAFETY below"
)]
fn deserialize(engine: &Engine, file: &Path) -> Option<Component> {
    if !file.is_file() {
        return None;
    }
    // SAFETY: the file was written by `store` below, by this program, into a
    // directory created with mode 0700; its name binds it to the exact component
    // bytes and to this engine's compatibility hash, and wasmtime checks its
    // header and version before use. A file that fails those checks is an error
    // and is recompiled, never run.
    match unsafe { Component::deserialize_file(engine, file) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, file = %file.display(), "ignoring an unusable cached component");
            None
        }
    }
}

fn store(component: &Component, dir: &Path, file: &Path) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    let bytes = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("cannot serialize the component: {e}"))?;
    // Write then rename, so a concurrent reader never sees a partial file.
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}
