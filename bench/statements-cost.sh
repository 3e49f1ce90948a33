#!/usr/bin/env bash
# What one statements-collector cycle costs PostgreSQL, against reading
# pg_stat_statements with its texts (what most exporters do every scrape),
# with 10,000 entries. Prints a markdown table; see docs/performance.md.
#
#   bash bench/statements-cost.sh   # builds target/release/pgvigil; prints the table and puts it
#                                   # into docs/performance.md (BENCH_NO_DOC=1: don't)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release --locked >&2
dir=$(mktemp -d /tmp/pgvigil-bench-XXXXXX)
port=$(free_port)
trap 'stop_pg "$dir"; rm -rf "$dir"' EXIT
start_pg "$dir" "$port" "pg_stat_statements.max = 12000" "pg_stat_statements.track_utility = off" "shared_buffers = 128MB"

prepare_pgvigil "$dir" "$port"
pg_sql "$dir" "$port" -c "CREATE ROLE reader LOGIN PASSWORD 'bench' IN ROLE pg_monitor"
# 200 tables x 50 statements = 10,000 distinct entries. Texts grow with the
# column list, 40 to 2,000 characters (about 1 kB on average), like ORM SQL.
pg_sql "$dir" "$port" -c "DO \$\$ BEGIN FOR t IN 1..200 LOOP
  EXECUTE format('CREATE TABLE w%s (%s)', t, (SELECT string_agg(format('column_%s int', c), ', ') FROM generate_series(1, 50) c));
END LOOP; END \$\$"
awk 'BEGIN { for (t = 1; t <= 200; t++) for (c = 1; c <= 50; c++) {
  printf "SELECT "; for (i = 1; i <= c; i++) printf "%scolumn_%d AS w%d_column_%d", (i > 1 ? ", " : ""), i, t, i
  printf " FROM w%d;\n", t } }' | pg_sql "$dir" "$port" >/dev/null
entries=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_statements")
text_bytes=$(pg_sql "$dir" "$port" -Atc "SELECT sum(length(query)) FROM pg_stat_statements")

# The two ways to read the view, each 30 times by its own role, timed by the server.
cat > "$dir/with_text.sql" <<'SQL'
SELECT * FROM pg_stat_statements;
SQL
cat > "$dir/pgvigil_query.sql" <<'SQL'
SELECT userid, dbid, queryid, toplevel, calls::float8 AS calls, total_exec_time AS exec_ms, total_plan_time AS plan_ms,
       rows::float8 AS rows, shared_blks_hit::float8, shared_blks_read::float8, temp_blks_written::float8,
       wal_bytes::float8, min_exec_time, max_exec_time, stddev_exec_time, NULL::float8 AS stats_since
  FROM pg_stat_statements(false) WHERE queryid IS NOT NULL;
SQL
export PGPASSWORD=bench
pgbench_ms() {  # file -> mean latency in ms as pgbench (client side) saw it
  pgbench -n -h 127.0.0.1 -p "$port" -U reader -d postgres -t 30 -f "$1" 2>/dev/null | awk '/latency average/ {print $4}'
}
with_text_ms=$(pgbench_ms "$dir/with_text.sql")
without_text_ms=$(pgbench_ms "$dir/pgvigil_query.sql")

# pgvigil itself: 20 cycles at 1 s on its own role; the server's own
# accounting of that role's statements is the cost.
pg_sql "$dir" "$port" -c "SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = 'pgvigil'))" >/dev/null
listen=127.0.0.1:$(free_port)
start_agent "$dir" "$port" "$listen" "$dir/agent.log" "[collectors]" 'default_interval = "1s"' \
  'server = "off"' 'connections = "off"' 'databases = "off"' 'statements = { interval = "1s" }'
sleep 21
first=$(curl -s "http://$listen/metrics" | awk '/^pgvigil_collector_duration_seconds\{collector="statements"\}/ {print $2 * 1000}')
rss=$(ps -o rss= -p "$agent")
kill "$agent"; wait "$agent" 2>/dev/null || true
read -r cycles pgvigil_ms pgvigil_temp < <(pg_sql "$dir" "$port" -Atc "
  SELECT max(calls), sum(total_exec_time) / max(calls), sum(temp_blks_written) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
   WHERE r.rolname = 'pgvigil' AND query LIKE '%pg_stat_statements(\$_) WHERE queryid IS NOT NULL%'" | tr '|' ' ')
all_ms=$(pg_sql "$dir" "$port" -Atc "SELECT sum(total_exec_time) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'pgvigil'")
read -r reader_with reader_without < <(pg_sql "$dir" "$port" -Atc "
  SELECT max(total_exec_time / calls) FILTER (WHERE query LIKE 'SELECT * FROM pg_stat_statements%'),
         max(total_exec_time / calls) FILTER (WHERE query LIKE '%pg_stat_statements(\$_) WHERE queryid IS NOT NULL%')
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'reader'" | tr '|' ' ')

version=$("$PG_BINDIR/postgres" --version)
cat > "$dir/report.md" <<MD
Statements collection cost, $(date -u +%Y-%m-%d), $(nproc) cores ($(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')), $version, $entries entries, $text_bytes bytes of query text.

| what | server time per call (ms) | client-side latency (ms) |
|---|---|---|
| \`SELECT * FROM pg_stat_statements\` (with texts; what exporters run per scrape) | $(printf %.2f "$reader_with") | $with_text_ms |
| pgvigil's read: \`pg_stat_statements(false)\`, the columns it uses | $(printf %.2f "$reader_without") | $without_text_ms |
| the same read as the agent sends it (binary protocol), averaged over $cycles cycles | $(printf %.2f "$pgvigil_ms") | – |
| one whole pgvigil statements cycle (all its statements, first cycle's text fetch included), averaged over $cycles cycles | $(awk -v a="$all_ms" -v c="$cycles" 'BEGIN {printf "%.2f", a / c}') | – |

Temporary blocks the agent's reads wrote: $pgvigil_temp. The agent's own view of the last cycle: collector duration $(printf %.1f "$first") ms, resident memory $((rss / 1024)) MiB.
MD
cat "$dir/report.md"
[ -n "${BENCH_NO_DOC:-}" ] || update_doc statements-cost < "$dir/report.md"
