//! Snapshots to Prometheus text 0.0.4 and OpenMetrics 1.0.
//!
//! Both formats come from prometheus-client: since 0.26 the crate has a
//! 0.0.4 text encoder beside its OpenMetrics one, so we feed both from the
//! same [`Collector`] instead of keeping a writer of our own. Families with
//! the same name from several targets are merged under one `# HELP`/`# TYPE`
//! header, with a `target` label first, because a repeated header is an
//! error to Prometheus and promtool.
//!
//! Every series of a target carries `target`, a lone unnamed one too
//! (`"main"`), and every PgBouncer series its `pgbouncer`: a label that
//! appeared only once a second target or console was configured would
//! rename every existing series and break every saved query. Only the
//! agent's own process series belong to no target.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit as PcUnit};

use crate::metric::{Desc, Family, Kind, Series, Unit, Value};
use crate::snapshot::TargetView;

/// An output format for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text exposition 0.0.4, the default.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format an `Accept` header asks for (Prometheus text 0.0.4 unless OpenMetrics is asked for).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A group of families that share a `target` label.
#[derive(Debug)]
pub struct Scoped {
    /// The `target` label value; `None` only for the agent's own process
    /// series, which belong to no target.
    pub target: Option<Arc<str>>,
    /// Another label all of the group's series carry (`pgbouncer`).
    pub label: Option<(&'static str, Arc<str>)>,
    /// The families.
    pub families: Arc<Vec<Family>>,
}

/// Flattens target views (collector snapshots plus derived health series)
/// into encodable groups.
pub fn scoped(views: &[TargetView]) -> Vec<Scoped> {
    let mut out = Vec::new();
    for view in views {
        let target = Some(view.name.clone());
        out.push(Scoped {
            target: target.clone(),
            label: None,
            families: Arc::new(view.health_families()),
        });
        for (_, state) in &view.collectors {
            out.push(Scoped {
                target: target.clone(),
                label: state.label.clone(),
                families: state.families.clone(),
            });
        }
    }
    out
}

/// Encodes groups without OpenMetrics' `# EOF`, so that parts encoded at
/// different times (the cached snapshots, the fresh process metrics) can
/// be [`join`]ed. Families must not repeat across parts.
pub fn encode_part(groups: Vec<Scoped>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshots { groups }));
    let mut out = String::new();
    let result = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        }
    };
    // Writing into a String cannot fail; an error here would be a bug in the
    // encoder, and a partial page is still better than none for a scraper.
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

/// Joins encoded parts into one response body, ending it with `# EOF` for
/// OpenMetrics.
pub fn join(parts: &[&[u8]], format: Format) -> bytes::Bytes {
    const EOF: &[u8] = b"# EOF\n";
    let eof = if format == Format::OpenMetrics {
        EOF
    } else {
        b""
    };
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + eof.len());
    for part in parts {
        body.extend_from_slice(part);
    }
    body.extend_from_slice(eof);
    body.into()
}

/// Encodes the groups as one complete exposition.
pub fn encode(groups: Vec<Scoped>, format: Format) -> String {
    let part = encode_part(groups, format);
    String::from_utf8(join(&[part.as_bytes()], format).to_vec()).unwrap_or_default()
}

/// One family's descriptor and its series from every group, with the
/// group's target label.
type Merged<'a> = (&'static Desc, Vec<(Group<'a>, &'a Series)>);

#[derive(Debug)]
struct Snapshots {
    groups: Vec<Scoped>,
}

/// The labels of one series: the optional target, then the family's own.
struct SeriesLabels<'a> {
    group: &'a Group<'a>,
    names: &'static [&'static str],
    values: &'a [String],
}

/// The labels a group of families adds to each of its series.
#[derive(Clone, Copy)]
struct Group<'a> {
    target: Option<&'a str>,
    label: Option<(&'static str, &'a str)>,
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        if let Some(target) = self.group.target {
            ("target", target).encode(encoder.encode_label())?;
        }
        if let Some((name, value)) = self.group.label {
            (name, value).encode(encoder.encode_label())?;
        }
        for (name, value) in self.names.iter().zip(self.values) {
            (*name, value.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Gauge => MetricType::Gauge,
        Kind::Counter => MetricType::Counter,
        Kind::Histogram => MetricType::Histogram,
        Kind::Info => MetricType::Info,
    }
}

fn unit(unit: Unit) -> PcUnit {
    match unit {
        Unit::Seconds => PcUnit::Seconds,
        Unit::Bytes => PcUnit::Bytes,
    }
}

