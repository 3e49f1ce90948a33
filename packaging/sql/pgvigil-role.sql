-- Least-privilege role for pgvigil.
--
-- pg_monitor is the only grant pgvigil needs: it bundles pg_read_all_stats
-- (other sessions' states and query texts), pg_read_all_settings
-- (data_directory and friends) and pg_stat_scan_tables. No superuser, no
-- write access to any table.
--
-- Run as a superuser, then set the password without it landing in your
-- shell history or the server log, e.g. in psql:  \password pgvigil
-- Idempotent: safe to run again.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgvigil') THEN
    CREATE ROLE pgvigil LOGIN;
  END IF;
END
$$;

ALTER ROLE pgvigil WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 10;
GRANT pg_monitor TO pgvigil;

-- Automatic EXPLAIN (the [explain] section) plans the slow statements it
-- sees, which needs read access to their tables. On PostgreSQL 14+ grant
-- pg_read_all_data (read-only: EXPLAIN ANALYZE runs only plain SELECTs, in a
-- READ ONLY transaction that is always rolled back); before 14, grant SELECT
-- on the schemas concerned. Without it, EXPLAIN fails with "permission
-- denied" and pgvigil_explain_runs_total{result="failed"} counts it; nothing
-- else needs it.
--   GRANT pg_read_all_data TO pgvigil;

-- Sequences near their limit (the schema collector, pg_sequence_used_ratio)
-- need each sequence's position, which only a role with SELECT or USAGE on
-- the sequence may read; pg_monitor does not give it. pg_read_all_data
-- above covers every sequence on 14+; before 14, in each database and
-- schema concerned:
--   GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO pgvigil;
-- Without it pg_sequences_unreadable counts them and their ratio is absent.

-- Exact tail percentiles from the slow-statement log ([target.logs]) judge
-- each logged line by the log_min_duration_statement in force for it. If you
-- give the pgvigil role a setting of its own (ALTER ROLE pgvigil SET
-- log_min_duration_statement = -1, to keep the agent out of the slow log),
-- its session no longer shows the server's value; these grants let pgvigil
-- read it from the configuration files instead (docs/percentiles.md):
--   GRANT SELECT ON pg_catalog.pg_file_settings TO pgvigil;
--   GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO pgvigil;

-- Consistency checks (the amcheck collector, docs/reliability.md): in each
-- database to check, as a superuser, install the extension and let pgvigil
-- run its two read-only checks. bt_index_check takes ACCESS SHARE only;
-- pgvigil never calls bt_index_parent_check (it blocks writes), so no grant
-- is given for it. verify_heapam exists on 14+. If the extension lives in
-- another schema than public, name that schema instead. Without these the
-- collector reports the missing extension, or fails with "permission denied".
--   CREATE EXTENSION IF NOT EXISTS amcheck;
--   GRANT EXECUTE ON FUNCTION public.bt_index_check(regclass, boolean) TO pgvigil;
--   GRANT EXECUTE ON FUNCTION public.verify_heapam(regclass, boolean, boolean, text, bigint, bigint) TO pgvigil;

-- Every pgvigil session starts with these limits; the agent also sets them
-- itself, so this is a second line of defence.
ALTER ROLE pgvigil SET statement_timeout = '10s';
ALTER ROLE pgvigil SET lock_timeout = '1s';
ALTER ROLE pgvigil SET idle_in_transaction_session_timeout = '30s';
