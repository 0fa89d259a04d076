//! Builds the engine component for `wasm32-wasip2` so a plain `cargo build` produces
//! both the component and the host that embeds it (see `build_support/wasm_build.rs`).

#[path = "../build_support/wasm_build.rs"]
mod wasm_build;

fn main() {
    wasm_build::build_component("kvsync-component", "kvsync_component", "COMPONENT_WASM");
}
