# Shared set-up of tests/run.sh and tests/bench.sh (sourced, from the repo root):
# the wasm32-wasip2 target, the Python virtualenv (.venv) with the test
# clients and moto, and the Node.js host's packages (host/node, npm ci).

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

setup_node() {
    echo "== node packages (host/node)"
    node --version
    # The exact versions of the committed lockfile; reinstalled only when it changed.
    if [ ! -f host/node/node_modules/.package-lock.json ] \
        || [ host/node/package-lock.json -nt host/node/node_modules/.package-lock.json ]; then
        (cd host/node && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
