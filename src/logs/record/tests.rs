use super::fixtures::{self, Fixture, get, parse};
use super::*;
use crate::logs::prefix::PrefixFields;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Feeds `bytes` cut at `cuts` (sorted offsets), then finishes.
fn parse_cut(format: Format, prefix: &str, bytes: &[u8], cuts: &[usize]) -> Vec<LogRecord> {
    let mut parser = Parser::new(format, prefix);
    let mut records = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(from, bytes.len());
        records.extend(parser.push(&bytes[from..cut]));
        from = cut;
    }
    records.extend(parser.finish());
    records
}

fn parse_bytes(format: Format, prefix: &str, bytes: &[u8]) -> Vec<LogRecord> {
    parse_cut(format, prefix, bytes, &[])
}

/// Compares a record with an expectation, the timestamp within a microsecond.
fn assert_record(got: &LogRecord, want: LogRecord, context: &str) {
    let close = match (got.prefix.timestamp, want.prefix.timestamp) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (a, b) => a == b,
    };
    assert!(
        close,
        "{context}: timestamp {:?} != {:?}",
        got.prefix.timestamp, want.prefix.timestamp
    );
    assert_eq!(
        got,
        &LogRecord {
            prefix: PrefixFields {
                timestamp: got.prefix.timestamp,
                ..want.prefix
            },
            ..want
        },
        "{context}"
    );
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[test]
fn fixture_records_exactly() {
    // 2026-11-28 02:50:09.755 UTC
    let warning = LogRecord {
        prefix: PrefixFields {
            timestamp: Some(1_795_834_209.755),
            pid: Some(21357),
            user: s("postgres"),
            database: s("postgres"),
            application: s("psql"),
            remote_host: s("[local]"),
            session_id: s("6b0a4161.536d"),
            session_line: Some(3),
            sqlstate: s("01000"),
            ..PrefixFields::default()
        },
        severity: "WARNING".into(),
        message: "careful".into(),
        detail: s("first line\nsecond line"),
        hint: s("take care"),
        context: s("PL/pgSQL function inline_code_block line 1 at RAISE"),
        ..LogRecord::default()
    };
    // 2026-11-28 02:49:46.441 UTC
    let do_error_13 = LogRecord {
        prefix: PrefixFields {
            timestamp: Some(1_795_834_186.441),
            pid: Some(20883),
            ..PrefixFields::default()
        },
        severity: "ERROR".into(),
        message: "syntax error at or near \"SELEC\" at character 1".into(),
        context: s("PL/pgSQL function inline_code_block line 1 at EXECUTE"),
        statement: s("DO $$ BEGIN EXECUTE 'SELEC 2'; END $$"),
        ..LogRecord::default()
    };
    let bind_18 = LogRecord {
        prefix: PrefixFields {
            // 2026-11-28 08:35:46.839 +0545
            timestamp: Some(1_795_834_246.839),
            pid: Some(22643),
            user: s("postgres"),
            database: s("postgres"),
            application: s("fixture-libpq"),
            remote_host: s("[local]"),
            session_id: s("6b0a4186.5873"),
            session_line: Some(5),
            sqlstate: s("00000"),
            query_id: Some(6_031_278_221_215_838_344),
        },
        severity: "LOG".into(),
        message: "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2::text IS NULL AS missing, $3::text AS q\nFROM items WHERE id = $1::int".into(),
        detail: s("Parameters: $1 = '7', $2 = NULL, $3 = 'it''s \"quoted\"'"),
        ..LogRecord::default()
    };
    let cases: Vec<(&str, &str, LogRecord)> = vec![
        ("pg15-1.log", "careful", warning.clone()),
        // csvlog/jsonlog carry the query id of the DO that raised it.
        (
            "pg15-1.csv",
            "careful",
            LogRecord {
                prefix: PrefixFields {
                    query_id: Some(-8_910_540_084_177_979_773),
                    ..warning.prefix.clone()
                },
                ..warning.clone()
            },
        ),
        (
            "pg15-1.json",
            "careful",
            LogRecord {
                prefix: PrefixFields {
                    query_id: Some(-8_910_540_084_177_979_773),
                    ..warning.prefix.clone()
                },
                ..warning
            },
        ),
        (
            "pg13-1.log",
            "syntax error at or near \"SELEC\" at character 1",
            do_error_13.clone(),
        ),
        (
            "pg13-1.csv",
            "syntax error at or near \"SELEC\"",
            LogRecord {
                prefix: PrefixFields {
                    user: s("postgres"),
                    database: s("postgres"),
                    application: s("psql"),
                    remote_host: s("[local]"),
                    session_id: s("6b0a414a.5193"),
                    session_line: Some(3),
                    sqlstate: s("42601"),
                    ..do_error_13.prefix.clone()
                },
                message: "syntax error at or near \"SELEC\"".into(),
                ..do_error_13
            },
        ),
        (
            "pg18-1.json",
            "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
            bind_18.clone(),
        ),
        (
            "pg18-1.csv",
            "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
            bind_18.clone(),
        ),
        (
            "pg18-1.log",
            "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
            LogRecord {
                prefix: PrefixFields {
                    application: None,
                    remote_host: None,
                    session_id: None,
                    session_line: None,
                    ..bind_18.prefix.clone()
                },
                ..bind_18
            },
        ),
        (
            // %t: whole seconds, in CET.
            "pg17-1.log",
            "permission denied for table secret",
            LogRecord {
                prefix: PrefixFields {
                    timestamp: Some(1_795_834_233.0),
                    pid: Some(21960),
                    user: s("alice"),
                    database: s("postgres"),
                    application: s("fixture-app"),
                    remote_host: s("127.0.0.1"),
                    session_line: Some(4),
                    ..PrefixFields::default()
                },
                severity: "ERROR".into(),
                message: "permission denied for table secret".into(),
                statement: s("SELECT * FROM secret"),
                ..LogRecord::default()
            },
        ),
        (
            // archive_command's own line before it is skipped.
            "pg14-1.log",
            "archive command failed",
            LogRecord {
                prefix: PrefixFields {
                    timestamp: Some(1_795_834_198.387),
                    pid: Some(21062),
                    ..PrefixFields::default()
                },
                severity: "LOG".into(),
                message: "archive command failed with exit code 1".into(),
                detail: s(
                    "The failed archive command was: echo \"archive helper: cannot copy 000000010000000000000001 (fixture)\" >&2; exit 1",
                ),
                ..LogRecord::default()
            },
        ),
    ];
    for (name, message, want) in cases {
        let records = parse(get(name));
        // The first syntax error is `SELEC 1`; the DO block's is wanted.
        let found = records
            .iter()
            .find(|r| {
                r.message.starts_with(message)
                    && (!message.starts_with("syntax") || r.context.is_some())
            })
            .unwrap_or_else(|| panic!("{name}: no {message:?}"));
        assert_record(found, want, name);
    }
}

