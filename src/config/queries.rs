//! `[[target.query]]`: custom queries, from raw to validated, every
//! problem with its key path (`target[0].query[1].sql`).
//!
//! A custom query is the user's SQL run by a monitoring agent with
//! pg_monitor's privileges on a production server, so its SQL passes the
//! same guard as automatic EXPLAIN ANALYZE (`explain/guard.rs`): exactly one
//! SELECT, no data-modifying CTE, no FOR UPDATE/SHARE, no SELECT INTO, no
//! deny-listed function (`pg_sleep`, `dblink`, `pg_advisory_lock`, …).
//! Its metric names must be Prometheus names that promtool accepts, that
//! take no name of pgvigil's own families (the [`Catalogue`] the registry
//! hands down) and no name of another custom metric of the target; a name
//! used by several targets must mean the same family everywhere (type,
//! help and labels), since Prometheus sees one family per name.
//!
//! Not here: running the query (`collect/query.rs`), or the descriptors
//! its families get at run time (`metric::Desc::interned`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::raw::{Interval, QueryMetricType, RawQuery, RawQueryMetric};
use super::{Catalogue, Problem, Query, QueryMetric, Report};
use crate::explain::guard::{self, Verdict};
use crate::metric::{Kind, family_names};

/// Labels pgvigil adds itself (`target`), or that Prometheus reserves for
/// histograms and summaries (`le`, `quantile`).
const RESERVED_LABELS: &[&str] = &["target", "le", "quantile"];

/// Suffixes a gauge or counter name may not end with: `_total` is added
/// to counters by pgvigil (and promtool flags it on a gauge); the others
/// belong to histograms, summaries, OpenMetrics counters and info metrics.
const RESERVED_SUFFIXES: &[&str] = &["_total", "_bucket", "_count", "_sum", "_created", "_info"];

/// What the custom metrics of all targets have taken so far.
pub(super) struct Definitions<'a> {
    catalogue: Catalogue<'a>,
    /// Upper bound and default of a query's timeout: the collector budget.
    budget: Duration,
    /// Exposed and family names, to the first metric defining them, across
    /// targets.
    families: BTreeMap<String, Defined>,
}

/// The first definition of a custom family.
struct Defined {
    path: String,
    target: usize,
    metric: QueryMetric,
    labels: Vec<String>,
}

