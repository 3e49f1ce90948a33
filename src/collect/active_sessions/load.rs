//! What the samples add up to: the bounded per-database counters of
//! `pg_active_session_seconds_total`, and a sliding window of recent
//! samples per statement for the load-by-wait-event breakdowns. Pure: the
//! collector feeds it samples and their weights.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::stats::cardinality::OTHER;

/// Databases with a `datname` of their own; later ones fold into
/// `datname="other"`. A database keeps its label once it has one (counters
/// must not move between series), so the first ones seen win.
pub const MAX_DATABASES: usize = 10;

/// At most this many (datname, wait_event_type, wait_event) series of
/// their own; past it a new combination is counted in `datname="other",
/// wait_event="other"` of its wait event type, so the family stays under
/// `MAX_SERIES` plus one series per wait event type (eleven on 18): 71
/// series at worst, inside the series budget (docs/performance.md).
pub const MAX_SERIES: usize = 60;

/// How much recent history the per-statement breakdown covers.
pub const WINDOW: Duration = Duration::from_secs(300);

/// One group of sampled sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The database ("" for none).
    pub datname: String,
    /// `wait_event_type`, "CPU" when none.
    pub wait_event_type: String,
    /// `wait_event`, "CPU" when none.
    pub wait_event: String,
    /// The statement (14+, when query ids are computed).
    pub query_id: Option<i64>,
    /// Sessions in this group.
    pub sessions: f64,
}

/// Counters of sampled active-session seconds, with bounded labels.
#[derive(Debug, Default)]
pub struct Counters {
    databases: Vec<String>,
    seconds: BTreeMap<[String; 3], f64>,
}

impl Counters {
    /// Adds `weight` seconds for every session of `groups`.
    pub fn add(&mut self, groups: &[Group], weight: f64) {
        for g in groups {
            let key = self.key(g);
            *self.seconds.entry(key).or_default() += g.sessions * weight;
        }
    }

    /// The series label values for a group: its database's own label or
    /// "other", its wait event or "other" once the family is full.
    fn key(&mut self, g: &Group) -> [String; 3] {
        let datname = if self.databases.contains(&g.datname) {
            g.datname.clone()
        } else if self.databases.len() < MAX_DATABASES {
            self.databases.push(g.datname.clone());
            g.datname.clone()
        } else {
            OTHER.to_string()
        };
        let key = [datname, g.wait_event_type.clone(), g.wait_event.clone()];
        if self.seconds.contains_key(&key) || self.seconds.len() < MAX_SERIES {
            key
        } else {
            let [_, kind, _] = key;
            [OTHER.to_string(), kind, OTHER.to_string()]
        }
    }

    /// Every series: labels and accumulated seconds.
    pub fn series(&self) -> impl Iterator<Item = (&[String; 3], f64)> {
        self.seconds.iter().map(|(k, v)| (k, *v))
    }
}

/// The key of the window's sums: statement (if known) and wait event.
type WaitKey = (Option<i64>, String, String);

/// One sample in the window: when it was taken (seconds on the
/// collector's clock), the time it stands for, its seconds by key.
type Sample = (f64, f64, Vec<(WaitKey, f64)>);

/// Recent samples and their sums, per statement and wait event.
#[derive(Debug, Default)]
pub struct Window {
    /// The samples, oldest first.
    samples: VecDeque<Sample>,
    sums: HashMap<WaitKey, f64>,
    /// Wall time the samples in the window stand for.
    covered: f64,
}

