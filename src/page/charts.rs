//! The last hour as small inline SVG charts: database load, transactions
//! per second, instance p99 and replication lag, from [`History`]. No
//! JavaScript, no external assets: a polyline and a dot per sample.

use std::fmt::Write as _;

use super::escape;
use crate::history::{History, Point};

const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 90.0;
const PAD: f64 = 4.0;

/// A chart's title, unit, the value it plots and the scale to that unit.
type Series = (&'static str, &'static str, fn(&Point) -> Option<f64>, f64);

/// The four charts of one target.
pub fn section(target: &str, history: &History, out: &mut String) {
    let points = history.points(target);
    out.push_str("<h3>The last hour</h3><div class=\"charts\">\n");
    let series: [Series; 4] = [
        ("database load", "sessions", |p| p.load, 1.0),
        ("transactions per second", "tx/s", |p| p.tps, 1.0),
        ("instance p99", "ms", |p| p.p99, 1000.0),
        ("replication lag", "s", |p| p.lag, 1.0),
    ];
    for (title, unit, get, scale) in series {
        let values: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| get(p).map(|v| (p.at, v * scale)))
            .collect();
        chart(title, unit, &values, out);
    }
    out.push_str("</div>\n");
}

/// One chart: `values` are (Unix seconds, value), oldest first.
pub fn chart(title: &str, unit: &str, values: &[(f64, f64)], out: &mut String) {
    let slug: String = title
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"chart-{slug}\"><figcaption>{}",
        escape(title)
    );
    let Some(&(_, last)) = values.last() else {
        let _ = writeln!(
            out,
            " <span class=\"muted\">(no data yet)</span></figcaption></figure>"
        );
        return;
    };
    let max = values.iter().map(|v| v.1).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let (t0, t1) = (values[0].0, values[values.len() - 1].0);
    let span = (t1 - t0).max(1.0);
    let x = |t: f64| PAD + (t - t0) / span * (WIDTH - 2.0 * PAD);
    let y = |v: f64| HEIGHT - PAD - v / top * (HEIGHT - 2.0 * PAD);
    let _ = write!(
        out,
        ": {} {} <span class=\"muted\">(max {} over {:.0} min)</span></figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fafafa\" stroke=\"#ddd\"/>",
        number(last),
        escape(unit),
        number(max),
        span / 60.0,
        escape(title),
    );
    let line: Vec<String> = values
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"{}\"/>",
        line.join(" ")
    );
    for (t, v) in values {
        let _ = write!(
            out,
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#1f5fbf\"/>",
            x(*t),
            y(*v)
        );
    }
    out.push_str("</svg></figure>\n");
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_dot_per_sample_and_says_when_it_has_none() {
        let mut out = String::new();
        chart(
            "load",
            "sessions",
            &[(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)],
            &mut out,
        );
        assert_eq!(out.matches("<circle class=\"point\"").count(), 3);
        assert!(out.contains(": 2.0 sessions"), "{out}");
        assert!(out.contains("max 3.0"), "{out}");
        let mut empty = String::new();
        chart("lag", "s", &[], &mut empty);
        assert!(empty.contains("no data yet") && !empty.contains("<svg"));
    }
}