#[test]
fn fixture_multi_line_and_tabbed_statements() {
    for fixture in fixtures::ALL.iter().filter(|f| {
        f.name.ends_with("-1.log") || f.name.ends_with("-1.csv") || f.name.ends_with("-1.json")
    }) {
        let records = parse(fixture);
        let statement = |text: &str| {
            records
                .iter()
                .any(|r| r.message.ends_with(&format!("ms  statement: {text}")))
        };
        assert!(
            statement(
                "SELECT id,\n       name\n  FROM items\n WHERE name LIKE 'item 1%'\n ORDER BY id\n LIMIT 3"
            ),
            "{}",
            fixture.name
        );
        // A tab inside a line stays; a line that starts with a tab keeps it
        // (PostgreSQL adds one more, which the parser takes off).
        assert!(
            statement(
                "SELECT 'tab\tinside' AS a,\n\t'line starting with a tab' AS b, 'héllo ✓' AS c"
            ),
            "{}",
            fixture.name
        );
        assert!(records.iter().all(|r| !r.truncated), "{}", fixture.name);
    }
}

#[test]
fn fixture_statement_of_300_kb() {
    let want = format!(
        "statement: SELECT length('{}') AS big;",
        "x".repeat(300_000)
    );
    for name in ["pg15-1.log", "pg15-1.csv", "pg15-1.json"] {
        let records = parse(get(name));
        let big = records
            .iter()
            .find(|r| r.message.contains("SELECT length("))
            .unwrap();
        assert!(big.message.ends_with(&want), "{name}");
        assert!(!big.truncated, "{name}");
    }
}

