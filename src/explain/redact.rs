//! Literal values out of EXPLAIN plans (pure).
//!
//! PostgreSQL prints plan expressions with the constants of the statement that was
//! explained (`Filter: ((email)::text = 'bob@example.com'::text)`), so a captured plan
//! can carry user data. Before a plan is stored or shown, every expression is rewritten
//! with libpg_query's normalizer, which replaces each literal with `$n`. Anything that
//! cannot be parsed is replaced wholesale by `<redacted>`: a half-redacted expression
//! might still hold a literal.

use serde_json::Value;

/// What an expression becomes when it cannot be redacted safely.
const REDACTED: &str = "<redacted>";

/// Plan keys whose values (a string, or an array of strings) are SQL expressions.
const EXPRESSION_KEYS: &[&str] = &[
    "Filter",
    "Join Filter",
    "Index Cond",
    "Recheck Cond",
    "Hash Cond",
    "Merge Cond",
    "One-Time Filter",
    "TID Cond",
    "Order By",
    "Cache Key",
    "Function Call",
    "Table Function Call",
    "Output",
    "Group Key",
    "Group Keys",
    "Hash Key",
    "Hash Keys",
    // Not in every plan, but expressions with literals all the same.
    "Run Condition",
    "Conflict Filter",
    "Sampling Parameters",
    "Repeatable Seed",
];

/// Plan keys whose values are sort keys: an expression plus ASC/DESC/NULLS/USING.
const SORT_KEY_KEYS: &[&str] = &["Sort Key", "Presorted Key"];

/// Top-level key that auto_explain adds with the whole statement text.
const STATEMENT_KEYS: &[&str] = &["Query Text"];

/// PostgreSQL 17+ prints a WindowAgg's definition, frame offsets included:
/// `w1 AS (ORDER BY x ROWS BETWEEN '1'::bigint PRECEDING AND CURRENT ROW)`.
const WINDOW_KEYS: &[&str] = &["Window"];

/// Keys that are nothing but values: auto_explain's bind parameters (`$1 = 'bob'`).
const VALUE_KEYS: &[&str] = &["Query Parameters"];

/// Plan-only notations that are not SQL, with identifiers that stand in for them
/// while the expression goes through the SQL parser. "hashed SubPlan" must come
/// before "SubPlan" so the longer form wins.
const PLAN_REFS: &[(&str, &str)] = &[
    ("hashed SubPlan ", "pgvigil_hashed_subplan_"),
    ("SubPlan ", "pgvigil_subplan_"),
    ("InitPlan ", "pgvigil_initplan_"),
];

/// PostgreSQL 17+ prints a hashed `x IN (subquery)` as `(ANY (x = (hashed SubPlan 1).col1))`,
/// which is not SQL; as a function call it parses. In SQL, `ANY (` / `ALL (` always follow
/// an operator, never an opening parenthesis, so this form cannot be legitimate SQL.
const QUANTIFIER_REFS: &[(&str, &str)] =
    &[("(ANY (", "(pgvigil_any("), ("(ALL (", "(pgvigil_all(")];

/// How the value of one plan key is redacted.
#[derive(Clone, Copy)]
enum Kind {
    Expression,
    SortKey,
    Statement,
    Window,
    Value,
}

/// Replaces the literals in every expression of an EXPLAIN (FORMAT JSON) plan.
///
/// Walks the whole document (nodes, their "Plans", worker and grouping-set details) and
/// rewrites the values of the expression keys ("Filter", "Index Cond", "Output", "Sort
/// Key", …) in place. Numbers, relation and index names stay as they are. Values of
/// unexpected types under those keys become `"<redacted>"`.
pub fn redact_plan(plan: &mut Value) {
    match plan {
        Value::Array(items) => items.iter_mut().for_each(redact_plan),
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match kind_of(key) {
                    Some(kind) => redact_value(value, kind),
                    None => redact_plan(value),
                }
            }
        }
        _ => {}
    }
}

