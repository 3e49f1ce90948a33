#!/usr/bin/env bash
# Installs what is missing, makes sure a local PostgreSQL runs, creates the
# least-privilege `pgvigil` role (packaging/sql/pgvigil-role.sql) with a
# generated password, builds pgvigil and runs it on :9932.
#
# The password lives in ~/.config/pgvigil/password (mode 600) and reaches
# pgvigil through PGPASSWORD, never the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

install_missing "${BUILD_PACKAGES[@]}" postgresql postgresql-contrib
ensure_rust

# A running cluster: the newest one pg_lsclusters knows, started if down,
# created if there is none.
cluster=$(pg_lsclusters --no-header | sort -k1,1n | tail -n 1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  as_root pg_createcluster "$version" main --start >&2
  cluster=$(pg_lsclusters --no-header | sort -k1,1n | tail -n 1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  echo "==> starting PostgreSQL $version/$name" >&2
  as_root pg_ctlcluster "$version" "$name" start
fi

secret_dir="${XDG_CONFIG_HOME:-$HOME/.config}/pgvigil"
secret="$secret_dir/password"
if [ ! -s "$secret" ]; then
  mkdir -p "$secret_dir"
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$secret")
fi
echo "==> creating role pgvigil (pg_monitor only) on port $port" >&2
as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres < packaging/sql/pgvigil-role.sql
# The password goes through stdin, so it is in no process list.
printf "ALTER ROLE pgvigil PASSWORD '%s';\n" "$(cat "$secret")" |
  as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres

echo "==> building pgvigil" >&2
cargo build --release --locked
echo "==> pgvigil on http://localhost:9932/metrics (Ctrl-C stops it)" >&2
PGPASSWORD="$(cat "$secret")" exec ./target/release/pgvigil run --dsn "postgresql://pgvigil@127.0.0.1:$port/postgres"
