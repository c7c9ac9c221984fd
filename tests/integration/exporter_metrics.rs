//! The exporter in-process against the simulator: what reaches /metrics, and when.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    eventually, sample, samples, scenario, test_config, tool_available, TestApp, TestSimulator, DS,
    IS1, IS2,
};

fn two_sets(first_status: &str, timeline: &str) -> String {
    scenario(&format!(
        r#"
[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS1}"
workflow_status = "{first_status}"
created_ago = "2h"
updated_ago = "30m"
{timeline}

[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS2}"
version_id = "3"
workflow_status = "UPDATE_FAILED"
state = "LOCKED"
storage_tier = "ARCHIVE_INSTANT_ACCESS"
is_primary = false
forced = true
message = "Update failed: invalid DICOM tag"
created_ago = "10d"
updated_ago = "1h"
last_accessed_ago = "2h"
"#
    ))
}

async fn start(first_status: &str, timeline: &str) -> (TestSimulator, TestApp) {
    let sim = TestSimulator::start(&two_sets(first_status, timeline)).await;
    let app = TestApp::spawn(test_config(&sim, &[(DS, IS1), (DS, IS2)])).await;
    app.wait_ready().await;
    (sim, app)
}

fn set(is: &'static str) -> [(&'static str, &'static str); 2] {
    [("datastore_id", DS), ("image_set_id", is)]
}

