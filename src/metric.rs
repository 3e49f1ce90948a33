//! The metric data model every collector produces and every output reads.
//!
//! A collector describes each metric family once, statically, with a [`Desc`]
//! (name, help, type, unit, label names); only the families of custom
//! queries, which the config names, get theirs at run time
//! ([`Desc::interned`]). A collection cycle produces
//! [`Family`] values: a descriptor plus its series. Nothing here knows about
//! PostgreSQL or HTTP; [`crate::exposition`] turns families into text, and the
//! metrics reference in `docs/metrics.md` is generated from the descriptors.

use std::sync::Arc;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that can go up and down.
    Gauge,
    /// A monotonic counter; its exposed name gets `_total`.
    Counter,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
    /// Text carried in labels with the value 1; its exposed name gets `_info`.
    Info,
}

impl Kind {
    /// The name used in documentation and `# TYPE` lines of the text format.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge | Kind::Info => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// A base unit, appended to the exposed name (`_seconds`, `_bytes`).
///
/// Ratios are deliberately absent: prometheus-client would write `_ratios`,
/// while our convention (docs/metrics.md) is `_ratio` as part of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// The suffix as it appears in the metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
        }
    }
}

/// The static description of one metric family.
#[derive(Debug)]
pub struct Desc {
    /// The registered name, without unit and without `_total`/`_info`.
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// The metric type.
    pub kind: Kind,
    /// The unit suffix, if any.
    pub unit: Option<Unit>,
    /// Label names, in the order series carry their values.
    pub labels: &'static [&'static str],
    /// When the family is present only under some condition (a replica, an
    /// extension, a privilege), that condition in words; `None` means it is
    /// always present once its collector succeeds.
    pub only_when: Option<&'static str>,
}

impl Desc {
    /// The name as scraped: base, unit suffix, then `_total` or `_info`.
    pub fn exposed_name(&self) -> String {
        let mut name = self.name.to_string();
        if let Some(unit) = self.unit {
            name.push('_');
            name.push_str(unit.as_str());
        }
        match self.kind {
            Kind::Counter => name.push_str("_total"),
            Kind::Info => name.push_str("_info"),
            Kind::Gauge | Kind::Histogram => {}
        }
        name
    }
}

impl Desc {
    /// Every name the family takes in either exposition format: its
    /// family name (the registered name with its unit, which is also what
    /// OpenMetrics calls the family), the exposed name and a histogram's
    /// `_bucket`, `_sum` and `_count`. Two families whose name sets meet
    /// would be one family to Prometheus.
    pub fn names(&self) -> Vec<String> {
        let mut base = self.name.to_string();
        if let Some(unit) = self.unit {
            base.push('_');
            base.push_str(unit.as_str());
        }
        family_names(&base, self.kind)
    }

    /// A descriptor made at run time, for a family the user defines (a
    /// custom query's metric) rather than one pgvigil declares in a
    /// `static`. The rest of pgvigil takes `&'static Desc` and tells
    /// families apart by descriptor identity, so the descriptor is leaked
    /// and interned: the same description always yields the same
    /// reference (a collector rebuilt after a failover, two targets with
    /// the same query, or the config read again leak nothing new), and what
    /// is leaked is bounded by the distinct descriptions configured.
    pub fn interned(name: &str, help: &str, kind: Kind, labels: &[String]) -> &'static Desc {
        static INTERNED: std::sync::Mutex<Vec<&'static Desc>> = std::sync::Mutex::new(Vec::new());
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let same = |d: &&&'static Desc| {
            d.name == name
                && d.help == help
                && d.kind == kind
                && d.labels
                    .iter()
                    .copied()
                    .eq(labels.iter().map(String::as_str))
        };
        if let Some(desc) = interned.iter().find(same) {
            return desc;
        }
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let labels: Vec<&'static str> = labels.iter().map(|l| leak(l)).collect();
        let desc: &'static Desc = Box::leak(Box::new(Desc {
            name: leak(name),
            help: leak(help),
            kind,
            unit: None,
            labels: Box::leak(labels.into_boxed_slice()),
            only_when: None,
        }));
        interned.push(desc);
        desc
    }
}

