use super::*;
use crate::logs::record::fixtures::Fixture;
use crate::logs::record::{Format, Parser};

use Kind::*;
use Threshold::{Ms, Off};

const PREFIX: &str = "%m [%p] %q%u@%d ";

macro_rules! captured {
    ($name:literal, $major:literal, $format:ident) => {
        Fixture {
            name: $name,
            major: $major,
            format: Format::$format,
            prefix: if matches!(Format::$format, Format::Stderr) {
                PREFIX
            } else {
                ""
            },
            bytes: include_bytes!(concat!("../fixtures/", $name)),
        }
    };
}

/// `capture.sh --durations`: every format of 13, 15 and 18.
const CAPTURED: &[Fixture] = &[
    captured!("pg13-durations.log", 13, Stderr),
    captured!("pg13-durations.csv", 13, Csv),
    captured!("pg15-durations.log", 15, Stderr),
    captured!("pg15-durations.csv", 15, Csv),
    captured!("pg15-durations.json", 15, Json),
    captured!("pg18-durations.log", 18, Stderr),
    captured!("pg18-durations.csv", 18, Csv),
    captured!("pg18-durations.json", 18, Json),
];

/// The capture's settings: 20 ms, alice 50 ms (ALTER ROLE).
fn captured_thresholds() -> Thresholds {
    Thresholds {
        server: Some(Ms(20)),
        overrides: vec![role("alice", Some(Ms(50)))],
        own_role: None,
    }
}

fn role(name: &str, value: Option<Threshold>) -> Override {
    Override {
        database: None,
        role: Some(name.into()),
        value,
    }
}

fn database(name: &str, value: Option<Threshold>) -> Override {
    Override {
        database: Some(name.into()),
        role: None,
        value,
    }
}

fn both(db: &str, name: &str, value: Option<Threshold>) -> Override {
    Override {
        database: Some(db.into()),
        role: Some(name.into()),
        value,
    }
}

fn all_roles(value: Option<Threshold>) -> Override {
    Override {
        database: None,
        role: None,
        value,
    }
}

