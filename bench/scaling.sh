#!/usr/bin/env bash
# How pgvigil alone grows with the size of what it watches: 1,000 / 5,000 /
# 10,000 pg_stat_statements entries and 500 / 2,000 / 5,000 tables spread
# over 20 databases, with a light load on 1,000 of the statements. For each
# size: every collector's cycle time (averaged over six samples), /metrics
# latency, resident memory and series. Prints a markdown table; see
# docs/performance.md.
#
#   bash bench/scaling.sh   # about 4 minutes; prints the table and puts it into
#                           # docs/performance.md (BENCH_NO_DOC=1: don't)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release --locked >&2

sizes=("1000 500" "5000 2000" "10000 5000")
dir=""
agent=""
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null; [ -n "$dir" ] && { stop_pg "$dir"; rm -rf "$dir"; }; return 0; }
trap cleanup EXIT

report=$(mktemp)
{
  echo "pgvigil alone, $(date -u +%Y-%m-%d): $(nproc) cores ($(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')), $("$PG_BINDIR/postgres" --version), $(target/release/pgvigil --version)."
  echo
  echo "| statements | tables | statements cycle (ms) | connections cycle (ms) | databases cycle (ms) | database_size cycle (ms) | scrape median (ms) | resident memory (MiB) | series |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$report"
for size in "${sizes[@]}"; do
  read -r statements tables <<<"$size"
  echo "==> $statements statements, $tables tables" >&2
  dir=$(mktemp -d /tmp/pgvigil-scaling-XXXXXX)
  port=$(free_port)
  start_pg "$dir" "$port" "pg_stat_statements.max = 12000" "max_connections = 60"
  prepare_pgvigil "$dir" "$port"
  per_db_tables=$((tables / 20))
  per_table=$(( (statements + tables - 1) / tables ))
  for db in $(seq 1 20); do
    pg_sql "$dir" "$port" -c "CREATE DATABASE db$db"
    pg_sql "$dir" "$port" -d "db$db" -c "DO \$\$ BEGIN FOR t IN 1..$per_db_tables LOOP
      EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int, c8 int, c9 int, c10 int)', t);
    END LOOP; END \$\$"
    # Distinct statements: per table, column lists of growing length.
    awk -v tables="$per_db_tables" -v per="$per_table" 'BEGIN { for (t = 1; t <= tables; t++) for (c = 1; c <= per; c++) {
      line = "SELECT id"; for (i = 1; i <= c; i++) line = line ", c" ((i - 1) % 10 + 1) " AS a" i
      print line " FROM t" t ";" } }' > "$dir/db$db.sql"
    psql -X -q -h "$dir" -p "$port" -U postgres -d "db$db" -f "$dir/db$db.sql" >/dev/null
  done
  # The load: 50 statements of each database, once a second.
  loads=()
  for db in $(seq 1 20); do
    shuf -n 50 --random-source=<(yes) "$dir/db$db.sql" > "$dir/load$db.sql"
    pgbench -n -h "$dir" -p "$port" -U postgres -d "db$db" -c 1 -R 1 -T 600 -f "$dir/load$db.sql" >/dev/null 2>&1 &
    loads+=("$!")
  done
  entries=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_statements")
  listen=127.0.0.1:$(free_port)
  start_agent "$dir" "$port" "$listen" "$dir/agent.log" "[collectors]" 'default_interval = "5s"' \
    'database_size = "5s"' 'statements = { interval = "5s" }'
  sleep 15
  : > "$dir/samples"
  for _ in 1 2 3 4 5 6; do
    curl -s "http://$listen/metrics" | grep '^pgvigil_collector_duration_seconds' >> "$dir/samples"
    sleep 5
  done
  curl -s -o "$dir/metrics" "http://$listen/metrics"
  duration() { awk -v c="$1" -F'[{}" ]+' '$3 == c { sum += $4; n++ } END { printf "%.1f", sum / n * 1000 }' "$dir/samples"; }
  scrape=$(seq 1 50 | xargs -I{} curl -s -o /dev/null -w '%{time_total}\n' "http://$listen/metrics" | sort -n | awk '{v[NR] = $1} END {printf "%.2f", v[int(NR / 2) + 1] * 1000}')
  rss=$(ps -o rss= -p "$agent")
  series=$(grep -vc '^#' "$dir/metrics")
  echo "| $entries | $tables | $(duration statements) | $(duration connections) | $(duration databases) | $(duration database_size) | $scrape | $((rss / 1024)) | $series |" >> "$report"
  kill "$agent" "${loads[@]}"; wait "$agent" "${loads[@]}" 2>/dev/null || true; agent=""
  stop_pg "$dir"; rm -rf "$dir"; dir=""
done
cat "$report"
[ -n "${BENCH_NO_DOC:-}" ] || update_doc scaling < "$report"
rm -f "$report"
