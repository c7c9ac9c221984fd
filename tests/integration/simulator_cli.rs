//! The `simulate` command as a user runs it, and boto3 as an independent client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::TestSimulator;

const BIN: &str = env!("CARGO_BIN_EXE_healthimaging-exporter");

/// Kills the child when dropped, so a failing test leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when `python3 -c "import boto3"` works. Outside CI a missing boto3 skips the
/// test with a notice; in CI (`CI` set) it is a failure, since `.ci/run` installs it.
fn boto3_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "boto3 is required in CI (pip install boto3)"
        );
        eprintln!("SKIPPED: boto3 is not installed (pip install boto3)");
    }
    ok
}

#[tokio::test]
async fn simulate_command_serves_the_demo_scenario() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/simulator/demo.toml");
    let mut child = Command::new(BIN)
        .args(["simulate", "--listen", "127.0.0.1:0", "--scenario", demo])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let child = Reaped(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("the simulator announces its address")
        .unwrap()
        .unwrap();
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let sim = TestSimulator {
        _server: None,
        endpoint,
        http: reqwest::Client::new(),
    };
    let sets = sim.get("image-sets").await;
    assert_eq!(sets["imageSets"].as_array().map(Vec::len), Some(20));
    let first = &sets["imageSets"][0];
    let out = sim
        .source()
        .await
        .client()
        .get_image_set()
        .datastore_id(first["datastoreId"].as_str().unwrap())
        .image_set_id(first["imageSetId"].as_str().unwrap())
        .send()
        .await
        .expect("the Rust SDK reads from the simulate command");
    assert_eq!(out.image_set_id(), first["imageSetId"].as_str().unwrap());
    drop(child);
}

#[test]
fn simulate_command_rejects_a_bad_scenario_naming_the_field() {
    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/bad-scenarios/bad-workflow-status.toml"
    );
    let out = Command::new(BIN)
        .args(["simulate", "--listen", "127.0.0.1:0", "--scenario", bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("workflow_status") && stderr.contains("DONE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn boto3_reads_the_simulator_like_the_real_service() {
    if !boto3_available() {
        return;
    }
    let sim = TestSimulator::start("").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/boto3_simulator.py"
    );
    let endpoint = sim.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).arg(endpoint).output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 conformance failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("conformance ok"), "{stdout}");
}
