//! What a log record means to pgvigil: slow statements (with their bind
//! parameters), auto_explain plans, authentication failures, errors by
//! SQLSTATE class; and putting logged parameter values back into a statement.
//!
//! Pure: works on [`LogRecord`]s, whatever format they came from. Messages
//! are recognised in English (`lc_messages = 'C'`); where the format carries
//! no SQLSTATE (stderr without `%e`), authentication failures and common
//! error classes are told by their message text.
//! Not for: reading logs ([`crate::logs::record`]) nor counting or exporting
//! events.

use serde_json::Value;

use super::duration::{self, Kind};
use super::record::LogRecord;

/// What a record means.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `duration: 123.456 ms  statement: SELECT ...`, or the extended
    /// protocol's `duration: … ms  parse|bind|execute <name>: SELECT ...`
    /// with `DETAIL:  Parameters: $1 = '42', $2 = NULL` (`parameters:` before 17).
    /// Whether it is one execution over the threshold is for
    /// [`crate::logs::duration`] to say: sampling logs faster ones too.
    SlowStatement {
        /// The duration PostgreSQL measured.
        duration_ms: f64,
        /// What was timed: a statement, or one extended-protocol message.
        kind: Kind,
        /// The statement text, as sent (extended protocol: with `$n`).
        statement: String,
        /// The bind parameters by position: `Some` holds the SQL literal as
        /// logged (`'42'`, quotes doubled inside), `None` is SQL NULL. Empty
        /// when none were logged (or the list did not parse).
        parameters: Vec<Option<String>>,
        /// The session's user.
        user: Option<String>,
        /// The session's database.
        database: Option<String>,
        /// The query id, when computed (csvlog/jsonlog 14+, `%Q`).
        query_id: Option<i64>,
    },
    /// auto_explain with `log_format = json`: `duration: 102.345 ms  plan:`
    /// and the JSON object (`Query Text`, `Plan`, on 16+ maybe `Query Parameters`).
    AutoExplainPlan {
        /// The duration auto_explain measured.
        duration_ms: f64,
        /// The whole JSON object auto_explain logged.
        plan: Value,
        /// Its `Query Text`.
        query_text: Option<String>,
        /// The session's user.
        user: Option<String>,
        /// The session's database.
        database: Option<String>,
        /// The query id, when computed.
        query_id: Option<i64>,
    },
    /// A failed login: wrong password, no pg_hba.conf entry, pg_hba.conf
    /// reject, unknown role, role not allowed to log in (SQLSTATE 28P01 or
    /// 28000; told by the message when the format has no SQLSTATE).
    AuthFailure {
        /// The user that tried (from the record, else from the message).
        user: Option<String>,
        /// The database asked for.
        database: Option<String>,
        /// Where the attempt came from.
        remote_host: Option<String>,
    },
    /// The postmaster re-read its configuration files (`received SIGHUP,
    /// reloading configuration files`): settings may have changed.
    Reloaded,
    /// Any other ERROR, FATAL or PANIC.
    Error {
        /// The first two characters of the SQLSTATE (permission denied is
        /// `42`); when the format has none, guessed from common messages,
        /// else `XX`.
        sqlstate_class: String,
        /// The session's user.
        user: Option<String>,
        /// The session's database.
        database: Option<String>,
    },
    /// Anything else.
    Other,
}

/// Messages of failed logins, for formats without SQLSTATE.
const AUTH_MESSAGE_STARTS: [&str; 3] = [
    "no pg_hba.conf entry for ",
    "pg_hba.conf rejects connection ",
    "could not authenticate ",
];

