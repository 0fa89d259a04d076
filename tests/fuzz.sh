#!/usr/bin/env bash
# Coverage-guided fuzzing of kvsync's in-process targets (libFuzzer through
# cargo-fuzz, on nightly Rust): `tests/fuzz.sh [seconds-per-target] [target...]`
# (default 600 s, every target). It installs the nightly toolchain and
# cargo-fuzz (pinned) when missing, builds the targets once (no sanitizer: the
# code is safe Rust; debug assertions and overflow checks on), runs each target
# for the given time, one at a time on one core, from fuzz/corpus/<target>/ and
# fuzz/regressions/<target>/, and replaces fuzz/corpus/<target>/ with what it
# reached, minimised (`cargo fuzz cmin`, to a set covering every edge; the
# corpus is left as it was when the target crashed). A crash is minimised
# (`cargo fuzz tmin`) next to its artifact in fuzz/artifacts/<target>/ and makes
# the script fail. The last line per target gives its executions per second.
#
# The targets' bodies are in tests/fuzz-targets; the stable suite
# (tests/run.sh) replays the committed corpus through them, without fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_FUZZ_VERSION=0.13.1
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(engine_request name_template storage_record policy config_hcl)
fi

echo "== toolchain (nightly) and cargo-fuzz $CARGO_FUZZ_VERSION"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
rustup run nightly rustc --version
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd "$root/fuzz"
# The same flags for build, run, cmin and tmin, so each reuses one build.
flags=(--sanitizer none --debug-assertions)
echo "== build"
cargo +nightly fuzz build "${flags[@]}"

failed=()
summary=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    # The fuzzer grows and prunes a working copy (under target/, not
    # committed), seeded with the committed corpus and the past crashes; the
    # committed corpus changes only once the run is over.
    work="target/corpus/$target"
    rm -rf "$work"
    mkdir -p "$work" "corpus/$target" "artifacts/$target"
    cp -r "corpus/$target/." "$work/"
    if [ -d "regressions/$target" ]; then
        cp -r "regressions/$target/." "$work/"
    fi
    before=$(ls "artifacts/$target" | grep -cE '^(crash|timeout|oom)-' || true)
    log="artifacts/$target.log"
    # One process, one core; the full libFuzzer log goes to $log.
    cargo +nightly fuzz run "${flags[@]}" "$target" "$work" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 | tee "$log" \
        | grep --line-buffered -E 'pulse|DONE|panicked|ERROR|stat::' || true
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    after=$(ls "artifacts/$target" | grep -cE '^(crash|timeout|oom)-' || true)
    if [ "$after" -gt "$before" ]; then
        failed+=("$target")
        for crash in "artifacts/$target"/crash-* "artifacts/$target"/timeout-* "artifacts/$target"/oom-*; do
            [ -e "$crash" ] || continue
            [ -e "artifacts/$target/minimized-from-${crash##*-}" ] && continue
            echo "== minimise $crash"
            cargo +nightly fuzz tmin "${flags[@]}" "$target" "$crash" -- -runs=20000 >/dev/null 2>&1 || true
        done
    else
        # The smallest set of inputs that reaches every edge (hit counts and
        # comparison operands ignored): a few hundred files, not thousands.
        echo "== minimise the corpus of $target"
        cargo +nightly fuzz cmin "${flags[@]}" "$target" "$work" -- \
            -set_cover_merge=1 -use_counters=0 -use_cmp=0 >/dev/null 2>&1
        find "corpus/$target" -type f -delete
        cp -r "$work/." "corpus/$target/"
    fi
    summary+=("$target: ${runs:-?} executions, ${speed:-?}/s, $(ls "corpus/$target" | wc -l) corpus files")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/<target>/; once fixed, keep the" \
        "minimised input in fuzz/regressions/<target>/)" >&2
    exit 1
fi