impl Collector for Snapshots {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Merge by exposed name (pg_replication_lag_seconds and
        // pg_replication_lag_bytes share a base name) so that each family
        // gets exactly one header.
        let mut merged: BTreeMap<(&'static str, Option<Unit>), Merged> = BTreeMap::new();
        for group in &self.groups {
            for family in group.families.iter() {
                let entry = merged
                    .entry((family.desc.name, family.desc.unit))
                    .or_insert_with(|| (family.desc, Vec::new()));
                debug_assert!(
                    std::ptr::eq(entry.0, family.desc),
                    "two descriptors named {}",
                    family.desc.exposed_name()
                );
                let labels = Group {
                    target: group.target.as_deref(),
                    label: group.label.as_ref().map(|(n, v)| (*n, &**v)),
                };
                entry.1.extend(family.series.iter().map(|s| (labels, s)));
            }
        }
        for (desc, series) in merged.values() {
            if series.is_empty() {
                continue;
            }
            let unit = desc.unit.map(unit);
            let mut metric = encoder.encode_descriptor(
                desc.name,
                desc.help,
                unit.as_ref(),
                metric_type(desc.kind),
            )?;
            for (group, s) in series {
                let labels = SeriesLabels {
                    group,
                    names: desc.labels,
                    values: &s.labels,
                };
                match (&s.value, desc.kind) {
                    (Value::Info, _) => metric.encode_info(&labels)?,
                    (Value::Number(v), Kind::Counter) => {
                        metric
                            .encode_family(&labels)?
                            .encode_counter::<NoLabelSet, f64, f64>(v, None)?
                    }
                    (Value::Number(v), _) => metric.encode_family(&labels)?.encode_gauge(v)?,
                    (Value::Histogram(h), _) => {
                        // prometheus-client writes exactly the buckets it is
                        // given: the +Inf bucket (all observations) must be
                        // one of them, or histogram_quantile() gives NaN.
                        let mut buckets: Vec<(f64, u64)> = h
                            .bounds
                            .iter()
                            .copied()
                            .zip(h.counts.iter().copied())
                            .collect();
                        let finite: u64 = h.counts.iter().sum();
                        buckets.push((f64::INFINITY, h.count.saturating_sub(finite)));
                        metric
                            .encode_family(&labels)?
                            .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::desc;
    use crate::metric::HistogramValue;

    static CONNS: Desc = desc!(Gauge "pg_connections", ["datname", "state"], "Connections.");
    static COMMITS: Desc = desc!(Counter "pg_database_xact_commit", ["datname"], "Commits.");
    static INFO: Desc = desc!(Info "pg_server", ["version"], "Server.");
    static LAT: Desc = desc!(Histogram "pg_statement_latency", unit = Seconds, [], "Latency.");
    static EMPTY: Desc = desc!(Gauge "pg_nothing", [], "Never has series.");

    fn families() -> Vec<Family> {
        let mut conns = Family::new(&CONNS);
        conns.push(&["app\"db", "idle in transaction"], 3.0);
        let mut commits = Family::new(&COMMITS);
        commits.push(&["postgres"], 42.0);
        let mut info = Family::new(&INFO);
        info.push_info(&["15.4"]);
        let mut lat = Family::new(&LAT);
        lat.push_value::<&str>(
            &[],
            Value::Histogram(Box::new(HistogramValue {
                bounds: Arc::from([0.01, 0.1]),
                counts: vec![2, 3],
                count: 6,
                sum: 1.5,
            })),
        );
        vec![conns, commits, info, lat, Family::new(&EMPTY)]
    }

    #[test]
    fn prometheus_text_has_full_names_and_escaped_labels() {
        let out = encode(
            vec![Scoped {
                target: None,
                label: None,
                families: Arc::new(families()),
            }],
            Format::Prometheus,
        );
        let expected = [
            "# HELP pg_connections Connections.",
            "# TYPE pg_connections gauge",
            "pg_connections{datname=\"app\\\"db\",state=\"idle in transaction\"} 3.0",
            "# HELP pg_database_xact_commit_total Commits.",
            "# TYPE pg_database_xact_commit_total counter",
            "pg_database_xact_commit_total{datname=\"postgres\"} 42.0",
            "# HELP pg_server_info Server.",
            "# TYPE pg_server_info gauge",
            "pg_server_info{version=\"15.4\"} 1",
            "# HELP pg_statement_latency_seconds Latency.",
            "# TYPE pg_statement_latency_seconds histogram",
            "pg_statement_latency_seconds_bucket{le=\"0.01\"} 2",
            "pg_statement_latency_seconds_bucket{le=\"0.1\"} 5",
            "pg_statement_latency_seconds_bucket{le=\"+Inf\"} 6",
            "pg_statement_latency_seconds_sum 1.5",
            "pg_statement_latency_seconds_count 6",
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), expected);
        assert!(!out.contains("pg_nothing"));
    }

    #[test]
    fn openmetrics_ends_with_eof_and_declares_units() {
        let out = encode(
            vec![Scoped {
                target: None,
                label: None,
                families: Arc::new(families()),
            }],
            Format::OpenMetrics,
        );
        assert!(out.ends_with("# EOF\n"));
        assert!(out.contains("# UNIT pg_statement_latency_seconds seconds"));
        assert!(out.contains("# TYPE pg_database_xact_commit counter"));
        assert!(out.contains("pg_database_xact_commit_total{datname=\"postgres\"} 42"));
        assert!(out.contains("# TYPE pg_server info"));
        // Cumulative buckets ending with +Inf = count: without it,
        // histogram_quantile() over OpenMetrics scrapes is NaN.
        assert!(
            out.contains("pg_statement_latency_seconds_bucket{le=\"0.1\"} 5"),
            "{out}"
        );
        assert!(
            out.contains("pg_statement_latency_seconds_bucket{le=\"+Inf\"} 6"),
            "{out}"
        );
        assert_eq!(out.matches("le=\"+Inf\"").count(), 1, "{out}");
    }

    #[test]
    fn same_family_from_two_targets_gets_one_header() {
        let groups = vec![
            Scoped {
                target: Some("a".into()),
                label: None,
                families: Arc::new(families()),
            },
            Scoped {
                target: Some("b".into()),
                label: None,
                families: Arc::new(families()),
            },
        ];
        let out = encode(groups, Format::Prometheus);
        assert_eq!(out.matches("# TYPE pg_connections gauge").count(), 1);
        assert!(
            out.contains("pg_database_xact_commit_total{target=\"a\",datname=\"postgres\"} 42.0")
        );
        assert!(
            out.contains("pg_database_xact_commit_total{target=\"b\",datname=\"postgres\"} 42.0")
        );
    }

    /// The exposition of a store of `names`, each target with a collector
    /// that published `families()` and a PgBouncer named "pgbouncer".
    fn exposition_of(names: &[&str]) -> String {
        use crate::snapshot::{Outcome, Store};
        let expected = vec!["x", "pgbouncer"];
        let store = Store::new(
            names
                .iter()
                .map(|n| (n.to_string(), expected.clone()))
                .collect(),
        );
        for name in names {
            store.set_up(name, true);
            let ok = || Outcome::plain(Ok(families().into()), std::time::Duration::ZERO);
            store.record(name, "x", ok());
            let pooled = Outcome {
                label: Some(("pgbouncer", "pgbouncer".into())),
                ..ok()
            };
            store.record(name, "pgbouncer", pooled);
        }
        encode(scoped(&store.view(None)), Format::Prometheus)
    }

    /// A series' identity: its sample line without the value.
    fn identities(text: &str) -> BTreeSet<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').map_or(l, |(id, _)| id))
            .collect()
    }

    #[test]
    fn a_lone_target_is_labelled_and_a_second_one_renames_nothing() {
        let one = exposition_of(&["main"]);
        let alone = identities(&one);
        assert!(alone.len() > 10, "{one}");
        for id in &alone {
            assert!(id.contains("{target=\"main\""), "{id}");
        }
        // The PgBouncer's series carry its name after the target; the others do not.
        for pgbouncer in [",pgbouncer=\"pgbouncer\"", ""] {
            let id = format!(
                "pg_connections{{target=\"main\"{pgbouncer},datname=\"app\\\"db\",state=\"idle in transaction\"}}"
            );
            assert!(alone.contains(id.as_str()), "{id} in {one}");
        }
        // With a second target, the first one's series are all still there, unchanged.
        let two = exposition_of(&["main", "replica"]);
        let both = identities(&two);
        let missing: Vec<_> = alone.difference(&both).collect();
        assert!(
            missing.is_empty(),
            "renamed by a second target: {missing:?}"
        );
        assert!(both.iter().any(|id| id.contains("target=\"replica\"")));
    }

    #[test]
    fn accept_header_picks_the_format() {
        let cases = [
            (None, Format::Prometheus),
            (Some("text/plain"), Format::Prometheus),
            (
                Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
                Format::OpenMetrics,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::from_accept(accept), want, "{accept:?}");
        }
    }
}