/// Common error messages and their SQLSTATE class, for formats without
/// SQLSTATE: (what the message starts with or contains, class).
const MESSAGE_CLASSES: [(&str, &str); 22] = [
    ("syntax error", "42"),
    ("permission denied", "42"),
    ("must be owner of", "42"),
    ("relation \"", "42"),
    ("column \"", "42"),
    ("function ", "42"),
    ("database \"", "3D"),
    ("duplicate key value violates unique constraint", "23"),
    ("violates foreign key constraint", "23"),
    ("violates not-null constraint", "23"),
    ("violates check constraint", "23"),
    ("deadlock detected", "40"),
    ("could not serialize access", "40"),
    ("canceling statement due to lock timeout", "55"),
    ("canceling statement due to", "57"),
    ("terminating connection", "57"),
    ("division by zero", "22"),
    ("invalid input syntax", "22"),
    ("out of range", "22"),
    ("current transaction is aborted", "25"),
    ("out of memory", "53"),
    ("too many clients", "53"),
];

/// What a record means to pgvigil.
pub fn classify(record: &LogRecord) -> Event {
    if matches!(record.severity.as_str(), "ERROR" | "FATAL" | "PANIC") {
        return if is_auth_failure(record) {
            auth_failure(record)
        } else {
            Event::Error {
                sqlstate_class: sqlstate_class(record),
                user: record.prefix.user.clone(),
                database: record.prefix.database.clone(),
            }
        };
    }
    if record.severity == "LOG"
        && record.message == "received SIGHUP, reloading configuration files"
    {
        return Event::Reloaded;
    }
    duration_event(record).unwrap_or(Event::Other)
}

/// `duration: N ms  ...`: a slow statement or an auto_explain plan.
fn duration_event(record: &LogRecord) -> Option<Event> {
    let (duration_ms, rest) = duration::split(&record.message)?;
    if let Some(plan_text) = rest.strip_prefix("  plan:") {
        return auto_explain_plan(record, duration_ms, plan_text);
    }
    let (kind, statement) = duration::timed(rest)?;
    let parameters = record
        .detail
        .as_deref()
        .and_then(|d| {
            d.strip_prefix("Parameters: ")
                .or_else(|| d.strip_prefix("parameters: "))
        })
        .and_then(parse_parameters)
        .unwrap_or_default();
    Some(Event::SlowStatement {
        duration_ms,
        kind,
        statement: statement.to_string(),
        parameters,
        user: record.prefix.user.clone(),
        database: record.prefix.database.clone(),
        query_id: record.prefix.query_id,
    })
}

/// auto_explain's JSON plan; `None` (so [`Event::Other`]) when it is not
/// JSON (text format, or cut to the record size).
fn auto_explain_plan(record: &LogRecord, duration_ms: f64, text: &str) -> Option<Event> {
    let plan: Value = serde_json::from_str(text.trim()).ok()?;
    if !plan.is_object() {
        return None;
    }
    let query_text = plan
        .get("Query Text")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(Event::AutoExplainPlan {
        duration_ms,
        plan,
        query_text,
        user: record.prefix.user.clone(),
        database: record.prefix.database.clone(),
        query_id: record.prefix.query_id,
    })
}

/// Parses `$1 = '42', $2 = NULL, $3 = 'it''s'` (what PostgreSQL logs after
/// `Parameters: `): the literals as logged, `None` for NULL. `None` when
/// the text is not such a list, in order from `$1`.
pub fn parse_parameters(text: &str) -> Option<Vec<Option<String>>> {
    let mut values = Vec::new();
    let mut rest = text;
    loop {
        let after_dollar = rest.strip_prefix('$')?;
        let digits = after_dollar.bytes().take_while(u8::is_ascii_digit).count();
        let number: usize = after_dollar.get(..digits)?.parse().ok()?;
        if number != values.len() + 1 {
            return None;
        }
        let value_text = after_dollar.get(digits..)?.strip_prefix(" = ")?;
        let (value, after) = match value_text.strip_prefix("NULL") {
            Some(after) => (None, after),
            None => {
                let (literal, after) = quoted_literal(value_text)?;
                (Some(literal.to_string()), after)
            }
        };
        values.push(value);
        if after.is_empty() {
            return Some(values);
        }
        rest = after.strip_prefix(", ")?;
    }
}

