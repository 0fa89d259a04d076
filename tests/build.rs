//! Builds the test-only component under `tests/guests/runaway` for wasm32-wasip2.

#[path = "../build_support/wasm_build.rs"]
mod wasm_build;

fn main() {
    wasm_build::build_component(
        "kvsync-test-guest-runaway",
        "kvsync_test_guest_runaway",
        "RUNAWAY_WASM",
    );
}
