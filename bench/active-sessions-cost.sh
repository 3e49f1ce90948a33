#!/usr/bin/env bash
# What the active_sessions collector's sampling costs PostgreSQL: the agent
# samples pg_stat_activity every second for a minute, with max_connections
# = 200, 100 mostly idle client connections and a few active ones (sleeping
# and reading) so that the sample has rows to group. The server's own
# accounting (pg_stat_statements, execution + planning) of the pgvigil
# role's sampling statement is the cost. Prints a markdown table.
#
#   bash bench/active-sessions-cost.sh   # about 2 minutes; builds target/release/pgvigil
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release --locked >&2
dir=$(mktemp -d /tmp/pgvigil-bench-XXXXXX)
port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; stop_pg "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
start_pg "$dir" "$port" "max_connections = 200" "pg_stat_statements.track_planning = on" "shared_buffers = 128MB"
prepare_pgvigil "$dir" "$port"
pg_sql "$dir" "$port" -c "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100000) g"

echo 'SELECT 1;' > "$dir/idle.sql"
echo 'SELECT pg_sleep(0.2);' > "$dir/sleep.sql"
echo 'SELECT count(*) FROM t;' > "$dir/read.sql"
export PGPASSWORD=
pgbench -n -h "$dir" -p "$port" -U postgres -d postgres -c 100 -R 10 -T 90 -f "$dir/idle.sql" >/dev/null 2>&1 & pids+=("$!")
pgbench -n -h "$dir" -p "$port" -U postgres -d postgres -c 4 -T 90 -f "$dir/sleep.sql" >/dev/null 2>&1 & pids+=("$!")
pgbench -n -h "$dir" -p "$port" -U postgres -d postgres -c 1 -R 20 -T 90 -f "$dir/read.sql" >/dev/null 2>&1 & pids+=("$!")
sleep 5

listen=127.0.0.1:$(free_port)
start_agent "$dir" "$port" "$listen" "$dir/agent.log" "[collectors]" 'active_sessions = "1s"'
pids+=("$agent")
sleep 61
curl -s "http://$listen/metrics" | grep -E '^pg_active_session_seconds_total' | sort -t' ' -k2 -gr | head -n 5 >&2
kill "$agent"; wait "$agent" 2>/dev/null || true
connections=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
read -r calls exec_ms plan_ms rows < <(pg_sql "$dir" "$port" -Atc "
  SELECT sum(calls), sum(total_exec_time), sum(total_plan_time), sum(rows) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
   WHERE r.rolname = 'pgvigil' AND query LIKE '%FROM pg_catalog.pg_stat_activity%GROUP BY 1, 2, 3, 4%'" | tr '|' ' ')
cat <<MD
active_sessions sampling cost, $(date -u +%Y-%m-%d): $("$PG_BINDIR/postgres" --version), max_connections = 200,
$connections client connections (100 mostly idle, 4 sleeping, 1 reading), the agent sampling every second for a minute.

| measure | value |
|---|---|
| samples | $calls |
| execution per sample (ms) | $(awk -v a="$exec_ms" -v n="$calls" 'BEGIN { printf "%.3f", a / n }') |
| planning per sample (ms; prepared once per connection) | $(awk -v a="$plan_ms" -v n="$calls" 'BEGIN { printf "%.3f", a / n }') |
| rows per sample | $(awk -v a="$rows" -v n="$calls" 'BEGIN { printf "%.1f", a / n }') |
| database time per minute (ms) | $(awk -v a="$exec_ms" -v b="$plan_ms" -v n="$calls" 'BEGIN { printf "%.1f", (a + b) / n * 60 }') |
MD
