//! The state file across restarts of the exporter binary: nothing invented, nothing lost,
//! damaged files ignored with a warning, and no secret or DICOM text in the file.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// Fast polling plus `[persistence]` writing to `state` every 200 ms.
fn polling_with_state(state: &Path) -> String {
    format!(
        "interval = \"200ms\"\nin_progress_interval = \"100ms\"\nfailed_interval = \"200ms\"\n\
         max_backoff = \"1s\"\nmax_requests_per_second = 1000\nburst = 100\nrequest_timeout = \"2s\"\n\
         [persistence]\nstate_file = {:?}\ninterval = \"200ms\"\n",
        state.display().to_string()
    )
}

async fn all_up(exporter: &ExporterProcess, ids: &[&str]) -> String {
    eventually("every image set up", Duration::from_secs(15), || async {
        let text = exporter.metrics().await;
        ids.iter()
            .all(|is| {
                sample(&text, "healthimaging_image_set_up", &[("image_set_id", is)]) == Some(1.0)
            })
            .then_some(text)
    })
    .await
}

async fn stop(exporter: &ExporterProcess) {
    exporter.signal("TERM");
    let status = eventually("the exporter to exit", Duration::from_secs(10), || async {
        exporter.try_wait()
    })
    .await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_neither_invents_nor_forgets_transitions() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTING\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\nworkflow_status = \"IMPORTED\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS3}\"\nworkflow_status = \"IMPORTED\"\n"
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let ids: Vec<String> = [IS1, IS2, IS3].map(str::to_owned).to_vec();
    let first = ExporterProcess::start_with(&sim, &polling_with_state(&state), &ids);
    let text = all_up(&first, &[IS1, IS2, IS3]).await;
    let since = |text: &str, is: &str| {
        sample(
            text,
            "healthimaging_image_set_status_changed_timestamp_seconds",
            &[("image_set_id", is)],
        )
    };
    let is2_since = since(&text, IS2);
    // One transition before the restart, counted once.
    sim.put_image_set(DS, IS3, json!({"storageTier": "ARCHIVE_INSTANT_ACCESS"}))
        .await;
    first
        .wait_for_log("the tier change", |l| {
            l["event"] == "storage_tier_changed" && l["image_set_id"] == IS3
        })
        .await;
    stop(&first).await;
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["format"], "healthimaging-exporter-state");
    assert_eq!(saved["version"], 1);

    // While the exporter is down, the import finishes.
    let down_at = epoch_now();
    sim.put_image_set(DS, IS1, json!({"imageSetWorkflowStatus": "IMPORTED"}))
        .await;
    let second = ExporterProcess::start_with(&sim, &polling_with_state(&state), &ids);
    second
        .wait_for_log("the restore line", |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("state restored"))
        })
        .await;
    let event = second
        .wait_for_log("the transition that happened while down", |l| {
            l["event"] == "workflow_status_changed" && l["image_set_id"] == IS1
        })
        .await;
    assert_eq!(event["from"], "IMPORTING");
    assert_eq!(event["to"], "IMPORTED");
    let after = humantime::parse_rfc3339(event["changed_after"].as_str().unwrap()).unwrap();
    let before = humantime::parse_rfc3339(event["changed_before"].as_str().unwrap()).unwrap();
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert!(
        epoch(after) <= down_at && down_at <= epoch(before) + 1.0,
        "{event}"
    );

    let text = all_up(&second, &[IS1, IS2, IS3]).await;
    assert_eq!(
        sample(
            &text,
            "healthimaging_workflow_transitions_total",
            &[("from", "IMPORTING"), ("to", "IMPORTED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "healthimaging_storage_tier_transitions_total",
            &[
                ("from", "FREQUENT_ACCESS"),
                ("to", "ARCHIVE_INSTANT_ACCESS")
            ]
        ),
        Some(1.0),
        "the counter carried over the restart, not counted again"
    );
    assert_eq!(
        since(&text, IS2),
        is2_since,
        "status times survive restarts"
    );
    let invented: Vec<Value> = second
        .logs()
        .into_iter()
        .filter(|l| l["event"].is_string() && l["image_set_id"] != IS1)
        .collect();
    assert!(invented.is_empty(), "invented transitions: {invented:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_state_files_mean_a_warning_and_a_fresh_start() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORT_FAILED\"\n\
         message = \"patient SENTINEL^PHI mismatch\"\n"
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let cases = [
        (
            "truncated",
            "{\"format\":\"healthimaging-exporter-state\",\"vers".to_string(),
        ),
        ("garbage", "\u{1}\u{2}binary".to_string()),
        (
            "future version",
            json!({"format": "healthimaging-exporter-state", "version": 99}).to_string(),
        ),
    ];
    for (what, content) in cases {
        std::fs::write(&state, content).unwrap();
        let exporter =
            ExporterProcess::start_with(&sim, &polling_with_state(&state), &[IS1.to_string()]);
        let warning = exporter
            .wait_for_log("the warning", |l| {
                l["message"] == "ignoring the state file: starting fresh"
            })
            .await;
        assert_eq!(warning["level"], "WARN", "{what}");
        all_up(&exporter, &[IS1]).await;
        // The damaged file is replaced by a valid one.
        eventually("a valid state file", Duration::from_secs(10), || async {
            let text = std::fs::read_to_string(&state).ok()?;
            let saved: Value = serde_json::from_str(&text).ok()?;
            (saved["version"] == 1 && saved["image_sets"].as_array()?.len() == 1).then_some(())
        })
        .await;
        stop(&exporter).await;
    }
    // Never credentials, signatures or the API's free text in the file.
    let text = std::fs::read_to_string(&state).unwrap();
    for secret in [
        "AKIDPROCESSTEST",
        "process-secret",
        "AWS4-HMAC-SHA256",
        "SENTINEL^PHI",
    ] {
        assert!(!text.contains(secret), "{secret} in the state file");
    }
}
