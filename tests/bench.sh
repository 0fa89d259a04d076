#!/usr/bin/env bash
# The benchmark command: sets up what it needs (wasm32-wasip2 target, wrk, moto
# and OpenBao's bao in .venv), builds kvsync and the baselines in release mode, and
# measures every performance target P1-P14 side by side with its baseline, printing the table
# (also written to target/release/bench-runs/<time>/results.md).
#
#   tests/bench.sh                  # all targets, 5 rounds of 10 s
#   tests/bench.sh --rounds 3 --seconds 5 --only P1,P2
#   tests/bench.sh --only P4,P10-ns,P14 --namespaces 50 --rounds 1 --seconds 2   # tenants, smoke-sized
#
# The server under test runs on core 1, the load generator (and this driver,
# and moto) on core 0. Criterion benches of the hot internals are separate:
#   cargo bench -p kvsync-tests
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/setup.sh
setup_toolchain
setup_python

if ! command -v wrk >/dev/null; then
    echo "== installing wrk (Debian package)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        sudo apt-get install -y wrk >/dev/null || { sudo apt-get update >/dev/null && sudo apt-get install -y wrk >/dev/null; }
    fi
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "the benchmarks pin the server and the load to two separate cores; this machine has $(nproc)" >&2
    exit 1
fi

echo "== release build"
cargo build --release -p kvsync -p kvsync-tests --bin kvsync --bin kvsync-bench

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core)' || true
uname -srm

echo "== benchmarks"
exec taskset -c 0 target/release/kvsync-bench all --moto "$(pwd)/.venv/bin/moto_server" \
    --bao "$(pwd)/.venv/bin/bao" "$@"
