//! amcheck progress and findings (the amcheck collector's report), and the
//! last pgbackrest verify and restore tests (the backup collector's), as
//! JSON for `/api/v1/consistency` and as tables for `pgvigil once --format
//! table`.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use super::columns;
use crate::collect::amcheck::report::ConsistencyReport;
use crate::collect::backup::report::{BackupReport, Tested};
use crate::snapshot::{Detail, TargetView};

/// The consistency report of a target, if its collector has produced one.
pub fn consistency_of(view: &TargetView) -> Option<&ConsistencyReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Consistency(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// The backup collector's verify and restore-test results of a target, if
/// it has any.
pub fn backup_of(view: &TargetView) -> Option<&BackupReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Backup(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// `/api/v1/consistency`: per target, the amcheck collector's last report
/// (or why there is none) and the backup collector's verify and restore
/// tests (`backup`, null until one finished).
pub fn consistency_json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let report =
                consistency_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            let error = super::collector_error(view, "amcheck");
            let error = match (&report, error) {
                (None, None) => Some("not collected yet".to_string()),
                (_, e) => e,
            };
            json!({
                "target": &*view.name,
                "report": report,
                "error": error,
                "backup": backup_of(view),
            })
        })
        .collect();
    json!({ "targets": targets })
}

/// How long ago `at` was, in words.
fn ago(now: f64, at: f64) -> String {
    let s = (now - at).max(0.0);
    match s {
        s if s < 120.0 => format!("{s:.0}s ago"),
        s if s < 7200.0 => format!("{:.0}m ago", s / 60.0),
        s if s < 172_800.0 => format!("{:.0}h ago", s / 3600.0),
        s => format!("{:.0}d ago", s / 86400.0),
    }
}

/// One line on where the checks stand.
pub fn progress(r: &ConsistencyReport) -> String {
    if let Some(note) = &r.note {
        return note.clone();
    }
    let t = &r.totals;
    let last = match r.last_pass_completed {
        Some(at) => format!(
            "last complete pass {} (took {:.0}s)",
            ago(r.collected_at, at),
            r.last_pass_seconds.unwrap_or(0.0)
        ),
        None => "no complete pass yet".to_string(),
    };
    let mut line = format!(
        "{} indexes ({} pages) and {} tables ({} pages) checked; {last}; pass started {}; {:.0} pages/hour{}",
        t.btree_relations,
        t.btree_pages,
        t.heap_relations,
        t.heap_pages,
        ago(r.collected_at, r.pass_started),
        r.effective_pages_per_hour,
        if r.heap_checks {
            ""
        } else {
            " (tables need PostgreSQL 14+)"
        },
    );
    if let Some(p) = &r.paused {
        let _ = write!(line, "; paused: {p}");
    }
    line
}

/// The consistency section of `pgvigil once --format table`.
pub fn table(r: &ConsistencyReport) -> String {
    let mut out = format!("\nconsistency (amcheck): {}\n", progress(r));
    if r.note.is_some() {
        return out;
    }
    if r.findings.is_empty() {
        out.push_str("  no corruption found\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .findings
        .iter()
        .map(|f| {
            vec![
                f.datname.clone(),
                f.kind.clone(),
                format!("{}.{}", f.schemaname, f.relname),
                f.table.clone().unwrap_or_default(),
                f.block.map(|b| b.to_string()).unwrap_or_default(),
                crate::sql::shorten(&f.message, 120),
            ]
        })
        .collect();
    out.push_str("CORRUPT RELATIONS:\n");
    out.push_str(&columns(
        &["DATABASE", "KIND", "RELATION", "TABLE", "BLOCK", "MESSAGE"],
        &rows,
    ));
    out
}

/// The backup checks section of `pgvigil once --format table`: the last
/// verify, the last restore test and, when that one failed, the last
/// successful one.
pub fn backup_table(r: &BackupReport, now: f64) -> String {
    let mut out = format!("\nbackup checks (stanza {}):\n", r.stanza);
    if let Some(v) = &r.verify {
        let _ = writeln!(
            out,
            "  pgbackrest verify {} {} ({:.1}s, {} errors){}",
            if v.success { "ok" } else { "FAILED" },
            ago(now, v.finished_at),
            v.seconds,
            v.errors,
            v.reason
                .as_deref()
                .map_or(String::new(), |why| format!(": {why}"))
        );
    }
    let tested = |t: &Tested| match (&t.outcome, &t.reason) {
        (Some(o), _) => format!(
            "ok {}: backup {} recovered in {:.1}s, recovery point {}",
            ago(now, t.finished_at),
            o.label,
            o.recovery_seconds,
            o.recovery_point_age_seconds
                .map_or("unknown".to_string(), |a| format!("{a:.1}s behind"))
        ),
        (None, why) => format!(
            "FAILED {}: {}",
            ago(now, t.finished_at),
            crate::sql::shorten(why.as_deref().unwrap_or("no reason recorded"), 200)
        ),
    };
    if let Some(t) = &r.restore_test {
        let _ = writeln!(out, "  restore test {}", tested(t));
        if !t.success()
            && let Some(ok) = &r.restore_success
        {
            let _ = writeln!(out, "  last successful restore test {}", tested(ok));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::backup::report::{Outcome, Verified};

    #[test]
    fn the_backup_section_names_a_failure_and_the_last_success() {
        let now = 1_000_000.0;
        let ok = Tested {
            started_at: now - 86_400.0 - 5.0,
            finished_at: now - 86_400.0,
            outcome: Some(Outcome {
                label: "20261203-221357F".into(),
                recovery_seconds: 4.2,
                recovery_point_age_seconds: Some(0.3),
                indexes_checked: 50,
                databases_checked: 2,
            }),
            reason: None,
        };
        let failed = Tested {
            started_at: now - 65.0,
            finished_at: now - 60.0,
            outcome: None,
            reason: Some("pgbackrest restore: unable to open missing file".into()),
        };
        let r = BackupReport {
            stanza: "main".into(),
            verify: Some(Verified {
                success: false,
                errors: 1,
                seconds: 0.14,
                finished_at: now - 7200.0,
                reason: Some("backup 20261203-221357F: missing 1".into()),
            }),
            restore_test: Some(failed),
            restore_success: Some(ok),
        };
        let text = backup_table(&r, now);
        assert!(text.contains("backup checks (stanza main)"), "{text}");
        assert!(
            text.contains("pgbackrest verify FAILED 2h ago (0.1s, 1 errors): backup 20261203-221357F: missing 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "restore test FAILED 60s ago: pgbackrest restore: unable to open missing file"
            ),
            "{text}"
        );
        assert!(
            text.contains("last successful restore test ok 24h ago: backup 20261203-221357F recovered in 4.2s, recovery point 0.3s behind"),
            "{text}"
        );
    }
}
