//! Query statistics from pg_stat_statements: per-statement counters, latency
//! histograms and percentiles, with bounded cardinality.
//!
//! Each cycle reads `pg_stat_statements(false)` (no texts), turns two
//! consecutive readings into per-interval deltas with reset detection,
//! keeps the top statements by interval execution time (with hysteresis)
//! and folds the rest into `queryid="other"`. Only the first `histograms`
//! of them (the same ranking) get a latency histogram of their own: one
//! costs 19 series against 9 for everything else a statement has, so this
//! is what keeps a target within the series budget of docs/performance.md.
//! The other statements' calls are in the `"other"` histogram, so
//! `sum by (le)` still covers every call, and every published statement
//! keeps its percentiles in the report. Texts are fetched only for query
//! ids not seen before. pgvigil's own statements are left out and counted
//! in `pgvigil_database_time_seconds_total`.
//!
//! Privilege: pg_monitor (pg_read_all_stats) to see every role's entries
//! and texts. The extension must be installed in the database pgvigil
//! connects to and preloaded.

pub mod delta;
pub mod query;
pub mod report;
mod since_reset;
pub(crate) mod texts;

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use self::delta::{COUNTER_FIELDS, Counters, Interval, interval};
use self::query::{EntryKey, Extension, Reading};
use self::report::{
    InstanceSummary, Method, Quantiles, StatementSummary, StatementsDetail, StatementsReport,
};
use self::texts::Texts;
use super::{CollectError, Collected, Collector, Context, Detail};
use crate::config::Statements as Settings;
use crate::desc;
use crate::metric::{Desc, Family, Value};
use crate::snapshot::unix_now;
use crate::stats::cardinality::{OTHER, TopN};
use crate::stats::histogram::Cumulative;
use crate::stats::latency::{Dist, Mixture, Model, estimate};

static CALLS: Desc = desc!(Counter "pg_stat_statements_calls", ["datname", "usename", "queryid", "fingerprint"], "Executions of the statement.");
static EXEC: Desc = desc!(Counter "pg_stat_statements_exec", unit = Seconds, ["datname", "usename", "queryid", "fingerprint"], "Time spent executing the statement.");
static PLAN: Desc = desc!(Counter "pg_stat_statements_plan", unit = Seconds, ["datname", "usename", "queryid", "fingerprint"], "Time spent planning the statement (0 unless pg_stat_statements.track_planning is on).");
static ROWS: Desc = desc!(Counter "pg_stat_statements_rows", ["datname", "usename", "queryid", "fingerprint"], "Rows returned or affected.");
static HIT: Desc = desc!(Counter "pg_stat_statements_shared_blks_hit", ["datname", "usename", "queryid", "fingerprint"], "Shared buffer hits.");
static READ: Desc = desc!(Counter "pg_stat_statements_shared_blks_read", ["datname", "usename", "queryid", "fingerprint"], "Shared blocks read from disk or the OS cache.");
static TEMP: Desc = desc!(Counter "pg_stat_statements_temp_blks_written", ["datname", "usename", "queryid", "fingerprint"], "Temporary blocks written (work_mem spills).");
static WAL: Desc = desc!(Counter "pg_stat_statements_wal", unit = Bytes, ["datname", "usename", "queryid", "fingerprint"], "WAL generated.");
static LATENCY: Desc = desc!(Histogram "pg_stat_statements_latency", unit = Seconds, ["datname", "usename", "queryid", "fingerprint"],
    "Execution time per call, estimated per interval from pg_stat_statements' moments (see docs/percentiles.md), for the top collectors.statements.histograms (default 20) of the published statements by execution time; the calls of every other statement, published or not, are in queryid=\"other\".",
    only_when = "two cycles have run");
static QUERY_INFO: Desc = desc!(Info "pg_stat_statements_query", ["queryid", "fingerprint", "query"],
    "The normalized text (literals replaced, at most 200 characters) of each published statement.",
    only_when = "a published statement's text parses");
static INSTANCE_LATENCY: Desc = desc!(Histogram "pg_statement_latency", unit = Seconds, [],
    "Execution time per call over all top-level statements of the target, except pgvigil's own.",
    only_when = "two cycles have run");
static OWN_TIME: Desc = desc!(Counter "pgvigil_database_time", unit = Seconds, [],
    "Time PostgreSQL spent executing and planning pgvigil's own statements since the agent started: the cost of being monitored.");
static ENTRIES: Desc =
    desc!(Gauge "pg_stat_statements_entries", [], "Entries in pg_stat_statements.");
