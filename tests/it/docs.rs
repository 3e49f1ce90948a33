//! docs/metrics.md against the code and against a real run, both ways.

use std::collections::BTreeSet;

use crate::harness::{Fixture, Metrics, outputs, pgvigil};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");

#[test]
fn metrics_reference_matches_the_descriptors() {
    let generated = pgvigil::registry::metrics_reference();
    let doc = std::fs::read_to_string(DOC).unwrap_or_default();
    if std::env::var_os("PGVIGIL_BLESS").is_some() {
        std::fs::write(DOC, &generated).unwrap();
        return;
    }
    assert!(
        doc == generated,
        "docs/metrics.md is out of date: run `PGVIGIL_BLESS=1 cargo test --test it docs::` and commit it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_publishes_exactly_the_documented_metrics() {
    let fx = Fixture::start().await;
    let env = fx.once_env();
    let out = pgvigil(
        &["once", "--dsn", &fx.dsn(), "--format", "prometheus"],
        &[("PGPASSWORD", &env[0].1)],
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let seen: BTreeSet<String> = Metrics::parse(&stdout).family_names().into_iter().collect();
    let mut always = BTreeSet::new();
    let mut documented = BTreeSet::new();
    for (collector, descs) in pgvigil::registry::catalog() {
        for d in descs {
            documented.insert(d.exposed_name());
            // Redis families need a Redis: tests/it/redis.rs checks them.
            if d.only_when.is_none() && !collector.starts_with("redis") {
                always.insert(d.exposed_name());
            }
        }
    }
    let undocumented: Vec<_> = seen.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "published but not in docs/metrics.md: {undocumented:?}"
    );
    let missing: Vec<_> = always.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "documented as always present but not published: {missing:?}"
    );
    let doc = std::fs::read_to_string(DOC).unwrap();
    for name in &seen {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} not in docs/metrics.md"
        );
    }
}