impl Window {
    /// Adds a sample taken at `at` (seconds on the collector's clock)
    /// standing for `weight` seconds, and drops samples older than
    /// [`WINDOW`].
    pub fn add(&mut self, at: f64, groups: &[Group], weight: f64) {
        let mut entries: HashMap<WaitKey, f64> = HashMap::new();
        for g in groups {
            let key = (g.query_id, g.wait_event_type.clone(), g.wait_event.clone());
            *entries.entry(key).or_default() += g.sessions * weight;
        }
        let entries: Vec<(WaitKey, f64)> = entries.into_iter().collect();
        for (key, seconds) in &entries {
            *self.sums.entry(key.clone()).or_default() += seconds;
        }
        self.samples.push_back((at, weight, entries));
        self.covered += weight;
        while let Some((oldest, _, _)) = self.samples.front() {
            if at - oldest < WINDOW.as_secs_f64() {
                break;
            }
            let (_, weight, entries) = self.samples.pop_front().expect("a front sample");
            self.covered -= weight;
            for (key, seconds) in entries {
                if let Some(sum) = self.sums.get_mut(&key) {
                    *sum -= seconds;
                    if *sum <= 1e-9 {
                        self.sums.remove(&key);
                    }
                }
            }
        }
    }

    /// Wall time the window covers, seconds.
    pub fn covered(&self) -> f64 {
        self.covered
    }

    /// Seconds per (statement, wait_event_type, wait_event) in the window.
    pub fn sums(&self) -> impl Iterator<Item = (&WaitKey, f64)> {
        self.sums.iter().map(|(k, v)| (k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(datname: &str, kind: &str, event: &str, query_id: Option<i64>, n: f64) -> Group {
        Group {
            datname: datname.into(),
            wait_event_type: kind.into(),
            wait_event: event.into(),
            query_id,
            sessions: n,
        }
    }

    #[test]
    fn sessions_times_weight_accumulate() {
        let mut c = Counters::default();
        let lock = group("app", "Lock", "relation", None, 4.0);
        for _ in 0..20 {
            c.add(std::slice::from_ref(&lock), 1.0);
        }
        let series: Vec<_> = c.series().collect();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].1, 80.0);
    }

    #[test]
    fn databases_past_the_cap_fold_and_keep_their_wait_events() {
        let mut c = Counters::default();
        for i in 0..MAX_DATABASES + 5 {
            c.add(&[group(&format!("db{i}"), "CPU", "CPU", None, 1.0)], 1.0);
        }
        let other: f64 = c
            .series()
            .filter(|(k, _)| k[0] == OTHER)
            .map(|(k, v)| {
                assert_eq!(k[1..], ["CPU", "CPU"]);
                v
            })
            .sum();
        assert_eq!(other, 5.0);
        assert_eq!(c.series().count(), MAX_DATABASES + 1);
    }

    #[test]
    fn the_family_stays_bounded_and_keeps_every_second() {
        let mut c = Counters::default();
        for i in 0..MAX_SERIES * 3 {
            c.add(
                &[group(
                    &format!("db{}", i % 30),
                    "IO",
                    &format!("Event{i}"),
                    None,
                    1.0,
                )],
                1.0,
            );
        }
        assert_eq!(c.series().count(), MAX_SERIES + 1);
        let folded = c
            .series()
            .filter(|(k, _)| k[1] == "IO" && k[0] == OTHER && k[2] == OTHER);
        assert_eq!(folded.count(), 1);
        let total: f64 = c.series().map(|(_, v)| v).sum();
        assert_eq!(total, (MAX_SERIES * 3) as f64);
    }

    #[test]
    fn the_window_forgets_old_samples() {
        let mut w = Window::default();
        let read = group("app", "IO", "DataFileRead", Some(7), 2.0);
        for t in 0..10 {
            w.add(t as f64, std::slice::from_ref(&read), 1.0);
        }
        let cpu = group("app", "CPU", "CPU", Some(7), 1.0);
        let end = WINDOW.as_secs_f64() + 20.0;
        w.add(end, &[cpu], 1.0);
        let sums: Vec<_> = w.sums().collect();
        assert_eq!(sums.len(), 1, "{sums:?}");
        assert_eq!(sums[0].0.1, "CPU");
        assert_eq!(w.covered(), 1.0);
    }
}