static MAX: Desc = desc!(Gauge "pg_stat_statements_max", [], "The pg_stat_statements.max setting; entries beyond it evict the least used.");
static DEALLOC: Desc = desc!(Counter "pg_stat_statements_dealloc", [], "Times entries were evicted to make room (eviction pressure).",
    only_when = "pg_stat_statements 1.9+ (PostgreSQL 14+)");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &CALLS,
    &EXEC,
    &PLAN,
    &ROWS,
    &HIT,
    &READ,
    &TEMP,
    &WAL,
    &LATENCY,
    &QUERY_INFO,
    &INSTANCE_LATENCY,
    &OWN_TIME,
    &ENTRIES,
    &MAX,
    &DEALLOC,
];

/// The counter families, in [`COUNTER_FIELDS`] order.
const COUNTER_DESCS: [&Desc; COUNTER_FIELDS] =
    [&CALLS, &EXEC, &PLAN, &ROWS, &HIT, &READ, &TEMP, &WAL];

/// A statement as published: both toplevel variants of an entry merged.
type StmtKey = (u32, u32, i64);

fn stmt(key: &EntryKey) -> StmtKey {
    (key.dbid, key.userid, key.queryid)
}

/// At most this many texts are fetched ahead of need in one pass (about
/// 250 bytes each are kept).
const MAX_TEXT_PREFETCH: usize = 20_000;

/// Cycles a statement stays published after leaving the top N.
pub const KEEP_CYCLES: u64 = 5;

/// The quantiles published in the report.
const P: [f64; 3] = [0.5, 0.95, 0.99];

struct Previous {
    at: Instant,
    at_unix: f64,
    readings: FxHashMap<EntryKey, Reading>,
    stats_reset: Option<f64>,
}

/// The `statements` collector.
pub struct Statements {
    settings: Settings,
    previous: Option<Previous>,
    /// The `"other"` fold: growth of unpublished statements since the
    /// agent started (pgvigil's own sum, so it starts at 0).
    other: Counters,
    own_seconds: f64,
    membership: TopN<StmtKey>,
    /// The published statements that also have their own histogram.
    histogram_membership: TopN<StmtKey>,
    histograms: FxHashMap<StmtKey, Cumulative>,
    other_histogram: Cumulative,
    instance_histogram: Cumulative,
    texts: Texts,
    log: Option<Arc<std::sync::Mutex<crate::logs::reader::LogReader>>>,
    reports: Option<Arc<ReportSender>>,
}

/// Where each new report goes the moment it is made (the EXPLAIN worker).
pub type ReportSender = tokio::sync::watch::Sender<Option<Arc<StatementsReport>>>;

impl Statements {
    /// Reads the slow-statement log at the end of each interval, for
    /// exact tail quantiles.
    pub fn with_log(
        mut self,
        log: Option<Arc<std::sync::Mutex<crate::logs::reader::LogReader>>>,
    ) -> Statements {
        self.log = log;
        self
    }

    /// Hands every new report to `reports` as well as to the store.
    pub fn with_reports(mut self, reports: Option<Arc<ReportSender>>) -> Statements {
        self.reports = reports;
        self
    }

    /// A collector with no history yet.
    pub fn new(settings: Settings) -> Statements {
        let buckets = settings.buckets.clone();
        Statements {
            membership: TopN::new(settings.top, KEEP_CYCLES),
            histogram_membership: TopN::new(settings.histograms.min(settings.top), KEEP_CYCLES),
            settings,
            previous: None,
            other: Counters::default(),
            own_seconds: 0.0,
            histograms: FxHashMap::default(),
            other_histogram: Cumulative::new(buckets.clone()),
            instance_histogram: Cumulative::new(buckets),
            texts: Texts::default(),
            log: None,
            reports: None,
        }
    }
}

/// One statement's figures for this cycle, both toplevel variants merged.
#[derive(Default)]
struct Merged {
    /// The server's cumulative counters (what is published).
    cumulative: Counters,
    /// Growth since the last cycle, or the cumulative values on the first.
    growth: Counters,
    /// The interval (absent on the first cycle).
    interval: Option<Interval>,
    /// Its estimated latency distribution, when it had calls.
    estimate: Option<Estimate>,
    /// How many pg_stat_statements entries it merges (top-level, nested).
    entries: u8,
    /// Whether one of them is top-level.
    toplevel: bool,
    /// Whether it is pgvigil's own.
    own: bool,
    /// Everything since the entries' last reset (all levels merged).
    since_reset: Option<Interval>,
    /// The same for its top-level entry only (what the instance counts).
    since_reset_toplevel: Option<Interval>,
}

