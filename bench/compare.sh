#!/usr/bin/env bash
# pgvigil against prometheus-community's postgres_exporter (Debian's
# prometheus-postgres-exporter), side by side on one throwaway PostgreSQL 15
# with 500 tables and 5,000+ distinct statements under a light background
# load. Each agent runs under its own login role, so PostgreSQL's own
# accounting (pg_stat_statements) tells their costs apart.
#
#   bash bench/compare.sh            # about 8 minutes; prints a markdown report and
#                                    # puts it into docs/performance.md (BENCH_NO_DOC=1: don't)
#
# Measured for both: /metrics latency (200 sequential scrapes, then 10
# concurrent scrapers), resident memory, CPU seconds per minute, database
# time and statements per minute at a 15 s scrape interval, series, and
# `promtool check metrics` problems. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

for tool in prometheus-postgres-exporter promtool pgbench curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install prometheus-postgres-exporter prometheus postgresql-contrib curl)" >&2; exit 1; }
done
cargo build --release --locked >&2

dir=$(mktemp -d /tmp/pgvigil-compare-XXXXXX)
port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; stop_pg "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
start_pg "$dir" "$port" "pg_stat_statements.max = 10000" "max_connections = 100" "shared_buffers = 128MB"

echo "==> preparing 500 tables and 5,000 statements" >&2
prepare_pgvigil "$dir" "$port"
pg_sql "$dir" "$port" -c "CREATE ROLE exporter LOGIN PASSWORD 'bench' IN ROLE pg_monitor"
pg_sql "$dir" "$port" -c "DO \$\$ BEGIN FOR t IN 1..500 LOOP
  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, %s)', t, (SELECT string_agg(format('c%s int', c), ', ') FROM generate_series(1, 10) c));
  EXECUTE format('INSERT INTO t%s SELECT g, %s FROM generate_series(1, 200) g', t, (SELECT string_agg('g', ', ') FROM generate_series(1, 10)));
END LOOP; END \$\$"
# 500 tables x 10 shapes = 5,000 distinct statements, split over 50 pgbench scripts.
mkdir -p "$dir/load"
awk -v out="$dir/load" 'BEGIN { for (t = 1; t <= 500; t++) for (c = 1; c <= 10; c++) {
  f = sprintf("%s/s%02d.sql", out, (t * 10 + c) % 50)
  line = "SELECT "; for (i = 1; i <= c; i++) line = line (i > 1 ? ", " : "") "c" i
  print line " FROM t" t " WHERE id = " c * 7 ";" > f } }'
