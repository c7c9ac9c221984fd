//! What the benchmark examples share: building and starting the exporter binary, an HTTP
//! client, and reading a process's memory and CPU time from /proc (so figures are its alone).

// Each example compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Builds the exporter binary in the example's profile and returns its path
/// (target/PROFILE/examples/NAME -> target/PROFILE/healthimaging-exporter).
pub fn exporter_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating target dir")?;
    let bin = dir.join("healthimaging-exporter");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--bin", "healthimaging-exporter"]);
    // `cargo run` exports the build script's `GIT_REVISION` to the example; passed on, it
    // would change the build script's input and rebuild the whole binary on every run.
    cmd.env_remove("GIT_REVISION");
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("building the exporter binary")?;
    if !status.success() || !bin.exists() {
        bail!("cannot build {}", bin.display());
    }
    Ok(bin)
}

/// `exporter run --config CONFIG` against the simulator: static test credentials, no AWS
/// config files or instance metadata, and the config's log level (no `RUST_LOG`).
pub fn exporter_command(bin: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHMARK")
        .env("AWS_SECRET_ACCESS_KEY", "benchmark")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("RUST_LOG");
    cmd
}

/// An HTTP client for the harnesses. Idle connections are dropped after 5 s, before the
/// servers close them (10 s, `Limits::header_read_timeout`): reusing one the server is
/// closing fails with "connection closed before message completed".
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()?)
}

/// A `kB` field of /proc/PID/status (e.g. `VmRSS:`, `VmHWM:`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024.0)
}

/// CPU time of every thread of `pid` in seconds, from `/proc/PID/task/*/schedstat`
/// (nanoseconds; `/proc/PID/stat` counts in 10 ms ticks, too coarse for a 1 s sweep).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread that exited between listing and reading has nothing left to count.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let first = text.split_whitespace().next().context("schedstat format")?;
        ns += first.parse::<u64>()?;
    }
    Ok(ns as f64 / 1e9)
}