/// The names a family called `base` (unit included) of type `kind` takes:
/// see [`Desc::names`]. For names that are not yet a [`Desc`] (a custom
/// query's metric being validated).
pub fn family_names(base: &str, kind: Kind) -> Vec<String> {
    let mut names = vec![base.to_string()];
    match kind {
        Kind::Counter => names.push(format!("{base}_total")),
        Kind::Info => names.push(format!("{base}_info")),
        Kind::Histogram => {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{base}{suffix}"));
            }
        }
        Kind::Gauge => {}
    }
    names
}

/// Shorthand for declaring a [`Desc`] in a `static`.
#[macro_export]
macro_rules! desc {
    ($kind:ident $name:literal $(, unit = $unit:ident)?, [$($label:literal),*], $help:literal $(, only_when = $cond:literal)?) => {
        $crate::metric::Desc {
            name: $name,
            help: $help,
            kind: $crate::metric::Kind::$kind,
            unit: $crate::desc!(@unit $($unit)?),
            labels: &[$($label),*],
            only_when: $crate::desc!(@cond $($cond)?),
        }
    };
    (@unit) => { None };
    (@unit $unit:ident) => { Some($crate::metric::Unit::$unit) };
    (@cond) => { None };
    (@cond $cond:literal) => { Some($cond) };
}

/// Cumulative histogram data: per-bucket (not cumulative) counts for the
/// upper bounds in `bounds`, plus the `+Inf` overflow implied by `count`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// Upper bounds in seconds, ascending, finite.
    pub bounds: Arc<[f64]>,
    /// Observations per bucket, same length as `bounds`.
    pub counts: Vec<u64>,
    /// Total number of observations, including those above the last bound.
    pub count: u64,
    /// Sum of all observations.
    pub sum: f64,
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A gauge or counter reading.
    Number(f64),
    /// A histogram.
    Histogram(Box<HistogramValue>),
    /// An info series: its text is in the labels, its value is 1.
    Info,
}

impl Value {
    /// The reading of a gauge or counter; `None` for histograms and info.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Number(v) => Some(*v),
            _ => None,
        }
    }
}

/// One series: label values aligned with [`Desc::labels`] and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label values in the descriptor's label order.
    pub labels: Vec<String>,
    /// The reading.
    pub value: Value,
}

/// A descriptor and the series one collection produced for it.
#[derive(Debug, Clone)]
pub struct Family {
    /// What this family is.
    pub desc: &'static Desc,
    /// Its series; may be empty.
    pub series: Vec<Series>,
}

/// The longest label value we publish; longer free text is cut.
pub const MAX_LABEL_LEN: usize = 200;

