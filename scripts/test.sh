#!/usr/bin/env bash
# Runs the whole pgvigil test suite on Debian/Ubuntu, installing what is
# missing first. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Tests start real servers: PostgreSQL (and later PgBouncer, pgBackRest),
# check output with promtool (prometheus), and make TLS certificates (openssl).
install_missing "${BUILD_PACKAGES[@]}" postgresql postgresql-contrib pgbouncer pgbackrest prometheus openssl
ensure_rust

# Debian's package may have started its own cluster; the tests never use it.
cargo test --locked "$@"
