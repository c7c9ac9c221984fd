//! End-to-end benchmark: the simulator (in this process) with N generated image sets, and
//! the exporter binary (its own process, so /proc figures are the exporter's alone).
//!
//! Run: `cargo run --release --example bench-e2e -- [--sizes 1000,10000,100000] [--runs 3]`
//!
//! Per size it measures: startup to the first /metrics answer, exporter CPU per GetImageSet
//! call (the threads' schedstat run time over the first sweep), calls and CPU share in the
//! 10 s after it, RSS at steady state and bytes per image set above a
//! 1-image-set baseline, /metrics response time and size, and detection latency
//! (control-API status change until it is on /metrics) of an in-progress image set.
//! Every figure is the median of `--runs` runs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use anyhow::{bail, Context, Result};
use healthimaging_exporter::simulator::{RunningSimulator, Scenario};
use serde_json::json;
use support::{cpu_seconds, exporter_binary, exporter_command, http_client, proc_status_bytes};

const DS: &str = "0123456789abcdef0123456789abcdef";
/// Bench budget: high enough that a 100k first sweep takes about a minute against the local
/// simulator (1000/s, the validated maximum). Everything else is the default configuration.
const BENCH_RATE: u32 = 1000;
const IN_PROGRESS: u32 = 5;
/// How often startup is probed: fine-grained, the figure is milliseconds.
const STARTUP_PROBE: Duration = Duration::from_millis(2);
/// How often the end of the first sweep is probed (see `wait_for`).
const SWEEP_PROBE: Duration = Duration::from_millis(100);
/// How long the calls and CPU after the first sweep are measured.
const AFTER_SWEEP: Duration = Duration::from_secs(10);

struct Exporter {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_exporter(bin: &Path, endpoint: &str, ids: &[String]) -> Result<(Exporter, Instant)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut config = format!(
        "[server]\nlisten_address = \"127.0.0.1:{port}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\
         [polling]\nmax_requests_per_second = {BENCH_RATE}\nburst = 100\nconcurrency = 16\n[log]\nlevel = \"warn\"\n"
    );
    config.reserve(ids.len() * 110);
    for id in ids {
        config.push_str("[[image_sets]]\ndatastore_id = \"");
        config.push_str(DS);
        config.push_str("\"\nimage_set_id = \"");
        config.push_str(id);
        config.push_str("\"\n");
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config)?;
    let started = Instant::now();
    let child = exporter_command(bin, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut exporter = Exporter {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    if let Some(stderr) = exporter.child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("exporter: {line}");
            }
        });
    }
    Ok((exporter, started))
}

/// Polls `url` every `every` until it answers 2xx. During the sweep the interval is long: each
/// probe is a request the exporter serves, and its CPU would be counted against GetImageSet.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    every: Duration,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(every).await;
    }
    bail!("{url} not ready within {timeout:?}")
}

