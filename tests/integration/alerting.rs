//! End to end: simulator → exporter → real Prometheus (loading deploy/prometheus/alerts.yml)
//! → real Alertmanager → a webhook receiver owned by the test; and sharded exporters whose
//! missing shard the real Prometheus notices.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    eventually, scenario, test_config, tool_available, TestApp, TestSimulator, DS, IS1, IS2,
};

/// A child process killed on drop; its output goes to a log file kept for diagnostics.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &'static str, program: &str, args: &[String], dir: &Path) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Daemon { name, child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let out = self.output();
            let tail: Vec<_> = out
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!(
                "--- {} log (last lines) ---\n{}",
                self.name,
                tail.join("\n")
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Receives Alertmanager webhook posts.
async fn webhook(received: Arc<Mutex<Vec<Value>>>, shutdown: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |req: Request<hyper::body::Incoming>| {
        let received = received.clone();
        async move {
            if let Ok(body) = req.into_body().collect().await {
                if let Ok(value) = serde_json::from_slice::<Value>(&body.to_bytes()) {
                    received.lock().unwrap().push(value);
                }
            }
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    };
    tokio::spawn(healthimaging_exporter::httpd::serve(
        listener,
        handler,
        shutdown,
        Default::default(),
    ));
    addr
}

/// The first webhook alert named `alertname` with `status`, as (alert, payload status).
fn find_alert(received: &[Value], alertname: &str, status: &str) -> Option<Value> {
    received
        .iter()
        .flat_map(|payload| payload["alerts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["labels"]["alertname"] == alertname && a["status"] == status)
}

async fn wait_ready(http: &reqwest::Client, url: &str, daemon: &Mutex<Daemon>) {
    eventually(url, Duration::from_secs(30), || async {
        let ok = http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let mut d = daemon.lock().unwrap();
        // Surface a crash at once rather than after the timeout.
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("{} exited with {status}:\n{}", d.name, d.output());
        }
        ok.then_some(())
    })
    .await;
}

/// Starts Prometheus loading deploy/prometheus/alerts.yml, scraping `targets` as job
/// healthimaging-exporter every second and evaluating every second; returns it and its port.
fn start_prometheus(
    dir: &Path,
    targets: &[SocketAddr],
    alertmanager_port: Option<u16>,
) -> (Mutex<Daemon>, u16) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let alerting = alertmanager_port
        .map(|port| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{port}']\n"
            )
        })
        .unwrap_or_default();
    let targets: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n{alerting}\
             scrape_configs:\n  - job_name: healthimaging-exporter\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let prometheus = Daemon::start(
        "prometheus",
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir,
    );
    (Mutex::new(prometheus), port)
}

/// The result vector of the instant query `promql`, or None while Prometheus cannot answer.
async fn query(http: &reqwest::Client, port: u16, promql: &str) -> Option<Vec<Value>> {
    let body: Value = http
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["result"].as_array().cloned()
}

