#!/usr/bin/env bash
# KV read throughput of the Node.js host beside the Rust host (release binary),
# same client, same run: one secret at secret/data/bench, then `wrk` GETs for
# each server in turn. Information, not a target (see "Embedding the engine").
#
#   host/node/bench.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-10}"
conns="${2:-16}"
token="bench-root"
bin="${KVSYNC_BIN:-$root/target/release/kvsync}"  # KVSYNC_BIN: another build (the figure is for release)
[ -x "$bin" ] || (cd "$root" && cargo build --release -p kvsync)
command -v wrk >/dev/null || { echo "bench.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
tmp=$(mktemp -d)
trap cleanup EXIT

start() { # name, command... ; sets $addr (run in this shell, so cleanup knows the pid)
    local name=$1 log="$tmp/$1.log"; shift
    "$@" >"$log" 2>&1 &
    pids+=("$!")
    addr=""
    for _ in $(seq 1 600); do
        addr=$(grep -oE 'Api Address: *http://127\.0\.0\.1:[0-9]+' "$log" | grep -oE 'http://.*' || true)
        [ -n "$addr" ] && return
        sleep 0.1
    done
    echo "bench.sh: $name did not start" >&2; cat "$log" >&2; exit 1
}

start rust "$bin" server --dev --dev-listen-address 127.0.0.1:0 --dev-root-token-id "$token"
rust=$addr
# exec: the pid is the Node process itself, not a shell around it.
start node "$here/run.sh" --listen 127.0.0.1:0 --dev-root-token-id "$token"
node=$addr

for target in "rust $rust" "node $node"; do
    set -- $target
    curl -sf -o /dev/null -H "X-Vault-Token: $token" -H 'content-type: application/json' \
        -d '{"data":{"user":"app","password":"correct horse battery staple"}}' "$2/v1/secret/data/bench"
    wrk -t1 -c"$conns" -d2s -H "X-Vault-Token: $token" "$2/v1/secret/data/bench" >/dev/null # warm-up
    out=$(wrk -t1 -c"$conns" -d"${secs}s" -H "X-Vault-Token: $token" "$2/v1/secret/data/bench")
    if grep -q "Non-2xx" <<<"$out"; then echo "bench.sh: $1 answered errors:" >&2; echo "$out" >&2; exit 1; fi
    echo "$1 host: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s, latency $(awk '/Latency/ {print $2 " avg, " $4 " max"}' <<<"$out") (GET secret/data/bench, wrk -t1 -c$conns -d${secs}s)"
done