/// Splits a leading `'...'` literal (quotes doubled inside) off `text`.
fn quoted_literal(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return None;
    }
    let mut i = 1;
    loop {
        match bytes.get(i)? {
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some((text.get(..=i)?, text.get(i + 1..)?)),
            _ => i += 1,
        }
    }
}

fn is_auth_failure(record: &LogRecord) -> bool {
    if record.severity != "FATAL" {
        return false;
    }
    match record.prefix.sqlstate.as_deref() {
        Some("28P01" | "28000") => true,
        Some(code) if code != "00000" => false,
        _ => auth_message(&record.message),
    }
}

fn auth_message(message: &str) -> bool {
    message.contains(" authentication failed for user \"")
        || AUTH_MESSAGE_STARTS
            .iter()
            .any(|start| message.starts_with(start))
        || (message.starts_with("role \"")
            && (message.ends_with("\" does not exist")
                || message.ends_with("\" is not permitted to log in")))
}

fn auth_failure(record: &LogRecord) -> Event {
    let message = record.message.as_str();
    Event::AuthFailure {
        user: record
            .prefix
            .user
            .clone()
            .or_else(|| quoted_after(message, "user \""))
            .or_else(|| quoted_after(message, "role \"")),
        database: record
            .prefix
            .database
            .clone()
            .or_else(|| quoted_after(message, "database \"")),
        remote_host: record
            .prefix
            .remote_host
            .clone()
            .or_else(|| quoted_after(message, "host \"")),
    }
}

/// The text between `opening` (ending in a quote) and the next quote.
fn quoted_after(message: &str, opening: &str) -> Option<String> {
    let start = message.find(opening)? + opening.len();
    let rest = message.get(start..)?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string()).filter(|s| !s.is_empty())
}

fn sqlstate_class(record: &LogRecord) -> String {
    if let Some(class) = record
        .prefix
        .sqlstate
        .as_deref()
        .filter(|code| *code != "00000")
        .and_then(|code| code.get(..2))
    {
        return class.to_string();
    }
    let message = record.message.as_str();
    MESSAGE_CLASSES
        .iter()
        .find(|(text, _)| message_matches(message, text))
        .map_or("XX", |(_, class)| class)
        .to_string()
}

/// Object-naming messages (`relation "x" ...`) must also say "does not
/// exist"; the others may appear anywhere in the message.
fn message_matches(message: &str, text: &str) -> bool {
    match text {
        "relation \"" | "column \"" | "function " | "database \"" => {
            message.starts_with(text) && message.ends_with("does not exist")
        }
        "syntax error" | "permission denied" | "must be owner of" => message.starts_with(text),
        _ => message.contains(text),
    }
}

