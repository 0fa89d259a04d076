# Shared set-up of tests/run.sh and tests/bench.sh (sourced, from the repo root):
# the wasm32-wasip2 target, the Python virtualenv (.venv) with the test
# clients and moto, PostgreSQL's binaries for the storage tests, and the
# Node.js host's packages (host/node, npm ci).

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

# PostgreSQL's server binaries (Debian's `postgresql`), found by the tests under
# /usr/lib/postgresql/*/bin, and the unprivileged user a test server runs as
# when the tests run as root (postgres refuses root). The tests start and stop
# their own server (tests/src/postgres.rs); nothing is started here.
setup_postgres() {
    echo "== postgresql"
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            echo "PostgreSQL is missing: apt-get install -y postgresql (as root)" >&2
            return 1
        fi
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1
    if [ "$(id -u)" = 0 ] && ! id kvsync-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin kvsync-pg
    fi
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