/// Cuts a free-text label value to [`MAX_LABEL_LEN`] bytes on a character
/// boundary so that one odd `application_name` cannot bloat every scrape.
pub fn truncate_label(value: &str) -> String {
    if value.len() <= MAX_LABEL_LEN {
        return value.to_string();
    }
    let mut end = MAX_LABEL_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

impl Family {
    /// An empty family for `desc`.
    pub fn new(desc: &'static Desc) -> Family {
        Family {
            desc,
            series: Vec::new(),
        }
    }

    /// A family holding one unlabelled number.
    pub fn single(desc: &'static Desc, value: f64) -> Family {
        let mut family = Family::new(desc);
        family.push::<&str>(&[], value);
        family
    }

    /// Whether this family is the one `desc` describes: the same
    /// descriptor, not merely the same name, so a lookup cannot name a
    /// family that does not exist.
    pub fn is(&self, desc: &'static Desc) -> bool {
        std::ptr::eq(self.desc, desc)
    }

    /// The number of the series with exactly these label values.
    pub fn value(&self, labels: &[&str]) -> Option<f64> {
        self.series
            .iter()
            .find(|s| {
                s.labels
                    .iter()
                    .map(String::as_str)
                    .eq(labels.iter().copied())
            })
            .and_then(|s| s.value.number())
    }

    /// Adds a numeric series (gauge or counter).
    pub fn push<S: AsRef<str>>(&mut self, labels: &[S], value: f64) {
        self.push_value(labels, Value::Number(value));
    }

    /// Adds an info series (value 1).
    pub fn push_info<S: AsRef<str>>(&mut self, labels: &[S]) {
        self.push_value(labels, Value::Info);
    }

    /// Adds a series with any value.
    pub fn push_value<S: AsRef<str>>(&mut self, labels: &[S], value: Value) {
        debug_assert_eq!(
            labels.len(),
            self.desc.labels.len(),
            "label count of {}",
            self.desc.name
        );
        self.series.push(Series {
            labels: labels.iter().map(|l| truncate_label(l.as_ref())).collect(),
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LAG: Desc = desc!(Gauge "pg_replication_lag", unit = Seconds, ["kind"], "Lag.");
    static COMMITS: Desc = desc!(Counter "pg_database_xact_commit", ["datname"], "Commits.");
    static INFO: Desc = desc!(Info "pg_server", ["version"], "Server.", only_when = "always");
    static SPILL: Desc = desc!(Counter "pg_database_temp", unit = Bytes, ["datname"], "Temp.");

    #[test]
    fn exposed_names_add_unit_then_suffix() {
        let cases = [
            (&LAG, "pg_replication_lag_seconds"),
            (&COMMITS, "pg_database_xact_commit_total"),
            (&INFO, "pg_server_info"),
            (&SPILL, "pg_database_temp_bytes_total"),
        ];
        for (desc, want) in cases {
            assert_eq!(desc.exposed_name(), want);
        }
        assert_eq!(INFO.only_when, Some("always"));
    }

    #[test]
    fn a_family_takes_its_base_and_exposed_names() {
        let cases: [(&Desc, &[&str]); 3] = [
            (&LAG, &["pg_replication_lag_seconds"]),
            (
                &COMMITS,
                &["pg_database_xact_commit", "pg_database_xact_commit_total"],
            ),
            (&INFO, &["pg_server", "pg_server_info"]),
        ];
        for (desc, want) in cases {
            assert_eq!(desc.names(), want);
        }
        assert_eq!(
            family_names("pg_statement_latency_seconds", Kind::Histogram),
            [
                "pg_statement_latency_seconds",
                "pg_statement_latency_seconds_bucket",
                "pg_statement_latency_seconds_sum",
                "pg_statement_latency_seconds_count"
            ]
        );
    }

    #[test]
    fn run_time_descriptors_are_interned_by_their_description() {
        let labels = ["region".to_string()];
        let a = Desc::interned("app_orders", "Orders.", Kind::Gauge, &labels);
        let b = Desc::interned("app_orders", "Orders.", Kind::Gauge, &labels);
        assert!(std::ptr::eq(a, b), "the same description leaks once");
        let other_help = Desc::interned("app_orders", "Other.", Kind::Gauge, &labels);
        let counter = Desc::interned("app_orders", "Orders.", Kind::Counter, &labels);
        let unlabelled = Desc::interned("app_orders", "Orders.", Kind::Gauge, &[]);
        for d in [other_help, counter, unlabelled] {
            assert!(!std::ptr::eq(a, d), "{d:?}");
        }
        assert_eq!(a.labels, ["region"]);
        assert_eq!(counter.exposed_name(), "app_orders_total");
        let mut family = Family::new(a);
        family.push(&["eu"], 3.0);
        assert!(family.is(b));
        assert_eq!(family.value(&["eu"]), Some(3.0));
    }

    #[test]
    fn long_labels_are_cut_on_a_char_boundary() {
        let long = "é".repeat(150); // 300 bytes
        let cut = truncate_label(&long);
        assert!(cut.len() <= MAX_LABEL_LEN);
        assert_eq!(cut.chars().count(), 100);
        assert_eq!(truncate_label("short"), "short");
    }
}
