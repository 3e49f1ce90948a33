#!/usr/bin/env bash
# The series budget (docs/performance.md): what one server with 10,000
# distinct statements and 5,000 tables (each with a primary key index) in 20
# databases costs in series, with pgvigil at its default settings.
#
# Only the intervals are shortened (every collector every 5 s instead of
# 15 s to 5 minutes): how many series a family has depends on the top-N,
# hysteresis and bucket settings, not on how often it runs, and shorter
# intervals reach the worst case in minutes instead of an hour. Two phases:
#
# - steady: the same 100 statements run every interval and no table grows,
#   so what is published settles (what a quiet production server shows);
# - churn: every interval a new slice of 125 statements does all the work,
#   and every 20 s a new slice of 100 tables grows past all the others, so
#   that the top-N of statements, statement histograms, tables and indexes
#   change completely again and again and hysteresis keeps the leavers: the
#   most a family can publish. Scraped every 2.5 s; each family's largest
#   count over the scrapes, and the largest total, are reported.
#
# Prints a markdown table of series per family and the totals, and puts it
# into docs/performance.md (BENCH_NO_DOC=1: don't). Exits 1 when a total is
# over BUDGET (5,000).
#
#   bash bench/budget.sh            # about 5 minutes after the release build
#   BENCH_BINARY=/path/to/pgvigil bash bench/budget.sh   # another build (no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BUDGET=${BUDGET:-5000}
DATABASES=20
TABLES_PER_DB=250   # 5,000 tables
SHAPES=2            # statements per table: 10,000
binary=${BENCH_BINARY:-target/release/pgvigil}
[ -n "${BENCH_BINARY:-}" ] || cargo build --release --locked >&2

dir=$(mktemp -d /tmp/pgvigil-budget-XXXXXX)
port=$(free_port)
agent=""
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null; stop_pg "$dir"; rm -rf "$dir"; return 0; }
trap cleanup EXIT
start_pg "$dir" "$port" "pg_stat_statements.max = 12000" "max_connections = 60" "shared_buffers = 128MB"
prepare_pgvigil "$dir" "$port"

echo "==> $DATABASES databases, $((DATABASES * TABLES_PER_DB)) tables, $((DATABASES * TABLES_PER_DB * SHAPES)) statements" >&2
for db in $(seq 1 "$DATABASES"); do
  pg_sql "$dir" "$port" -c "CREATE DATABASE db$db"
  pg_sql "$dir" "$port" -d "db$db" -c "DO \$\$ BEGIN FOR t IN 1..$TABLES_PER_DB LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int, c8 int, c9 int, c10 int)', t);
    EXECUTE format('INSERT INTO t%s VALUES (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)', t);
  END LOOP; END \$\$"
  # Distinct statements: per table, select lists of 1 and 2 columns.
  awk -v tables="$TABLES_PER_DB" -v shapes="$SHAPES" 'BEGIN { for (t = 1; t <= tables; t++) for (c = 1; c <= shapes; c++) {
    line = "SELECT c1"; for (i = 2; i <= c; i++) line = line ", c" i
    print line " FROM t" t " WHERE id = 1;" } }' > "$dir/db$db.sql"
  psql -X -q -h "$dir" -p "$port" -U postgres -d "db$db" -f "$dir/db$db.sql" >/dev/null
done
entries=$(pg_sql "$dir" "$port" -Atc "SELECT count(*) FROM pg_stat_statements")

listen=127.0.0.1:$(free_port)
{
  echo "listen = \"$listen\""
  echo "[[target]]"
  echo "dsn = \"postgresql://pgvigil@127.0.0.1:$port/postgres?sslmode=disable\""
  echo "password_env = \"PGVIGIL_PASSWORD\""
  echo "[collectors]"
  echo 'default_interval = "5s"'
  echo 'database_size = "5s"'
  echo 'tables = "5s"'
  echo 'vacuum_tables = "5s"'
  echo 'schema = "5s"'
  echo 'statements = "5s"'
} > "$dir/pgvigil.toml"
PGVIGIL_PASSWORD=bench "$binary" run --config "$dir/pgvigil.toml" 2>"$dir/agent.log" &
agent=$!
url="http://$listen/metrics"
curl -s --retry 20 --retry-connrefused --retry-delay 1 -o /dev/null "$url"

# Runs lines FIRST..FIRST+N-1 of a database's statements, each 3 times.
run_slice() {
  local db=$1 first=$2 n=$3
  sed -n "${first},$((first + n - 1))p" "$dir/db$db.sql" | awk '{ print; print; print }' |
    psql -X -q -h "$dir" -p "$port" -U postgres -d "db$db" >/dev/null
}
# Scrapes every 2.5 s for SECONDS seconds into $dir/PHASE-N.prom, calling
# the function TICK every 5 s.
scrape_phase() {
  local phase=$1 seconds=$2 tick=$3 i=0
  mkdir -p "$dir/$phase"
  while [ $((i * 5)) -lt $((seconds * 2)) ]; do
    if [ $((i % 2)) -eq 0 ]; then "$tick" $((i / 2)); fi
    curl -s -o "$dir/$phase/$i.prom" "$url"
    sleep 2.5
    i=$((i + 1))
  done
}