/// A `duration:` line: its user, what was timed and its text (`None`: a
/// bare duration), and the verdict for executions.
type Line<'a> = (&'a str, Option<(Kind, &'a str)>, Option<Verdict>);

#[test]
fn every_duration_line_of_the_capture_in_every_format() {
    let sleep = "SELECT pg_sleep($1 / 1000.0);";
    let plan = "SELECT slow_to_plan(7);";
    let fetch = "SELECT g, pg_sleep(0.03) FROM generate_series(1, 3) g";
    let want: Vec<Line> = vec![
        // Sampled: under the 20 ms threshold.
        (
            "postgres",
            Some((Statement, "SET log_min_duration_statement = -1;")),
            Some(Verdict::Under),
        ),
        (
            "postgres",
            Some((Statement, "SELECT pg_sleep(0.03)")),
            Some(Verdict::Slow),
        ),
        (
            "postgres",
            Some((Statement, "SELECT 1 AS fast")),
            Some(Verdict::Under),
        ),
        // alice's own threshold is 50 ms: 30 ms is under it.
        (
            "alice",
            Some((Statement, "SELECT pg_sleep(0.03) AS alice")),
            Some(Verdict::Under),
        ),
        (
            "alice",
            Some((Statement, "SELECT pg_sleep(0.06) AS alice")),
            Some(Verdict::Slow),
        ),
        // pgbench -M extended: parse, bind, execute, once each.
        ("postgres", Some((Parse, sleep)), None),
        ("postgres", Some((Bind, sleep)), None),
        ("postgres", Some((Execute, sleep)), Some(Verdict::Slow)),
        // pgbench -M prepared: one parse, then bind and execute per call.
        ("postgres", Some((Parse, sleep)), None),
        ("postgres", Some((Bind, sleep)), None),
        ("postgres", Some((Execute, sleep)), Some(Verdict::Slow)),
        ("postgres", Some((Bind, sleep)), None),
        ("postgres", Some((Execute, sleep)), Some(Verdict::Slow)),
        // Planning at bind takes 30 ms; the execution itself is fast.
        ("postgres", Some((Parse, plan)), None),
        ("postgres", Some((Bind, plan)), None),
        ("postgres", Some((Execute, plan)), Some(Verdict::Under)),
        // One execution read a row at a time: one execute, then fetches.
        ("postgres", Some((Parse, fetch)), None),
        ("postgres", Some((Bind, fetch)), None),
        ("postgres", Some((Execute, fetch)), Some(Verdict::Slow)),
        ("postgres", Some((ExecuteFetch, fetch)), None),
        ("postgres", Some((ExecuteFetch, fetch)), None),
        ("postgres", Some((ExecuteFetch, fetch)), None),
        // log_duration: bare durations of the SET and the SELECT.
        ("postgres", None, None),
        ("postgres", None, None),
        // log_statement = 'all' logged the text already: a bare 30 ms.
        ("postgres", None, None),
    ];
    let thresholds = captured_thresholds();
    for fixture in CAPTURED {
        let mut parser = Parser::new(fixture.format, fixture.prefix);
        let mut records = parser.push(fixture.bytes);
        records.extend(parser.finish());
        let got: Vec<_> = records
            .iter()
            .filter_map(|r| {
                let (ms, rest) = split(&r.message)?;
                let timed = timed(rest);
                let verdict = timed.filter(|(k, _)| k.is_execution()).map(|_| {
                    thresholds.judge(r.prefix.database.as_deref(), r.prefix.user.as_deref(), ms)
                });
                Some((r.prefix.user.as_deref().unwrap_or_default(), timed, verdict))
            })
            .collect();
        assert_eq!(got, want, "{fixture:?} ({})", fixture.major);
    }
}

#[test]
fn what_a_duration_line_timed() {
    let cases: Vec<(&str, Option<(Kind, &str)>)> = vec![
        (
            "duration: 1.000 ms  statement: SELECT 1",
            Some((Statement, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  execute <unnamed>: SELECT $1",
            Some((Execute, "SELECT $1")),
        ),
        (
            "duration: 1.000 ms  execute S_1: SELECT 1",
            Some((Execute, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  execute S_1/C_2: SELECT 1",
            Some((Execute, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  execute fetch from S_1/C_2: SELECT 1",
            Some((ExecuteFetch, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  execute fetch from <unnamed>: SELECT 1",
            Some((ExecuteFetch, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  parse <unnamed>: SELECT 1",
            Some((Parse, "SELECT 1")),
        ),
        (
            "duration: 1.000 ms  bind P_0: SELECT 1",
            Some((Bind, "SELECT 1")),
        ),
        // A statement text holding ": " keeps it.
        (
            "duration: 1.000 ms  statement: SELECT 'a: b'",
            Some((Statement, "SELECT 'a: b'")),
        ),
        (
            "duration: 1.000 ms  execute x: SELECT 'a: b'",
            Some((Execute, "SELECT 'a: b'")),
        ),
        // Not a statement.
        ("duration: 1.000 ms", None),
        ("duration: 1.000 ms  plan:\n{}", None),
        (
            "duration: 1.000 ms  fastpath function call: function OID 1",
            None,
        ),
        ("duration: 1.000 ms  execute S_1", None),
    ];
    for (message, want) in cases {
        let (ms, rest) = split(message).unwrap();
        assert_eq!(ms, 1.0);
        assert_eq!(timed(rest), want, "{message}");
    }
    for message in [
        "duration: x ms  statement: SELECT 1",
        "statement: SELECT 1",
        "duration: 1",
    ] {
        assert_eq!(split(message), None, "{message}");
    }
    assert!(Statement.is_execution() && Execute.is_execution());
    assert!(!ExecuteFetch.is_execution() && !Parse.is_execution() && !Bind.is_execution());
}

#[test]
fn whole_milliseconds_decide_as_in_postgres() {
    // (threshold, logged duration, logged as slow)
    let cases = [
        (Ms(20), 19.999, false),
        (Ms(20), 20.0, true),
        (Ms(20), 20.001, true),
        (Ms(0), 0.001, true),
        (Ms(0), 0.0, true),
        (Ms(1500), 1499.999, false),
        (Ms(1500), 1500.0, true),
        (Off, 100_000.0, false),
    ];
    for (threshold, ms, want) in cases {
        assert_eq!(threshold.logs_as_slow(ms), want, "{threshold:?} {ms}");
    }
    assert_eq!(Ms(20).seconds(), Some(0.02));
    assert_eq!(Off.seconds(), None);
}

#[test]
fn settings_as_postgres_reads_them() {
    let cases: Vec<(&str, Option<Threshold>)> = vec![
        ("-1", Some(Off)),
        ("0", Some(Ms(0))),
        ("100", Some(Ms(100))),
        ("100ms", Some(Ms(100))),
        (" 100 ms ", Some(Ms(100))),
        ("1s", Some(Ms(1000))),
        ("1.5s", Some(Ms(1500))),
        ("2min", Some(Ms(120_000))),
        ("1h", Some(Ms(3_600_000))),
        ("1d", Some(Ms(86_400_000))),
        ("2500us", Some(Ms(2))),
        ("1500us", Some(Ms(2))),
        ("500us", Some(Ms(0))),
        ("0.5", Some(Ms(0))),
        ("1.5", Some(Ms(2))),
        ("1e3", Some(Ms(1000))),
        // A fractional minute goes to whole seconds first.
        ("0.0105min", Some(Ms(1000))),
        // strtol with base 0.
        ("0x14", Some(Ms(20))),
        ("024", Some(Ms(20))),
        ("+5", Some(Ms(5))),
        ("-2", None),
        ("5 parsecs", None),
        ("1S", None),
        ("", None),
        ("ms", None),
        ("99999999999", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_setting(text), want, "{text:?}");
    }
}

#[test]
fn the_most_specific_setting_wins() {
    let thresholds = Thresholds {
        server: Some(Ms(100)),
        overrides: vec![
            role("app", Some(Ms(20))),
            database("reports", Some(Ms(5000))),
            both("reports", "app", Some(Ms(1000))),
            role("batch", Some(Off)),
            role("odd", None),
        ],
        own_role: Some("pgvigil".into()),
    };
    // (database, role, threshold)
    let cases: Vec<(Option<&str>, Option<&str>, Option<Threshold>)> = vec![
        (Some("shop"), Some("app"), Some(Ms(20))),
        (Some("reports"), Some("app"), Some(Ms(1000))),
        (Some("reports"), Some("alice"), Some(Ms(5000))),
        (Some("shop"), Some("alice"), Some(Ms(100))),
        (Some("reports"), Some("batch"), Some(Off)),
        (Some("shop"), Some("odd"), None),
        (Some("shop"), Some("pgvigil"), Some(Ms(100))),
        // Without names, no single value applies.
        (None, Some("app"), None),
        (Some("shop"), None, None),
    ];
    for (db, user, want) in cases {
        assert_eq!(thresholds.of(db, user), want, "{db:?} {user:?}");
    }
    // ALTER ROLE ALL SET replaces the server's value for everyone.
    let global = Thresholds {
        server: None,
        overrides: vec![all_roles(Some(Ms(250))), role("app", Some(Ms(20)))],
        own_role: None,
    };
    assert_eq!(global.of(Some("shop"), Some("alice")), Some(Ms(250)));
    assert_eq!(global.of(Some("shop"), Some("app")), Some(Ms(20)));
}

#[test]
fn one_threshold_for_the_whole_instance() {
    let server = |ms| Thresholds {
        server: Some(Ms(ms)),
        overrides: Vec::new(),
        own_role: Some("pgvigil".into()),
    };
    let with = |overrides: Vec<Override>| Thresholds {
        overrides,
        ..server(100)
    };
    // (thresholds, instance-wide, for lines without names)
    let cases: Vec<(Thresholds, Option<u32>, Option<Threshold>)> = vec![
        (server(100), Some(100), Some(Ms(100))),
        // The highest in force covers everyone.
        (with(vec![role("app", Some(Ms(20)))]), Some(100), None),
        (
            with(vec![both("reports", "app", Some(Ms(1000)))]),
            Some(1000),
            None,
        ),
        (
            with(vec![database("reports", Some(Ms(100)))]),
            Some(100),
            Some(Ms(100)),
        ),
        // The agent's own role is left out, whatever it has.
        (
            with(vec![role("pgvigil", Some(Off))]),
            Some(100),
            Some(Ms(100)),
        ),
        (
            with(vec![both("shop", "pgvigil", Some(Ms(60_000)))]),
            Some(100),
            Some(Ms(100)),
        ),
        // Some role logs nothing, or its value is unknown: no instance set.
        (with(vec![role("batch", Some(Off))]), None, None),
        (with(vec![role("odd", None)]), None, None),
        (
            Thresholds {
                server: None,
                ..server(0)
            },
            None,
            None,
        ),
        // ALTER ROLE ALL SET hides an unknown server value.
        (
            Thresholds {
                server: None,
                overrides: vec![all_roles(Some(Ms(30)))],
                own_role: None,
            },
            Some(30),
            Some(Ms(30)),
        ),
        (
            Thresholds {
                server: Some(Off),
                ..server(0)
            },
            None,
            Some(Off),
        ),
    ];
    for (thresholds, instance, nameless) in cases {
        assert_eq!(thresholds.instance(), instance, "{thresholds:?}");
        assert_eq!(thresholds.of(None, None), nameless, "{thresholds:?}");
    }
}

#[test]
fn verdicts() {
    let thresholds = Thresholds {
        server: None,
        overrides: vec![role("app", Some(Ms(20))), role("batch", Some(Off))],
        own_role: None,
    };
    // (role, duration, verdict)
    let cases = [
        ("app", 25.0, Verdict::Slow),
        ("app", 19.5, Verdict::Under),
        ("batch", 5000.0, Verdict::Under),
        ("alice", 5000.0, Verdict::Unknown),
    ];
    for (user, ms, want) in cases {
        assert_eq!(
            thresholds.judge(Some("db"), Some(user), ms),
            want,
            "{user} {ms}"
        );
    }
}
