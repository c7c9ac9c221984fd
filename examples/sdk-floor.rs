//! What one GetImageSet costs in the AWS SDK alone, without the exporter around it.
//!
//! The simulator runs in its own process (`healthimaging-exporter simulate`); this process
//! sends GetImageSet through the exporter's own client (`AwsSource`: SDK, SigV4, JSON
//! parsing, mapping to a snapshot) `--calls` times on a current-thread runtime like the
//! exporter's, and divides its CPU time by the calls: `--concurrency` at a time back to
//! back (the floor), or `--rate` calls a second, `--batch` at a time, paced like the
//! exporter's token bucket. For comparison it then sends the same requests through a plain
//! HTTP client (reqwest, no signing, body read but not parsed): the share of the socket and
//! HTTP work. Set beside bench-e2e's per-call figure, the difference is what the exporter
//! adds (scheduling, state store, metrics bookkeeping).
//!
//! Run: `cargo run --release --example sdk-floor -- [--calls 20000] [--concurrency 16 | --rate 1000 [--batch 1]]`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use anyhow::{bail, Context, Result};
use healthimaging_exporter::config::AwsConfig;
use healthimaging_exporter::ids::{DatastoreId, ImageSetId, ImageSetKey};
use healthimaging_exporter::source::{AwsSource, ClientOptions, ImageSetSource};
use support::{cpu_seconds, exporter_binary, http_client, proc_status_bytes};

const DS: &str = "0123456789abcdef0123456789abcdef";
const SETS: u64 = 1000;

/// The simulator process; stopped when dropped.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn image_set_id(i: u64) -> String {
    format!("{:016x}{:016x}", 0, i % SETS)
}

/// How calls are issued.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back, this many in flight (the process never idles: the floor).
    Saturated { concurrency: u64 },
    /// `batch` calls started together every batch/rate seconds (with `batch` 1 the process
    /// sleeps between calls and pays a wake-up for each).
    Paced { rate: u64, batch: u64 },
}

/// Runs `calls` calls of `call` at `pace`; returns this process's CPU seconds and the wall
/// time they took.
async fn measure<F, Fut>(calls: u64, pace: Pace, call: F) -> Result<(f64, Duration)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let call = Arc::new(call);
    let cpu0 = cpu_seconds(std::process::id())?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    match pace {
        Pace::Saturated { concurrency } => {
            for w in 0..concurrency {
                let call = Arc::clone(&call);
                tasks.push(tokio::spawn(async move {
                    let mut i = w;
                    while i < calls {
                        call(i).await?;
                        i += concurrency;
                    }
                    anyhow::Ok(())
                }));
            }
        }
        Pace::Paced { rate, batch } => {
            let period = Duration::from_secs_f64(batch as f64 / rate as f64);
            let mut tick = tokio::time::interval(period);
            for i in 0..calls {
                if i % batch == 0 {
                    tick.tick().await;
                }
                tasks.push(tokio::spawn(call(i)));
            }
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok((cpu_seconds(std::process::id())? - cpu0, t0.elapsed()))
}

fn report(what: &str, calls: u64, (cpu, wall): (f64, Duration)) {
    println!(
        "{what}: {:.0} µs CPU per call ({calls} calls in {:.1} s, {:.0} calls/s)",
        cpu * 1e6 / calls as f64,
        wall.as_secs_f64(),
        calls as f64 / wall.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut calls: u64 = 20_000;
    let mut concurrency: u64 = 16;
    let mut rate: Option<u64> = None;
    let mut batch: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => calls = args.next().context("--calls needs a value")?.parse()?,
            "--concurrency" => {
                concurrency = args
                    .next()
                    .context("--concurrency needs a value")?
                    .parse()?
            }
            "--rate" => rate = Some(args.next().context("--rate needs a value")?.parse()?),
            "--batch" => batch = args.next().context("--batch needs a value")?.parse()?,
            "--help" | "-h" => {
                println!(
                    "usage: sdk-floor [--calls 20000] [--concurrency 16 | --rate 1000 [--batch 1]]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    if calls == 0 || concurrency == 0 || batch == 0 || rate == Some(0) {
        bail!("--calls, --concurrency, --rate and --batch must be at least 1");
    }
    let pace = match rate {
        Some(rate) => Pace::Paced { rate, batch },
        None => Pace::Saturated { concurrency },
    };

    let dir = tempfile::tempdir()?;
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        format!("[[generate]]\ndatastore_id = \"{DS}\"\ncount = {SETS}\n"),
    )?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let _sim = Simulator(
        Command::new(exporter_binary()?)
            .args([
                "simulate",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--scenario",
            ])
            .arg(&scenario)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let http = http_client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{endpoint}/_simulator/stats"))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("simulator not answering at {endpoint}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let aws = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.clone()),
        ..AwsConfig::default()
    };
    let options = ClientOptions {
        static_credentials: Some(("AKIDSDKFLOOR".into(), "sdk-floor".into())),
    };
    let source = Arc::new(AwsSource::build(&aws, Duration::from_secs(10), &options).await?);
    let datastore: DatastoreId = DS.parse()?;
    let keys = (0..SETS)
        .map(|i| {
            Ok(ImageSetKey {
                datastore_id: datastore,
                image_set_id: image_set_id(i).parse::<ImageSetId>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let keys = Arc::new(keys);

    let sdk = move |i: u64| {
        let source = Arc::clone(&source);
        let key = keys[(i % SETS) as usize];
        async move {
            source.get_image_set(key, None).await?;
            anyhow::Ok(())
        }
    };
    // Warm up first: connections, credentials, allocator.
    let warm = calls.min(1000);
    measure(warm, pace, sdk.clone()).await?;
    report(
        "exporter client (SDK)",
        calls,
        measure(calls, pace, sdk).await?,
    );

    let raw = move |i: u64| {
        let http = http.clone();
        let url = format!(
            "{endpoint}/datastore/{DS}/imageSet/{}/getImageSet",
            image_set_id(i)
        );
        async move {
            // The simulator checks only that a request claims to be signed.
            let resp = http
                .post(url)
                .header("authorization", "AWS4-HMAC-SHA256 Credential=unsigned")
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("plain HTTP call answered {}", resp.status());
            }
            resp.bytes().await?;
            Ok(())
        }
    };
    measure(warm, pace, raw.clone()).await?;
    report(
        "plain HTTP (reqwest, unsigned)",
        calls,
        measure(calls, pace, raw).await?,
    );
    println!(
        "this process's RSS: {:.1} MiB",
        proc_status_bytes(std::process::id(), "VmRSS:")? / 1048576.0
    );
    Ok(())
}
