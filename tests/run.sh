#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine and runs all of it:
# the wasm32-wasip2 target, a Python virtualenv with the test clients, PostgreSQL's
# binaries (the storage tests start their own server), one shared
# debug build, the Rust tests (component natively, host, runtime limits), lint
# checks, and the end-to-end suite against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

. tests/setup.sh
setup_toolchain
setup_python
setup_postgres

# One compiled-component cache for every test binary and server the suite starts.
export KVSYNC_CACHE_DIR="$root/target/kvsync-cache"

echo "== build (one debug build shared by every test)"
cargo build --workspace --all-targets

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== rust tests"
cargo test --workspace

echo "== end-to-end tests (hvac, raw HTTP, durability)"
export KVSYNC_BIN="$root/target/debug/kvsync"
.venv/bin/python -m pytest -q tests/python
