//! A parser for Prometheus text 0.0.4, enough to assert on samples.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (with `_total`, `_bucket`…).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Samples in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` lines: family name to type.
    pub types: BTreeMap<String, String>,
}

fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find('=').expect("label without '='");
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        assert_eq!(
            chars.next().map(|c| c.1),
            Some('"'),
            "label value must be quoted: {text}"
        );
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|c| c.1) {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        rest = &rest[end.expect("unterminated label value")..];
    }
}

impl Metrics {
    /// Parses a scrape; panics on lines it cannot read (a test failure).
    pub fn parse(text: &str) -> Metrics {
        let mut metrics = Metrics::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    metrics.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("sample line");
            let name = line[..name_end].to_string();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end + 1..])
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value = rest.split_whitespace().next().expect("sample value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            metrics.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        metrics
    }

    /// Samples of `name` whose labels include all of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample matching, if exactly one matches.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.find(name, labels);
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "more than one {name} sample matches {labels:?}"
        );
        Some(first.value)
    }

    /// The sum over all matching samples (`None` when none match).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let values: Vec<f64> = self.find(name, labels).map(|s| s.value).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Names of all families in the scrape (from `# TYPE`).
    pub fn family_names(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }
}

#[test]
fn parses_labels_with_escapes() {
    let m = Metrics::parse("# TYPE a gauge\na{x=\"q\\\"t\",y=\"n\\nl\"} 1.5\nb 2\n");
    assert_eq!(m.get("a", &[("x", "q\"t"), ("y", "n\nl")]), Some(1.5));
    assert_eq!(m.get("b", &[]), Some(2.0));
    assert_eq!(m.family_names(), ["a"]);
}

/// What Prometheus' `increase()` makes of a counter's samples, without
/// extrapolation: the sum of the rises, where a fall is a counter reset
/// after which the new value is all growth.
pub fn increase(samples: &[f64]) -> f64 {
    samples
        .windows(2)
        .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
        .sum()
}

#[test]
fn increase_reads_a_fall_as_a_reset() {
    assert_eq!(increase(&[]), 0.0);
    assert_eq!(increase(&[5.0]), 0.0);
    assert_eq!(increase(&[1.0, 1001.0, 0.0, 500.0, 500.0, 800.0]), 1800.0);
    assert_eq!(increase(&[10.0, 4.0]), 4.0);
}