impl<'a> Definitions<'a> {
    /// No custom metric yet; names are checked against `catalogue`, and
    /// timeouts against the collector `budget` (`collectors.timeout`).
    pub(super) fn new(catalogue: Catalogue<'a>, budget: Duration) -> Definitions<'a> {
        Definitions {
            catalogue,
            budget,
            families: BTreeMap::new(),
        }
    }
}

/// The queries of target `i`; an invalid one is reported and left out.
pub(super) fn validate_queries(
    raw: &[RawQuery],
    i: usize,
    defined: &mut Definitions,
    problems: &mut Vec<Problem>,
) -> Vec<Query> {
    let mut names = BTreeSet::new();
    let mut queries = Vec::new();
    for (j, q) in raw.iter().enumerate() {
        let path = format!("target[{i}].query[{j}]");
        let before = problems.len();
        if check_query_name(&q.name, &path, problems) && !names.insert(q.name.clone()) {
            problems.report(
                format!("{path}.name"),
                format!("{:?} is used by another query of this target", q.name),
            );
        }
        check_sql(&q.sql, &format!("{path}.sql"), problems);
        if q.database.as_deref() == Some("") {
            problems.report(
                format!("{path}.database"),
                "must name a database, or be left out for the target's own",
            );
        }
        let timeout = check_timeout(q.timeout, defined.budget, &path, problems);
        if q.max_series == 0 {
            problems.report(format!("{path}.max_series"), "must be at least 1");
        }
        check_labels(&q.labels, &q.metrics, &path, problems);
        let metrics = validate_metrics(q, i, &path, defined, problems);
        if problems.len() > before {
            continue;
        }
        queries.push(Query {
            name: q.name.clone(),
            database: q.database.clone(),
            interval: match q.interval {
                Interval::Off => None,
                Interval::Every(d) => Some(d),
            },
            timeout,
            sql: q.sql.clone(),
            labels: q.labels.clone(),
            metrics,
            max_series: q.max_series,
        });
    }
    queries
}

/// A query's name becomes part of the `collector` label.
fn check_query_name(name: &str, path: &str, problems: &mut Vec<Problem>) -> bool {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() {
        problems.report(
            format!("{path}.name"),
            "required: names the query's collector, query:<name>",
        );
    } else if !ok {
        problems.report(
            format!("{path}.name"),
            format!("{name:?} must use only letters, digits, '_', '.' and '-'"),
        );
    }
    ok
}

/// The EXPLAIN guard's verdict on the SQL: only a plain SELECT passes.
fn check_sql(sql: &str, path: &str, problems: &mut Vec<Problem>) {
    if sql.trim().is_empty() {
        problems.report(path, "required: one SELECT");
        return;
    }
    let why = match guard::judge(sql) {
        Verdict::Analyze { .. } => {
            if guard::param_count(sql) > 0 {
                Some("has $n placeholders, and a custom query has no parameters".to_string())
            } else {
                None
            }
        }
        Verdict::PlanOnly { reason } | Verdict::Refuse { reason } => Some(reason),
    };
    if let Some(why) = why {
        problems.report(
            path,
            format!("refused: {why}; a custom query must be exactly one read-only SELECT"),
        );
    }
}

/// The query's statement_timeout: its own, or the collector budget; never
/// more, since the query runs within the collector's run.
fn check_timeout(
    timeout: Option<Duration>,
    budget: Duration,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(timeout) = timeout else {
        return budget;
    };
    if timeout.is_zero() {
        problems.report(format!("{path}.timeout"), "must be longer than zero");
    } else if timeout > budget {
        problems.report(
            format!("{path}.timeout"),
            format!(
                "must be at most collectors.timeout ({}): the query runs within its collector's time budget",
                humantime::format_duration(budget)
            ),
        );
    }
    timeout
}

/// Label columns: label names Prometheus and promtool accept, each once,
/// none that pgvigil adds itself, none that is also a metric column.
fn check_labels(
    labels: &[String],
    metrics: &[RawQueryMetric],
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen = BTreeSet::new();
    for (k, label) in labels.iter().enumerate() {
        let at = format!("{path}.labels[{k}]");
        if !snake_case(label) || label.starts_with("__") {
            problems.report(
                at,
                format!(
                    "{label:?} is not a label name: lower-case letters, digits and '_', not starting with a digit or \"__\" (alias the column in SQL)"
                ),
            );
        } else if RESERVED_LABELS.contains(&label.as_str()) {
            problems.report(
                at,
                format!("{label:?} is a label pgvigil or Prometheus sets itself: alias the column in SQL"),
            );
        } else if !seen.insert(label) {
            problems.report(at, format!("{label:?} is listed twice"));
        } else if metrics.iter().any(|m| m.column == *label) {
            problems.report(
                at,
                format!("{label:?} is also a metric column: a column is a label or a value"),
            );
        }
    }
}

/// The metrics of one query, with their names checked against pgvigil's
/// families and every other custom metric.
fn validate_metrics(
    q: &RawQuery,
    i: usize,
    path: &str,
    defined: &mut Definitions,
    problems: &mut Vec<Problem>,
) -> Vec<QueryMetric> {
    if q.metrics.is_empty() {
        problems.report(
            format!("{path}.metrics"),
            "required: at least one { column, name } to publish",
        );
    }
    let mut metrics = Vec::new();
    for (k, m) in q.metrics.iter().enumerate() {
        let at = format!("{path}.metrics[{k}]");
        if m.column.is_empty() {
            problems.report(
                format!("{at}.column"),
                "required: the column holding the value",
            );
        }
        let kind = match m.kind {
            QueryMetricType::Gauge => Kind::Gauge,
            QueryMetricType::Counter => Kind::Counter,
        };
        let help = if m.help.trim().is_empty() {
            format!("Column {} of custom query {}.", m.column, q.name)
        } else {
            m.help.clone()
        };
        let metric = QueryMetric {
            column: m.column.clone(),
            name: m.name.clone(),
            kind,
            help,
        };
        if check_metric_name(&m.name, kind, &format!("{at}.name"), problems) {
            define(&metric, &q.labels, i, &at, defined, problems);
        }
        metrics.push(metric);
    }
    metrics
}

/// A metric name Prometheus accepts and promtool does not flag.
fn check_metric_name(name: &str, kind: Kind, path: &str, problems: &mut Vec<Problem>) -> bool {
    if name.is_empty() {
        problems.report(path, "required: the metric's name");
        return false;
    }
    if !snake_case(name) {
        problems.report(
            path,
            format!(
                "{name:?} is not a metric name: lower-case letters, digits and '_', not starting with a digit"
            ),
        );
        return false;
    }
    if let Some(suffix) = RESERVED_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        let why = if *suffix == "_total" && kind == Kind::Counter {
            format!(
                "pgvigil appends _total to counters: write {:?}",
                name.trim_end_matches("_total")
            )
        } else {
            format!("{suffix} is reserved for other metric types")
        };
        problems.report(path, format!("{name:?}: {why}"));
        return false;
    }
    true
}

