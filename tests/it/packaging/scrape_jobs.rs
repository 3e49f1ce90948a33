//! The scrape job names that pgvigil's own deployment files give Prometheus, against the alert
//! rules' job selector: `PgvigilDown` fires for each of them (promtool), and the Kubernetes
//! PodMonitor names its job instead of leaving the Prometheus Operator's `<namespace>/<name>`.

use std::fmt::Write as _;

use serde_json::Value;

use super::{must, repo, run, str_of, temp_dir, yaml_documents};

/// Any namespace: the manifests leave it to `kubectl apply`.
const NAMESPACE: &str = "databases";

/// The `job` label a relabeling step leaves, given the one before. Only steps that set `job` to
/// a fixed value are modelled; a step that derives it from other labels fails the test rather
/// than being guessed at.
fn relabel_job(job: String, step: &Value, source_key: &str, target_key: &str) -> String {
    if step[target_key] != "job" {
        return job;
    }
    let action = step["action"].as_str().unwrap_or("replace");
    assert!(
        action.eq_ignore_ascii_case("replace") && step[source_key].is_null(),
        "a relabeling of job this test does not model: {step}"
    );
    str_of(&step["replacement"], "replacement").to_string()
}

/// The `job` of a PodMonitor's targets, in the order the Operator's config generator applies:
/// `<namespace>/<PodMonitor name>`, then the pod label named by `jobLabel` when the pod has it,
/// then the endpoint's `relabelings`.
fn podmonitor_job(monitor: &Value, pod_labels: &Value) -> String {
    let name = str_of(&monitor["metadata"]["name"], "metadata.name");
    let mut job = format!("{NAMESPACE}/{name}");
    if let Some(label) = monitor["spec"]["jobLabel"].as_str()
        && let Some(value) = pod_labels[label].as_str().filter(|v| !v.is_empty())
    {
        job = value.to_string();
    }
    let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "one metrics endpoint");
    for step in endpoints[0]["relabelings"].as_array().into_iter().flatten() {
        job = relabel_job(job, step, "sourceLabels", "targetLabel");
    }
    job
}

/// The `job` of a Prometheus scrape config's targets: its `job_name`, then `relabel_configs`.
fn scrape_config_job(config: &Value) -> String {
    let mut job = str_of(&config["job_name"], "job_name").to_string();
    for step in config["relabel_configs"].as_array().into_iter().flatten() {
        job = relabel_job(job, step, "source_labels", "target_label");
    }
    job
}

#[test]
fn pgvigildown_fires_for_the_job_every_shipped_scrape_config_names() {
    // The jobs: the PodMonitor's, as the Operator names it, and each Prometheus example's.
    let sidecar = yaml_documents(&repo("packaging/kubernetes/sidecar.yaml"));
    let monitor = sidecar
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .expect("a PodMonitor");
    let workload = sidecar
        .iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    let pod_labels = &workload["spec"]["template"]["metadata"]["labels"];
    let from_monitor = podmonitor_job(monitor, pod_labels);
    // The first step alone is the Operator's default, which no fixed job selector can expect.
    let unnamed = podmonitor_job(
        &serde_json::json!({
            "metadata": monitor["metadata"],
            "spec": {"podMetricsEndpoints": [{}]},
        }),
        pod_labels,
    );
    assert_eq!(unnamed, format!("{NAMESPACE}/pgvigil"));
    assert_ne!(
        from_monitor, unnamed,
        "the PodMonitor should name its job (jobLabel or a relabeling of job)"
    );
    let mut jobs = vec![("the PodMonitor".to_string(), from_monitor)];
    for file in ["single-target.yml", "multi-target.yml"] {
        let doc = &yaml_documents(&repo(&format!("packaging/prometheus/{file}")))[0];
        for config in doc["scrape_configs"].as_array().unwrap() {
            jobs.push((
                format!("{file} {}", config["job_name"]),
                scrape_config_job(config),
            ));
        }
    }
    assert!(jobs.len() >= 4, "{jobs:?}");

    // A promtool unit test: each job's agent stops answering after 2 minutes; PgvigilDown is
    // pending at 5 minutes and fires at 10, for each, and not for another exporter's job.
    let rules = repo("alerts/pgvigil.rules.yml");
    let mut series = String::new();
    let mut firing = String::new();
    for (i, (_, job)) in jobs.iter().enumerate() {
        let labels = format!("instance=\"agent{i}:9932\", job=\"{job}\"");
        writeln!(
            series,
            "      - series: 'up{{{labels}}}'\n        values: '1 1 0x15'"
        )
        .unwrap();
        writeln!(
            firing,
            "          - labels: 'ALERTS{{alertname=\"PgvigilDown\", alertstate=\"firing\", {labels}, severity=\"critical\"}}'\n            value: 1"
        )
        .unwrap();
    }
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}      - series: 'up{{instance=\"node1:9100\", job=\"node\"}}'\n        values: '0x17'\n    promql_expr_test:\n      - expr: ALERTS{{alertname=\"PgvigilDown\", alertstate=\"firing\"}}\n        eval_time: 5m\n        exp_samples: []\n      - expr: ALERTS{{alertname=\"PgvigilDown\", alertstate=\"firing\"}}\n        eval_time: 10m\n        exp_samples:\n{firing}",
        rules.display()
    );
    let dir = temp_dir();
    let file = dir.path().join("scrape-jobs.yml");
    std::fs::write(&file, &test).unwrap();
    let out = run(
        std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&file),
        "promtool (apt-get install prometheus)",
    );
    let stdout = must(
        out,
        &format!("PgvigilDown for the jobs {jobs:?} (promtool test rules of:\n{test})"),
    );
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}
