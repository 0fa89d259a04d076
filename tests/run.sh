#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine and runs all of it:
# the wasm32-wasip2 target, a Python virtualenv with the test clients, PostgreSQL's
# binaries (the storage tests start their own server), the Node.js host's
# packages, one shared debug build, the Rust tests (component natively, host,
# runtime limits, parity of the Rust and Node.js hosts, the fuzz corpus replay),
# lint checks, and the end-to-end suite against the real binary, then its
# host-neutral modules against the Node.js host.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

. tests/setup.sh
setup_toolchain
setup_python
setup_postgres
setup_node

# One compiled-component cache for every test binary and server the suite starts.
export KVSYNC_CACHE_DIR="$root/target/kvsync-cache"

echo "== build (one debug build shared by every test)"
cargo build --workspace --all-targets

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== rust tests (with the fuzz corpus replay: tests/fuzz-targets)"
cargo test --workspace

echo "== node host unit tests"
node --test host/node/test/

echo "== end-to-end tests (hvac, raw HTTP, durability)"
export KVSYNC_BIN="$root/target/debug/kvsync"
.venv/bin/python -m pytest -q tests/python

echo "== end-to-end tests against the Node.js host (host/node/run.sh)"
KVSYNC_E2E_HOST=node .venv/bin/python -m pytest -q \
    tests/python/test_kv_hvac.py tests/python/test_sync_api.py tests/python/test_http.py