/// Records a custom family, or reports the name it would share.
fn define(
    metric: &QueryMetric,
    labels: &[String],
    target: usize,
    path: &str,
    defined: &mut Definitions,
    problems: &mut Vec<Problem>,
) {
    let names = family_names(&metric.name, metric.kind);
    if let Some(taken) = names.iter().find(|n| (defined.catalogue)(n)) {
        problems.report(
            format!("{path}.name"),
            format!(
                "{taken} is one of pgvigil's own metrics (docs/metrics.md): choose another name"
            ),
        );
        return;
    }
    for name in &names {
        let Some(first) = defined.families.get(name) else {
            continue;
        };
        let same = first.metric.name == metric.name
            && first.metric.kind == metric.kind
            && first.metric.help == metric.help
            && first.labels == labels;
        let why = if first.target == target {
            format!("{name} is already published by {}", first.path)
        } else if !same {
            format!(
                "{name} is also defined by {} with another type, help or labels: Prometheus sees one family per name",
                first.path
            )
        } else {
            // The same family from another target: its series differ by
            // their target label.
            return;
        };
        problems.report(format!("{path}.name"), why);
        return;
    }
    for name in names {
        defined.families.insert(
            name,
            Defined {
                path: path.to_string(),
                target,
                metric: metric.clone(),
                labels: labels.to_vec(),
            },
        );
    }
}