/// Replaces every literal in one plan expression with `$n`.
///
/// `((email)::text = 'bob@example.com'::text)` becomes `((email)::text = $1::text)`.
/// Plan notations without literals (`(hashed SubPlan 1)`, `(InitPlan 1).col1`, `$0`)
/// come back unchanged. Text that does not parse as SQL becomes `"<redacted>"`.
pub fn redact_expression(expr: &str) -> String {
    // Partial aggregates print as "PARTIAL sum(x)", which is not SQL.
    if let Some(rest) = expr.strip_prefix("PARTIAL ") {
        return prefixed("PARTIAL ", redact_expression(rest));
    }
    normalize_fragment("SELECT ", expr)
}

/// Redacts a sort key such as `o.amount DESC NULLS LAST` or `x USING <`.
fn redact_sort_key(key: &str) -> String {
    // Normalizing "ORDER BY <key>" would keep a bare integer (it reads as a column
    // position), so the expression is redacted on its own and the suffix, which holds
    // only keywords and an operator, is put back.
    let (expr, suffix) = split_sort_suffix(key);
    let redacted = redact_expression(expr);
    if redacted == REDACTED {
        return redacted;
    }
    redacted + suffix
}

/// Redacts a whole statement (auto_explain's "Query Text").
fn redact_statement(sql: &str) -> String {
    normalize_fragment("", sql)
}

fn kind_of(key: &str) -> Option<Kind> {
    [
        (EXPRESSION_KEYS, Kind::Expression),
        (SORT_KEY_KEYS, Kind::SortKey),
        (STATEMENT_KEYS, Kind::Statement),
        (WINDOW_KEYS, Kind::Window),
        (VALUE_KEYS, Kind::Value),
    ]
    .into_iter()
    .find_map(|(keys, kind)| keys.contains(&key).then_some(kind))
}

/// Redacts one value found under an expression key, whatever its shape.
fn redact_value(value: &mut Value, kind: Kind) {
    match value {
        Value::Null => {}
        Value::String(text) => *text = redact_by_kind(text, kind),
        // Lists of expressions, and lists of lists in "Group Keys".
        Value::Array(items) => items.iter_mut().for_each(|item| redact_value(item, kind)),
        // A number, boolean or object where an expression belongs is malformed; it could
        // still be (or contain) a literal, so none of it is kept.
        other => *other = Value::String(REDACTED.to_owned()),
    }
}

fn redact_by_kind(text: &str, kind: Kind) -> String {
    match kind {
        Kind::Expression => redact_expression(text),
        Kind::SortKey => redact_sort_key(text),
        Kind::Statement => redact_statement(text),
        Kind::Window => normalize_fragment("SELECT WINDOW ", text),
        Kind::Value => REDACTED.to_owned(),
    }
}

fn prefixed(prefix: &str, redacted: String) -> String {
    if redacted == REDACTED {
        redacted
    } else {
        format!("{prefix}{redacted}")
    }
}

/// Normalizes `prefix + fragment` and returns the fragment part, or `<redacted>`.
fn normalize_fragment(prefix: &str, fragment: &str) -> String {
    let masked = mask_plan_notation(fragment);
    let Ok(normalized) = pg_query::normalize(&format!("{prefix}{masked}")) else {
        return REDACTED.to_owned();
    };
    let Some(body) = normalized.strip_prefix(prefix) else {
        return REDACTED.to_owned();
    };
    // The normalizer keeps comments verbatim, and a comment can hold anything.
    if body.contains("--") || body.contains("/*") {
        return REDACTED.to_owned();
    }
    unmask_plan_notation(body)
}

/// Splits a sort key into its expression and its ordering suffix.
fn split_sort_suffix(key: &str) -> (&str, &str) {
    let mut expr = key;
    loop {
        let stripped = [" NULLS FIRST", " NULLS LAST", " DESC", " ASC"]
            .iter()
            .find_map(|suffix| expr.strip_suffix(suffix))
            .or_else(|| strip_using(expr));
        match stripped {
            Some(rest) => expr = rest,
            None => return (expr, &key[expr.len()..]),
        }
    }
}

/// Strips a trailing `USING <operator>` (an operator is punctuation only).
fn strip_using(expr: &str) -> Option<&str> {
    let pos = expr.rfind(" USING ")?;
    let op = &expr[pos + " USING ".len()..];
    let is_operator = !op.is_empty() && op.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c));
    is_operator.then(|| &expr[..pos])
}