/// Substitutes `$n` parameters into a statement text with the given literal
/// values (for EXPLAIN with real values): `Some` values are SQL literals as
/// logged (`'42'`), `None` becomes `NULL`. Only real parameter tokens are
/// replaced (not `$1` inside strings, comments, quoted identifiers or
/// dollar quotes: PostgreSQL's own scanner, through pg_query, finds them).
/// `None` when a parameter has no value or the text does not scan.
pub fn bind_parameters(statement: &str, parameters: &[Option<String>]) -> Option<String> {
    let tokens = pg_query::scan_tokens(statement).ok()?;
    let param = pg_query::protobuf::Token::Param as i32;
    let mut out = String::with_capacity(statement.len());
    let mut copied = 0;
    for token in tokens.iter().filter(|t| t.token == param) {
        let start = usize::try_from(token.start).ok()?;
        let end = usize::try_from(token.end).ok()?;
        let number: usize = statement.get(start..end)?.strip_prefix('$')?.parse().ok()?;
        let value = parameters.get(number.checked_sub(1)?)?;
        out.push_str(statement.get(copied..start)?);
        out.push_str(value.as_deref().unwrap_or("NULL"));
        copied = end;
    }
    out.push_str(statement.get(copied..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::prefix::PrefixFields;
    use crate::logs::record::fixtures::{self, Fixture, get, parse};
    use crate::logs::record::{Format, Parser};

    fn events(fixture: &Fixture) -> Vec<Event> {
        parse(fixture).iter().map(classify).collect()
    }

    fn first_files() -> impl Iterator<Item = &'static Fixture> {
        fixtures::ALL.iter().filter(|f| f.name.contains("-1."))
    }

    fn lit(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    /// What the format carries besides the message: (user and database,
    /// remote host) in every record of a session.
    fn carries(fixture: &Fixture) -> (bool, bool) {
        match (fixture.format, fixture.major) {
            (Format::Stderr, 13) => (false, false),
            (Format::Stderr, 14 | 16 | 18) => (true, false),
            _ => (true, true),
        }
    }

    #[test]
    fn slow_statements_with_their_parameters() {
        let extended = "SELECT id, name FROM items WHERE id = $1 AND name <> $2;";
        let libpq = "SELECT id, name, $2::text IS NULL AS missing, $3::text AS q\nFROM items WHERE id = $1::int";
        // (statement, parameters, how many: parse has none, bind and execute have them)
        let want: Vec<(&str, Vec<Option<String>>, usize)> = vec![
            ("SELECT count(*) FROM items WHERE id < 50", vec![], 1),
            (extended, vec![], 2),
            (extended, vec![lit("'42'"), lit("'it''s'")], 2),
            (extended, vec![lit("'42'"), lit("'x'")], 4),
            (libpq, vec![], 1),
            (libpq, vec![lit("'7'"), None, lit("'it''s \"quoted\"'")], 2),
        ];
        for fixture in first_files() {
            let slow: Vec<_> = events(fixture)
                .into_iter()
                .filter_map(|e| match e {
                    Event::SlowStatement {
                        statement,
                        parameters,
                        user,
                        database,
                        ..
                    } => Some((statement, parameters, user, database)),
                    _ => None,
                })
                .collect();
            for (statement, parameters, count) in &want {
                let found: Vec<_> = slow
                    .iter()
                    .filter(|(s, p, ..)| s == statement && p == parameters)
                    .collect();
                assert_eq!(
                    found.len(),
                    *count,
                    "{}: {statement} {parameters:?}",
                    fixture.name
                );
                if carries(fixture).0 {
                    let user = if statement.starts_with("SELECT count") {
                        "alice"
                    } else {
                        "postgres"
                    };
                    assert!(
                        found.iter().all(|(.., u, d)| u.as_deref() == Some(user)
                            && d.as_deref() == Some("postgres")),
                        "{}",
                        fixture.name
                    );
                }
            }
        }
    }

    #[test]
    fn slow_statement_durations_exactly() {
        // `SELECT count(*) FROM items WHERE id < 50` as each server timed it;
        // every format of a server logs the same number.
        let durations = [
            (13, 1.647),
            (14, 2.397),
            (15, 1.557),
            (16, 1.839),
            (17, 1.461),
            (18, 2.219),
        ];
        for fixture in first_files() {
            let want = durations
                .iter()
                .find(|(m, _)| *m == fixture.major)
                .unwrap()
                .1;
            let got: Vec<f64> = events(fixture)
                .into_iter()
                .filter_map(|e| match e {
                    Event::SlowStatement {
                        duration_ms,
                        statement,
                        ..
                    } if statement.starts_with("SELECT count(*)") => Some(duration_ms),
                    _ => None,
                })
                .collect();
            assert_eq!(got, vec![want], "{}", fixture.name);
        }
    }

    #[test]
    fn auto_explain_plans() {
        for fixture in first_files() {
            let plans: Vec<(f64, String, String, Option<String>)> = events(fixture)
                .into_iter()
                .filter_map(|e| match e {
                    Event::AutoExplainPlan {
                        duration_ms,
                        plan,
                        query_text,
                        ..
                    } => Some((
                        duration_ms,
                        query_text.unwrap_or_default(),
                        plan["Plan"]["Node Type"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        plan.get("Query Parameters")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    )),
                    _ => None,
                })
                .collect();
            let node = |text: &str| {
                plans
                    .iter()
                    .filter(|(_, q, ..)| q == text)
                    .map(|(_, _, n, _)| n.as_str())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                node("SELECT count(*) FROM items WHERE id < 50"),
                ["Aggregate"],
                "{}",
                fixture.name
            );
            assert_eq!(
                node(
                    "SELECT id,\n       name\n  FROM items\n WHERE name LIKE 'item 1%'\n ORDER BY id\n LIMIT 3"
                ),
                ["Limit"],
                "{}",
                fixture.name
            );
            let extended = "SELECT id, name FROM items WHERE id = $1 AND name <> $2;";
            assert_eq!(node(extended), ["Index Scan"; 3], "{}", fixture.name);
            assert_eq!(
                node("SELECT pg_switch_wal()"),
                ["Result"],
                "{}",
                fixture.name
            );
            // 16+ logs the parameters in the plan.
            let parameters: Vec<_> = plans
                .iter()
                .filter(|(_, q, ..)| q == extended)
                .map(|p| p.3.as_deref())
                .collect();
            if fixture.major >= 16 {
                assert_eq!(
                    parameters,
                    [
                        Some("$1 = '42', $2 = 'it''s'"),
                        Some("$1 = '42', $2 = 'x'"),
                        Some("$1 = '42', $2 = 'x'")
                    ],
                    "{}",
                    fixture.name
                );
            } else {
                assert_eq!(parameters, [None; 3], "{}", fixture.name);
            }
        }
        // Exactly, from the 15 server: 0.067 ms for the count's plan.
        for name in ["pg15-1.log", "pg15-1.csv", "pg15-1.json"] {
            let first = events(get(name))
                .into_iter()
                .find(|e| matches!(e, Event::AutoExplainPlan { .. }));
            let Some(Event::AutoExplainPlan {
                duration_ms, user, ..
            }) = first
            else {
                panic!("{name}")
            };
            assert_eq!(
                (duration_ms, user.as_deref()),
                (0.067, Some("alice")),
                "{name}"
            );
        }
    }

    #[test]
    fn authentication_failures() {
        for fixture in first_files() {
            let (names, host) = carries(fixture);
            let failures: Vec<_> = events(fixture)
                .into_iter()
                .filter(|e| matches!(e, Event::AuthFailure { .. }))
                .collect();
            let database = |db: &str| if names { lit(db) } else { None };
            // Without user@database in the format, the message names the user
            // (and, for pg_hba.conf refusals, the database and host).
            let from_message = |db: &str| lit(db);
            let remote = if host { lit("127.0.0.1") } else { None };
            let want = vec![
                Event::AuthFailure {
                    user: lit("alice"),
                    database: database("postgres"),
                    remote_host: remote.clone(),
                },
                Event::AuthFailure {
                    user: lit("nobody"),
                    database: database("postgres"),
                    remote_host: remote,
                },
                Event::AuthFailure {
                    user: lit("alice"),
                    database: from_message("template1"),
                    remote_host: lit("127.0.0.1"),
                },
                Event::AuthFailure {
                    user: lit("mallory"),
                    database: from_message("postgres"),
                    remote_host: lit("127.0.0.1"),
                },
            ];
            assert_eq!(failures, want, "{}", fixture.name);
        }
    }

    #[test]
    fn errors_by_sqlstate_class() {
        for fixture in first_files() {
            let classes: Vec<_> = events(fixture)
                .into_iter()
                .filter_map(|e| match e {
                    Event::Error { sqlstate_class, .. } => Some(sqlstate_class),
                    _ => None,
                })
                .collect();
            // syntax, permission denied, unique violation, statement timeout,
            // syntax inside a DO block: by SQLSTATE, or by message for stderr
            // without %e.
            assert_eq!(classes, ["42", "42", "23", "57", "42"], "{}", fixture.name);
        }
        // After rotation: no errors.
        for fixture in fixtures::ALL.iter().filter(|f| f.name.contains("-2.")) {
            assert!(
                !events(fixture)
                    .iter()
                    .any(|e| matches!(e, Event::Error { .. } | Event::AuthFailure { .. })),
                "{}",
                fixture.name
            );
        }
    }

    fn record(severity: &str, sqlstate: Option<&str>, message: &str) -> LogRecord {
        LogRecord {
            prefix: PrefixFields {
                sqlstate: sqlstate.map(str::to_string),
                ..PrefixFields::default()
            },
            severity: severity.into(),
            message: message.into(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn classify_by_message_and_sqlstate() {
        let error = |class: &str| Event::Error {
            sqlstate_class: class.into(),
            user: None,
            database: None,
        };
        let auth = |user: Option<&str>, database: Option<&str>| Event::AuthFailure {
            user: user.map(str::to_string),
            database: database.map(str::to_string),
            remote_host: None,
        };
        let cases: Vec<(LogRecord, Event)> = vec![
            (
                record("FATAL", None, "role \"eve\" is not permitted to log in"),
                auth(Some("eve"), None),
            ),
            (
                record("FATAL", None, "role \"ghost\" does not exist"),
                auth(Some("ghost"), None),
            ),
            (
                record(
                    "FATAL",
                    None,
                    "Ident authentication failed for user \"bob\"",
                ),
                auth(Some("bob"), None),
            ),
            (record("FATAL", Some("28000"), "anything"), auth(None, None)),
            (
                record("FATAL", None, "database \"nope\" does not exist"),
                error("3D"),
            ),
            (
                record("FATAL", Some("3D000"), "database \"nope\" does not exist"),
                error("3D"),
            ),
            (
                record(
                    "FATAL",
                    None,
                    "terminating connection due to administrator command",
                ),
                error("57"),
            ),
            (
                record("ERROR", None, "permission denied for schema s"),
                error("42"),
            ),
            (
                record("ERROR", None, "relation \"t\" does not exist"),
                error("42"),
            ),
            (record("ERROR", None, "deadlock detected"), error("40")),
            (
                record("ERROR", None, "canceling statement due to lock timeout"),
                error("55"),
            ),
            (
                record("ERROR", None, "something nobody has seen"),
                error("XX"),
            ),
            (
                record(
                    "PANIC",
                    Some("XX000"),
                    "could not locate a valid checkpoint record",
                ),
                error("XX"),
            ),
            // An ERROR about a password is not a login failure.
            (
                record(
                    "ERROR",
                    Some("28P01"),
                    "password authentication failed for user \"x\"",
                ),
                error("28"),
            ),
            (record("WARNING", Some("01000"), "careful"), Event::Other),
            (
                record(
                    "LOG",
                    None,
                    "received SIGHUP, reloading configuration files",
                ),
                Event::Reloaded,
            ),
            (
                record(
                    "LOG",
                    None,
                    "parameter \"log_min_duration_statement\" changed to \"10\"",
                ),
                Event::Other,
            ),
            (record("LOG", None, "duration: 0.123 ms"), Event::Other),
            (
                record(
                    "LOG",
                    None,
                    "duration: 1.5 ms  plan:\nQuery Text: SELECT 1\nResult  (cost=0.00..0.01 rows=1 width=4)",
                ),
                Event::Other,
            ),
            (
                record("LOG", None, "duration: x ms  statement: SELECT 1"),
                Event::Other,
            ),
            (
                record(
                    "LOG",
                    None,
                    "duration: 1.5 ms  fastpath function call: function OID 1",
                ),
                Event::Other,
            ),
        ];
        for (record, want) in cases {
            assert_eq!(classify(&record), want, "{}", record.message);
        }
        let mut fetch = LogRecord {
            detail: lit("Parameters: $1 = '1'"),
            ..record(
                "LOG",
                Some("00000"),
                "duration: 2.000 ms  execute fetch from S_1/C_2: SELECT * FROM t WHERE a = $1",
            )
        };
        fetch.prefix.query_id = Some(7);
        assert_eq!(
            classify(&fetch),
            Event::SlowStatement {
                duration_ms: 2.0,
                kind: Kind::ExecuteFetch,
                statement: "SELECT * FROM t WHERE a = $1".into(),
                parameters: vec![lit("'1'")],
                user: None,
                database: None,
                query_id: Some(7),
            }
        );
    }

    #[test]
    fn parameter_lists() {
        let cases: Vec<(&str, Option<Vec<Option<String>>>)> = vec![
            ("$1 = '42'", Some(vec![lit("'42'")])),
            (
                "$1 = 'a, $2 = ''b''', $2 = NULL",
                Some(vec![lit("'a, $2 = ''b'''"), None]),
            ),
            ("$1 = '', $2 = 'x...'", Some(vec![lit("''"), lit("'x...'")])),
            ("$1 = 'héllo ✓'", Some(vec![lit("'héllo ✓'")])),
            ("$2 = '1'", None),
            ("$1 = 'unterminated", None),
            ("$1 = 42", None),
            ("Key (id)=(1) already exists.", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_parameters(text), want, "{text}");
        }
    }

    /// A statement, its parameters, and what binding gives.
    type BindCase<'a> = (&'a str, Vec<Option<String>>, Option<&'a str>);

    #[test]
    fn binding_parameters() {
        let p = |values: &[Option<&str>]| {
            values
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        };
        let cases: Vec<BindCase> = vec![
            (
                "SELECT id, name FROM items WHERE id = $1 AND name <> $2;",
                p(&[Some("'42'"), Some("'it''s'")]),
                Some("SELECT id, name FROM items WHERE id = '42' AND name <> 'it''s';"),
            ),
            (
                "SELECT $1::int, $2",
                p(&[Some("'7'"), None]),
                Some("SELECT '7'::int, NULL"),
            ),
            // Only real parameters: not in strings, identifiers, comments, dollar quotes.
            (
                "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $q$ $2 $q$ -- $1\n, $1 /* $2 /* $1 */ */",
                p(&[Some("'x'")]),
                Some(
                    "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $q$ $2 $q$ -- $1\n, 'x' /* $2 /* $1 */ */",
                ),
            ),
            (
                "SELECT $1, $10",
                p(&[
                    Some("'1'"),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some("'10'"),
                ]),
                Some("SELECT '1', '10'"),
            ),
            ("SELECT 1", vec![], Some("SELECT 1")),
            ("SELECT $2", p(&[Some("'1'")]), None),
            ("SELECT $0", p(&[Some("'1'")]), None),
            ("SELECT 'unterminated $1", p(&[Some("'1'")]), None),
            ("SELECT 1\0", vec![], None),
        ];
        for (statement, parameters, want) in cases {
            assert_eq!(
                bind_parameters(statement, &parameters).as_deref(),
                want,
                "{statement}"
            );
        }
    }

    /// Every logged statement with parameters binds into SQL that parses.
    #[test]
    fn fixture_parameters_bind_into_valid_sql() {
        let mut bound = 0;
        for fixture in first_files() {
            for event in events(fixture) {
                if let Event::SlowStatement {
                    statement,
                    parameters,
                    ..
                } = event
                    && !parameters.is_empty()
                {
                    let sql = bind_parameters(&statement, &parameters).unwrap();
                    assert!(!sql.contains('$'), "{sql}");
                    assert!(pg_query::parse(&sql, 0).is_ok(), "{sql}");
                    bound += 1;
                }
            }
        }
        assert_eq!(bound, 16 * 8);
    }

    #[test]
    fn cut_plans_are_other_events() {
        // A plan cut to the record size is not JSON any more.
        let text = format!(
            "2026-11-28 02:49:45.805 UTC [1] LOG:  duration: 1.000 ms  plan:\n\t{{\n\t  \"Query Text\": \"{}\"\n\t}}\n",
            "x".repeat(crate::logs::record::MAX_RECORD_BYTES)
        );
        let mut parser = Parser::new(Format::Stderr, fixtures::PREFIX_13);
        let mut records = parser.push(text.as_bytes());
        records.extend(parser.finish());
        assert!(records[0].truncated);
        assert_eq!(classify(&records[0]), Event::Other);
    }
}