fn quantiles(q: impl Fn(f64) -> f64) -> Quantiles {
    Quantiles {
        p50: q(P[0]),
        p95: q(P[1]),
        p99: q(P[2]),
    }
}

#[async_trait]
impl Collector for Statements {
    fn wants_two_samples(&self) -> bool {
        true
    }

    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let ext: Extension = query::find(cx.client, &cx.caps.database).await?;
        let info = query::info(cx.client, cx.own, &ext).await?;
        let (dbs, roles) = query::names(cx.client).await?;
        let read_started = Instant::now();
        let entries = query::entries(cx.client, cx.own, &ext).await?;
        let now = Instant::now();
        let now_unix = unix_now();
        // The log up to now: complete for the interval, or nothing.
        let logged = self.log.as_ref().and_then(|reader| {
            let since = self.previous.as_ref().map_or(f64::MAX, |p| p.at_unix);
            reader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take_interval(since, now_unix)
        });
        tracing::debug!(
            entries = entries.len(),
            read_ms = (now - read_started).as_secs_f64() * 1e3,
            "read pg_stat_statements"
        );

        // A full reset (pg_stat_statements_reset() without arguments) makes
        // every entry start over, whatever its counts look like.
        let reset_all = self
            .previous
            .as_ref()
            .is_some_and(|p| p.stats_reset != info.stats_reset);
        let mut cycle = self.merge(&entries, reset_all);
        self.fetch_texts(cx, &ext, &mut cycle).await?;
        let (families, report) = self.publish(&cycle, &dbs, &roles, logged.as_ref());
        let since_reset = Arc::new(since_reset::report(
            &cycle,
            |key| self.texts.get(key.2).cloned(),
            &dbs,
            &roles,
            info.stats_reset,
            &self.settings.buckets,
        ));

        let mut families = families;
        families.push(Family::single(&OWN_TIME, self.own_seconds));
        families.push(Family::single(&ENTRIES, entries.len() as f64));
        families.push(Family::single(&MAX, info.max));
        if let Some(dealloc) = info.dealloc {
            families.push(Family::single(&DEALLOC, dealloc));
        }
        let interval = match (&self.previous, report) {
            (Some(p), Some((instance, statements))) => {
                let report = Arc::new(StatementsReport {
                    interval_seconds: now.duration_since(p.at).as_secs_f64(),
                    collected_at: unix_now(),
                    instance,
                    statements,
                });
                if let Some(reports) = &self.reports {
                    reports.send_replace(Some(report.clone()));
                }
                Some(report)
            }
            _ => None,
        };
        let detail = Some(Detail::Statements(StatementsDetail {
            interval,
            since_reset: Some(since_reset),
        }));
        tracing::debug!(
            entries = cycle.merged.len(),
            process_ms = now.elapsed().as_secs_f64() * 1e3,
            "statements cycle processed"
        );
        self.previous = Some(Previous {
            at: now,
            at_unix: now_unix,
            readings: entries.into_iter().collect(),
            stats_reset: info.stats_reset,
        });
        Ok(Collected { families, detail })
    }
}

/// One cycle's view of all statements.
struct Cycle {
    merged: FxHashMap<StmtKey, Merged>,
    /// Statements by interval execution time (cumulative on the first
    /// cycle), largest first.
    by_score: Vec<(StmtKey, f64)>,
    /// Top-level intervals of statements with more than one entry; the
    /// others' merged interval is their top-level one.
    multi_entry: Vec<Interval>,
    /// The statements with most execution time since the last reset,
    /// largest first (at most [`report::SINCE_RESET_TOP`]).
    by_total: Vec<StmtKey>,
}

/// A distribution and its CDF at the histogram bounds, computed once.
struct Estimate {
    dist: Dist,
    cdf: Vec<f64>,
}