/// Replaces plan-only notations with identifiers the SQL parser accepts.
///
/// A notation inside a string literal gets masked too, but the normalizer then replaces
/// the whole literal, so nothing of it survives.
pub(crate) fn mask_plan_notation(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if let Some((mask, taken)) = match_plan_ref(rest, out.chars().last()) {
            out.push_str(&mask);
            rest = &rest[taken..];
            continue;
        }
        if let Some(&(word, mask)) = QUANTIFIER_REFS
            .iter()
            .find(|(word, _)| rest.starts_with(word))
        {
            out.push_str(mask);
            rest = &rest[word.len()..];
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// Matches "SubPlan 3" and friends at the start of `rest`, as whole words.
fn match_plan_ref(rest: &str, previous: Option<char>) -> Option<(String, usize)> {
    if previous.is_some_and(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    PLAN_REFS.iter().find_map(|&(word, mask)| {
        let after = rest.strip_prefix(word)?;
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0).then(|| (format!("{mask}{}", &after[..digits]), word.len() + digits))
    })
}

/// Puts the plan notations back after normalization.
fn unmask_plan_notation(text: &str) -> String {
    let mut out = text.to_owned();
    for (word, mask) in PLAN_REFS.iter().chain(QUANTIFIER_REFS) {
        out = out.replace(mask, word);
    }
    out
}

/// Whether an identifier is one of the stand-ins for plan notation.
pub(crate) fn is_plan_notation_mask(ident: &str) -> bool {
    ident.starts_with("pgvigil_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn expressions_lose_their_literals() {
        let cases = [
            (
                "((email)::text = 'bob@example.com'::text)",
                "((email)::text = $1::text)",
            ),
            ("(id = 42)", "(id = $1)"),
            ("(id < -5)", "(id < $1)"),
            ("((id % '10'::bigint) = 0)", "((id % $1::bigint) = $2)"),
            (
                "(status = ANY ('{paid,shipped}'::text[]))",
                "(status = ANY ($1::text[]))",
            ),
            ("(x = NULL::integer)", "(x = $1::integer)"),
            ("c.email", "c.email"),
            ("(o.amount)::numeric", "(o.amount)::numeric"),
            ("PARTIAL sum(amount)", "PARTIAL sum(amount)"),
            (
                "PARTIAL sum((amount * '2'::numeric))",
                "PARTIAL sum((amount * $1::numeric))",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_expression(input), expected, "{input}");
        }
    }

    #[test]
    fn plan_notation_survives_when_it_holds_no_literal() {
        let cases = [
            ("(NOT (hashed SubPlan 1))", "(NOT (hashed SubPlan 1))"),
            ("(SubPlan 12)", "(SubPlan 12)"),
            ("(InitPlan 1).col1", "(InitPlan 1).col1"),
            ("(id = $0)", "(id = $0)"),
            (
                "((note ~~ 'a%'::text) AND (NOT (ANY (o.id = (hashed SubPlan 1).col1))))",
                "((note ~~ $1::text) AND (NOT (ANY (o.id = (hashed SubPlan 1).col1))))",
            ),
            ("(x = (SubPlan 1) + 7)", "(x = (SubPlan 1) + $1)"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_expression(input), expected, "{input}");
        }
    }

    #[test]
    fn unparseable_or_commented_text_is_redacted_whole() {
        for input in [
            "row_number() OVER (?)",
            "(a = 'secret' -- 'more'",
            "x -- 'secret'",
            "x /* 42 */",
            "(a = 'unterminated)",
            "nul\0byte",
        ] {
            assert_eq!(redact_expression(input), REDACTED, "{input:?}");
        }
    }

    #[test]
    fn sort_keys_keep_their_direction() {
        let cases = [
            ("o.amount DESC", "o.amount DESC"),
            (
                "(amount * '1.5'::numeric) DESC NULLS LAST",
                "(amount * $1::numeric) DESC NULLS LAST",
            ),
            ("(x + 1) USING <", "(x + $1) USING <"),
            ("'abc'::text", "$1::text"),
            ("42", "$1"),
            ("(a = 'x' DESC", REDACTED),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_sort_key(input), expected, "{input}");
        }
    }

    /// Every string under an expression key, anywhere in the document.
    fn expression_strings(value: &Value, under_key: bool, out: &mut Vec<String>) {
        match value {
            Value::String(text) if under_key => out.push(text.clone()),
            Value::Array(items) => items
                .iter()
                .for_each(|item| expression_strings(item, under_key, out)),
            Value::Object(map) => {
                for (key, item) in map {
                    expression_strings(item, kind_of(key).is_some(), out);
                }
            }
            _ => {}
        }
    }

    fn node_numbers(value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Array(items) => items.iter().for_each(|item| node_numbers(item, out)),
            Value::Object(map) => {
                for (key, item) in map {
                    if item.is_number() || key == "Relation Name" || key == "Node Type" {
                        out.push((key.clone(), item.clone()));
                    }
                    node_numbers(item, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn captured_plans_lose_literals_and_keep_structure() {
        let plans = [
            include_str!("fixtures/redact_verbose_literals.json"),
            include_str!("fixtures/pg13/redact_verbose_literals.json"),
            include_str!("fixtures/pg18/redact_verbose_literals.json"),
        ];
        for text in plans {
            let original = fixture(text);
            let mut plan = original.clone();
            redact_plan(&mut plan);
            let rendered = plan.to_string();
            for literal in ["user42@example.com", "999.5", "'a%'", "paid", "shipped"] {
                assert!(
                    original.to_string().contains(literal),
                    "fixture lacks {literal}"
                );
                assert!(!rendered.contains(literal), "{literal} survived redaction");
            }
            let mut expressions = Vec::new();
            expression_strings(&plan, false, &mut expressions);
            assert!(expressions.len() > 10);
            assert!(
                expressions.iter().all(|e| !e.contains('\'')),
                "{expressions:?}"
            );
            assert!(
                expressions.iter().any(|e| e == "(c.email = $1::text)"),
                "{expressions:?}"
            );
            assert!(
                expressions.iter().any(|e| e == "o.amount DESC"),
                "{expressions:?}"
            );

            let (mut before, mut after) = (Vec::new(), Vec::new());
            node_numbers(&original, &mut before);
            node_numbers(&plan, &mut after);
            assert_eq!(before, after, "numbers, node types and relations must stay");
        }
    }

    #[test]
    fn odd_shapes_under_expression_keys() {
        let mut plan = serde_json::json!([{
            "Plan": {
                "Node Type": "Seq Scan",
                "Filter": 42,
                "Index Cond": {"x": "'secret'"},
                "Output": ["a", 7, null, ["(b = 'x'::text)"]],
                "Sort Key": null,
                "Plan Rows": 10,
                "Plans": [{"Node Type": "WindowAgg", "Window": "w1 AS (ORDER BY x ROWS '3'::bigint PRECEDING)"}]
            },
            "Query Text": "SELECT * FROM t WHERE email = 'bob@example.com'",
            "Query Parameters": "$1 = 'bob@example.com'"
        }]);
        redact_plan(&mut plan);
        let expected = serde_json::json!([{
            "Plan": {
                "Node Type": "Seq Scan",
                "Filter": "<redacted>",
                "Index Cond": "<redacted>",
                "Output": ["a", "<redacted>", null, ["(b = $1::text)"]],
                "Sort Key": null,
                "Plan Rows": 10,
                "Plans": [{"Node Type": "WindowAgg", "Window": "w1 AS (ORDER BY x ROWS $1::bigint PRECEDING)"}]
            },
            "Query Text": "SELECT * FROM t WHERE email = $1",
            "Query Parameters": "<redacted>"
        }]);
        assert_eq!(plan, expected);
        for mut odd in [
            Value::Null,
            serde_json::json!("x"),
            serde_json::json!(1),
            serde_json::json!([[]]),
        ] {
            let before = odd.clone();
            redact_plan(&mut odd);
            assert_eq!(odd, before);
        }
    }
}
