//! The EXPLAIN guard: which statements may be EXPLAINed, and which of them
//! with ANALYZE (docs/explain.md). Pure: it reads only the statement's parse tree.
//!
//! ANALYZE executes the statement, so it is allowed only for exactly one
//! plain SELECT — joins, subqueries, read-only CTEs and set operations
//! included — that modifies nothing, locks no rows, creates nothing and
//! calls no deny-listed function. Data-modifying statements get a plain
//! EXPLAIN (which plans but never executes); utility statements get
//! nothing. The names of every function, operator and cast target the
//! statement uses are returned so that the runner can check, in the
//! server's catalogs, that none of them is a volatile user function.
//!
//! The walk is over the whole parse tree serialised by pg_query (every
//! field of every node), not over a hand-picked subset of node types: a
//! function call hidden in any clause is seen.

use serde_json::Value;

/// What the guard allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// EXPLAIN ANALYZE may run, once the catalog check of `uses` passes.
    Analyze {
        /// Names to check in the server's catalogs first.
        uses: Uses,
    },
    /// Only a plain EXPLAIN, which plans the statement without running it.
    PlanOnly {
        /// Why not ANALYZE, one line.
        reason: String,
    },
    /// No EXPLAIN at all.
    Refuse {
        /// Why, one line.
        reason: String,
    },
}

/// Everything a SELECT calls that the catalogs must vouch for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    /// Functions, as (schema if written, name), lower case.
    pub functions: Vec<(Option<String>, String)>,
    /// Operator symbols.
    pub operators: Vec<String>,
    /// Type names of explicit casts.
    pub cast_types: Vec<String>,
    /// Relations named in FROM clauses, as written (schema-qualified or
    /// not), so that views among them can be inspected.
    pub relations: Vec<String>,
}

/// Functions that must never run under EXPLAIN ANALYZE, by exact name.
const DENIED: &[&str] = &[
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "set_config",
    "nextval",
    "setval",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_promote",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_stat_file",
    "pg_import_system_collations",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "setseed",
];

/// Functions that must never run under EXPLAIN ANALYZE, by name prefix.
const DENIED_PREFIXES: &[&str] = &[
    "dblink",
    "pg_advisory",
    "pg_try_advisory",
    "lo_",
    "pg_read_",
    "pg_ls_",
    "pg_file_",
    "pg_stat_reset",
    "pg_create_",
    "pg_copy_",
    "pg_logical_slot_",
];

/// Whether a function name is on the deny-list of functions that write,
/// wait, signal or read files.
pub fn denied(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    DENIED.contains(&name.as_str()) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Volatile built-in functions that are harmless under ANALYZE (they read a
/// clock or a random generator); every other volatile function is refused.
pub const HARMLESS_VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
];

fn refuse(reason: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        reason: reason.into(),
    }
}

fn plan_only(reason: impl Into<String>) -> Verdict {
    Verdict::PlanOnly {
        reason: reason.into(),
    }
}

/// Judges one statement's text.
pub fn judge(sql: &str) -> Verdict {
    let parsed = match pg_query::parse(sql, 0) {
        Ok(p) => p,
        Err(_) => return refuse("the statement does not parse"),
    };
    let tree = match serde_json::to_value(&parsed.protobuf) {
        Ok(v) => v,
        Err(_) => return refuse("the parse tree could not be read"),
    };
    let stmts = tree
        .get("stmts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let [raw] = stmts.as_slice() else {
        return refuse(if stmts.is_empty() {
            "no statement"
        } else {
            "more than one statement"
        });
    };
    let Some(node) = raw.pointer("/stmt/node").and_then(Value::as_object) else {
        return refuse("no statement");
    };
    let Some((kind, _)) = node.iter().next() else {
        return refuse("no statement");
    };
    match kind.as_str() {
        // Walk the node itself, so the top-level SELECT's own clauses count.
        "SelectStmt" => judge_select(&Value::Object(node.clone())),
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
            plan_only(format!("{} would modify data", statement_word(kind)))
        }
        other => refuse(format!(
            "{} is not a query EXPLAIN can run safely",
            statement_word(other)
        )),
    }
}

