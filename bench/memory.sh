#!/usr/bin/env bash
# Bounded memory under growth: 100,000 pg_stat_statements entries with
# churn (thousands of entries evicted and created every cycle) and 50,000
# tables, watched by one agent for many statements cycles in accelerated
# time (collectors every 500 ms instead of 15-30 s). Samples the agent's
# resident memory as cycles go by; prints a markdown table and puts it into
# docs/performance.md (BENCH_NO_DOC=1: don't).
#
#   bash bench/memory.sh            # 1,000 statements cycles, about 30 minutes
#   CYCLES=100 bash bench/memory.sh # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release --locked >&2

CYCLES=${CYCLES:-1000}
TABLES=${TABLES:-50000}
ENTRIES=${ENTRIES:-100000}
dir=$(mktemp -d /tmp/pgvigil-memory-XXXXXX)
port=$(free_port)
agent=""
churn=""
cleanup() {
  [ -n "$churn" ] && kill "$churn" 2>/dev/null
  [ -n "$agent" ] && kill "$agent" 2>/dev/null
  stop_pg "$dir"; rm -rf "$dir"
  return 0
}
trap cleanup EXIT

start_pg "$dir" "$port" "pg_stat_statements.max = $ENTRIES" "pg_stat_statements.track = all" \
  "max_connections = 60" "shared_buffers = 256MB" "max_locks_per_transaction = 1024"
prepare_pgvigil "$dir" "$port"
echo "==> $TABLES tables" >&2
pg_sql "$dir" "$port" -c "DO \$\$ BEGIN FOR t IN 1..$TABLES LOOP
  EXECUTE format('CREATE TABLE t%s (id int)', t);
  IF t % 1000 = 0 THEN COMMIT; END IF;
END LOOP; END \$\$"
echo "==> $ENTRIES statements" >&2
# Distinct shapes: per table, a select list of k columns (k = 1, 2, ...).
pg_sql "$dir" "$port" -c "CREATE FUNCTION shapes(first bigint, n int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE s bigint; BEGIN
  FOR s IN first..first + n - 1 LOOP
    EXECUTE format('SELECT %s FROM t%s', rtrim(repeat('id, ', (s / $TABLES + 1)::int), ', '), s % $TABLES + 1);
  END LOOP;
END \$\$"
pg_sql "$dir" "$port" -c "SELECT shapes(0, $ENTRIES)"
entries=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_statements")

listen=127.0.0.1:$(free_port)
start_agent "$dir" "$port" "$listen" "$dir/agent.log" "[collectors]" 'default_interval = "500ms"' \
  'database_size = "5s"' 'tables = "500ms"' 'statements = { interval = "500ms" }' "[explain]" "enabled = false"

# Churn: 5,000 shapes never seen before per second; pg_stat_statements
# evicts the least used to make room.
(
  next=$ENTRIES
  while true; do
    pg_sql "$dir" "$port" -c "SELECT shapes($next, 5000)" >/dev/null 2>&1 || true
    next=$((next + 5000))
    sleep 1
  done
) &
churn=$!

report=$(mktemp)
{
  echo "One agent, $(date -u +%Y-%m-%d): $(nproc) cores, $("$PG_BINDIR/postgres" --version), $(target/release/pgvigil --version); $entries pg_stat_statements entries (max $ENTRIES, 5,000 new ones a second evicting old ones) and $TABLES tables, every collector every 500 ms."
  echo
  echo "| statements cycles | elapsed (s) | entries now | evictions so far | resident memory (MiB) | statements cycle (ms) | tables cycle (ms) |"
  echo "|---|---|---|---|---|---|---|"
} > "$report"
metric() { curl -s "http://$listen/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cycles=0
last=""
started=$(date +%s)
next_sample=0
while [ "$cycles" -lt "$CYCLES" ]; do
  sleep 0.2
  now=$(metric 'pgvigil_collector_last_success_timestamp_seconds{collector="statements"}')
  if [ -n "$now" ] && [ "$now" != "$last" ]; then
    last=$now
    cycles=$((cycles + 1))
  fi
  if [ "$cycles" -ge "$next_sample" ]; then
    m=$(curl -s "http://$listen/metrics")
    rss=$(ps -o rss= -p "$agent")
    get() { awk -v m="$1" '$1 == m { print $2 }' <<<"$m"; }
    echo "| $cycles | $(( $(date +%s) - started )) | $(get pg_stat_statements_entries) | $(get pg_stat_statements_dealloc_total) | $((rss / 1024)) | $(awk -v v="$(get 'pgvigil_collector_duration_seconds{collector="statements"}')" 'BEGIN { printf "%.0f", v * 1000 }') | $(awk -v v="$(get 'pgvigil_collector_duration_seconds{collector="tables"}')" 'BEGIN { printf "%.0f", v * 1000 }') |" | tee -a "$report" >&2
    next_sample=$((next_sample + CYCLES / 10))
  fi
done
cat "$report"
[ -n "${BENCH_NO_DOC:-}" ] || update_doc memory < "$report"
rm -f "$report"
