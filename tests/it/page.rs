//! The `/` page as a browser renders it: headless Chromium loads it from a
//! running agent and the test reads the resulting DOM. The page shows the
//! target, its collectors, the top statements with the same p95/p99 as
//! `/api/v1/statements`, and the worker's plan with its finding, and a
//! statement whose text is an HTML injection attempt stays text.

use std::path::Path;
use std::time::Duration;

use crate::harness::data::create_orders;
use crate::harness::{Fixture, RunningAgent, eventually};

/// A quoted identifier survives normalization (constants do not), so the
/// hostile part of the statement is its column alias: quotes, a script
/// element, a backslash and an entity.
pub const HOSTILE_ALIAS: &str = r#"<script>alert('pwn')</script>\ " &amp;"#;

/// Loads `url` in headless Chromium and returns the DOM it built.
pub async fn chromium_dom(url: &str, profile: &Path) -> String {
    let binary = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed to render the / page and was not found: \
                 run scripts/test.sh, which installs Debian's chromium package"
            )
        });
    let run = tokio::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium did not finish within 90 s")
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// The `<tr>…</tr>` of the DOM that contains `needle`.
fn row_with<'a>(dom: &'a str, needle: &str) -> Option<&'a str> {
    let at = dom.find(needle)?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")? + "</tr>".len();
    Some(&dom[start..end])
}