/// Lower-case snake_case: what Prometheus accepts as a metric or label
/// name (`[a-zA-Z_][a-zA-Z0-9_]*`, colons being for recording rules) less
/// the capitals promtool flags as camelCase.
fn snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, ConfigError, Environment};
    use crate::metric::Kind;

    const TARGET: &str = "[[target]]\ndsn = 'host=h user=u'\n";

    /// pgvigil's own families, as far as these tests need them.
    fn catalogue(name: &str) -> bool {
        [
            "pg_up",
            "pg_database_xact_commit",
            "pg_database_xact_commit_total",
        ]
        .contains(&name)
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        let var = |_: &str| None;
        match Config::parse_with(text, "t", &Environment { var: &var }, &catalogue) {
            Ok(config) => Ok(config),
            Err(ConfigError::Invalid { problems, .. }) => {
                Err(problems.iter().map(|p| p.to_string()).collect())
            }
            Err(e) => Err(vec![e.to_string()]),
        }
    }

    /// A target with one query whose keys are `keys`.
    fn query(keys: &str) -> String {
        format!("{TARGET}[[target.query]]\n{keys}\n")
    }

    const METRIC: &str = "metrics = [{ column = 'n', name = 'app_orders' }]";

    #[test]
    fn a_query_gets_every_default() {
        let text = query(&format!(
            "name = 'orders'\nsql = 'SELECT count(*) AS n FROM orders'\n{METRIC}"
        ));
        let config = parse(&text).unwrap();
        let q = &config.targets[0].queries[0];
        assert_eq!(q.name, "orders");
        assert_eq!(q.database, None);
        assert_eq!(q.interval, Some(Duration::from_secs(60)));
        assert_eq!(q.timeout, config.collectors.timeout, "the collector budget");
        assert_eq!(q.max_series, 1000);
        assert!(q.labels.is_empty());
        let m = &q.metrics[0];
        assert_eq!(
            (m.column.as_str(), m.name.as_str(), m.kind),
            ("n", "app_orders", Kind::Gauge)
        );
        assert_eq!(m.help, "Column n of custom query orders.");
    }

    #[test]
    fn every_key_is_read() {
        let text = query(
            "name = 'pending'\ndatabase = 'app'\ninterval = 'off'\ntimeout = '2s'\nmax_series = 5\n\
             sql = \"SELECT region, count(*) AS n, sum(total) AS t FROM orders GROUP BY region\"\n\
             labels = ['region']\n\
             metrics = [{ column = 'n', name = 'app_pending', help = 'Pending.' }, \
                        { column = 't', name = 'app_shipped', type = 'counter' }]",
        );
        let config = parse(&text).unwrap();
        let q = &config.targets[0].queries[0];
        assert_eq!(q.database.as_deref(), Some("app"));
        assert_eq!(q.interval, None, "off");
        assert_eq!(q.timeout, Duration::from_secs(2));
        assert_eq!(q.max_series, 5);
        assert_eq!(q.labels, ["region"]);
        assert_eq!(q.metrics[0].help, "Pending.");
        assert_eq!(q.metrics[1].kind, Kind::Counter);
    }

    #[test]
    fn the_guard_refuses_anything_but_one_plain_select() {
        let cases = [
            ("INSERT INTO orders VALUES (1)", "INSERT would modify data"),
            (
                "WITH gone AS (DELETE FROM orders RETURNING 1) SELECT count(*) AS n FROM gone",
                "a data-modifying CTE (DELETE)",
            ),
            (
                "SELECT count(*) AS n FROM orders FOR UPDATE",
                "FOR UPDATE/SHARE locks rows",
            ),
            ("SELECT pg_sleep(1)::int AS n", "calls pg_sleep()"),
            (
                "SELECT pg_advisory_lock(1)::int AS n",
                "calls pg_advisory_lock()",
            ),
            (
                "SELECT * INTO copy FROM orders",
                "SELECT INTO creates a table",
            ),
            ("SELECT 1 AS n; SELECT 2 AS n", "more than one statement"),
            ("VACUUM orders", "VACUUM is not a query"),
            (
                "SELECT count(*) AS n FROM orders WHERE id = $1",
                "has $n placeholders",
            ),
            ("SELEC 1", "the statement does not parse"),
        ];
        for (sql, why) in cases {
            let text = query(&format!("name = 'q'\nsql = \"{sql}\"\n{METRIC}"));
            let got = parse(&text).unwrap_err();
            let want = format!("target[0].query[0].sql: refused: {why}");
            assert!(
                got.iter().any(|g| g.starts_with(&want)),
                "{sql}: want {want:?}, got {got:#?}"
            );
        }
        let got = parse(&query(&format!("name = 'q'\n{METRIC}"))).unwrap_err();
        assert_eq!(got, ["target[0].query[0].sql: required: one SELECT"]);
    }

    #[test]
    fn metric_names_must_be_free_and_what_promtool_accepts() {
        let cases = [
            ("name = 'AppOrders'", "\"AppOrders\" is not a metric name"),
            ("name = 'app:orders'", "\"app:orders\" is not a metric name"),
            ("name = '9orders'", "\"9orders\" is not a metric name"),
            ("name = ''", "required: the metric's name"),
            (
                "name = 'app_orders_total'",
                "\"app_orders_total\": _total is reserved",
            ),
            (
                "name = 'app_orders_total', type = 'counter'",
                "\"app_orders_total\": pgvigil appends _total to counters: write \"app_orders\"",
            ),
            (
                "name = 'app_latency_bucket'",
                "\"app_latency_bucket\": _bucket is reserved",
            ),
            ("name = 'pg_up'", "pg_up is one of pgvigil's own metrics"),
            (
                "name = 'pg_database_xact_commit'",
                "pg_database_xact_commit is one of pgvigil's own metrics",
            ),
        ];
        for (keys, why) in cases {
            let text = query(&format!(
                "name = 'q'\nsql = 'SELECT 1 AS n'\nmetrics = [{{ column = 'n', {keys} }}]"
            ));
            let got = parse(&text).unwrap_err();
            let want = format!("target[0].query[0].metrics[0].name: {why}");
            assert!(
                got.iter().any(|g| g.starts_with(&want)),
                "{keys}: want {want:?}, got {got:#?}"
            );
        }
        let text = query(
            "name = 'q'\nsql = 'SELECT 1 AS n'\nmetrics = [{ column = 'n', name = 'x', type = 'histogram' }]",
        );
        let got = parse(&text).unwrap_err();
        assert!(
            got[0].starts_with("target[0].query[0].metrics[0].type: unknown variant `histogram`"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_family_name_means_one_family() {
        let q = |target: &str, name: &str, metrics: &str| {
            format!(
                "[[target]]\nname = '{target}'\ndsn = 'host=h user=u'\n[[target.query]]\nname = '{name}'\nsql = 'SELECT 1 AS n'\nmetrics = [{metrics}]\n"
            )
        };
        let gauge = "{ column = 'n', name = 'app_orders' }";
        let counter = "{ column = 'n', name = 'app_orders', type = 'counter' }";
        // Twice in one target: refused, whichever query.
        let got = parse(&format!("{}{}", q("a", "one", gauge), "[[target.query]]\nname = 'two'\nsql = 'SELECT 1 AS n'\nmetrics = [{ column = 'n', name = 'app_orders' }]\n")).unwrap_err();
        assert_eq!(
            got,
            [
                "target[0].query[1].metrics[0].name: app_orders is already published by target[0].query[0].metrics[0]"
            ]
        );
        let got = parse(&q("a", "one", &format!("{gauge}, {gauge}"))).unwrap_err();
        assert_eq!(
            got,
            [
                "target[0].query[0].metrics[1].name: app_orders is already published by target[0].query[0].metrics[0]"
            ]
        );
        // The same family from two targets: one family, two series sets.
        let config = parse(&format!("{}{}", q("a", "one", gauge), q("b", "one", gauge))).unwrap();
        assert_eq!(
            config.targets[1].queries[0].metrics,
            config.targets[0].queries[0].metrics
        );
        // Another type under the same name: refused.
        let got = parse(&format!(
            "{}{}",
            q("a", "one", gauge),
            q("b", "one", counter)
        ))
        .unwrap_err();
        assert_eq!(
            got,
            [
                "target[1].query[0].metrics[0].name: app_orders is also defined by target[0].query[0].metrics[0] with another type, help or labels: Prometheus sees one family per name"
            ]
        );
    }

    #[test]
    fn labels_and_the_rest_name_their_key() {
        let cases = [
            (
                "labels = ['target']",
                "labels[0]: \"target\" is a label pgvigil or Prometheus sets itself",
            ),
            (
                "labels = ['le']",
                "labels[0]: \"le\" is a label pgvigil or Prometheus sets itself",
            ),
            (
                "labels = ['Region']",
                "labels[0]: \"Region\" is not a label name",
            ),
            (
                "labels = ['__name']",
                "labels[0]: \"__name\" is not a label name",
            ),
            ("labels = ['r', 'r']", "labels[1]: \"r\" is listed twice"),
            ("labels = ['n']", "labels[0]: \"n\" is also a metric column"),
            (
                "timeout = '11s'",
                "timeout: must be at most collectors.timeout (10s)",
            ),
            ("timeout = '0s'", "timeout: must be longer than zero"),
            ("max_series = 0", "max_series: must be at least 1"),
            ("database = ''", "database: must name a database"),
            ("interval = 'soon'", "interval: invalid interval"),
            ("colour = 'red'", "colour: unknown field `colour`"),
        ];
        for (keys, why) in cases {
            let text = query(&format!(
                "name = 'q'\nsql = 'SELECT 1 AS n'\n{METRIC}\n{keys}"
            ));
            let got = parse(&text).unwrap_err();
            let want = format!("target[0].query[0].{why}");
            assert!(
                got.iter().any(|g| g.starts_with(&want)),
                "{keys}: want {want:?}, got {got:#?}"
            );
        }
        let got = parse(&query("sql = 'SELECT 1 AS n'")).unwrap_err();
        assert_eq!(
            got,
            [
                "target[0].query[0].name: required: names the query's collector, query:<name>",
                "target[0].query[0].metrics: required: at least one { column, name } to publish",
            ]
        );
        let twice = format!(
            "{}[[target.query]]\nname = 'q'\nsql = 'SELECT 1 AS m'\nmetrics = [{{ column = 'm', name = 'app_m' }}]\n",
            query(&format!("name = 'q'\nsql = 'SELECT 1 AS n'\n{METRIC}"))
        );
        assert_eq!(
            parse(&twice).unwrap_err(),
            ["target[0].query[1].name: \"q\" is used by another query of this target"]
        );
    }

    #[test]
    fn a_bad_dsn_does_not_hide_a_refused_query() {
        let text = format!(
            "[[target]]\ndsn = 'host=h port=x'\n[[target.query]]\nname = 'q'\nsql = 'DELETE FROM t'\n{METRIC}\n"
        );
        let got = parse(&text).unwrap_err();
        assert!(
            got.iter().any(|g| g.starts_with("target[0].dsn:")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("target[0].query[0].sql: refused: DELETE")),
            "{got:#?}"
        );
    }
}
