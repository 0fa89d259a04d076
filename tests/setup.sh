# Shared set-up of tests/run.sh and tests/bench.sh (sourced, from the repo root):
# the wasm32-wasip2 target and the Python virtualenv (.venv) with the test
# clients and moto.

setup_toolchain() {
    echo "== toolchain"
    rustc --version
    cargo --version
    rustup target add wasm32-wasip2
}

setup_python() {
    echo "== python environment (.venv)"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
}