#[test]
fn fixture_rotation_splits_between_records() {
    for major in 13..=18 {
        let first = parse(get(&format!("pg{major}-1.log")));
        let second = parse(get(&format!("pg{major}-2.log")));
        assert!(
            first
                .iter()
                .any(|r| r.message.contains("statement: SELECT pg_rotate_logfile()"))
                || second
                    .iter()
                    .any(|r| r.message.contains("statement: SELECT pg_rotate_logfile()"))
        );
        assert!(
            second.iter().any(|r| r
                .message
                .contains("statement: SELECT 'after rotation' AS marker")),
            "{major}"
        );
        assert!(
            !first.iter().any(|r| r.message.contains("after rotation")),
            "{major}"
        );
        assert_eq!(
            second.last().map(|r| r.message.as_str()),
            Some("database system is shut down"),
            "{major}"
        );
    }
}

/// stderr says less than csvlog, but what it says must agree; csvlog
/// and jsonlog must agree on everything.
#[test]
fn every_format_of_a_server_logs_the_same_records() {
    for major in 13..=18 {
        for n in 1..=2 {
            let stderr = parse(get(&format!("pg{major}-{n}.log")));
            let csv = parse(get(&format!("pg{major}-{n}.csv")));
            assert_eq!(stderr.len(), csv.len(), "pg{major}-{n}");
            for (s, c) in stderr.iter().zip(&csv) {
                assert_stderr_agrees(major, s, c);
            }
            if major >= 15 {
                let json = parse(get(&format!("pg{major}-{n}.json")));
                assert_eq!(json, csv, "pg{major}-{n}");
            }
        }
    }
}

fn assert_stderr_agrees(major: u32, s: &LogRecord, c: &LogRecord) {
    let context = format!("pg{major}: {s:?} vs {c:?}");
    // stderr appends the error position to the message; csvlog has a column.
    let same_message = s.message == c.message
        || s.message
            .strip_prefix(c.message.as_str())
            .is_some_and(|r| r.starts_with(" at character "));
    assert!(same_message, "{context}");
    assert_eq!(
        (&s.severity, s.prefix.pid),
        (&c.severity, c.prefix.pid),
        "{context}"
    );
    assert_eq!(
        (&s.detail, &s.hint, &s.context, &s.statement),
        (&c.detail, &c.hint, &c.context, &c.statement),
        "{context}"
    );
    let (st, ct) = (s.prefix.timestamp.unwrap(), c.prefix.timestamp.unwrap());
    let want = if major == 17 { ct.floor() } else { ct };
    assert!((st - want).abs() < 1e-6, "{context}");
    if major >= 14 {
        assert_eq!(
            (&s.prefix.user, &s.prefix.database),
            (&c.prefix.user, &c.prefix.database),
            "{context}"
        );
    }
    if major == 15 || major == 17 {
        assert_eq!(
            (&s.prefix.application, &s.prefix.remote_host),
            (&c.prefix.application, &c.prefix.remote_host),
            "{context}"
        );
    }
    if s.prefix.sqlstate.is_some() {
        assert_eq!(s.prefix.sqlstate, c.prefix.sqlstate, "{context}");
    }
    if major == 18 && s.prefix.user.is_some() {
        assert_eq!(s.prefix.query_id, c.prefix.query_id, "{context}");
    }
}

#[test]
fn csv_columns_by_count() {
    // 13 has 24 columns (no query_id), 14+ 26.
    let thirteen = parse(get("pg13-1.csv"));
    assert!(thirteen.iter().all(|r| r.prefix.query_id.is_none()));
    let fourteen = parse(get("pg14-1.csv"));
    assert!(fourteen.iter().any(|r| r.prefix.query_id.is_some()));
    assert!(
        fourteen
            .iter()
            .all(|r| r.prefix.application.as_deref() != Some("client backend"))
    );
    // A 23-column row (12 and before): no backend_type, still a record.
    let row = b"2026-11-28 02:49:45.805 UTC,\"u\",\"d\",1,\"10.0.0.1:5432\",s.1,1,\"\",2026-11-28 02:49:45 UTC,,0,ERROR,42P01,\"relation \"\"t\"\" does not exist\",,,,,,\"SELECT * FROM t\",15,,\"app\"\n";
    let records = parse_bytes(Format::Csv, "", row);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message, "relation \"t\" does not exist");
    assert_eq!(records[0].prefix.remote_host.as_deref(), Some("10.0.0.1"));
    assert_eq!(records[0].prefix.application.as_deref(), Some("app"));
    // Too few columns: not a record.
    assert!(parse_bytes(Format::Csv, "", b"a,b,c\n\n").is_empty());
}