/// The highest `$n` placeholder in the statement (0 without any): such a
/// statement has no values to run with, only a generic plan.
pub fn param_count(sql: &str) -> usize {
    fn highest(value: &Value) -> usize {
        match value {
            Value::Array(items) => items.iter().map(highest).max().unwrap_or(0),
            Value::Object(fields) => fields
                .iter()
                .map(|(key, body)| {
                    let own = if key == "ParamRef" {
                        body.get("number").and_then(Value::as_u64).unwrap_or(0) as usize
                    } else {
                        0
                    };
                    own.max(highest(body))
                })
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }
    pg_query::parse(sql, 0)
        .ok()
        .and_then(|p| serde_json::to_value(&p.protobuf).ok())
        .map_or(0, |tree| highest(&tree))
}

fn statement_word(kind: &str) -> String {
    kind.trim_end_matches("Stmt").to_ascii_uppercase()
}

/// What the walk over a SELECT found.
#[derive(Default)]
struct Walk {
    uses: Uses,
    problem: Option<String>,
}

fn judge_select(select: &Value) -> Verdict {
    let mut walk = Walk::default();
    visit(select, &mut walk);
    if let Some(reason) = walk.problem {
        return plan_only(reason);
    }
    for list in [
        &mut walk.uses.operators,
        &mut walk.uses.cast_types,
        &mut walk.uses.relations,
    ] {
        list.sort();
        list.dedup();
    }
    walk.uses.functions.sort();
    walk.uses.functions.dedup();
    Verdict::Analyze { uses: walk.uses }
}

/// The string values of a list of `String` nodes (a qualified name).
fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|n| n.pointer("/node/String/sval").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn note(walk: &mut Walk, reason: String) {
    walk.problem.get_or_insert(reason);
}

/// Visits every value in the tree; node kinds of interest are keys.
fn visit(value: &Value, walk: &mut Walk) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| visit(v, walk)),
        Value::Object(fields) => {
            for (key, body) in fields {
                match key.as_str() {
                    "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => note(
                        walk,
                        format!("a data-modifying CTE ({})", statement_word(key)),
                    ),
                    "SelectStmt" => {
                        if non_empty(body.get("into_clause")) {
                            note(walk, "SELECT INTO creates a table".into());
                        }
                        if non_empty(body.get("locking_clause")) {
                            note(walk, "FOR UPDATE/SHARE locks rows".into());
                        }
                    }
                    "FuncCall" => {
                        let mut name = names(body.get("funcname"));
                        if let Some(last) = name.pop() {
                            let last = last.to_ascii_lowercase();
                            if denied(&last) {
                                note(walk, format!("calls {last}()"));
                            }
                            walk.uses
                                .functions
                                .push((name.pop().map(|s| s.to_ascii_lowercase()), last));
                        }
                    }
                    "AExpr" => {
                        if let Some(op) = names(body.get("name")).pop() {
                            walk.uses.operators.push(op);
                        }
                    }
                    "TypeCast" => {
                        if let Some(t) = names(body.pointer("/type_name/names")).pop() {
                            walk.uses.cast_types.push(t.to_ascii_lowercase());
                        }
                    }
                    "RangeVar" => {
                        let relname = body.get("relname").and_then(Value::as_str).unwrap_or("");
                        let schema = body.get("schemaname").and_then(Value::as_str).unwrap_or("");
                        if !relname.is_empty() {
                            walk.uses.relations.push(if schema.is_empty() {
                                relname.to_string()
                            } else {
                                format!("{schema}.{relname}")
                            });
                        }
                    }
                    _ => {}
                }
                visit(body, walk);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(sql: &str) -> &'static str {
        match judge(sql) {
            Verdict::Analyze { .. } => "analyze",
            Verdict::PlanOnly { .. } => "plan",
            Verdict::Refuse { .. } => "refuse",
        }
    }

    #[test]
    fn only_plain_reads_may_be_analyzed() {
        let cases = [
            // plain reads
            ("SELECT * FROM orders WHERE id = 42", "analyze"),
            (
                "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
                "analyze",
            ),
            (
                "SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE vip)",
                "analyze",
            ),
            (
                "WITH recent AS (SELECT * FROM orders WHERE at > now() - interval '1 day') SELECT count(*) FROM recent",
                "analyze",
            ),
            (
                "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t",
                "analyze",
            ),
            (
                "SELECT id FROM a UNION SELECT id FROM b EXCEPT SELECT id FROM c",
                "analyze",
            ),
            ("SELECT * FROM orders WHERE id = $1", "analyze"),
            ("VALUES (1), (2)", "analyze"),
            ("SELECT random(), clock_timestamp()", "analyze"),
            // writes: a plan, never an execution
            ("INSERT INTO orders (id) VALUES (1)", "plan"),
            ("UPDATE orders SET total = 0 WHERE id = 1", "plan"),
            ("DELETE FROM orders WHERE id = 1", "plan"),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v",
                "plan",
            ),
            (
                "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
                "plan",
            ),
            ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "plan"),
            ("SELECT * INTO archive FROM orders", "plan"),
            ("SELECT * FROM orders FOR UPDATE", "plan"),
            ("SELECT * FROM orders FOR SHARE", "plan"),
            ("SELECT * FROM orders FOR NO KEY UPDATE", "plan"),
            ("SELECT * FROM orders FOR KEY SHARE SKIP LOCKED", "plan"),
            ("SELECT * FROM (SELECT * FROM orders FOR UPDATE) s", "plan"),
            // deny-listed functions, wherever they hide
            ("SELECT pg_sleep(10)", "plan"),
            ("SELECT * FROM orders WHERE pg_sleep(1) IS NULL", "plan"),
            (
                "SELECT count(*) FROM orders GROUP BY pg_catalog.pg_sleep_for('1s')",
                "plan",
            ),
            ("SELECT nextval('orders_id_seq')", "plan"),
            ("SELECT setval('s', 1)", "plan"),
            ("SELECT pg_advisory_lock(1)", "plan"),
            ("SELECT pg_try_advisory_xact_lock(1)", "plan"),
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "plan",
            ),
            ("SELECT pg_cancel_backend(123)", "plan"),
            ("SELECT lo_import('/etc/passwd')", "plan"),
            ("SELECT pg_read_file('postgresql.conf')", "plan"),
            ("SELECT set_config('work_mem', '1GB', false)", "plan"),
            (
                "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(n int)",
                "plan",
            ),
            (
                "SELECT (SELECT max(x) FROM t WHERE x < (SELECT pg_sleep(1)::text::int))",
                "plan",
            ),
            (
                "SELECT query_to_xml('DELETE FROM t', true, true, '')",
                "plan",
            ),
            ("SELECT pg_stat_reset()", "plan"),
            // not queries at all
            ("COPY orders TO '/tmp/x'", "refuse"),
            ("VACUUM orders", "refuse"),
            ("CREATE TABLE t (id int)", "refuse"),
            ("CREATE TABLE t AS SELECT 1", "refuse"),
            ("SET work_mem = '1GB'", "refuse"),
            ("LOCK TABLE orders", "refuse"),
            ("CALL refresh()", "refuse"),
            ("DO $$ BEGIN PERFORM 1; END $$", "refuse"),
            ("EXPLAIN SELECT 1", "refuse"),
            ("EXECUTE prepared_one(1)", "refuse"),
            ("BEGIN", "refuse"),
            ("TRUNCATE orders", "refuse"),
            ("SELECT 1; SELECT 2", "refuse"),
            ("SELECT 1; DELETE FROM orders", "refuse"),
            ("", "refuse"),
            ("SELEC * FRM orders", "refuse"),
            ("SELECT * FROM orders WHERE name = 'trunc", "refuse"),
        ];
        for (sql, want) in cases {
            assert_eq!(verdict(sql), want, "{sql}");
        }
    }

    #[test]
    fn uses_lists_what_the_catalogs_must_check() {
        let sql = "SELECT public.score(o.total) + 1, lower(c.name)::citext \
                   FROM shop.orders o JOIN customers c ON c.id = o.customer_id \
                   WHERE o.total @@@ 5";
        let Verdict::Analyze { uses } = judge(sql) else {
            panic!("{:?}", judge(sql))
        };
        assert_eq!(
            uses.functions,
            [
                (None, "lower".to_string()),
                (Some("public".to_string()), "score".to_string())
            ]
        );
        assert_eq!(uses.operators, ["+", "=", "@@@"]);
        assert_eq!(uses.cast_types, ["citext"]);
        assert_eq!(uses.relations, ["customers", "shop.orders"]);
    }

    #[test]
    fn placeholders_are_counted() {
        let cases = [
            ("SELECT 1", 0),
            ("SELECT * FROM t WHERE a = $1 AND b IN ($3, $2)", 3),
            ("SELECT (SELECT max(x) FROM u WHERE y = $7)", 7),
            ("not sql at all", 0),
        ];
        for (sql, want) in cases {
            assert_eq!(param_count(sql), want, "{sql}");
        }
    }

    #[test]
    fn deny_list_matches_names_and_prefixes() {
        let cases = [
            ("pg_sleep", true),
            ("PG_SLEEP", true),
            ("dblink_exec", true),
            ("pg_advisory_unlock_all", true),
            ("lo_unlink", true),
            ("pg_ls_waldir", true),
            ("lower", false),
            ("pg_size_pretty", false),
            ("count", false),
        ];
        for (name, want) in cases {
            assert_eq!(denied(name), want, "{name}");
        }
    }
}
