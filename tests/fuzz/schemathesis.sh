#!/usr/bin/env bash
# Schema-driven fuzzing of the real server: starts `kvsync server --dev` and runs schemathesis
# against its own OpenAPI document (GET /v1/sys/internal/specs/openapi) with the root token, at
# least EXAMPLES (default 25) generated cases per operation, checking that no answer is a server
# error (5xx) and that every status is one the document lists for the operation.
#
# The server and the fuzzer run inside a network namespace of their own whose only interface is
# loopback (`unshare --net`, which needs root): destinations the fuzzer creates make kvsync try
# to reach the URLs and providers they name, and no such call can leave the machine.
#
#   tests/fuzz/schemathesis.sh                 # every operation
#   EXAMPLES=100 SEED=7 tests/fuzz/schemathesis.sh
#
# Reports (JUnit, the requests and answers as VCR cassettes, the server's log) go to
# target/fuzz/schemathesis/; tests/fuzz/summary.py counts the cases per operation from them.
# CI does not run this: each defect it found has a regular test in the suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
out="$root/target/fuzz/schemathesis"
examples=${EXAMPLES:-25}
port=8200

if [ "${KVSYNC_FUZZ_NETNS:-}" != 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "schemathesis.sh needs root for its network namespace (unshare --net)" >&2
        exit 1
    fi
    . tests/setup.sh
    setup_toolchain
    setup_python
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/fuzz/requirements.txt
    export KVSYNC_CACHE_DIR="$root/target/kvsync-cache"
    cargo build -p kvsync
    rm -rf "$out"
    mkdir -p "$out"
    exec unshare --net -- env KVSYNC_FUZZ_NETNS=1 "$0" "$@"
fi

# Inside the namespace: loopback only.
ip link set lo up
if ip -o link show | grep -v ': lo:' | grep -q .; then
    echo "the namespace has an interface other than lo" >&2
    exit 1
fi

token="root-fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
addr="http://127.0.0.1:$port"
target/debug/kvsync server --dev --dev-listen-address "127.0.0.1:$port" --dev-root-token-id "$token" \
    >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
# The first start after a build compiles the engine component to machine code: up to minutes.
for _ in $(seq 1 600); do
    curl -sf "$addr/v1/sys/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.5
done
curl -sf -H "X-Vault-Token: $token" "$addr/v1/sys/internal/specs/openapi" >"$out/openapi.json"

# `token-revoke-self` would revoke the fuzzer's own token and leave nothing but 403s to test.
# `sys/health` answers the status its `activecode` parameter asks for, 5xx included: it is fuzzed
# apart, for documented statuses only.
# Two workers for the many operations, one for the two of sys/health: the one error seen of the
# fuzzer's own (Hypothesis's "AST constructor recursion depth mismatch" while describing a draw,
# not an answer of the server) came from two threads on those two.
# Hypothesis keeps the examples it found worth keeping under target/, not in the work tree.
common=(--url "$addr/v1" -H "X-Vault-Token: $token" --max-examples "$examples"
    --request-timeout 30 --no-color --generation-database "$root/target/fuzz/schemathesis-examples")
[ -n "${SEED:-}" ] && common+=(--seed "$SEED")
status=0
# Run from the reports' folder, where schemathesis writes its own cache.
cd "$out"
"$root/.venv/bin/schemathesis" run "$out/openapi.json" "${common[@]}" \
    --workers 2 --checks not_a_server_error,status_code_conformance \
    --exclude-operation-id token-revoke-self \
    --exclude-operation-id read-health-status --exclude-operation-id read-health-status-head \
    --report junit,vcr --report-junit-path "$out/junit.xml" --report-vcr-path "$out/cassette.yaml" || status=$?
"$root/.venv/bin/schemathesis" run "$out/openapi.json" "${common[@]}" \
    --workers 1 --checks status_code_conformance \
    --include-operation-id read-health-status --include-operation-id read-health-status-head \
    --report junit,vcr --report-junit-path "$out/junit-health.xml" \
    --report-vcr-path "$out/cassette-health.yaml" || status=$?
"$root/.venv/bin/python" "$root/tests/fuzz/summary.py" "$out/openapi.json" "$out/cassette.yaml" \
    "$out/cassette-health.yaml"
if grep -q -i "panicked\|request .* failed: 500" "$out/server.log"; then
    echo "the server logged a panic or an internal error: see $out/server.log" >&2
    status=1
fi
exit "$status"