/// Every byte boundary of a few small files: the same records.
#[test]
fn split_at_every_byte_boundary() {
    for name in ["pg13-2.log", "pg17-2.log", "pg14-2.csv", "pg16-2.json"] {
        let fixture = get(name);
        let whole = parse(fixture);
        assert!(!whole.is_empty());
        for cut in 0..=fixture.bytes.len() {
            let split = parse_cut(fixture.format, fixture.prefix, fixture.bytes, &[cut]);
            assert_eq!(split, whole, "{name} cut at {cut}");
        }
    }
}

/// One byte at a time: every boundary of every fixture at once.
#[test]
fn fed_one_byte_at_a_time() {
    for fixture in fixtures::ALL {
        let whole = parse(fixture);
        let mut parser = Parser::new(fixture.format, fixture.prefix);
        let mut records = Vec::new();
        for byte in fixture.bytes.chunks(1) {
            records.extend(parser.push(byte));
        }
        records.extend(parser.finish());
        assert_eq!(records, whole, "{}", fixture.name);
    }
}

/// Stopping anywhere and resuming at `consumed()` with a new parser
/// loses and repeats nothing.
#[test]
fn resuming_at_consumed_yields_the_rest() {
    for fixture in fixtures::ALL {
        let whole = parse(fixture);
        let step = (fixture.bytes.len() / 60).max(1);
        for stop in (0..fixture.bytes.len()).step_by(step) {
            assert_resumes(fixture, &whole, stop);
        }
    }
}

fn assert_resumes(fixture: &Fixture, whole: &[LogRecord], stop: usize) {
    let mut first = Parser::new(fixture.format, fixture.prefix);
    let mut records = first.push(&fixture.bytes[..stop]);
    let consumed = usize::try_from(first.consumed()).unwrap();
    assert!(consumed <= stop, "{} stop {stop}", fixture.name);
    let mut second = Parser::new(fixture.format, fixture.prefix);
    records.extend(second.push(&fixture.bytes[consumed..]));
    records.extend(second.finish());
    assert_eq!(
        records, whole,
        "{} stop {stop} consumed {consumed}",
        fixture.name
    );
}

/// The rows of a csvlog: each complete one, and how many bytes it takes.
const CSV_ROWS: [&str; 3] = [
    "2026-11-28 02:49:45.805 UTC,,,1,,a.1,1,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"first\",,,,,,,,,\"\",\"postmaster\"\n",
    "2026-11-28 02:49:45.806 UTC,,,1,,a.1,2,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"second\nover \"\"two\"\" lines\",,,,,,,,,\"\",\"postmaster\"\n",
    "2026-11-28 02:49:45.807 UTC,,,1,,a.1,3,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"third\",,,,,,,,,\"\",\"postmaster\"\n",
];

const JSON_ROWS: [&str; 3] = [
    "{\"timestamp\":\"2026-11-28 02:49:45.805 UTC\",\"pid\":1,\"error_severity\":\"LOG\",\"message\":\"first\"}\n",
    "{\"timestamp\":\"2026-11-28 02:49:45.806 UTC\",\"pid\":1,\"error_severity\":\"LOG\",\"message\":\"second\\nline \\\"quoted\\\" \\u00e9\\ud83d\\ude00\"}\n",
    "{\"timestamp\":\"2026-11-28 02:49:45.807 UTC\",\"pid\":1,\"error_severity\":\"ERROR\",\"state_code\":\"42601\",\"message\":\"third\"}\n",
];

const STDERR_ROWS: [&str; 3] = [
    "2026-11-28 02:49:45.805 UTC [1] LOG:  first\n",
    "2026-11-28 02:49:45.806 UTC [1] LOG:  second\n\tline\n2026-11-28 02:49:45.806 UTC [1] DETAIL:  more\n",
    "2026-11-28 02:49:45.807 UTC [1] ERROR:  third\n2026-11-28 02:49:45.807 UTC [1] STATEMENT:  SELEC 1\n",
];