impl Statements {
    /// Readings to per-statement growth and intervals.
    fn merge(&self, entries: &[(EntryKey, Reading)], reset_all: bool) -> Cycle {
        let mut merged: FxHashMap<StmtKey, Merged> = FxHashMap::default();
        merged.reserve(entries.len());
        let mut toplevel: Vec<(StmtKey, Interval)> = Vec::new();
        for (key, reading) in entries {
            let m = merged.entry(stmt(key)).or_default();
            m.entries += 1;
            m.cumulative.add(&Counters::from_reading(reading));
            let whole = interval(None, reading, false);
            let merge = |into: &mut Option<Interval>| {
                *into = Some(match into.take() {
                    Some(other) => other.merge(&whole),
                    None => whole,
                });
            };
            merge(&mut m.since_reset);
            if key.toplevel {
                merge(&mut m.since_reset_toplevel);
            }
            match self.previous.as_ref().map(|p| p.readings.get(key)) {
                None => m.growth.add(&Counters::from_reading(reading)),
                Some(prev) => {
                    let iv = interval(prev, reading, reset_all);
                    m.growth.add(&iv.growth);
                    m.toplevel |= key.toplevel;
                    m.interval = Some(match m.interval.take() {
                        Some(other) => other.merge(&iv),
                        None => iv,
                    });
                    if key.toplevel {
                        toplevel.push((stmt(key), iv));
                    }
                }
            }
        }
        let multi_entry = toplevel
            .into_iter()
            .filter(|(k, _)| merged[k].entries > 1)
            .map(|(_, iv)| iv)
            .collect();
        let buckets = &self.settings.buckets;
        for m in merged.values_mut() {
            m.estimate = m
                .interval
                .as_ref()
                .and_then(|iv| estimate(&iv.moments, Model::Auto))
                .map(|dist| {
                    let cdf = dist.cdf_at(buckets);
                    Estimate { dist, cdf }
                });
        }
        let score = |m: &Merged| {
            m.interval
                .as_ref()
                .map_or(m.growth.exec_seconds(), |iv| iv.growth.exec_seconds())
        };
        let mut by_score: Vec<(StmtKey, f64)> =
            merged.iter().map(|(k, m)| (*k, score(m))).collect();
        by_score.sort_by(|a, b| b.1.total_cmp(&a.1));
        let by_total = since_reset::leaders(&merged);
        Cycle {
            merged,
            by_score,
            multi_entry,
            by_total,
        }
    }

    /// Fetches the texts still unknown for our own role's statements (to
    /// tell ours from others') and the likely top statements, marks our
    /// own, then updates the published set.
    async fn fetch_texts(
        &mut self,
        cx: &Context<'_>,
        ext: &Extension,
        cycle: &mut Cycle,
    ) -> Result<(), CollectError> {
        let own_keys: Vec<StmtKey> = cycle
            .merged
            .keys()
            .filter(|k| k.1 == cx.caps.user_oid)
            .copied()
            .collect();
        // Only statements that did something can enter the top; looking up
        // texts for idle ones would re-read the text file every cycle.
        let candidates = cycle
            .by_score
            .iter()
            .filter(|(_, s)| *s > 0.0)
            .take(self.settings.top + own_keys.len())
            .map(|(k, _)| k.2);
        let wanted = self.texts.missing(
            own_keys
                .iter()
                .map(|k| k.2)
                .chain(candidates)
                .chain(cycle.by_total.iter().map(|k| k.2)),
        );
        if !wanted.is_empty() {
            // Reading texts costs a pass over the whole text file however
            // few are asked for, so take every missing one while at it:
            // afterwards only entries created since need another pass.
            let all = self.texts.missing(cycle.merged.keys().map(|k| k.2));
            self.load_texts(
                cx,
                ext,
                if all.len() <= MAX_TEXT_PREFETCH {
                    all
                } else {
                    wanted
                },
            )
            .await?;
        }
        for key in &own_keys {
            let own = self
                .texts
                .get(key.2)
                .is_some_and(|t| cx.own.contains(&t.fingerprint));
            if let Some(m) = cycle.merged.get_mut(key) {
                m.own = own;
            }
        }
        let scores = || {
            cycle
                .by_score
                .iter()
                .filter(|(k, _)| !cycle.merged[k].own)
                .map(|(k, s)| (*k, *s))
        };
        self.membership.update(scores());
        // The same ranking: this cycle's top `histograms` are in its top
        // `top`, and both keep a leaver for as many cycles.
        self.histogram_membership.update(scores());
        // Members that joined from beyond the candidates (a tie) still need theirs.
        let late = self.texts.missing(
            cycle
                .merged
                .keys()
                .filter(|k| self.membership.contains(k))
                .map(|k| k.2),
        );
        if !late.is_empty() {
            self.load_texts(cx, ext, late).await?;
        }
        Ok(())
    }

