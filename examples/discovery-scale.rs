//! Discovery at scale: the simulator (in this process) with N image sets in 3 datastores,
//! and the exporter binary (its own process, so /proc figures are the exporter's alone)
//! discovering them with `all_datastores = true` under a small budget.
//!
//! Run: `cargo run --release --example discovery-scale -- [--count 100000] [--rate 5] [--changes 3]`
//!
//! It measures: startup to the first /metrics answer, time until discovery completes (`/readyz` and every image set counted in
//! `healthimaging_image_sets`), the API call rate from the simulator's own request log (max
//! in any 1, 10 and 60 s window, and the average), throttled calls, the exporter's RSS (now
//! and peak), its CPU time, and for `--changes` random image sets the time from a control-API change to
//! IMPORT_FAILED until it is on /metrics, at the default search interval.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use anyhow::{bail, Result};
use healthimaging_exporter::simulator::{RunningSimulator, Scenario};
use rand::Rng;
use serde_json::{json, Value};
use support::{cpu_seconds, exporter_binary, exporter_command, http_client, proc_status_bytes};

const DATASTORES: [&str; 3] = [
    "d0000000000000000000000000000001",
    "d0000000000000000000000000000002",
    "d0000000000000000000000000000003",
];

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<(u16, String)> {
    let resp = http.get(url).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Sum of `healthimaging_image_sets` and its `workflow_status="unknown"` part.
fn counted(text: &str) -> (f64, f64) {
    let (mut total, mut unknown) = (0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("healthimaging_image_sets{"))
    {
        let value: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        total += value;
        if line.contains("workflow_status=\"unknown\"") {
            unknown += value;
        }
    }
    (total, unknown)
}

fn max_in_window(times: &[f64], seconds: f64) -> usize {
    let (mut best, mut start) = (0, 0);
    for end in 0..times.len() {
        while times[end] - times[start] >= seconds {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// One thread for the simulator and this harness together, so the exporter has a core of
// its own instead of competing with two simulator workers on a two-core machine.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let count = arg("--count", 100_000) as u32;
    let rate = arg("--rate", 5);
    let changes = arg("--changes", 3);
    let bin = exporter_binary()?;

    // A third per datastore; ~1 % failed, a handful importing, the rest imported, spread
    // over 30 days of updatedAt.
    let per = count / 3;
    let mut scenario = String::from("seed = 42\n");
    for (n, ds) in DATASTORES.iter().enumerate() {
        scenario.push_str(&format!(
            "[[datastores]]\nid = \"{ds}\"\nname = \"scale-{n}\"\n"
        ));
    }
    for (n, ds) in DATASTORES.iter().enumerate() {
        let c = if n == 2 { count - 2 * per } else { per };
        scenario.push_str(&format!(
            "[[generate]]\ndatastore_id = \"{ds}\"\ncount = {c}\nupdated_spread = \"30d\"\n\
             workflow_status_mix = {{ IMPORTED = 9897, IMPORT_FAILED = 100, IMPORTING = 3 }}\n"
        ));
    }
    let scenario = Scenario::parse(&scenario, " (scale)")?;
    let sim_started = Instant::now();
    let sim = RunningSimulator::start(
        &scenario,
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        Some(1),
    )?;
    let endpoint = sim.endpoint_url();
    println!(
        "simulator: {count} image sets in 3 datastores, ready in {:.1} s",
        sim_started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "[server]\nlisten_address = \"127.0.0.1:{port}\"\n[aws]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{endpoint}\"\n[polling]\nmax_requests_per_second = {rate}\n\
         [log]\nlevel = \"warn\"\n[[discovery]]\nall_datastores = true\n"
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config)?;
    let t0 = epoch();
    let started = Instant::now();
    let exporter = Exporter(
        exporter_command(&bin, &path)
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = exporter.0.id();
    let http = http_client()?;
    let base = format!("http://127.0.0.1:{port}");

    // Startup: the first /metrics answer (discovered sets come from the API afterwards, so
    // this does not grow with the number of image sets).
    loop {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("exporter not serving /metrics within 60 s");
        }
        if let Ok((200, _)) = get_text(&http, &format!("{base}/metrics")).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "startup to the first /metrics answer: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Discovery completes: ready, and every image set counted.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let discovered = loop {
        if Instant::now() > deadline {
            bail!("discovery did not complete within an hour");
        }
        if let (Ok((200, _)), Ok((_, text))) = (
            get_text(&http, &format!("{base}/readyz")).await,
            get_text(&http, &format!("{base}/metrics")).await,
        ) {
            let (total, unknown) = counted(&text);
            if total as u32 == count {
                break (started.elapsed(), unknown);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "discovery complete after {:.1} s ({} still unknown, polled in the background); RSS {:.1} MiB",
        discovered.0.as_secs_f64(),
        discovered.1,
        proc_status_bytes(pid, "VmRSS:")? / 1048576.0
    );

    // Changes to IMPORT_FAILED, each on a random image set.
    let mut detection = Vec::new();
    let mut rng = rand::rng();
    for _ in 0..changes {
        let block = rng.random_range(0..3usize);
        let index = rng.random_range(0..per);
        let id = format!("{block:016x}{index:016x}");
        let ds = DATASTORES[block];
        let changed = Instant::now();
        let resp = http
            .put(format!(
                "{endpoint}/_simulator/datastore/{ds}/imageSet/{id}"
            ))
            .json(&json!({"imageSetWorkflowStatus": "IMPORT_FAILED", "message": "scale test"}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("control API: {}", resp.text().await?);
        }
        let series = format!("image_set_id=\"{id}\",status=\"IMPORT_FAILED\"}} 1");
        loop {
            if changed.elapsed() > Duration::from_secs(300) {
                bail!("{id} not on /metrics after 300 s");
            }
            let (_, text) = get_text(&http, &format!("{base}/metrics")).await?;
            if text.contains(&series) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = changed.elapsed().as_secs_f64();
        println!("change of {ds}/{id} to IMPORT_FAILED on /metrics after {took:.1} s");
        detection.push(took);
    }

    // Budget, from the simulator's own request log.
    let log: Value = http
        .get(format!("{endpoint}/_simulator/requests?since={t0}"))
        .send()
        .await?
        .json()
        .await?;
    let requests = log["requests"].as_array().cloned().unwrap_or_default();
    let mut times: Vec<f64> = requests.iter().filter_map(|r| r["at"].as_f64()).collect();
    times.sort_by(f64::total_cmp);
    let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
    let mut throttled = 0;
    for r in &requests {
        *by_op
            .entry(r["operation"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        throttled += u64::from(r["outcome"] == "ThrottlingException");
    }
    let span = times.last().copied().unwrap_or(t0) - times.first().copied().unwrap_or(t0);
    println!(
        "calls: {} in {span:.0} s ({:.2}/s average; budget {rate}/s, burst 10); max in 1 s: {}, 10 s: {}, 60 s: {}; throttled: {throttled}; by operation: {by_op:?}",
        times.len(),
        times.len() as f64 / span.max(1.0),
        max_in_window(&times, 1.0),
        max_in_window(&times, 10.0),
        max_in_window(&times, 60.0),
    );
    let cpu = cpu_seconds(pid)?;
    println!(
        "exporter CPU {cpu:.1} s in {:.0} s ({:.1} % of one core; includes serving this harness's /metrics reads)",
        started.elapsed().as_secs_f64(),
        cpu * 100.0 / started.elapsed().as_secs_f64()
    );
    println!(
        "exporter RSS now {:.1} MiB, peak {:.1} MiB; detection median {:.1} s",
        proc_status_bytes(pid, "VmRSS:")? / 1048576.0,
        proc_status_bytes(pid, "VmHWM:")? / 1048576.0,
        {
            detection.sort_by(f64::total_cmp);
            detection
                .get(detection.len() / 2)
                .copied()
                .unwrap_or(f64::NAN)
        }
    );
    drop(exporter);
    drop(sim);
    Ok(())
}