#[test]
fn consumed_after_whole_records_and_half_of_another() {
    for (format, rows) in [(Format::Csv, CSV_ROWS), (Format::Json, JSON_ROWS)] {
        let all = rows.concat();
        let whole = parse_bytes(format, "", all.as_bytes());
        assert_eq!(whole.len(), 3);
        for n in 0..3 {
            let done: usize = rows[..n].iter().map(|r| r.len()).sum();
            let half = done + rows[n].len() / 2;
            let mut parser = Parser::new(format, "");
            let first = parser.push(&all.as_bytes()[..half]);
            assert_eq!(first, whole[..n], "{format:?} {n}");
            assert_eq!(parser.consumed(), done as u64, "{format:?} {n}");
            assert!(parser.pending_bytes() > 0);
            let rest = parse_bytes(format, "", &all.as_bytes()[done..]);
            assert_eq!(rest, whole[n..], "{format:?} {n}");
        }
    }
    assert_eq!(
        parse_bytes(Format::Json, "", JSON_ROWS[1].as_bytes())[0].message,
        "second\nline \"quoted\" é😀"
    );
    assert_eq!(
        parse_bytes(Format::Csv, "", CSV_ROWS[1].as_bytes())[0].message,
        "second\nover \"two\" lines"
    );
}

#[test]
fn stderr_consumed_waits_for_the_next_first_line() {
    let all = STDERR_ROWS.concat();
    let prefix = fixtures::PREFIX_13;
    let whole = parse_bytes(Format::Stderr, prefix, all.as_bytes());
    assert_eq!(whole.len(), 3);
    assert_eq!(whole[1].message, "second\nline");
    assert_eq!(whole[1].detail.as_deref(), Some("more"));
    assert_eq!(whole[2].statement.as_deref(), Some("SELEC 1"));
    for n in 1..3 {
        let done: usize = STDERR_ROWS[..n].iter().map(|r| r.len()).sum();
        let first_line = STDERR_ROWS[n].find('\n').unwrap() + 1;
        // The next record's first line is whole, the rest half there:
        // the n records are known complete.
        let cut = done + first_line + (STDERR_ROWS[n].len() - first_line) / 2;
        let mut parser = Parser::new(Format::Stderr, prefix);
        assert_eq!(parser.push(&all.as_bytes()[..cut]), whole[..n]);
        assert_eq!(parser.consumed(), done as u64);
        assert_eq!(
            parse_bytes(Format::Stderr, prefix, &all.as_bytes()[done..]),
            whole[n..]
        );
        // Only half the first line: a DETAIL of record n could still
        // come, so record n is held and consumed stays before it.
        let mut parser = Parser::new(Format::Stderr, prefix);
        assert_eq!(
            parser.push(&all.as_bytes()[..done + first_line / 2]),
            whole[..n - 1]
        );
        let before: usize = STDERR_ROWS[..n - 1].iter().map(|r| r.len()).sum();
        assert_eq!(parser.consumed(), before as u64);
    }
}

#[test]
fn stderr_noise_never_breaks_the_stream() {
    let prefix = fixtures::PREFIX_14;
    let text = concat!(
        "2026-11-28 02:49:45.805 UTC [1] LOG:  first\n",
        "cp: cannot stat 'x': No such file or directory\n",
        "\tnoise that looks like a continuation\n",
        "2026-11-28 02:49:45.806 UTC [1] DETAIL:  detail after noise still attaches\n",
        "\n",
        "\u{0}\u{0}binary\u{1}junk\n",
        "2026-11-28 02:49:45.807 UTC [2] u@d DETAIL:  orphan from another process\n",
        "\tits continuation\n",
        "2026-11-28 02:49:45.808 UTC [3] u@d ERROR:  second\n",
        "2026-11-28 02:49:45.808 UTC [3] u@d LOCATION:  somewhere.c:1\n",
        "2026-11-28 02:49:45.809 UTC [3] u@d LOG:  third\r\n",
        "2026-11-28 02:49:45.810 UTC [4] u@d LOG:  last line without newline",
    );
    let records = parse_bytes(Format::Stderr, prefix, text.as_bytes());
    let summary: Vec<_> = records
        .iter()
        .map(|r| (r.prefix.pid, r.message.as_str(), r.detail.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(1), "first", Some("detail after noise still attaches")),
            (Some(3), "second", None),
            (Some(3), "third", None),
            (Some(4), "last line without newline", None),
        ]
    );
    // Noise at the start is consumed as soon as it is seen.
    let mut parser = Parser::new(Format::Stderr, prefix);
    assert!(parser.push(b"noise\n\tmore noise\n").is_empty());
    assert_eq!(parser.consumed(), 18);
}

