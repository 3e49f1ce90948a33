# Shared helpers for the benchmark scripts: throwaway PostgreSQL clusters
# like the test harness makes (as the postgres user when run as root).

PG_BINDIR=${PGVIGIL_PG_BINDIR:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_pg DIR PORT [extra postgresql.conf lines...]: initdb and start.
start_pg() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  as_pg "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C >/dev/null
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "shared_preload_libraries = 'pg_stat_statements'"
    echo "fsync = off"
    echo "synchronous_commit = off"
    for line in "$@"; do echo "$line"; done
  } | as_pg tee -a "$dir/data/postgresql.auto.conf" >/dev/null
  as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

stop_pg() {
  as_pg "$PG_BINDIR/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

# prepare_pgvigil DIR PORT: the pgvigil role of packaging/sql/pgvigil-role.sql
# with the password "bench", and pg_stat_statements.
prepare_pgvigil() {
  pg_sql "$1" "$2" -f packaging/sql/pgvigil-role.sql
  pg_sql "$1" "$2" -c "ALTER ROLE pgvigil PASSWORD 'bench'" -c "CREATE EXTENSION pg_stat_statements"
}

# start_agent DIR PORT LISTEN LOG [TOML lines...]: writes DIR/pgvigil.toml
# (listen on LISTEN; one target, the cluster as pgvigil; then the TOML lines)
# and starts the release build in the background, its log in LOG and its pid
# in $agent.
start_agent() {
  local dir=$1 port=$2 listen=$3 log=$4; shift 4
  {
    echo "listen = \"$listen\""
    echo "[[target]]"
    echo "dsn = \"postgresql://pgvigil@127.0.0.1:$port/postgres?sslmode=disable\""
    echo "password_env = \"PGVIGIL_PASSWORD\""
    for line in "$@"; do echo "$line"; done
  } > "$dir/pgvigil.toml"
  PGVIGIL_PASSWORD=bench target/release/pgvigil run --config "$dir/pgvigil.toml" 2>"$log" &
  agent=$!
}

# psql as the superuser over the cluster's socket.
pg_sql() {
  local dir=$1 port=$2; shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}

# update_doc SECTION: replaces the text between <!-- SECTION:begin --> and
# <!-- SECTION:end --> in docs/performance.md with standard input.
update_doc() {
  local section=$1 doc=docs/performance.md new
  new=$(mktemp)
  cat > "$new"
  python3 - "$doc" "$section" "$new" <<'PY'
import sys
doc, section, new = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
text = open(doc).read()
begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
if begin not in text or end not in text:
    sys.exit(f"{doc} has no {begin} ... {end} section")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(doc, "w").write(f"{head}{begin}\n{new.rstrip()}\n{end}{tail}")
PY
  rm -f "$new"
  echo "updated the $section section of $doc" >&2
}
