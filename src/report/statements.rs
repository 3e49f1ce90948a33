//! Statement tables for humans: the last interval's, and the cumulative
//! view since the last statistics reset (what `pgvigil once` shows without
//! `--interval`).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::columns;
use crate::collect::statements::report::{
    InstanceSummary, SinceReset, StatementSummary, StatementsReport,
};

/// Milliseconds with two decimals.
pub fn millis(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

/// A statement's share of the instance's execution time, as a percentage;
/// "-" when the instance spent none. Nested statements are part of their
/// caller's time too, so a function's body can show as much as its call.
pub fn share(statement_seconds: f64, instance: &InstanceSummary) -> String {
    if instance.total_seconds > 0.0 {
        format!(
            "{:.1}%",
            100.0 * (statement_seconds / instance.total_seconds).min(1.0)
        )
    } else {
        "-".into()
    }
}

/// "1h 5m", "3d 2h", "42s": a rough age for people.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A Unix time as an RFC 3339 UTC timestamp to the second.
pub fn timestamp(unix: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)))
        .to_string()
}

/// The instance line's figures: ", mean … ms, p95 … ms, p99 … ms".
fn instance_figures(i: &InstanceSummary) -> String {
    match &i.quantiles {
        Some(q) => format!(
            ", mean {} ms, p95 {} ms, p99 {} ms",
            millis(i.mean_seconds),
            millis(q.p95),
            millis(q.p99)
        ),
        None => String::new(),
    }
}

fn rows(statements: &[StatementSummary], instance: &InstanceSummary) -> String {
    let rows: Vec<Vec<String>> = statements
        .iter()
        .take(20)
        .map(|s| {
            vec![
                s.calls.to_string(),
                millis(s.mean_seconds),
                millis(s.quantiles.p95),
                millis(s.quantiles.p99),
                share(s.total_seconds, instance),
                s.shared_hit_ratio
                    .map(|r| format!("{:.1}%", r * 100.0))
                    .unwrap_or_else(|| "-".into()),
                s.datname.clone(),
                crate::sql::shorten(s.query.as_deref().unwrap_or("(text unavailable)"), 70),
            ]
        })
        .collect();
    columns(
        &[
            "CALLS", "MEAN MS", "P95 MS", "P99 MS", "TIME", "HIT", "DATABASE", "QUERY",
        ],
        &rows,
    )
}

/// The top statements of the last interval.
pub fn interval_table(report: &StatementsReport) -> String {
    let mut out = String::new();
    let i = &report.instance;
    let _ = writeln!(
        out,
        "\nstatements over the last {:.1}s: {} calls{}",
        report.interval_seconds,
        i.calls,
        instance_figures(i)
    );
    out.push_str(&rows(&report.statements, i));
    out
}

/// Since when the cumulative figures count, in words.
pub fn since_words(report: &SinceReset, now: f64) -> String {
    match report.stats_reset {
        Some(at) => format!(
            "since the last statistics reset at {} ({} ago)",
            timestamp(at),
            age(now - at)
        ),
        None => "since the last statistics reset (time unknown: pg_stat_statements before 1.9, \
                 PostgreSQL 13 and older, does not record it)"
            .to_string(),
    }
}

/// The top statements since the last statistics reset, saying that the
/// figures are cumulative and since when.
pub fn since_reset_table(report: &SinceReset, now: f64) -> String {
    let mut out = String::new();
    let i = &report.instance;
    let _ = writeln!(
        out,
        "\nstatements {}, cumulative: {} calls, {:.1} s in all{}",
        since_words(report, now),
        i.calls,
        i.total_seconds,
        instance_figures(i)
    );
    let _ = writeln!(
        out,
        "  (percentiles estimated from each statement's cumulative mean, stddev, min and max; \
         `pgvigil once --interval 10s` shows the last 10 s instead)"
    );
    out.push_str(&rows(&report.statements, i));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_people_say_them() {
        let cases = [
            (0.0, "0s"),
            (42.9, "42s"),
            (125.0, "2m 5s"),
            (3_900.0, "1h 5m"),
            (2.0 * 86_400.0 + 7_300.0, "2d 2h"),
            (-5.0, "0s"),
        ];
        for (seconds, want) in cases {
            assert_eq!(age(seconds), want, "{seconds}");
        }
    }

    #[test]
    fn shares_are_of_the_instance_time() {
        let instance = |total| InstanceSummary {
            calls: 10.0,
            total_seconds: total,
            mean_seconds: 0.0,
            quantiles: None,
            method: crate::collect::statements::report::Method::Estimate,
            exact_quantiles: Vec::new(),
        };
        assert_eq!(share(2.5, &instance(10.0)), "25.0%");
        assert_eq!(share(12.0, &instance(10.0)), "100.0%");
        assert_eq!(share(1.0, &instance(0.0)), "-");
        assert_eq!(timestamp(0.0), "1970-01-01T00:00:00Z");
    }
}
