//! The exporter binary as operators run it: JSON logs, signals, exit codes, bad configs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    command, eventually, expectation_table, sample, scenario, ExporterProcess, TestSimulator, DS,
    IS1, IS2,
};

fn transition<'a>(event: &'a str, to: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |l: &Value| l["event"] == event && l["to"] == to
}

#[tokio::test]
async fn failed_import_is_exported_and_logged_as_warning() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTING\"\n\
         [[image_sets.timeline]]\nafter = \"1500ms\"\nworkflow_status = \"IMPORT_FAILED\"\nmessage = \"Import failed: 3 instances unreadable\"\n"
    )))
    .await;
    let exporter = ExporterProcess::start(&sim, &[IS1]);
    let startup = exporter
        .wait_for_log("startup", |l| l["message"] == "exporter started")
        .await;
    assert_eq!(startup["targets"], 1);
    assert_eq!(startup["version"], env!("CARGO_PKG_VERSION"));
    let event = exporter
        .wait_for_log(
            "the failure event",
            transition("workflow_status_changed", "IMPORT_FAILED"),
        )
        .await;
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["from"], "IMPORTING");
    assert_eq!(event["datastore_id"], DS);
    assert_eq!(event["image_set_id"], IS1);
    assert_eq!(event["version_id"], "1");
    assert_eq!(event["message"], "Import failed: 3 instances unreadable");
    assert!(event["timestamp"].is_string());
    let text = exporter.metrics().await;
    assert_eq!(
        sample(
            &text,
            "healthimaging_workflow_transitions_total",
            &[("from", "IMPORTING"), ("to", "IMPORT_FAILED")]
        ),
        Some(1.0)
    );
    let first_sight = exporter
        .logs()
        .iter()
        .filter(|l| l["event"].is_string())
        .count();
    assert_eq!(
        first_sight,
        1,
        "first sight is not a transition: {:?}",
        exporter.logs()
    );
}

#[tokio::test]
async fn tier_version_state_and_gone_events_are_logged_at_info() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\n"
    )))
    .await;
    let exporter = ExporterProcess::start(&sim, &[IS1, IS2]);
    exporter.addr().await;
    eventually("first round", Duration::from_secs(10), || async {
        exporter
            .logs()
            .iter()
            .any(|l| l["message"] == "first poll round completed")
            .then_some(())
    })
    .await;
    sim.put_image_set(
        DS,
        IS1,
        json!({"storageTier": "ARCHIVE_INSTANT_ACCESS", "imageSetState": "LOCKED"}),
    )
    .await;
    sim.put_image_set(DS, IS2, json!({"versionId": "2"})).await;
    let tier = exporter
        .wait_for_log(
            "tier event",
            transition("storage_tier_changed", "ARCHIVE_INSTANT_ACCESS"),
        )
        .await;
    assert_eq!(
        (tier["level"].as_str(), tier["from"].as_str()),
        (Some("INFO"), Some("FREQUENT_ACCESS"))
    );
    assert!(
        tier.get("message").is_none(),
        "no message field without an API message: {tier}"
    );
    let state = exporter
        .wait_for_log("state event", transition("state_changed", "LOCKED"))
        .await;
    assert_eq!(state["from"], "ACTIVE");
    let version = exporter
        .wait_for_log("version event", transition("version_changed", "2"))
        .await;
    assert_eq!(
        (version["from"].as_str(), version["version_id"].as_str()),
        (Some("1"), Some("2"))
    );

    sim.delete_image_set(DS, IS2).await;
    let gone = exporter
        .wait_for_log("gone event", transition("image_set_gone", "gone"))
        .await;
    assert_eq!(
        (gone["level"].as_str(), gone["image_set_id"].as_str()),
        (Some("INFO"), Some(IS2))
    );
    // Stays gone for several more polls: still exactly one event.
    let polls = |text: &str| {
        sample(
            text,
            "healthimaging_api_requests_total",
            &[("outcome", "ResourceNotFoundException")],
        )
    };
    eventually("more 404 polls", Duration::from_secs(10), || async {
        polls(&exporter.metrics().await).filter(|n| *n >= 4.0)
    })
    .await;
    assert_eq!(
        exporter
            .logs()
            .iter()
            .filter(|l| l["event"] == "image_set_gone")
            .count(),
        1
    );
}