fn millis(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_targets_statements_and_findings_and_escapes_query_texts() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    create_orders(&admin, "n-").await;
    let version: i32 = crate::harness::pg::version_num(&admin).await;
    // Every statement counts as slow, so the worker explains the load at once.
    let config = fx.config(
        "statements = { interval = \"3s\" }\n[explain]\nslow_threshold = \"1us\"\nstatement_timeout = \"10s\"\nmax_per_hour = 1000\n",
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let hostile = format!(
        "SELECT count(*) AS \"{}\" FROM pg_class WHERE relname <> 'x'",
        HOSTILE_ALIAS.replace('"', "\"\"")
    );
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        loop {
            app.batch_execute("SELECT count(*) FROM orders WHERE customer = 4242")
                .await
                .unwrap();
            app.batch_execute(&hostile).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // The worker's plan of the slow statement.
    eventually(
        Duration::from_secs(90),
        "a plan of the orders statement",
        || async {
            let doc: serde_json::Value =
                serde_json::from_str(&agent.get("/api/v1/plans").await.body).ok()?;
            doc["plans"].as_array()?.iter().find(|p| {
                p["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("FROM orders"))
            })?;
            Some(())
        },
    )
    .await;

    // The served page itself: HTML, and no script anywhere.
    let served = agent.get("/").await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(!served.body.contains("<script"), "{}", served.body);

    // The browser's DOM, with the figures of the statements report it was
    // rendered from: the report must not change while the page is loaded.
    let url = format!("http://{}/", agent.addr);
    let profile = tempfile::tempdir().unwrap();
    let (dom, report) = eventually(
        Duration::from_secs(120),
        "a page rendered within one statements interval",
        || async {
            let statements = || async {
                let doc: serde_json::Value =
                    serde_json::from_str(&agent.get("/api/v1/statements").await.body).ok()?;
                let report = doc["targets"][0]["report"].clone();
                report["statements"]
                    .as_array()?
                    .iter()
                    .any(|s| s["query"].as_str().is_some_and(|q| q.contains("alert(")))
                    .then_some(report)
            };
            let before = statements().await?;
            let dom = chromium_dom(&url, profile.path()).await;
            let after = statements().await?;
            (before["collected_at"] == after["collected_at"]).then_some((dom, after))
        },
    )
    .await;
    load.abort();

    // The target, its state and version.
    assert!(
        dom.contains(
            "target <span class=\"name\">main</span>: <span class=\"up\">up</span>, PostgreSQL "
        ),
        "{dom}"
    );
    // Each collector, with its health.
    for collector in [
        "server",
        "connections",
        "databases",
        "statements",
        "explain",
    ] {
        let row = row_with(&dom, &format!("<td>{collector}</td>"))
            .unwrap_or_else(|| panic!("no collector {collector}: {dom}"));
        assert!(row.contains("<span class=\"ok\">ok</span>"), "{row}");
        assert!(row.contains(" ms</td>"), "{row}");
    }
    // The statements with the report's calls, mean, p95 and p99.
    let statements = report["statements"].as_array().unwrap();
    for needle in ["FROM orders", "alert("] {
        let s = statements
            .iter()
            .find(|s| s["query"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in the report: {report}"));
        let row = row_with(&dom, s["queryid"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no row for {needle}: {dom}"));
        let cell =
            |v: &serde_json::Value| format!("<td class=\"n\">{}</td>", millis(v.as_f64().unwrap()));
        for want in [
            format!("<td class=\"n\">{}</td>", s["calls"].as_f64().unwrap()),
            cell(&s["mean_seconds"]),
            cell(&s["quantiles"]["p95"]),
            cell(&s["quantiles"]["p99"]),
        ] {
            assert!(row.contains(&want), "{needle}: {want} not in {row}");
        }
        assert!(
            s["quantiles"]["p99"].as_f64() >= s["quantiles"]["p95"].as_f64(),
            "{s}"
        );
    }
    assert!(dom.contains("<th>p95 ms</th><th>p99 ms</th>"), "{dom}");

    // The hostile text is text: no element was injected, and what the
    // browser shows is exactly the statement's text (the serializer writes
    // `<`, `>` and `&` of a text node as entities, quotes as they are).
    assert!(
        !dom.contains("<script"),
        "a script element was injected: {dom}"
    );
    let shown = HOSTILE_ALIAS
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "\"\"");
    assert!(dom.contains(&shown), "{shown} not in {dom}");

    // The finding (it needs ANALYZE's row counts: 14+) and the plan, as a
    // readable tree in a collapsed <details>.
    if version >= 140000 {
        assert!(
            dom.contains("<span class=\"warning\">[warning]</span> <b>seq_scan_large_filter</b>"),
            "{dom}"
        );
        assert!(
            dom.contains("consider an index on orders (customer)"),
            "{dom}"
        );
    }
    let details = dom
        .split("<details>")
        .skip(1)
        .find(|d| d.contains("Seq Scan on orders"))
        .unwrap_or_else(|| panic!("no plan of orders in a <details>: {dom}"));
    assert!(
        details.starts_with("<summary>plan</summary><pre class=\"plan\">"),
        "{details}"
    );
    assert!(details.contains("Filter: "), "{details}");
    assert!(!agent.log().contains(&fx.password));
}

/// Takes a screenshot of `url` in headless Chromium (PNG).
async fn chromium_screenshot(url: &str, profile: &Path, file: &Path) {
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium did not finish within 90 s")
        .expect("run chromium");
    assert!(
        out.status.success() && file.exists(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pixels of exactly the charts' colour (#1f5fbf) in a PNG.
fn chart_pixels(file: &Path) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(file).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p.len() >= 3 && p[0] == 0x1f && p[1] == 0x5f && p[2] == 0xbf)
        .count()
}

/// The data points of a chart in the DOM (its `<circle class="point">`s).
fn chart_points(dom: &str, id: &str) -> usize {
    let Some(at) = dom.find(&format!("id=\"chart-{id}\"")) else {
        return 0;
    };
    let end = at + dom[at..].find("</figure>").unwrap_or(dom.len() - at);
    dom[at..end].matches("class=\"point\"").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_charts_the_last_hour_and_shows_every_once_section() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE chart_t (id int); INSERT INTO chart_t SELECT generate_series(1, 100)",
        )
        .await
        .unwrap();
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config("statements = { interval = \"1s\" }"),
    )
    .await;
    // Transactions and statements for the charts, until the test ends.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let client = fx.pg.connect_as("chart-workload", "postgres").await;
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client
                    .simple_query("SELECT count(*) FROM chart_t, pg_sleep(0.002)")
                    .await;
            }
        })
    };
    // Load, TPS and p99 need three samples of the ring (5 s apart).
    let url = format!("http://{}/", agent.addr);
    let dom = eventually(
        Duration::from_secs(40),
        "three samples in each chart",
        || {
            let agent = &agent;
            async move {
                let page = agent.get("/").await.body;
                ["database-load", "transactions-per-second", "instance-p99"]
                    .iter()
                    .all(|id| chart_points(&page, id) >= 2)
                    .then_some(page)
            }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.await.unwrap();
    // No replica: the lag chart says it has nothing rather than drawing 0.
    assert_eq!(chart_points(&dom, "replication-lag"), 0);
    assert!(dom.contains("no data yet"));
    // The sections `once --format table` has.
    for want in [
        "<h3>Connections</h3>",
        " usable (",
        "<h3>Databases</h3>",
        "cache hit",
        "Top statements since the last reset",
        "chart_t",
    ] {
        assert!(dom.contains(want), "{want} missing from the page");
    }

    // What a browser draws: the chart colour in the screenshot.
    let dir = fx.pg.scratch();
    let shot = dir.join("page.png");
    chromium_screenshot(&url, &dir.join("chromium-shot"), &shot).await;
    let pixels = chart_pixels(&shot);
    eprintln!("page screenshot: {pixels} chart pixels");
    assert!(
        pixels > 200,
        "the charts are drawn with their points: {pixels} pixels"
    );
    let rendered = chromium_dom(&url, &dir.join("chromium-dom")).await;
    assert!(
        chart_points(&rendered, "database-load") >= 2,
        "Chromium's DOM keeps the SVG"
    );
}
