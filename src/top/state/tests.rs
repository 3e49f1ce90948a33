use serde_json::json;

use super::*;

fn session(pid: i32, blocked_by: &[i32]) -> Session {
    Session {
        pid,
        blocked_by: blocked_by.to_vec(),
        ..Session::default()
    }
}

#[test]
fn blockers_come_before_those_they_block() {
    // 10 blocks 11 and 12; 12 blocks 13; 20 stands alone.
    let all = [
        session(13, &[12]),
        session(12, &[10]),
        session(20, &[]),
        session(11, &[10]),
        session(10, &[]),
    ];
    let refs: Vec<&Session> = all.iter().collect();
    let tree: Vec<(usize, i32)> = blocking_tree(&refs)
        .into_iter()
        .map(|(d, s)| (d, s.pid))
        .collect();
    assert_eq!(tree, vec![(0, 20), (0, 10), (1, 12), (2, 13), (1, 11)]);
    // A cycle is shown once.
    let cycle = [session(1, &[2]), session(2, &[1])];
    let refs: Vec<&Session> = cycle.iter().collect();
    assert_eq!(blocking_tree(&refs).len(), 2);
}

#[test]
fn the_overview_document_reads_into_a_snapshot() {
    let overview = json!({ "targets": [{
        "name": "main", "up": true,
        "server": { "version": "PostgreSQL 15.4", "role": "primary", "started_at": 1000.0, "replication_lag_seconds": 2.5 },
        "collectors": [{ "name": "statements", "error": null }],
        "saturation": { "postgres": { "used": 5.0, "usable": 37.0 }, "pools": [{ "clients_waiting": 3.0 }, { "clients_waiting": 1.0 }] },
        "load": { "window_seconds": 10.0, "wait_events": [
            { "wait_event_type": "CPU", "wait_event": "CPU", "seconds": 5.0 },
            { "wait_event_type": "Lock", "wait_event": "relation", "seconds": 12.0 },
            { "wait_event_type": "Lock", "wait_event": "tuple", "seconds": 3.0 }],
            "statements": [{ "queryid": "7", "wait_events": [{ "wait_event_type": "Lock", "wait_event": "relation" }] }] },
        "statements": { "interval_seconds": 2.0, "instance": { "total_seconds": 4.0 }, "statements": [
            { "datname": "app", "usename": "u", "queryid": "7", "query": "SELECT $1", "calls": 10.0, "total_seconds": 1.0,
              "mean_seconds": 0.1, "quantiles": { "p95": 0.2, "p99": 0.3 } }] }
    }]});
    let plans = json!({ "plans": [
        { "queryid": "7", "mode": "explain", "explained_at": 5.0, "plan": [1] },
        { "queryid": "7", "mode": "analyze", "explained_at": 9.0, "plan": [2] }] });
    let snap = Snapshot::from_json(&overview, &plans, 1060.0);
    assert_eq!(snap.uptime_seconds, Some(60.0));
    assert_eq!((snap.connections, snap.usable), (Some(5.0), Some(37.0)));
    assert_eq!(snap.pgbouncer_waiting, Some(4.0));
    assert_eq!(snap.lag_seconds, Some(2.5));
    assert_eq!(
        snap.load,
        vec![("Lock".to_string(), 1.5), ("CPU".to_string(), 0.5)]
    );
    let st = &snap.statements[0];
    assert_eq!(st.calls_per_second, 5.0);
    assert_eq!(st.share, Some(0.25));
    assert_eq!(st.wait.as_deref(), Some("Lock:relation"));
    assert_eq!(snap.statements_note, None);
    assert_eq!(snap.plan_of("7").unwrap().mode, "analyze");

    // Without pg_stat_statements: the collector's own advice.
    let missing = json!({ "targets": [{ "collectors": [{ "name": "statements",
        "error": "pg_stat_statements is not installed in database \"postgres\": run CREATE EXTENSION" }] }] });
    let snap = Snapshot::from_json(&missing, &json!({}), 0.0);
    assert!(snap.statements_note.unwrap().contains("CREATE EXTENSION"));
    assert_eq!(snap.pgbouncer_waiting, None);
}

#[test]
fn sorting_and_filters() {
    let st = |db: &str, calls: f64, total: f64, p99: f64| Statement {
        datname: db.into(),
        calls,
        total,
        p99,
        ..Statement::default()
    };
    let mut app = App::new("test".into(), false);
    app.snapshot.statements = vec![
        st("a", 1.0, 9.0, 0.5),
        st("b", 50.0, 1.0, 0.1),
        st("a", 5.0, 3.0, 2.0),
    ];
    let order = |app: &App| app.statements().iter().map(|s| s.calls).collect::<Vec<_>>();
    assert_eq!(order(&app), vec![1.0, 5.0, 50.0]);
    app.sort = Sort::Calls;
    assert_eq!(order(&app), vec![50.0, 5.0, 1.0]);
    app.sort = Sort::P99;
    assert_eq!(order(&app), vec![5.0, 1.0, 50.0]);
    app.database = App::cycle(&None, app.databases());
    assert_eq!(app.database.as_deref(), Some("a"));
    assert_eq!(order(&app), vec![5.0, 1.0]);
    app.database = App::cycle(&app.database, app.databases());
    assert_eq!(app.database.as_deref(), Some("b"));
    app.database = App::cycle(&app.database, app.databases());
    assert_eq!(app.database, None);
}
