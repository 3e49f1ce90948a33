use super::*;

fn table(oid: u32) -> Rel {
    Rel { oid, table: true }
}

fn index(oid: u32) -> Rel {
    Rel { oid, table: false }
}

fn oids(rels: &[Rel]) -> Vec<u32> {
    rels.iter().map(|r| r.oid).collect()
}

/// A run that measured `sizes` and skipped `skipped`.
fn run(sizes: &[(u32, f64)], skipped: &[(u32, Skip)]) -> Measured {
    Measured {
        sizes: sizes.iter().map(|(o, b)| (*o, Some(*b))).collect(),
        skipped: skipped.to_vec(),
        error: None,
    }
}

#[test]
fn a_pass_comes_every_fifth_run_of_a_database_whatever_it_met() {
    let rels = [table(1)];
    let mut sizes = DatabaseSizes::default();
    let mut passes = Vec::new();
    for n in 0..11 {
        let pass = sizes.due();
        passes.push(pass);
        // Every pass here is cut short or blocked: it still counts, so
        // the next run is not a pass again (the bug of issue 14).
        let why = if n % 2 == 0 {
            Skip::Locked
        } else {
            Skip::Budget
        };
        sizes.record(pass, &rels, &run(&[], &[(1, why)]));
    }
    let expected = [
        true, false, false, false, false, true, false, false, false, false, true,
    ];
    assert_eq!(passes, expected);
}

#[test]
fn plans_put_the_oldest_knowledge_first_and_size_between_passes_only_what_must_be() {
    let rels = [table(1), table(2), table(3), index(4), table(5)];
    let mut sizes = DatabaseSizes::default();
    // First run: a pass over everything, in catalog order.
    assert!(sizes.due());
    assert_eq!(oids(&sizes.plan(&rels, true)), [1, 2, 3, 4, 5]);
    // 2 locked, 3 not reached in time, 4 failed; 1 and 5 measured.
    sizes.record(
        true,
        &rels,
        &run(
            &[(1, 10.0), (5, 50.0)],
            &[(2, Skip::Locked), (3, Skip::Budget), (4, Skip::Error)],
        ),
    );
    // Between passes: the locked one (retried every run; pg_locks says
    // for free whether it still is) and a new relation, 6, first.
    let rels = [table(1), table(2), table(3), index(4), table(5), table(6)];
    assert_eq!(oids(&sizes.plan(&rels, false)), [6, 2]);
    // In a pass: never tried, locked, not reached or failed, then the rest.
    assert_eq!(oids(&sizes.plan(&rels, true)), [6, 2, 3, 4, 1, 5]);
}

#[test]
fn what_is_not_measured_keeps_its_last_size_flagged_and_is_counted() {
    let rels = [table(1), table(2), index(3)];
    let mut sizes = DatabaseSizes::default();
    sizes.record(
        true,
        &rels,
        &run(&[(1, 10.0), (2, 20.0)], &[(3, Skip::Budget)]),
    );
    let measured = |bytes| Published {
        bytes: Some(bytes),
        measured: true,
    };
    assert_eq!(sizes.published(1), measured(10.0));
    assert_eq!(
        sizes.published(3),
        Published {
            bytes: None,
            measured: false
        },
        "never measured: the caller estimates it"
    );
    assert_eq!(sizes.never_measured(&rels), [3]);
    assert_eq!(sizes.skipped(), [0, 1, 0]);
    // The next pass: 1 is locked and keeps its size, flagged; 3 is
    // measured at last.
    sizes.record(
        true,
        &rels,
        &run(&[(2, 21.0), (3, 30.0)], &[(1, Skip::Locked)]),
    );
    assert_eq!(
        sizes.published(1),
        Published {
            bytes: Some(10.0),
            measured: false
        }
    );
    assert_eq!(sizes.published(3), measured(30.0));
    assert_eq!(sizes.skipped(), [1, 0, 0]);
    assert!(sizes.never_measured(&rels).is_empty());
    // Released: measured by the next run, which is no pass.
    assert!(!sizes.due());
    assert_eq!(oids(&sizes.plan(&rels, false)), [1]);
    sizes.record(false, &rels, &run(&[(1, 11.0)], &[]));
    assert_eq!(sizes.published(1), measured(11.0));
    assert_eq!(sizes.skipped(), [0, 0, 0]);
}

#[test]
fn dropped_relations_are_forgotten() {
    let mut sizes = DatabaseSizes::default();
    sizes.record(
        true,
        &[table(1), table(2)],
        &run(&[(1, 1.0), (2, 2.0)], &[]),
    );
    // 2 is gone from the statistics; 1 was dropped while being sized.
    let measured = Measured {
        sizes: vec![(1, None)],
        ..Measured::default()
    };
    sizes.record(true, &[table(1)], &measured);
    assert_eq!(sizes.published(2).bytes, None);
    assert_eq!(sizes.published(1).bytes, None);
    assert!(sizes.entries.is_empty());
}

#[test]
fn the_sizing_message_lists_the_relations_in_order_and_is_recognised_as_our_own() {
    let sql = sizing_sql(
        &[table(16384), index(16390), table(4242)],
        Duration::from_millis(2500),
        Duration::from_millis(50),
    );
    assert!(
        sql.contains("unnest('{16384,16390,4242}'::pg_catalog.oid[]), pg_catalog.unnest('{t,f,t}'::pg_catalog.bool[])"),
        "{sql}"
    );
    assert!(
        sql.contains("set_config('lock_timeout', '50', true)"),
        "{sql}"
    );
    assert!(
        sql.contains("set_config('statement_timeout', '2500', true)"),
        "{sql}"
    );
    // A zero budget must not turn into statement_timeout = 0 (no limit).
    let sql_zero = sizing_sql(&[table(1)], Duration::ZERO, Duration::ZERO);
    assert!(sql_zero.contains("'statement_timeout', '1'"), "{sql_zero}");
    // Both statements fingerprint like the examples in OWN_SQL, so the
    // statements collector counts them as pgvigil's own.
    let own = crate::sql::OwnStatements::new(super::super::OWN_SQL.iter().copied());
    let parts = pg_query::split_with_parser(&sql).unwrap();
    assert_eq!(parts.len(), 2);
    for part in parts {
        let fp = crate::sql::fingerprint(part).unwrap();
        assert!(own.contains(&fp), "not recognised as own: {part}");
    }
}