async fn sim_calls(http: &reqwest::Client, endpoint: &str) -> Result<f64> {
    let stats: serde_json::Value = http
        .get(format!("{endpoint}/_simulator/stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["total"].as_f64().unwrap_or(0.0))
}

#[derive(Debug, Default, Clone)]
struct Figures {
    startup_ms: f64,
    cpu_us_per_call: f64,
    after_sweep_core_percent: f64,
    after_sweep_calls_per_s: f64,
    rss_mib: f64,
    bytes_per_set: f64,
    metrics_ms: f64,
    metrics_mib: f64,
    detection_s: f64,
    sweep_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// The simulator on a loopback port with `count` settled and `importing` importing image sets.
async fn start_simulator(count: u32, importing: u32) -> Result<RunningSimulator> {
    let mut text = format!("[[generate]]\ndatastore_id = \"{DS}\"\ncount = {count}\n");
    if importing > 0 {
        text.push_str(&format!(
            "[[generate]]\ndatastore_id = \"{DS}\"\ncount = {importing}\nworkflow_status = \"IMPORTING\"\n"
        ));
    }
    let scenario = Scenario::parse(&text, " (bench)")?;
    Ok(RunningSimulator::start(
        &scenario,
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        Some(1),
    )?)
}

async fn one_run(bin: &Path, n: u32, baseline_rss: f64) -> Result<Figures> {
    let sim = start_simulator(n, IN_PROGRESS).await?;
    let endpoint = sim.endpoint_url();
    let importing: Vec<String> = (0..IN_PROGRESS)
        .map(|i| format!("{:016x}{i:016x}", 1))
        .collect();
    let ids: Vec<String> = importing
        .iter()
        .cloned()
        .chain((0..n).map(|i| format!("{:016x}{i:016x}", 0)))
        .collect();
    let http = http_client()?;
    let (exporter, spawned) = start_exporter(bin, &endpoint, &ids)?;
    let pid = exporter.child.id();
    let metrics_url = format!("http://{}/metrics", exporter.addr);
    wait_for(&http, &metrics_url, STARTUP_PROBE, Duration::from_secs(60)).await?;
    let startup = spawned.elapsed();
    let (cpu0, calls0) = (cpu_seconds(pid)?, sim_calls(&http, &endpoint).await?);
    let sweep_started = Instant::now();
    wait_for(
        &http,
        &format!("http://{}/readyz", exporter.addr),
        SWEEP_PROBE,
        Duration::from_secs(900),
    )
    .await?;
    let sweep = sweep_started.elapsed();
    let (cpu1, calls1) = (cpu_seconds(pid)?, sim_calls(&http, &endpoint).await?);
    let cpu_per_call = (cpu1 - cpu0) / (calls1 - calls0).max(1.0);

    // After the sweep: settled sets wait for their 60 s interval, so this is the cost of
    // waiting plus the in-progress sets' polls (and, at 100k, the budget-bound re-polls).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu2, calls2) = (cpu_seconds(pid)?, sim_calls(&http, &endpoint).await?);
    tokio::time::sleep(AFTER_SWEEP).await;
    let (cpu3, calls3) = (cpu_seconds(pid)?, sim_calls(&http, &endpoint).await?);
    let rss = proc_status_bytes(pid, "VmRSS:")?;
    let mut times = Vec::new();
    let mut size = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        let body = http.get(&metrics_url).send().await?.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }

    let mut detections = Vec::new();
    for (k, id) in importing.iter().enumerate().take(3) {
        let status = if k % 2 == 0 { "COPYING" } else { "UPDATING" };
        let put = format!("{endpoint}/_simulator/datastore/{DS}/imageSet/{id}");
        let needle = format!("image_set_id=\"{id}\",status=\"{status}\"");
        http.put(&put)
            .json(&json!({"imageSetWorkflowStatus": status}))
            .send()
            .await?;
        let t = Instant::now();
        loop {
            let body = http.get(&metrics_url).send().await?.text().await?;
            if body.contains(&needle) {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("status change of {id} not seen within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        detections.push(t.elapsed().as_secs_f64());
    }
    drop(exporter);
    sim.stop().await;
    Ok(Figures {
        startup_ms: startup.as_secs_f64() * 1000.0,
        cpu_us_per_call: cpu_per_call * 1e6,
        after_sweep_core_percent: (cpu3 - cpu2) * 100.0 / AFTER_SWEEP.as_secs_f64(),
        after_sweep_calls_per_s: (calls3 - calls2) / AFTER_SWEEP.as_secs_f64(),
        rss_mib: rss / 1048576.0,
        bytes_per_set: (rss - baseline_rss) / f64::from(n),
        metrics_ms: median(times),
        metrics_mib: size as f64 / 1048576.0,
        detection_s: median(detections),
        sweep_s: sweep.as_secs_f64(),
    })
}

async fn baseline(bin: &Path) -> Result<f64> {
    let sim = start_simulator(1, 0).await?;
    let (exporter, _) = start_exporter(bin, &sim.endpoint_url(), &[format!("{:032x}", 0)])?;
    let http = http_client()?;
    wait_for(
        &http,
        &format!("http://{}/readyz", exporter.addr),
        SWEEP_PROBE,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = proc_status_bytes(exporter.child.id(), "VmRSS:")?;
    drop(exporter);
    sim.stop().await;
    Ok(rss)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0);
    format!("{cpu}, {cores} cores, {:.0} GiB RAM", mem / 1048576.0)
}

// One thread for the simulator and this harness together, so the exporter has a core of
// its own instead of competing with two simulator workers on a two-core machine.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut sizes = vec![1_000u32, 10_000, 100_000];
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .context("--sizes needs a value")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--runs" => runs = args.next().context("--runs needs a value")?.parse()?,
            "--help" | "-h" => {
                println!("usage: bench-e2e [--sizes 1000,10000,100000] [--runs 3]");
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    let bin = exporter_binary()?;
    eprintln!("machine: {}", machine());
    let base = median({
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(baseline(&bin).await?);
        }
        v
    });
    eprintln!("baseline RSS (1 image set): {:.1} MiB", base / 1048576.0);
    println!(
        "machine: {}; baseline RSS {:.1} MiB; medians of {runs} run(s)\n",
        machine(),
        base / 1048576.0
    );
    println!("| image sets | startup to /metrics | first sweep | CPU per GetImageSet | after the sweep: calls/s, CPU | RSS | RSS per image set | /metrics time | /metrics size | detection (in progress) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let mut all = Vec::new();
        for run in 0..runs {
            let f = one_run(&bin, n, base)
                .await
                .with_context(|| format!("{n} image sets, run {}", run + 1))?;
            eprintln!("{n} image sets, run {}: {f:?}", run + 1);
            all.push(f);
        }
        let m = |get: fn(&Figures) -> f64| median(all.iter().map(get).collect());
        println!(
            "| {n} | {:.0} ms | {:.1} s | {:.0} µs | {:.1}/s, {:.2} % of a core | {:.1} MiB | {:.0} B | {:.1} ms | {:.2} MiB | {:.1} s |",
            m(|f| f.startup_ms),
            m(|f| f.sweep_s),
            m(|f| f.cpu_us_per_call),
            m(|f| f.after_sweep_calls_per_s),
            m(|f| f.after_sweep_core_percent),
            m(|f| f.rss_mib),
            m(|f| f.bytes_per_set),
            m(|f| f.metrics_ms),
            m(|f| f.metrics_mib),
            m(|f| f.detection_s),
        );
    }
    Ok(())
}