cat "$dir"/load/*.sql | pg_sql "$dir" "$port" >/dev/null
entries=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_statements")

cat > "$dir/queries.yaml" <<'YAML'
pg_stat_statements:
  query: "SELECT t2.rolname, t3.datname, queryid, calls, total_exec_time / 1000 AS total_time_seconds, min_exec_time / 1000 AS min_time_seconds, max_exec_time / 1000 AS max_time_seconds, mean_exec_time / 1000 AS mean_time_seconds, stddev_exec_time / 1000 AS stddev_time_seconds, rows, shared_blks_hit, shared_blks_read, temp_blks_written, wal_bytes FROM pg_stat_statements t1 JOIN pg_roles t2 ON (t1.userid = t2.oid) JOIN pg_database t3 ON (t1.dbid = t3.oid) ORDER BY total_exec_time DESC LIMIT 100"
  master: true
  metrics:
    - rolname: {usage: "LABEL", description: "Name of user"}
    - datname: {usage: "LABEL", description: "Name of database"}
    - queryid: {usage: "LABEL", description: "Query ID"}
    - calls: {usage: "COUNTER", description: "Number of times executed"}
    - total_time_seconds: {usage: "COUNTER", description: "Total time spent in the statement"}
    - min_time_seconds: {usage: "GAUGE", description: "Minimum time spent in the statement"}
    - max_time_seconds: {usage: "GAUGE", description: "Maximum time spent in the statement"}
    - mean_time_seconds: {usage: "GAUGE", description: "Mean time spent in the statement"}
    - stddev_time_seconds: {usage: "GAUGE", description: "Standard deviation of time spent in the statement"}
    - rows: {usage: "COUNTER", description: "Rows retrieved or affected"}
    - shared_blks_hit: {usage: "COUNTER", description: "Shared block cache hits"}
    - shared_blks_read: {usage: "COUNTER", description: "Shared blocks read"}
    - temp_blks_written: {usage: "COUNTER", description: "Temp blocks written"}
    - wal_bytes: {usage: "COUNTER", description: "WAL bytes generated"}
YAML

echo "==> starting both agents and a background load" >&2
vigil_port=$(free_port); exporter_port=$(free_port)
RUST_LOG=${BENCH_DETAIL:+pgvigil=debug} start_agent "$dir" "$port" "127.0.0.1:$vigil_port" "$dir/pgvigil.log"
vigil=$agent; pids+=("$vigil")
DATA_SOURCE_NAME="postgresql://exporter:bench@127.0.0.1:$port/postgres?sslmode=disable" \
  prometheus-postgres-exporter --web.listen-address="127.0.0.1:$exporter_port" \
  --extend.query-path="$dir/queries.yaml" --log.level=warn 2>"$dir/exporter.log" &
exporter=$!; pids+=("$exporter")
files=(); for f in "$dir"/load/*.sql; do files+=(-f "$f"); done
PGPASSWORD= pgbench -n -h "$dir" -p "$port" -U postgres -d postgres -c 2 -R 20 -T 600 "${files[@]}" >/dev/null 2>&1 &
pids+=("$!")
vigil_url="http://127.0.0.1:$vigil_port/metrics"
exporter_url="http://127.0.0.1:$exporter_port/metrics"

# Warm-up: two statements cycles for pgvigil, a few scrapes for the exporter.
# (Either may still be binding its port: retry refused connections.)
for _ in 1 2 3; do curl -s --retry 20 --retry-connrefused --retry-delay 1 -o /dev/null "$exporter_url"; sleep 10; done
curl -s --retry 20 --retry-connrefused --retry-delay 1 -o /dev/null "$vigil_url"
sleep 10

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
role_cost() {  # role -> "calls exec_ms"
  pg_sql "$dir" "$port" -Atc "SELECT coalesce(sum(s.calls), 0), coalesce(sum(s.total_exec_time + s.total_plan_time), 0)
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '$1'" | tr '|' ' '
}

# Five minutes, so that what pgvigil does every 5 minutes (database sizes,
# table and index sizes) is in the window in its due share.
minutes=5
echo "==> $minutes minutes of Prometheus-like scraping every 15 s" >&2
read -r v_calls0 v_ms0 < <(role_cost pgvigil)
read -r e_calls0 e_ms0 < <(role_cost exporter)
v_cpu0=$(cpu_ticks "$vigil"); e_cpu0=$(cpu_ticks "$exporter"); t0=$(date +%s.%N)
for _ in $(seq 1 $((minutes * 4))); do
  curl -s -o "$dir/vigil.prom" "$vigil_url" & a=$!
  curl -s -o "$dir/exporter.prom" "$exporter_url" & b=$!
  wait "$a" "$b"
  sleep 15
done
read -r v_calls1 v_ms1 < <(role_cost pgvigil)
read -r e_calls1 e_ms1 < <(role_cost exporter)
v_cpu1=$(cpu_ticks "$vigil"); e_cpu1=$(cpu_ticks "$exporter"); t1=$(date +%s.%N)
elapsed_min=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 60 }')
v_rss=$(ps -o rss= -p "$vigil"); e_rss=$(ps -o rss= -p "$exporter")
hz=$(getconf CLK_TCK)

echo "==> scrape latency" >&2
latencies() {  # url count parallel -> one latency (ms) per line
  seq 1 "$2" | xargs -P "$3" -I{} curl -s -o /dev/null -w '%{time_total}\n' "$1" | awk '{printf "%.3f\n", $1 * 1000}' | sort -n
}
pct() { awk -v p="$1" '{v[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; print v[i]}'; }
latencies "$vigil_url" 200 1 > "$dir/v1"; latencies "$exporter_url" 200 1 > "$dir/e1"
latencies "$vigil_url" 300 10 > "$dir/v10"; latencies "$exporter_url" 300 10 > "$dir/e10"
v_rss_after=$(ps -o rss= -p "$vigil"); e_rss_after=$(ps -o rss= -p "$exporter")

series() { grep -vc '^#' "$1"; }
problems() { promtool check metrics < "$1" 2>&1 | grep -c . || true; }
curl -s -o "$dir/vigil.prom" "$vigil_url"; curl -s -o "$dir/exporter.prom" "$exporter_url"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
per_min() { awk -v a="$1" -v b="$2" -v m="$elapsed_min" 'BEGIN { printf "%.1f", (b - a) / m }'; }
cpu_min() { awk -v a="$1" -v b="$2" -v hz="$hz" -v m="$elapsed_min" 'BEGIN { printf "%.2f", (b - a) / hz / m }'; }

v_med=$(pct 0.5 < "$dir/v1"); e_med=$(pct 0.5 < "$dir/e1")
v_db=$(per_min "$v_ms0" "$v_ms1"); e_db=$(per_min "$e_ms0" "$e_ms1")
cat > "$dir/report.md" <<MD
Side by side, $(date -u +%Y-%m-%d): $(nproc) cores ($(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')),
$("$PG_BINDIR/postgres" --version), $entries pg_stat_statements entries, 500 tables,
$(target/release/pgvigil --version) with default settings, $(prometheus-postgres-exporter --version 2>&1 | head -n 1)
with its default collectors plus a pg_stat_statements top-100 query (\`--extend.query-path\`).
A background load of 40 statements/s runs throughout.

| measure | pgvigil | postgres_exporter | pgvigil / exporter |
|---|---|---|---|
| scrape latency, median of 200 sequential (ms) | $v_med | $e_med | $(ratio "$v_med" "$e_med") |
| scrape latency, p99 of 200 sequential (ms) | $(pct 0.99 < "$dir/v1") | $(pct 0.99 < "$dir/e1") | $(ratio "$(pct 0.99 < "$dir/v1")" "$(pct 0.99 < "$dir/e1")") |
| scrape latency, median with 10 concurrent scrapers (ms) | $(pct 0.5 < "$dir/v10") | $(pct 0.5 < "$dir/e10") | $(ratio "$(pct 0.5 < "$dir/v10")" "$(pct 0.5 < "$dir/e10")") |
| scrape latency, p99 with 10 concurrent scrapers (ms) | $(pct 0.99 < "$dir/v10") | $(pct 0.99 < "$dir/e10") | $(ratio "$(pct 0.99 < "$dir/v10")" "$(pct 0.99 < "$dir/e10")") |
| resident memory after warm-up (MiB) | $((v_rss / 1024)) | $((e_rss / 1024)) | $(ratio "$v_rss" "$e_rss") |
| resident memory after the latency runs (MiB) | $((v_rss_after / 1024)) | $((e_rss_after / 1024)) | $(ratio "$v_rss_after" "$e_rss_after") |
| CPU seconds per minute (15 s scrapes) | $(cpu_min "$v_cpu0" "$v_cpu1") | $(cpu_min "$e_cpu0" "$e_cpu1") | $(ratio "$(cpu_min "$v_cpu0" "$v_cpu1")" "$(cpu_min "$e_cpu0" "$e_cpu1")") |
| database time per minute (ms, execution + planning) | $v_db | $e_db | $(ratio "$v_db" "$e_db") |
| statements per minute | $(per_min "$v_calls0" "$v_calls1") | $(per_min "$e_calls0" "$e_calls1") | $(ratio "$(per_min "$v_calls0" "$v_calls1")" "$(per_min "$e_calls0" "$e_calls1")") |
| series per scrape | $(series "$dir/vigil.prom") | $(series "$dir/exporter.prom") | $(ratio "$(series "$dir/vigil.prom")" "$(series "$dir/exporter.prom")") |
| \`promtool check metrics\` problems | $(problems "$dir/vigil.prom") | $(problems "$dir/exporter.prom") | |
MD
cat "$dir/report.md"
[ -n "${BENCH_NO_DOC:-}" ] || update_doc compare < "$dir/report.md"
if [ -n "${BENCH_DETAIL:-}" ]; then
  echo; echo "Per-statement database time of each role over the whole run:"; echo
  pg_sql "$dir" "$port" -c "SELECT r.rolname, s.calls, round(s.total_exec_time::numeric, 1) AS exec_ms,
      round((s.total_exec_time / s.calls)::numeric, 2) AS per_call_ms, left(regexp_replace(s.query, '\s+', ' ', 'g'), 70) AS query
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname IN ('pgvigil', 'exporter')
    ORDER BY r.rolname, s.total_exec_time DESC"
  echo; echo "pgvigil's statements cycles:"; grep -E "statements cycle processed|fetched query texts" "$dir/pgvigil.log" | tail -n 8
fi
