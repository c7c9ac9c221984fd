//! The artefacts in deploy/: alert rules (promtool check and unit tests) and the
//! consistency checks of tests/deploy/check_deploy.py (manifests, IAM, dashboard, drift, and
//! every manifest's config checked by the exporter's own `check-config`).

use std::process::Command;

use crate::helpers::tool_available;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if !tool_available("promtool", "apt-get install prometheus") {
        return;
    }
    let (ok, out) = run(
        "promtool",
        &["check", "rules", "deploy/prometheus/alerts.yml"],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        "promtool",
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    );
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn deploy_artefacts_are_valid_and_consistent() {
    let has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_yaml {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyYAML is required in CI (pip install pyyaml)"
        );
        eprintln!("SKIPPED: PyYAML is not installed (pip install pyyaml)");
        return;
    }
    if !tool_available("promtool", "apt-get install prometheus") {
        return;
    }
    // With the exporter, every manifest's config and environment also pass check-config.
    let (ok, out) = run(
        "python3",
        &[
            "tests/deploy/check_deploy.py",
            "--exporter",
            env!("CARGO_BIN_EXE_healthimaging-exporter"),
        ],
    );
    assert!(ok, "{out}");
}
