//! Configuration reloads of the exporter binary (SIGHUP and `POST /-/reload`): a valid
//! config applies without losing state, every invalid one is rejected and the old kept.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

fn config(sim: &TestSimulator, image_sets: &[&str]) -> String {
    let mut text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{}\"\nmax_attempts = 1\n[polling]\ninterval = \"200ms\"\n\
         in_progress_interval = \"100ms\"\nfailed_interval = \"200ms\"\nmax_backoff = \"1s\"\n\
         max_requests_per_second = 1000\nburst = 100\nrequest_timeout = \"2s\"\n",
        sim.endpoint
    );
    for is in image_sets {
        text.push_str(&format!(
            "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{is}\"\n"
        ));
    }
    text
}

fn start(path: &Path, text: &str) -> ExporterProcess {
    std::fs::write(path, text).unwrap();
    let mut cmd = command();
    cmd.args(["run", "--config"]).arg(path);
    ExporterProcess::spawn(cmd, tempfile::tempdir().unwrap())
}

async fn post_reload(exporter: &ExporterProcess) -> (u16, String) {
    let addr = exporter.addr().await;
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn reload_ok(text: &str) -> Option<f64> {
    sample(
        text,
        "healthimaging_exporter_config_last_reload_successful",
        &[],
    )
}

fn up(text: &str, is: &str) -> Option<f64> {
    sample(text, "healthimaging_image_set_up", &[("image_set_id", is)])
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_valid_config_and_keeps_the_state_of_targets_that_stay() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\nworkflow_status = \"IMPORTING\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS3}\"\n"
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let exporter = start(&path, &config(&sim, &[IS1, IS2]));
    let before = eventually("both up", Duration::from_secs(15), || async {
        let text = exporter.metrics().await;
        (up(&text, IS1) == Some(1.0) && up(&text, IS2) == Some(1.0)).then_some(text)
    })
    .await;
    sim.put_image_set(
        DS,
        IS2,
        serde_json::json!({"imageSetWorkflowStatus": "IMPORTED"}),
    )
    .await;
    exporter
        .wait_for_log("the import finishing", |l| {
            l["event"] == "workflow_status_changed" && l["image_set_id"] == IS2
        })
        .await;
    let reloaded_before = sample(
        &before,
        "healthimaging_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    std::fs::write(&path, config(&sim, &[IS2, IS3])).unwrap();
    exporter.signal("HUP");
    exporter
        .wait_for_log("the reload", |l| l["message"] == "configuration reloaded")
        .await;
    let text = eventually("IS3 up, IS1 gone", Duration::from_secs(15), || async {
        let text = exporter.metrics().await;
        (up(&text, IS3) == Some(1.0) && up(&text, IS1).is_none()).then_some(text)
    })
    .await;
    assert_eq!(up(&text, IS2), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "healthimaging_workflow_transitions_total",
            &[("from", "IMPORTING"), ("to", "IMPORTED")]
        ),
        Some(1.0),
        "counters survive reloads"
    );
    assert_eq!(reload_ok(&text), Some(1.0));
    assert!(
        sample(
            &text,
            "healthimaging_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > reloaded_before
    );
    // The target that stayed was not seen "for the first time" again: no new events.
    let events: Vec<_> = exporter
        .logs()
        .into_iter()
        .filter(|l| l["event"].is_string())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(exporter.try_wait().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalid_config_is_rejected_at_reload_and_the_old_one_kept() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n"
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let good = config(&sim, &[IS1]);
    let exporter = start(&path, &good);
    eventually("IS1 up", Duration::from_secs(15), || async {
        (up(&exporter.metrics().await, IS1) == Some(1.0)).then_some(())
    })
    .await;
    let table = expectation_table("bad-configs");
    assert!(table.len() >= 20);
    for (file, expect) in &table {
        std::fs::copy(file, &path).unwrap();
        let (status, body) = post_reload(&exporter).await;
        assert_eq!(status, 500, "{}: {body}", file.display());
        assert!(
            body.contains(expect),
            "{}: `{body}` lacks `{expect}`",
            file.display()
        );
        let text = exporter.metrics().await;
        assert_eq!(reload_ok(&text), Some(0.0));
        assert_eq!(up(&text, IS1), Some(1.0), "{}", file.display());
    }
    let logged = exporter
        .logs()
        .into_iter()
        .filter(|l| {
            l["message"] == "configuration reload failed: keeping the previous configuration"
        })
        .count();
    assert_eq!(logged, table.len());
    // Still polling with the old config, and a good config applies again.
    let before = sim.count("GetImageSet", "success").await;
    eventually("polls continue", Duration::from_secs(10), || async {
        (sim.count("GetImageSet", "success").await > before + 2).then_some(())
    })
    .await;
    std::fs::write(&path, &good).unwrap();
    assert_eq!(post_reload(&exporter).await.0, 200);
    let text = exporter.metrics().await;
    assert_eq!(reload_ok(&text), Some(1.0));
    assert!(exporter.try_wait().is_none());
}