    async fn load_texts(
        &mut self,
        cx: &Context<'_>,
        ext: &Extension,
        ids: Vec<i64>,
    ) -> Result<(), CollectError> {
        let started = Instant::now();
        let Some(fetched) = query::texts(cx.client, cx.own, ext, &ids).await? else {
            return Ok(());
        };
        self.texts.store(&ids, fetched);
        tracing::debug!(
            texts = ids.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "fetched query texts"
        );
        Ok(())
    }

    /// The `"other"` fold, histograms, the families and, after the first cycle,
    /// the report's instance summary and top statements.
    fn publish(
        &mut self,
        cycle: &Cycle,
        dbs: &HashMap<u32, String>,
        roles: &HashMap<u32, String>,
        logged: Option<&crate::logs::interval::LoggedInterval>,
    ) -> (
        Vec<Family>,
        Option<(InstanceSummary, Vec<StatementSummary>)>,
    ) {
        let first_cycle = self.previous.is_none();
        let mut instance = Mixture::new(self.settings.buckets.clone());
        let mut summaries = Vec::new();
        let mut counters: Vec<Family> = COUNTER_DESCS.iter().map(|d| Family::new(d)).collect();
        let mut latency = Family::new(&LATENCY);
        let mut query_info = Family::new(&QUERY_INFO);
        let mut published_ids = HashSet::new();
        let name = |map: &HashMap<u32, String>, oid: u32| {
            map.get(&oid).cloned().unwrap_or_else(|| oid.to_string())
        };
        let no_durations: Vec<f64> = Vec::new();
        for (key, m) in &cycle.merged {
            if m.own {
                if !first_cycle {
                    self.own_seconds += m.growth.exec_seconds() + m.growth.plan_seconds();
                }
                continue;
            }
            let member = self.membership.contains(key);
            // Names only where they are needed (the top N, or matching the log).
            let named = (member || logged.is_some()).then(|| {
                let text = self
                    .texts
                    .get(key.2)
                    .cloned()
                    .unwrap_or_else(|| texts::TextInfo::from_text(key.2, None));
                let labels = [
                    name(dbs, key.0),
                    name(roles, key.1),
                    key.2.to_string(),
                    text.fingerprint.clone(),
                ];
                (text, labels)
            });
            // The slow executions the log has of this statement, when the
            // log covers the interval and its role's threshold is known.
            let tail = logged.zip(named.as_ref()).and_then(|(l, (text, labels))| {
                let key = (
                    labels[0].clone(),
                    labels[1].clone(),
                    text.fingerprint.clone(),
                );
                Some((
                    l.threshold_for(&key)?,
                    l.by_statement.get(&key).unwrap_or(&no_durations),
                ))
            });
            // Above the log threshold the histogram counts exactly.
            let adjusted = match (&m.interval, &m.estimate, tail) {
                (Some(iv), Some(e), Some((threshold, durations))) if m.entries == 1 => {
                    crate::stats::tail::tail_cdf(
                        &e.cdf,
                        &self.settings.buckets,
                        iv.moments.calls,
                        threshold,
                        durations,
                    )
                }
                _ => None,
            };
            let cdf: &[f64] = adjusted
                .as_deref()
                .or_else(|| m.estimate.as_ref().map(|e| e.cdf.as_slice()))
                .unwrap_or(&[]);
            if let (Some(iv), Some(e)) = (&m.interval, &m.estimate)
                && m.entries == 1
                && m.toplevel
            {
                self.instance_histogram
                    .add_cdf(cdf, iv.moments.calls, iv.moments.total);
                instance.add(iv.moments.calls, e.dist, &e.cdf);
            }
            let Some((text, labels)) = named.filter(|_| member) else {
                // On the first cycle `growth` is the statement's whole
                // past, which no interval of this agent saw.
                if !first_cycle {
                    self.other.add(&m.growth);
                }
                if let Some(iv) = &m.interval
                    && m.estimate.is_some()
                {
                    self.other_histogram
                        .add_cdf(cdf, iv.moments.calls, iv.moments.total);
                }
                continue;
            };
            for (family, value) in counters.iter_mut().zip(m.cumulative.values()) {
                family.push(&labels, value);
            }
            if !first_cycle {
                let buckets = &self.settings.buckets;
                // Without a histogram of its own, a published statement's
                // calls go to "other", so the family still sums to all.
                let own_histogram = self.histogram_membership.contains(key);
                let histogram = match own_histogram {
                    true => self
                        .histograms
                        .entry(*key)
                        .or_insert_with(|| Cumulative::new(buckets.clone())),
                    false => &mut self.other_histogram,
                };
                if let (Some(iv), Some(e)) = (&m.interval, &m.estimate) {
                    histogram.add_cdf(cdf, iv.moments.calls, iv.moments.total);
                    let mut s = summary(&labels, &text, iv, &e.dist);
                    if let Some((_, durations)) = tail.filter(|_| m.entries == 1) {
                        report::apply_exact_tail(
                            &mut s.quantiles,
                            &mut s.method,
                            &mut s.exact_quantiles,
                            iv.moments.calls,
                            durations,
                        );
                    }
                    summaries.push(s);
                }
                if own_histogram {
                    latency.push_value(&labels, Value::Histogram(Box::new(histogram.value())));
                }
            }
            if let Some(q) = &text.query
                && published_ids.insert(key.2)
            {
                query_info.push_info(&[key.2.to_string(), text.fingerprint.clone(), q.clone()]);
            }
        }
        // Statements with several entries (top-level and nested) join the
        // instance with their top-level calls only.
        for iv in &cycle.multi_entry {
            if let Some(dist) = estimate(&iv.moments, Model::Auto) {
                let cdf = dist.cdf_at(&self.settings.buckets);
                self.instance_histogram
                    .add_cdf(&cdf, iv.moments.calls, iv.moments.total);
                instance.add(iv.moments.calls, dist, &cdf);
            }
        }
        // Forget what no longer exists or is no longer published.
        self.histograms.retain(|k, _| {
            self.membership.contains(k)
                && self.histogram_membership.contains(k)
                && cycle.merged.contains_key(k)
        });
        self.texts
            .retain(&cycle.merged.keys().map(|k| k.2).collect());

        let other = [OTHER; 4];
        for (family, value) in counters.iter_mut().zip(self.other.values()) {
            family.push(&other, value);
        }
        let mut families = counters;
        if first_cycle {
            families.push(query_info);
            return (families, None);
        }
        latency.push_value(
            &other,
            Value::Histogram(Box::new(self.other_histogram.value())),
        );
        let mut inst = Family::new(&INSTANCE_LATENCY);
        inst.push_value::<&str>(
            &[],
            Value::Histogram(Box::new(self.instance_histogram.value())),
        );
        families.extend([latency, inst, query_info]);
        summaries.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        let mut inst_summary = instance_summary(&instance);
        if let (Some(l), Some(q)) = (logged, inst_summary.quantiles.as_mut())
            && cycle.multi_entry.is_empty()
        {
            report::apply_exact_tail(
                q,
                &mut inst_summary.method,
                &mut inst_summary.exact_quantiles,
                inst_summary.calls,
                &l.all,
            );
        }
        (families, Some((inst_summary, summaries)))
    }
}