#[test]
fn stderr_verbose_and_invalid_utf8() {
    let text =
        b"2026-11-28 02:49:45.805 UTC [1] ERROR:  42601: syntax error at or near \"SELEC\"\n\
2026-11-28 02:49:45.805 UTC [1] LOCATION:  scanner_yyerror, scan.l:1188\n\
2026-11-28 02:49:45.806 UTC [1] LOG:  bad \xff\xfe bytes \xe2\x9c\n";
    let records = parse_bytes(Format::Stderr, fixtures::PREFIX_13, text);
    assert_eq!(records[0].prefix.sqlstate.as_deref(), Some("42601"));
    assert_eq!(records[0].message, "syntax error at or near \"SELEC\"");
    assert_eq!(records[1].message, "bad \u{fffd}\u{fffd} bytes \u{fffd}");
}

#[test]
fn jsonlog_oddities() {
    let text = concat!(
        "not json\n",
        "{\"error_severity\":\"LOG\",\"message\":\"unterminated\n",
        "{\"error_severity\":\"LOG\",\"nested\":{\"a\":[1,\"}\\\"\"]},\"message\":\"x\",\"pid\":\"42\", \"query_id\" : -5 }\n",
        "{\"message\":\"no severity\"}\n",
        "{\"error_severity\":\"LOG\",\"message\":\"lone \\ud800 surrogate\"}\n",
        "[1]\n",
        "{}\n",
    );
    let records = parse_bytes(Format::Json, "", text.as_bytes());
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[0].message.as_str(),
            records[0].prefix.pid,
            records[0].prefix.query_id
        ),
        ("x", Some(42), Some(-5))
    );
    assert_eq!(records[0].prefix.sqlstate.as_deref(), Some("00000"));
    assert_eq!(records[1].message, "lone \u{fffd} surrogate");
}

/// A line, field or string of several MB: cut to MAX_RECORD_BYTES,
/// memory bounded while it streams in, the next record intact.
#[test]
fn megabyte_records_are_cut_and_memory_stays_bounded() {
    let huge = "x".repeat(3 * MAX_RECORD_BYTES);
    let inputs = [
        (
            Format::Stderr,
            format!(
                "2026-11-28 02:49:45.805 UTC [1] LOG:  duration: 1.000 ms  statement: SELECT '{huge}'\n2026-11-28 02:49:45.806 UTC [1] LOG:  next\n"
            ),
        ),
        (
            Format::Csv,
            format!(
                "{}{}",
                CSV_ROWS[0].replace("\"first\"", &format!("\"{huge}\"")),
                CSV_ROWS[2]
            ),
        ),
        (
            Format::Json,
            format!("{}{}", JSON_ROWS[0].replace("first", &huge), JSON_ROWS[2]),
        ),
    ];
    for (format, text) in inputs {
        let mut parser = Parser::new(format, fixtures::PREFIX_13);
        let mut records = Vec::new();
        for chunk in text.as_bytes().chunks(64 * 1024) {
            records.extend(parser.push(chunk));
            assert!(
                parser.pending_bytes() <= 2 * MAX_RECORD_BYTES + 64 * 1024,
                "{format:?}"
            );
        }
        records.extend(parser.finish());
        assert_eq!(records.len(), 2, "{format:?}");
        assert!(records[0].truncated, "{format:?}");
        assert!(records[0].message.len() <= MAX_RECORD_BYTES, "{format:?}");
        assert!(
            records[0].message.len() > MAX_RECORD_BYTES - 100,
            "{format:?}"
        );
        assert!(!records[1].truncated, "{format:?}");
    }
}

fn fixture_strategy() -> impl Strategy<Value = &'static Fixture> {
    (0..fixtures::ALL.len()).prop_map(|i| &fixtures::ALL[i])
}

