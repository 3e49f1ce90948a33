//! The consistency sections of the `/` page: amcheck's progress and every
//! corrupt relation it found; the last pgbackrest verify and restore tests.

use std::fmt::Write as _;

use super::escape;
use crate::report::consistency::{backup_of, backup_table, consistency_of, progress};
use crate::snapshot::{TargetView, unix_now};

/// Appends the backup checks for `view`: the lines of `pgvigil once`,
/// failures marked critical (nothing before a verify or test finished).
pub fn backup_section(view: &TargetView, out: &mut String) {
    let Some(report) = backup_of(view) else {
        return;
    };
    let text = backup_table(report, unix_now());
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if let Some(title) = lines.next() {
        let _ = writeln!(
            out,
            "<h3>{}</h3>",
            escape(title.trim().trim_end_matches(':'))
        );
    }
    for line in lines {
        let class = if line.contains("FAILED") {
            " class=\"critical\""
        } else {
            ""
        };
        let _ = writeln!(out, "<p{class}>{}</p>", escape(line.trim()));
    }
}

/// Appends the section for `view` (nothing when the collector is off).
pub fn section(view: &TargetView, out: &mut String) {
    let Some(report) = consistency_of(view) else {
        return;
    };
    let _ = writeln!(
        out,
        "<h3>Consistency (amcheck)</h3><p class=\"muted\">{} · \
         <a href=\"/api/v1/consistency\">/api/v1/consistency</a></p>",
        escape(&progress(report))
    );
    if report.findings.is_empty() {
        if report.note.is_none() {
            out.push_str("<p>no corruption found</p>\n");
        }
        return;
    }
    out.push_str(
        "<table><tr><th>database</th><th>kind</th><th>relation</th><th>table</th>\
         <th>block</th><th>message</th></tr>\n",
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "<tr class=\"critical\"><td>{}</td><td>{}</td><td>{}.{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.datname),
            escape(&f.kind),
            escape(&f.schemaname),
            escape(&f.relname),
            escape(f.table.as_deref().unwrap_or("")),
            f.block.map(|b| b.to_string()).unwrap_or_default(),
            escape(&f.message),
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::collect::backup::report::{BackupReport, Tested};
    use crate::snapshot::{Collected, Detail, Outcome, Store};

    #[test]
    fn a_failed_restore_test_is_critical_and_its_reason_escaped() {
        let now = unix_now();
        let report = BackupReport {
            stanza: "main".into(),
            verify: None,
            restore_test: Some(Tested {
                started_at: now - 10.0,
                finished_at: now - 5.0,
                outcome: None,
                reason: Some("smoke query: <script>alert(1)</script>".into()),
            }),
            restore_success: None,
        };
        let store = Store::new(vec![("x".into(), vec!["backup"])]);
        store.record(
            "x",
            "backup",
            Outcome::plain(
                Ok(Collected {
                    families: vec![],
                    detail: Some(Detail::Backup(Arc::new(report))),
                }),
                Duration::ZERO,
            ),
        );
        let mut out = String::new();
        backup_section(&store.view(None)[0], &mut out);
        assert!(
            out.contains("<h3>backup checks (stanza main)</h3>"),
            "{out}"
        );
        assert!(
            out.contains("<p class=\"critical\">restore test FAILED"),
            "{out}"
        );
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }
}