/// The instance-wide part of the report. Its quantiles are exact only if
/// every call took the same time.
fn instance_summary(instance: &Mixture) -> InstanceSummary {
    let calls = instance.weight();
    let total = instance.total();
    InstanceSummary {
        calls,
        total_seconds: total,
        mean_seconds: if calls > 0.0 { total / calls } else { 0.0 },
        quantiles: (calls > 0.0).then(|| quantiles(|p| instance.quantile(p).unwrap_or(0.0))),
        method: if instance.single_value().is_some() {
            Method::Exact
        } else {
            Method::Estimate
        },
        exact_quantiles: Vec::new(),
    }
}

fn summary(
    labels: &[String; 4],
    text: &texts::TextInfo,
    iv: &Interval,
    d: &Dist,
) -> StatementSummary {
    let calls = iv.moments.calls;
    let hits = iv.growth.shared_blks_hit();
    let reads = iv.growth.shared_blks_read();
    StatementSummary {
        datname: labels[0].clone(),
        usename: labels[1].clone(),
        queryid: labels[2].clone(),
        fingerprint: text.fingerprint.clone(),
        query: text.query.clone(),
        calls,
        total_seconds: iv.moments.total,
        mean_seconds: iv.moments.mean(),
        quantiles: quantiles(|p| d.quantile(p)),
        method: if d.is_exact() {
            Method::Exact
        } else {
            Method::Estimate
        },
        exact_quantiles: Vec::new(),
        distribution: d.name(),
        rows_per_call: if calls > 0.0 {
            iv.growth.rows() / calls
        } else {
            0.0
        },
        shared_hit_ratio: (hits + reads > 0.0).then(|| hits / (hits + reads)),
    }
}

/// The SQL this collector sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = query::OWN_SQL;