/// Bytes that look a little like logs: separators, quotes, tabs, NULs,
/// invalid UTF-8, and pieces of real lines.
fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::sample::select(vec![
            &b"\n"[..],
            b"\t",
            b"\"",
            b",",
            b"{",
            b"}",
            b"\\u",
            b"\xff",
            b"\0",
            b"2026-11-28 02:49:45.805 UTC [1] LOG:  x\n",
            b"2026-11-28 02:49:45.805 UTC [1] u@d DETAIL:  ",
            b"{\"error_severity\":\"LOG\",\"message\":\"",
            CSV_ROWS[1].as_bytes(),
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/logs/fixtures/proptest-regressions.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fixtures_split_at_random_points(
        fixture in fixture_strategy(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 1..12),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(fixture.bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let split = parse_cut(fixture.format, fixture.prefix, fixture.bytes, &cuts);
        prop_assert_eq!(split, parse(fixture));
    }

    #[test]
    fn any_bytes_never_panic_and_split_anywhere_alike(
        bytes in noisy_bytes(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for format in [Format::Stderr, Format::Csv, Format::Json] {
            for prefix in [fixtures::PREFIX_13, fixtures::PREFIX_15, "%a %u %d "] {
                let whole = parse_bytes(format, prefix, &bytes);
                prop_assert_eq!(parse_cut(format, prefix, &bytes, &cuts), whole);
                // Resuming at consumed() after the first cut gives the same.
                if let Some(&stop) = cuts.first() {
                    let mut first = Parser::new(format, prefix);
                    let mut records = first.push(&bytes[..stop]);
                    let consumed = usize::try_from(first.consumed()).unwrap();
                    prop_assert!(consumed <= stop);
                    records.extend(parse_bytes(format, prefix, &bytes[consumed..]));
                    prop_assert_eq!(records, parse_bytes(format, prefix, &bytes));
                }
            }
        }
    }
}

proptest! {
    // Each case parses megabytes: few cases.
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/logs/fixtures/proptest-regressions.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn long_random_input_keeps_memory_bounded(
        seed in proptest::collection::vec(any::<u8>(), 1..256),
        newline_every in prop_oneof![Just(0usize), 1usize..3_000_000],
    ) {
        // Several MB built from the seed, with or without newlines.
        let mut bytes = Vec::with_capacity(3 * MAX_RECORD_BYTES);
        while bytes.len() < 3 * MAX_RECORD_BYTES {
            bytes.extend(seed.iter().map(|b| if *b == b'\n' { b'x' } else { *b }));
            if newline_every > 0 && bytes.len() % newline_every < seed.len() {
                bytes.push(b'\n');
            }
        }
        for format in [Format::Stderr, Format::Csv, Format::Json] {
            let mut parser = Parser::new(format, "");
            for chunk in bytes.chunks(256 * 1024) {
                for record in parser.push(chunk) {
                    prop_assert!(record.message.len() <= MAX_RECORD_BYTES);
                }
                prop_assert!(parser.pending_bytes() <= 3 * MAX_RECORD_BYTES);
            }
            parser.finish();
            prop_assert_eq!(parser.pending_bytes(), 0);
        }
    }
}

/// Text that is not UTF-8 (a database in SQL_ASCII) is decoded lossily,
/// in every structured format; a jsonlog line cut inside an escape or a
/// character still gives its record.
#[test]
fn structured_formats_keep_bytes_that_are_not_utf8() {
    let csv = b"2026-11-28 02:49:45.805 UTC,,,1,,a.1,1,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"caf\xe9\",,,,,,,,,\"\",\"postmaster\"\n";
    let json = b"{\"error_severity\":\"LOG\",\"message\":\"caf\xe9\"}\n";
    for (format, bytes) in [(Format::Csv, &csv[..]), (Format::Json, &json[..])] {
        let records = parse_bytes(format, "", bytes);
        assert_eq!(records.len(), 1, "{format:?}");
        assert_eq!(records[0].message, "caf\u{fffd}", "{format:?}");
    }
    for tail in ["\\n", "\\u00e9", "é"] {
        // The line is cut some 30 bytes into the repeated tail.
        let filler = "x".repeat(lines::LINE_CAP - 80);
        let line = format!(
            "{{\"user\":\"u\",\"error_severity\":\"LOG\",\"message\":\"{filler}{}\"}}\n",
            tail.repeat(40)
        );
        let records = parse_bytes(Format::Json, "", line.as_bytes());
        assert_eq!(records.len(), 1, "{tail}");
        assert!(records[0].truncated, "{tail}");
        assert_eq!(records[0].prefix.user.as_deref(), Some("u"), "{tail}");
        assert_eq!(records[0].message, filler[..MAX_RECORD_BYTES], "{tail}");
    }
}
