#!/usr/bin/env bash
# Starts the Node.js host of the kvsync engine (dev mode: in-memory, one root
# token, KV-v2 at secret/), installing what it needs first:
#   - the npm packages (`npm ci`) when node_modules is missing or older than
#     package-lock.json;
#   - the engine component (`cargo build --release -p kvsync`) only when the
#     Rust build has not produced one yet;
#   - the transpiled engine (build.mjs) when gen/ is older than the component.
#
#   host/node/run.sh --listen 127.0.0.1:PORT --dev-root-token-id TOKEN
#
# Other tooling relies on this command line: keep it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    echo "run.sh: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
fi

wasm="$root/target/wasm/wasm32-wasip2/wasm-release/kvsync_component.wasm"
if [ ! -f "$wasm" ]; then
    echo "run.sh: no engine component yet; cargo build --release -p kvsync" >&2
    (cd "$root" && cargo build --release -p kvsync >&2)
fi

node build.mjs >&2
exec node main.mjs "$@"