#[tokio::test]
async fn poll_errors_are_logged_once_per_change_of_error_kind() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n"
    )))
    .await;
    let exporter = ExporterProcess::start(&sim, &[IS1]);
    exporter.addr().await;
    let count = |outcome: &'static str| {
        let exporter = &exporter;
        async move {
            sample(
                &exporter.metrics().await,
                "healthimaging_api_requests_total",
                &[("outcome", outcome)],
            )
            .unwrap_or(0.0)
        }
    };
    sim.set_faults(json!({"throttleRatio": 1.0})).await;
    eventually("five throttled polls", Duration::from_secs(10), || async {
        (count("ThrottlingException").await >= 5.0).then_some(())
    })
    .await;
    sim.set_faults(json!({"errorRatio": 1.0})).await;
    eventually("five failed polls", Duration::from_secs(10), || async {
        (count("InternalServerException").await >= 5.0).then_some(())
    })
    .await;
    sim.set_faults(json!({})).await;
    exporter
        .wait_for_log("recovery", |l| {
            l["message"] == "polling image set recovered"
        })
        .await;
    let logs = exporter.logs();
    let failures: Vec<_> = logs
        .iter()
        .filter(|l| l["message"] == "polling image set failed")
        .collect();
    let kinds: Vec<_> = failures
        .iter()
        .map(|l| l["error_kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["server_error"],
        "one line per change of error kind: {failures:?}"
    );
    assert_eq!(failures[0]["level"], "WARN");
    assert_eq!(failures[0]["outcome"], "InternalServerException");
    // Throttling is account-wide: one line for the whole storm, not one per poll or image set.
    let throttling: Vec<_> = logs
        .iter()
        .filter(|l| l["message"] == "api throttling: request rate lowered")
        .collect();
    assert_eq!(throttling.len(), 1, "{throttling:?}");
    assert_eq!(throttling[0]["outcome"], "ThrottlingException");
    assert!(throttling[0]["effective_rate"].as_f64().unwrap() < 1000.0);
    let text = serde_json::to_string(&exporter.logs()).unwrap();
    assert!(
        !text.contains("process-secret") && !text.contains("AKIDPROCESSTEST"),
        "no credentials in logs"
    );
}

#[tokio::test]
async fn sigterm_stops_the_exporter_with_exit_code_0_within_5_seconds() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n"
    )))
    .await;
    // A slow upstream: a poll is in flight when the signal arrives.
    sim.set_faults(json!({"latency": "1500ms"})).await;
    let exporter = ExporterProcess::start(&sim, &[IS1]);
    exporter.addr().await;
    let signalled = Instant::now();
    exporter.signal("TERM");
    let status = loop {
        if let Some(status) = exporter.try_wait() {
            break Some(status);
        }
        if signalled.elapsed() > Duration::from_secs(6) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    let status = status.expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    eprintln!("SIGTERM to exit: {took:?}");
}

#[test]
fn bind_failure_is_a_clear_error_with_exit_code_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten_address = \"{addr}\"\n[aws]\nregion = \"us-east-1\"\n"),
    )
    .unwrap();
    let out = command()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr.to_string()) && stderr.contains("server.listen_address"),
        "{stderr}"
    );
}

#[test]
fn every_bad_config_file_is_rejected_with_the_field_named() {
    for (file, expect) in expectation_table("bad-configs") {
        let expect = expect.as_str();
        for subcommand in ["check-config", "run"] {
            let out = command()
                .args([subcommand, "--config"])
                .arg(&file)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{subcommand} {}: {stderr}",
                file.display()
            );
            assert!(
                stderr.contains(expect),
                "{subcommand} {}: `{stderr}` lacks `{expect}`",
                file.display()
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn check_config_prints_the_effective_config_with_env_overrides() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/healthimaging-exporter.toml"
    );
    let out = command()
        .args(["check-config", "--config", example])
        .env("HEALTHIMAGING_EXPORTER_POLLING__INTERVAL", "30s")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Value =
        toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("prints TOML");
    assert_eq!(printed["polling"]["interval"].as_str(), Some("30s"));
    assert_eq!(printed["polling"]["concurrency"].as_integer(), Some(4));
    assert_eq!(printed["image_sets"].as_array().map(Vec::len), Some(2));

    let out = command()
        .args(["check-config", "--config", example])
        .env("HEALTHIMAGING_EXPORTER_POLLING__INTERVALL", "30s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("intervall")
            && stderr.contains("HEALTHIMAGING_EXPORTER_POLLING__INTERVALL"),
        "{stderr}"
    );

    let missing = command()
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn version_and_help_work() {
    let out = command().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = command().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for sub in ["run", "demo", "simulate", "check-config"] {
        assert!(text.contains(sub), "{text}");
    }
}

#[tokio::test]
async fn demo_shows_a_failed_import_within_the_first_minute() {
    let mut cmd = command();
    cmd.args(["demo", "--listen", "127.0.0.1:0"]);
    let exporter = ExporterProcess::spawn(cmd, tempfile::tempdir().unwrap());
    let started = Instant::now();
    let failed = eventually(
        "the demo's failed import",
        Duration::from_secs(60),
        || async {
            exporter
                .logs()
                .into_iter()
                .find(|l| l["event"] == "workflow_status_changed" && l["to"] == "IMPORT_FAILED")
        },
    )
    .await;
    assert_eq!(failed["level"], "WARN");
    assert!(failed["message"].as_str().is_some_and(|m| !m.is_empty()));
    let text = exporter.metrics().await;
    assert_eq!(sample(&text, "healthimaging_targets", &[]), Some(20.0));
    eprintln!("demo: failed import logged after {:?}", started.elapsed());
    exporter.signal("INT");
    let exited = eventually("demo exit", Duration::from_secs(6), || async {
        exporter.try_wait()
    })
    .await;
    assert_eq!(exited.code(), Some(0));
}