echo "==> steady: the same 100 statements every interval" >&2
steady_tick() { run_slice 1 1 100; }
for i in 1 2 3 4 5 6; do steady_tick; sleep 5; done # hysteresis forgets the set-up
scrape_phase steady 30 steady_tick

echo "==> churn: a new top every interval" >&2
slice=0
grown=0
churn_tick() {
  local per_db=$((TABLES_PER_DB * SHAPES / 125))
  run_slice $((slice / per_db % DATABASES + 1)) $((slice % per_db * 125 + 1)) 125
  slice=$((slice + 1))
  if [ $(($1 % 4)) -eq 0 ]; then
    # 100 tables of the next database grow past every table grown before.
    grown=$((grown + 1))
    local db=$((grown % DATABASES + 1)) rows=$((grown * 400))
    pg_sql "$dir" "$port" -d "db$db" -c "DO \$\$ BEGIN FOR t IN 1..100 LOOP
      EXECUTE format('INSERT INTO t%s SELECT g, g, g, g, g, g, g, g, g, g, g FROM generate_series(2, $rows) g ON CONFLICT DO NOTHING', t);
    END LOOP; END \$\$" >/dev/null
  fi
}
scrape_phase churn 120 churn_tick

report=$(mktemp)
status=0
python3 - "$dir" "$BUDGET" > "$report" <<'PY' || status=$?
import glob, os, re, sys
from collections import Counter

directory, budget = sys.argv[1], int(sys.argv[2])

def families(path):
    """Series per family of one scrape (Prometheus text 0.0.4)."""
    types, counts = {}, Counter()
    for line in open(path):
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            types[name] = kind
            continue
        if line.startswith("#") or not line.strip():
            continue
        name = re.match(r"[^{ ]+", line).group(0)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        counts[base if types.get(base) == "histogram" else name] += 1
    return counts

phases = {}
for phase in ("steady", "churn"):
    scrapes = [families(p) for p in sorted(glob.glob(f"{directory}/{phase}/*.prom"))]
    scrapes = [s for s in scrapes if s]
    largest = Counter()
    for s in scrapes:
        for family, n in s.items():
            largest[family] = max(largest[family], n)
    phases[phase] = (largest, max(sum(s.values()) for s in scrapes), len(scrapes))

steady, churn = phases["steady"][0], phases["churn"][0]
def group(family):
    if family.startswith(("pg_stat_statements", "pg_statement_", "pgvigil_database_time")):
        return "statements"
    if family.startswith(("pg_table", "pg_index")):
        return "tables"
    return "everything else"
print("| family | steady | churn (largest) |")
print("|---|---|---|")
rest_steady = rest_churn = 0
for family in sorted(set(steady) | set(churn), key=lambda f: (group(f), f)):
    if group(family) == "everything else":
        rest_steady += steady[family]
        rest_churn += churn[family]
        continue
    print(f"| `{family}` | {steady[family]} | {churn[family]} |")
for g in ("statements", "tables"):
    print(f"| **{g}, all families** | {sum(n for f, n in steady.items() if group(f) == g)} | {sum(n for f, n in churn.items() if group(f) == g)} |")
others = len({f for f in set(steady) | set(churn) if group(f) == "everything else"})
print(f"| everything else ({others} families: server, connections, databases, health, …) | {rest_steady} | {rest_churn} |")
over = [p for p in phases.values() if p[1] > budget]
print(f"| **total per scrape** (largest of {phases['steady'][2]} and {phases['churn'][2]} scrapes; budget {budget:,}) | **{phases['steady'][1]}** | **{phases['churn'][1]}** |")
print("\nEvery family (steady, churn):", file=sys.stderr)
for family in sorted(set(steady) | set(churn)):
    print(f"  {family} {steady[family]} {churn[family]}", file=sys.stderr)
sys.exit(1 if over else 0)
PY
{
  echo "Series budget, $(date -u +%Y-%m-%d): $("$PG_BINDIR/postgres" --version), $entries pg_stat_statements entries,"
  echo "$((DATABASES * TABLES_PER_DB)) tables with as many indexes in $DATABASES databases, $("$binary" --version) with default settings"
  echo "(intervals shortened to 5 s)."
  echo
  cat "$report"
} > "$report.md"
cat "$report.md"
[ -n "${BENCH_NO_DOC:-}" ] || update_doc budget < "$report.md"
rm -f "$report" "$report.md"
exit "$status"