#[tokio::test]
async fn every_property_of_an_image_set_reaches_metrics() {
    let (sim, app) = start("IMPORTED", "").await;
    let text = app.metrics().await;
    let wire = sim.image_set(IS2).await;
    let arn =
        format!("arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}/imageset/{IS2}");
    let with = |extra: (&'static str, &'static str)| {
        let [a, b] = set(IS2);
        vec![a, b, extra]
    };
    let info = [
        ("datastore_id", DS),
        ("image_set_id", IS2),
        ("version_id", "3"),
        ("image_set_arn", arn.as_str()),
        ("is_primary", "false"),
    ];
    assert_eq!(
        sample(&text, "healthimaging_image_set_info", &info),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "healthimaging_image_set_workflow_status",
            &with(("status", "UPDATE_FAILED"))
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "healthimaging_image_set_state",
            &with(("state", "LOCKED"))
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "healthimaging_image_set_storage_tier",
            &with(("tier", "ARCHIVE_INSTANT_ACCESS"))
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "healthimaging_image_set_version", &set(IS2)),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "healthimaging_image_set_forced", &set(IS2)),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "healthimaging_image_set_forced", &set(IS1)),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "healthimaging_image_set_up", &set(IS2)),
        Some(1.0)
    );
    for (metric, field) in [
        (
            "healthimaging_image_set_created_timestamp_seconds",
            "createdAt",
        ),
        (
            "healthimaging_image_set_updated_timestamp_seconds",
            "updatedAt",
        ),
        (
            "healthimaging_image_set_last_accessed_timestamp_seconds",
            "lastAccessedAt",
        ),
        (
            "healthimaging_image_set_status_changed_timestamp_seconds",
            "updatedAt",
        ),
    ] {
        let exported =
            sample(&text, metric, &set(IS2)).unwrap_or_else(|| panic!("{metric} missing"));
        let api = wire[field].as_f64().unwrap();
        assert!(
            (exported - api).abs() < 0.01,
            "{metric}: {exported} vs {field} {api}"
        );
    }
    assert!(sample(
        &text,
        "healthimaging_image_set_deleted_timestamp_seconds",
        &set(IS2)
    )
    .is_none());
    let last_success = sample(
        &text,
        "healthimaging_image_set_last_success_timestamp_seconds",
        &set(IS2),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last_success).abs() < 30.0);
    let agg = [
        ("datastore_id", DS),
        ("workflow_status", "UPDATE_FAILED"),
        ("state", "LOCKED"),
        ("storage_tier", "ARCHIVE_INSTANT_ACCESS"),
    ];
    assert_eq!(sample(&text, "healthimaging_image_sets", &agg), Some(1.0));
    assert_eq!(sample(&text, "healthimaging_targets", &[]), Some(2.0));
    assert!(
        sample(
            &text,
            "healthimaging_api_requests_total",
            &[("operation", "GetImageSet"), ("outcome", "success")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(sample(
        &text,
        "healthimaging_exporter_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    )
    .is_some());
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics are exported"
    );
    assert!(
        !text.contains("invalid DICOM tag"),
        "the API message never becomes a label"
    );
}

#[tokio::test]
async fn timeline_import_failure_is_counted_and_restarts_the_status_clock() {
    let (_sim, app) = start(
        "IMPORTING",
        "[[image_sets.timeline]]\nafter = \"1500ms\"\nworkflow_status = \"IMPORT_FAILED\"\nmessage = \"Import failed: bad DICOM\"",
    )
    .await;
    let before = app.metrics().await;
    let first_seen = sample(
        &before,
        "healthimaging_image_set_status_changed_timestamp_seconds",
        &set(IS1),
    )
    .unwrap();
    let transition = [
        ("datastore_id", DS),
        ("from", "IMPORTING"),
        ("to", "IMPORT_FAILED"),
    ];
    let text = app
        .wait_for("healthimaging_workflow_transitions_total", &transition, 1.0)
        .await;
    assert_eq!(
        sample(
            &text,
            "healthimaging_image_set_workflow_status",
            &[set(IS1)[0], set(IS1)[1], ("status", "IMPORT_FAILED")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "healthimaging_image_set_workflow_status",
            &[set(IS1)[0], set(IS1)[1], ("status", "IMPORTING")]
        )
        .is_none(),
        "one status series per image set"
    );
    let changed = sample(
        &text,
        "healthimaging_image_set_status_changed_timestamp_seconds",
        &set(IS1),
    )
    .unwrap();
    assert!(
        changed > first_seen + 60.0,
        "status clock restarted at observation ({first_seen} -> {changed})"
    );
    let agg = [("datastore_id", DS), ("workflow_status", "IMPORT_FAILED")];
    assert_eq!(sample(&text, "healthimaging_image_sets", &agg), Some(1.0));
}

#[tokio::test]
async fn tier_version_and_delete_changes_are_reflected() {
    let (sim, app) = start("IMPORTED", "").await;
    sim.put_image_set(DS, IS1, json!({"storageTier": "ARCHIVE_INSTANT_ACCESS"}))
        .await;
    let tier = [
        ("datastore_id", DS),
        ("from", "FREQUENT_ACCESS"),
        ("to", "ARCHIVE_INSTANT_ACCESS"),
    ];
    app.wait_for("healthimaging_storage_tier_transitions_total", &tier, 1.0)
        .await;

    sim.put_image_set(
        DS,
        IS1,
        json!({"versionId": "2", "imageSetWorkflowStatus": "UPDATING"}),
    )
    .await;
    let text = app
        .wait_for("healthimaging_image_set_version", &set(IS1), 2.0)
        .await;
    assert!(sample(
        &text,
        "healthimaging_image_set_info",
        &[set(IS1)[0], set(IS1)[1], ("version_id", "2")]
    )
    .is_some());

    assert_eq!(sim.delete_image_set(DS, IS1).await, 200);
    let text = app
        .wait_for("healthimaging_image_set_up", &set(IS1), 0.0)
        .await;
    assert!(
        sample(&text, "healthimaging_image_set_version", &set(IS1)) == Some(2.0),
        "the last snapshot stays exported after the image set is gone"
    );
    assert!(
        sample(
            &text,
            "healthimaging_api_requests_total",
            &[("outcome", "ResourceNotFoundException")]
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn api_errors_are_counted_by_outcome_and_keep_the_last_snapshot() {
    let (sim, app) = start("IMPORTED", "").await;
    for (faults, outcome) in [
        (json!({"throttleRatio": 1.0}), "ThrottlingException"),
        (json!({"errorRatio": 1.0}), "InternalServerException"),
        (json!({"accessDeniedRatio": 1.0}), "AccessDeniedException"),
    ] {
        sim.set_faults(faults).await;
        let text = eventually(outcome, Duration::from_secs(10), || async {
            let text = app.metrics().await;
            let counted = sample(
                &text,
                "healthimaging_api_requests_total",
                &[("operation", "GetImageSet"), ("outcome", outcome)],
            );
            let down = sample(&text, "healthimaging_image_set_up", &set(IS1)) == Some(0.0);
            (counted.is_some_and(|n| n >= 1.0) && down).then_some(text)
        })
        .await;
        assert_eq!(
            sample(
                &text,
                "healthimaging_image_set_workflow_status",
                &[set(IS1)[0], set(IS1)[1], ("status", "IMPORTED")]
            ),
            Some(1.0),
            "last good snapshot stays exported during {outcome}"
        );
        sim.set_faults(json!({})).await;
        app.wait_for("healthimaging_image_set_up", &set(IS1), 1.0)
            .await;
    }
}

#[tokio::test]
async fn unknown_workflow_status_passes_through_as_its_raw_value() {
    let (sim, app) = start("IMPORTED", "").await;
    let (status, _) = sim
        .put_image_set(
            DS,
            IS1,
            json!({"imageSetWorkflowStatus": "ARCHIVING", "allowUnknownValues": true}),
        )
        .await;
    assert_eq!(status, 200);
    let text = app
        .wait_for(
            "healthimaging_image_set_workflow_status",
            &[set(IS1)[0], set(IS1)[1], ("status", "ARCHIVING")],
            1.0,
        )
        .await;
    assert_eq!(
        sample(&text, "healthimaging_image_set_up", &set(IS1)),
        Some(1.0)
    );
    let transition = [("from", "IMPORTED"), ("to", "ARCHIVING")];
    assert_eq!(
        sample(
            &text,
            "healthimaging_workflow_transitions_total",
            &transition
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn readiness_waits_for_the_first_round_and_other_endpoints_answer() {
    let sim = TestSimulator::start(&two_sets("IMPORTED", "")).await;
    sim.set_faults(json!({"latency": "1s"})).await;
    let app = TestApp::spawn(test_config(&sim, &[(DS, IS1), (DS, IS2)])).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(
        status, 200,
        "metrics are served before the first poll completes"
    );
    assert_eq!(
        sample(&metrics, "healthimaging_image_set_up", &set(IS1)),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "healthimaging_image_sets",
            &[("workflow_status", "unknown"), ("state", "unknown")]
        ),
        Some(2.0)
    );
    app.wait_ready().await;
    let (status, landing) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(landing.contains("/metrics"));
    assert_eq!(app.get("/nope").await.0, 404);
    let post = app
        .http
        .post(format!("http://{}/metrics", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
    app.stop().await;
}

/// Replaces values that change from run to run, and drops process and latency metrics.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("process_")
            || line.contains("process_")
            || line.contains("healthimaging_api_request_duration_seconds")
        {
            continue;
        }
        let line = if line.starts_with('#') {
            line.to_string()
        } else if line.contains("_timestamp_seconds")
            || line.starts_with("healthimaging_api_requests_total")
            || line.starts_with("healthimaging_api_estimated_cost_dollars_total")
            || line.starts_with("healthimaging_scheduler_queue_lag_seconds")
        {
            let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
            format!("{series} <value>")
        } else {
            line.to_string()
        };
        let line = match line.find("revision=\"") {
            Some(i) => {
                let end = line[i + 10..].find('"').map_or(line.len(), |j| i + 10 + j);
                format!("{}revision=\"<revision>{}", &line[..i], &line[end..])
            }
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn metrics_exposition_matches_the_golden_file() {
    let (_sim, app) = start("IMPORTED", "").await;
    let actual = normalise(&app.metrics().await);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden/metrics.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        std::fs::write(path, &actual).unwrap();
        eprintln!("wrote {path}");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .expect("golden file exists (UPDATE_GOLDEN=1 cargo test to create)");
    if actual != expected {
        let diff: Vec<_> = expected
            .lines()
            .zip(actual.lines())
            .filter(|(e, a)| e != a)
            .take(5)
            .map(|(e, a)| format!("- {e}\n+ {a}"))
            .collect();
        panic!(
            "/metrics differs from {path} (UPDATE_GOLDEN=1 cargo test to accept):\n{}\n(expected {} lines, got {})",
            diff.join("\n"),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

#[tokio::test]
async fn promtool_finds_nothing_in_live_metrics() {
    if !tool_available("promtool", "apt-get install prometheus") {
        return;
    }
    let (sim, app) = start("IMPORTED", "").await;
    // Make every family appear: a transition of each kind and an error outcome.
    sim.put_image_set(
        DS,
        IS1,
        json!({"imageSetWorkflowStatus": "UPDATING", "storageTier": "ARCHIVE_INSTANT_ACCESS"}),
    )
    .await;
    app.wait_for(
        "healthimaging_storage_tier_transitions_total",
        &[("to", "ARCHIVE_INSTANT_ACCESS")],
        1.0,
    )
    .await;
    sim.set_faults(json!({"throttleRatio": 1.0})).await;
    app.wait_for("healthimaging_image_set_up", &set(IS1), 0.0)
        .await;
    let text = app.metrics().await;
    assert!(samples(&text).len() > 40);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics:\n{findings}"
    );
}

#[tokio::test]
async fn image_set_detail_limits_per_image_set_series() {
    let sim = TestSimulator::start(&two_sets("IMPORTED", "")).await;
    for (detail, per_set) in [("none", 0usize), ("unhealthy", 1), ("all", 2)] {
        let mut config = test_config(&sim, &[(DS, IS1), (DS, IS2)]);
        config.metrics.image_set_detail = serde_json::from_value(json!(detail)).unwrap();
        let app = TestApp::spawn(config).await;
        app.wait_ready().await;
        let text = app.metrics().await;
        let up_series = samples(&text)
            .iter()
            .filter(|s| s.0 == "healthimaging_image_set_up")
            .count();
        assert_eq!(up_series, per_set, "image_set_detail = {detail}");
        let aggregated: f64 = samples(&text)
            .iter()
            .filter(|s| s.0 == "healthimaging_image_sets")
            .map(|s| s.2)
            .sum();
        assert_eq!(
            aggregated, 2.0,
            "aggregates always count every image set ({detail})"
        );
        app.stop().await;
    }
}