/// The alerting rule `name` as the rules API reports it (state, health, lastEvaluation).
async fn alert_rule(http: &reqwest::Client, port: u16, name: &str) -> Option<Value> {
    let body: Value = http
        .get(format!("http://127.0.0.1:{port}/api/v1/rules?type=alert"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["groups"]
        .as_array()?
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["name"] == name)
}

#[tokio::test]
async fn failed_import_alert_reaches_the_webhook_and_resolves() {
    if !tool_available("prometheus", "apt-get install prometheus")
        || !tool_available(
            "prometheus-alertmanager",
            "apt-get install prometheus-alertmanager",
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTING\"\n"
    )))
    .await;
    let app = TestApp::spawn(test_config(&sim, &[(DS, IS1)])).await;
    app.wait_ready().await;

    let received = Arc::new(Mutex::new(Vec::new()));
    let stop_hook = CancellationToken::new();
    let hook = webhook(received.clone(), stop_hook.clone()).await;

    let am_port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, datastore_id, image_set_id]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      \
             - url: http://{hook}/alerts\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let alertmanager = Mutex::new(Daemon::start(
        "alertmanager",
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        dir.path(),
    ));

    let (prometheus, prom_port) = start_prometheus(dir.path(), &[app.addr], Some(am_port));
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        &alertmanager,
    )
    .await;
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        &prometheus,
    )
    .await;
    // Prometheus has scraped the exporter at least once before the failure.
    eventually("first scrape", Duration::from_secs(30), || async {
        let result = query(&http, prom_port, "healthimaging_image_set_up").await?;
        (!result.is_empty()).then_some(())
    })
    .await;

    let failed_at = Instant::now();
    sim.put_image_set(
        DS,
        IS1,
        json!({"imageSetWorkflowStatus": "IMPORT_FAILED", "message": "bad DICOM"}),
    )
    .await;
    let alert = eventually(
        "the firing alert at the webhook",
        Duration::from_secs(60),
        || async {
            find_alert(
                &received.lock().unwrap(),
                "HealthImagingWorkflowFailed",
                "firing",
            )
        },
    )
    .await;
    let to_webhook = failed_at.elapsed();
    assert_eq!(alert["labels"]["datastore_id"], DS);
    assert_eq!(alert["labels"]["image_set_id"], IS1);
    assert_eq!(alert["labels"]["status"], "IMPORT_FAILED");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains(IS1));

    let healthy_at = Instant::now();
    sim.put_image_set(
        DS,
        IS1,
        json!({"imageSetWorkflowStatus": "IMPORTED", "message": null}),
    )
    .await;
    let resolved = eventually(
        "the resolved alert at the webhook",
        Duration::from_secs(60),
        || async {
            find_alert(
                &received.lock().unwrap(),
                "HealthImagingWorkflowFailed",
                "resolved",
            )
        },
    )
    .await;
    assert_eq!(resolved["labels"]["image_set_id"], IS1);
    eprintln!(
        "alert path: IMPORT_FAILED -> webhook firing in {to_webhook:?}; IMPORTED -> webhook resolved in {:?}",
        healthy_at.elapsed()
    );
    stop_hook.cancel();
    drop(prometheus);
    drop(alertmanager);
    app.stop().await;
}

#[tokio::test]
async fn missing_shard_turns_the_shard_alert_pending_in_a_real_prometheus() {
    if !tool_available("prometheus", "apt-get install prometheus") {
        return;
    }
    const ALERT: &str = "HealthImagingShardMissing";
    let dir = tempfile::tempdir().unwrap();
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\n"
    )))
    .await;
    let shard = |n: u32| {
        let mut config = test_config(&sim, &[(DS, IS1), (DS, IS2)]);
        config.sharding.shard = n;
        config.sharding.total_shards = 2;
        config
    };
    let shard0 = TestApp::spawn(shard(0)).await;
    let shard1 = TestApp::spawn(shard(1)).await;
    shard0.wait_ready().await;
    shard1.wait_ready().await;

    let (prometheus, prom_port) = start_prometheus(dir.path(), &[shard0.addr, shard1.addr], None);
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        &prometheus,
    )
    .await;
    let reporting = r#"count(count_values("shard", healthimaging_shard_ordinal))"#;
    eventually("both shards scraped", Duration::from_secs(30), || async {
        let result = query(&http, prom_port, reporting).await?;
        (result.first()?["value"][1] == "2").then_some(())
    })
    .await;
    // Two evaluations after both shards were seen: the rule is healthy and not even pending.
    let evaluations = Mutex::new(Vec::new());
    let rule = eventually(
        "two evaluations with both shards",
        Duration::from_secs(30),
        || {
            let (http, evaluations) = (&http, &evaluations);
            async move {
                let rule = alert_rule(http, prom_port, ALERT).await?;
                let mut seen = evaluations.lock().unwrap();
                if seen.last() != Some(&rule["lastEvaluation"]) {
                    seen.push(rule["lastEvaluation"].clone());
                }
                (seen.len() >= 3).then_some(rule)
            }
        },
    )
    .await;
    assert_eq!(rule["health"], "ok", "{rule}");
    assert_eq!(rule["state"], "inactive", "{rule}");

    shard1.stop().await;
    let pending = eventually(
        "the shard alert pending after shard 1 stopped",
        Duration::from_secs(30),
        || async {
            let result = query(
                &http,
                prom_port,
                &format!(r#"ALERTS{{alertname="{ALERT}",alertstate="pending"}}"#),
            )
            .await?;
            result.first().cloned()
        },
    )
    .await;
    assert_eq!(pending["metric"]["job"], "healthimaging-exporter");
    assert_eq!(pending["metric"]["severity"], "critical");
    drop(prometheus);
    shard0.stop().await;
}
