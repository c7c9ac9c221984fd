//! Fault suite: the exporter binary against the simulator while the API misbehaves
//! (throttling storms, 5xx, latency, timeouts, a dead port, broken connections, corrupt
//! bodies, unknown values, missing credentials).
//!
//! For every fault: the process keeps running, `/metrics` and `/healthz` keep answering,
//! the last good data stays exported with `healthimaging_image_set_up 0`, the right
//! `outcome` is counted in `healthimaging_api_requests_total`, each image set logs one
//! line per change of error kind (throttling: one account-wide line), and every image set
//! is up again within one polling interval once the fault clears. No fixed sleeps: every
//! wait polls with a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    command, eventually, sample, samples, scenario, ExporterProcess, TestSimulator, DS, IS1, IS2,
};

/// `polling.interval` (and `failed_interval`, `max_backoff`) of every exporter here.
const INTERVAL: Duration = Duration::from_millis(500);
/// `polling.request_timeout` of every exporter here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Allowance on top of the interval for the call itself, the scrape and a loaded machine.
const SLACK: Duration = Duration::from_millis(500);
/// Failed polls per image set to observe before a fault is cleared, so the log
/// de-duplication is exercised over repeated errors.
const FAILED_POLLS_PER_SET: f64 = 3.0;

/// Fast polling: errors back off from 100 ms to at most the interval, so the first poll
/// after a fault clears comes at most one interval later.
fn polling(request_timeout: Duration) -> String {
    format!(
        "[polling]\ninterval = \"500ms\"\nin_progress_interval = \"100ms\"\nfailed_interval = \"500ms\"\n\
         max_backoff = \"500ms\"\nmax_requests_per_second = 1000\nburst = 100\njitter = 0.0\n\
         request_timeout = \"{}\"\n",
        humantime::format_duration(request_timeout)
    )
}

/// Two settled image sets with distinct, recognisable properties.
fn world() -> String {
    scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\nversion_id = \"3\"\n\
         storage_tier = \"ARCHIVE_INSTANT_ACCESS\"\n"
    ))
}

/// The last good data of each image set: (id, version, tier).
const LAST_GOOD: [(&str, f64, &str); 2] = [
    (IS1, 1.0, "FREQUENT_ACCESS"),
    (IS2, 3.0, "ARCHIVE_INSTANT_ACCESS"),
];

fn watched() -> String {
    [IS1, IS2]
        .iter()
        .map(|is| format!("[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{is}\"\n"))
        .collect()
}

/// A simulator with [`world`] and the exporter binary polling both image sets.
struct Rig {
    sim: TestSimulator,
    exporter: ExporterProcess,
}

impl Rig {
    async fn start(request_timeout: Duration) -> Rig {
        let sim = TestSimulator::start(&world()).await;
        let exporter =
            ExporterProcess::start_with_config(&sim, &(polling(request_timeout) + &watched()));
        let rig = Rig { sim, exporter };
        rig.wait_up(1.0, Duration::from_secs(15)).await;
        assert_eq!(rig.exporter.get("/readyz").await.0, 200);
        rig
    }

    /// `/metrics`, after checking the process runs and `/healthz` answers 200.
    async fn metrics(&self) -> String {
        assert!(
            self.exporter.try_wait().is_none(),
            "the exporter exited: {:?}",
            self.exporter.logs()
        );
        assert_eq!(self.exporter.get("/healthz").await.0, 200, "/healthz");
        self.exporter.metrics().await
    }

    /// Waits until every image set's `up` is `value`; returns when that was seen.
    async fn wait_up(&self, value: f64, timeout: Duration) -> Instant {
        eventually(
            &format!("every image set up == {value}"),
            timeout,
            || async {
                let text = self.metrics().await;
                LAST_GOOD
                    .iter()
                    .all(|(is, _, _)| up(&text, is) == Some(value))
                    .then(Instant::now)
            },
        )
        .await
    }

    /// `PUT /_simulator/faults`, checking it was accepted.
    async fn set_faults(&self, faults: Value) {
        let (status, body) = self.sim.set_faults(faults).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn up(text: &str, is: &str) -> Option<f64> {
    sample(text, "healthimaging_image_set_up", &[("image_set_id", is)])
}

/// `healthimaging_api_requests_total{operation}` by outcome.
fn outcomes(text: &str, operation: &str) -> BTreeMap<String, f64> {
    samples(text)
        .into_iter()
        .filter(|(name, labels, _)| {
            name == "healthimaging_api_requests_total"
                && labels
                    .iter()
                    .any(|(k, v)| k == "operation" && v == operation)
        })
        .filter_map(|(_, labels, value)| {
            let outcome = labels.into_iter().find(|(k, _)| k == "outcome")?.1;
            Some((outcome, value))
        })
        .collect()
}

/// The error outcomes counted more often in `after` than in `before`.
fn new_errors(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter(|(outcome, n)| {
            *outcome != "success" && **n > before.get(*outcome).copied().unwrap_or(0.0)
        })
        .map(|(outcome, _)| outcome.clone())
        .collect()
}

/// The last good snapshot of every image set is still on `/metrics`.
fn assert_last_good_data(text: &str) {
    for (is, version, tier) in LAST_GOOD {
        let labels = [("image_set_id", is)];
        assert_eq!(
            sample(text, "healthimaging_image_set_version", &labels),
            Some(version),
            "{is}: version kept"
        );
        assert_eq!(
            sample(
                text,
                "healthimaging_image_set_workflow_status",
                &[("image_set_id", is), ("status", "IMPORTED")]
            ),
            Some(1.0),
            "{is}: workflow status kept"
        );
        assert_eq!(
            sample(
                text,
                "healthimaging_image_set_storage_tier",
                &[("image_set_id", is), ("tier", tier)]
            ),
            Some(1.0),
            "{is}: tier kept"
        );
        assert!(
            sample(
                text,
                "healthimaging_image_set_last_success_timestamp_seconds",
                &labels
            )
            .is_some(),
            "{is}: last success kept"
        );
    }
}

/// How a fault is injected.
enum Fault {
    /// `PUT /_simulator/faults` with this body; cleared with `{}`.
    Api(Value),
    /// The simulator's port closed (connections refused), then served again.
    PortClosed,
}

/// Which `outcome` the fault must be counted as.
enum Label {
    /// Exactly this one.
    Exactly(&'static str),
    /// Some single error outcome, whichever (for faults whose label is an exporter bug,
    /// checked strictly by an ignored test).
    AnyOneError,
}

/// What a fault must produce.
struct Expect {
    label: Label,
    /// The simulator's stats outcome of the faulty answers, to check every one was
    /// counted exactly once (None when the simulator does not see them as such).
    simulator_outcome: Option<&'static str>,
    /// Whether each image set logs the failure (throttling is logged account-wide).
    logged_per_image_set: bool,
    /// Longest time from clearing the fault to every image set being up.
    recovery: Duration,
}

/// Runs `fault` against a fresh rig and checks every promise of the module doc; returns
/// the outcome counted and how long recovery took.
async fn fault_is_survived(
    request_timeout: Duration,
    fault: Fault,
    expect: Expect,
) -> (Rig, String, Duration) {
    let mut rig = Rig::start(request_timeout).await;
    let before = outcomes(&rig.metrics().await, "GetImageSet");
    let suspended = match &fault {
        Fault::Api(body) => {
            rig.set_faults(body.clone()).await;
            None
        }
        Fault::PortClosed => Some(rig.sim.suspend().await),
    };

    // During the fault: up 0, last good data kept, errors counted, endpoints answering.
    let (text, label) = eventually(
        "both image sets down after repeated failed polls",
        Duration::from_secs(20),
        || async {
            let text = rig.metrics().await;
            let after = outcomes(&text, "GetImageSet");
            let errors = new_errors(&before, &after);
            let failed: f64 = errors
                .iter()
                .map(|o| after[o] - before.get(o).copied().unwrap_or(0.0))
                .sum();
            let down = LAST_GOOD
                .iter()
                .all(|(is, _, _)| up(&text, is) == Some(0.0));
            (down && failed >= FAILED_POLLS_PER_SET * LAST_GOOD.len() as f64)
                .then(|| (text.clone(), errors))
        },
    )
    .await;
    assert_last_good_data(&text);
    assert_eq!(label.len(), 1, "one error outcome, got {label:?}");
    let label = label.into_iter().next().unwrap_or_default();
    if let Label::Exactly(expected) = expect.label {
        assert_eq!(label, expected, "outcome counted");
    }
    assert_eq!(
        rig.exporter.get("/readyz").await.0,
        200,
        "/readyz stays ready"
    );

    // Clear the fault; every image set is up again within one interval.
    let cleared = Instant::now();
    match suspended {
        Some(s) => rig.sim.resume(s).await,
        None => rig.set_faults(json!({})).await,
    }
    let recovered = rig.wait_up(1.0, Duration::from_secs(15)).await - cleared;
    assert!(
        recovered <= expect.recovery,
        "recovered {recovered:?} after the fault cleared, allowed {:?}",
        expect.recovery
    );
    let text = rig.metrics().await;
    assert_last_good_data(&text);

    // Every faulty answer was counted once, under the label.
    if let Some(sim_outcome) = expect.simulator_outcome {
        eventually(
            "the exporter counted every faulty answer",
            Duration::from_secs(5),
            || async {
                let counted = outcomes(&rig.metrics().await, "GetImageSet")
                    .get(&label)
                    .copied()
                    .unwrap_or(0.0)
                    - before.get(&label).copied().unwrap_or(0.0);
                let served = rig.sim.count("GetImageSet", sim_outcome).await as f64;
                (counted == served && served > 0.0).then_some(())
            },
        )
        .await;
    }

    // One line per image set per change of error kind: failed once, recovered once.
    for (is, _, _) in LAST_GOOD {
        let failed = rig.exporter.log_lines("polling image set failed", Some(is));
        let recovered = rig
            .exporter
            .log_lines("polling image set recovered", Some(is));
        if expect.logged_per_image_set {
            assert_eq!(failed.len(), 1, "{is}: one failure line: {failed:?}");
            assert_eq!(failed[0]["outcome"], label.as_str(), "{:?}", failed[0]);
            assert!(
                failed[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{:?}",
                failed[0]
            );
            assert_eq!(recovered.len(), 1, "{is}: one recovery line: {recovered:?}");
        } else {
            assert!(
                failed.is_empty(),
                "{is}: no per-image-set lines: {failed:?}"
            );
            assert!(recovered.is_empty(), "{is}: {recovered:?}");
        }
    }
    eprintln!("fault counted as {label}, recovered in {recovered:?}");
    (rig, label, recovered)
}

fn recovery_within_an_interval() -> Duration {
    INTERVAL + SLACK
}

#[tokio::test]
async fn throttling_storm_is_logged_once_account_wide_and_recovers() {
    let (rig, _, _) = fault_is_survived(
        REQUEST_TIMEOUT,
        Fault::Api(json!({"throttleRatio": 1.0})),
        Expect {
            label: Label::Exactly("ThrottlingException"),
            simulator_outcome: Some("ThrottlingException"),
            logged_per_image_set: false,
            recovery: recovery_within_an_interval(),
        },
    )
    .await;
    let text = rig.metrics().await;
    assert!(sample(&text, "healthimaging_api_throttled_total", &[]).is_some_and(|n| n > 0.0));
    let lowered = rig
        .exporter
        .log_lines("api throttling: request rate lowered", None);
    assert_eq!(lowered.len(), 1, "one account-wide line: {lowered:?}");
    assert_eq!(lowered[0]["outcome"], "ThrottlingException");
}

#[tokio::test]
async fn server_error_burst_keeps_last_good_data_and_recovers() {
    fault_is_survived(
        REQUEST_TIMEOUT,
        Fault::Api(json!({"errorRatio": 1.0})),
        Expect {
            label: Label::Exactly("InternalServerException"),
            simulator_outcome: Some("InternalServerException"),
            logged_per_image_set: true,
            recovery: recovery_within_an_interval(),
        },
    )
    .await;
}

#[tokio::test]
async fn five_second_latency_times_out_and_recovers() {
    // A slow answer within the timeout is no error.
    let rig = Rig::start(REQUEST_TIMEOUT).await;
    rig.set_faults(json!({"latency": "300ms"})).await;
    let since = rig.sim.count("GetImageSet", "success").await;
    eventually("slow answers", Duration::from_secs(10), || async {
        (rig.sim.count("GetImageSet", "success").await >= since + 4).then_some(())
    })
    .await;
    let text = rig.metrics().await;
    assert_eq!(
        new_errors(&BTreeMap::new(), &outcomes(&text, "GetImageSet")),
        Vec::<String>::new()
    );
    assert!(LAST_GOOD
        .iter()
        .all(|(is, _, _)| up(&text, is) == Some(1.0)));
    drop(rig);

    // 5 s is beyond the request timeout: `timeout`, and a call in flight when the latency
    // goes away still needs its timeout before the next poll.
    fault_is_survived(
        REQUEST_TIMEOUT,
        Fault::Api(json!({"latency": "5s"})),
        Expect {
            label: Label::Exactly("timeout"),
            simulator_outcome: None,
            logged_per_image_set: true,
            recovery: REQUEST_TIMEOUT + recovery_within_an_interval(),
        },
    )
    .await;
}

#[tokio::test]
async fn connection_refused_while_the_simulator_is_down_then_recovers_on_restart() {
    let (rig, _, _) = fault_is_survived(
        REQUEST_TIMEOUT,
        Fault::PortClosed,
        Expect {
            label: Label::Exactly("transport"),
            simulator_outcome: None,
            logged_per_image_set: true,
            recovery: recovery_within_an_interval(),
        },
    )
    .await;
    // The restarted simulator is the same one: its statistics span the outage.
    assert!(rig.sim.count("GetImageSet", "success").await > 2);
}

/// A corruption of every successful answer; the simulator counts it under the mode's name.
async fn corruption(mode: &'static str, label: Label) -> (Rig, String, Duration) {
    fault_is_survived(
        REQUEST_TIMEOUT,
        Fault::Api(json!({"corruption": mode})),
        Expect {
            label,
            simulator_outcome: Some(mode),
            logged_per_image_set: true,
            recovery: recovery_within_an_interval(),
        },
    )
    .await
}

#[tokio::test]
async fn connection_reset_mid_response_keeps_last_good_data_and_recovers() {
    corruption("reset", Label::AnyOneError).await;
}

#[tokio::test]
async fn connection_reset_mid_response_is_counted_as_transport() {
    corruption("reset", Label::Exactly("transport")).await;
}

#[tokio::test]
async fn truncated_json_keeps_last_good_data_and_recovers() {
    corruption("truncated", Label::AnyOneError).await;
}

#[tokio::test]
async fn truncated_json_is_counted_as_invalid_response() {
    corruption("truncated", Label::Exactly("invalid_response")).await;
}

#[tokio::test]
async fn malformed_json_keeps_last_good_data_and_recovers() {
    corruption("malformed", Label::AnyOneError).await;
}

#[tokio::test]
async fn malformed_json_is_counted_as_invalid_response() {
    corruption("malformed", Label::Exactly("invalid_response")).await;
}

#[tokio::test]
async fn html_instead_of_json_keeps_last_good_data_and_recovers() {
    corruption("wrong_content_type", Label::AnyOneError).await;
}

#[tokio::test]
async fn html_instead_of_json_is_counted_as_invalid_response() {
    corruption("wrong_content_type", Label::Exactly("invalid_response")).await;
}

#[tokio::test]
async fn missing_required_fields_are_an_invalid_response() {
    corruption("missing_fields", Label::Exactly("invalid_response")).await;
}

#[tokio::test]
async fn huge_valid_body_is_read_without_error_or_runaway_memory() {
    // 20 MiB answers are valid: they are read (slowly in a debug build, hence the longer
    // timeout), the image sets stay up with the right data and memory stays bounded.
    let rig = Rig::start(Duration::from_secs(10)).await;
    rig.set_faults(json!({"corruption": "huge_body"})).await;
    let peak_rss = std::cell::Cell::new(0.0f64);
    eventually(
        "four huge answers read",
        Duration::from_secs(40),
        || async {
            let text = rig.metrics().await;
            let rss = sample(&text, "process_resident_memory_bytes", &[]).unwrap_or(0.0);
            peak_rss.set(peak_rss.get().max(rss));
            (rig.sim.count("GetImageSet", "huge_body").await >= 4).then_some(())
        },
    )
    .await;
    let peak_rss = peak_rss.get();
    rig.set_faults(json!({})).await;
    let before = rig.sim.count("GetImageSet", "success").await;
    eventually(
        "a normal answer after the huge ones",
        Duration::from_secs(15),
        || async { (rig.sim.count("GetImageSet", "success").await > before + 1).then_some(()) },
    )
    .await;
    let text = rig.metrics().await;
    assert_last_good_data(&text);
    assert!(LAST_GOOD
        .iter()
        .all(|(is, _, _)| up(&text, is) == Some(1.0)));
    assert_eq!(
        new_errors(&BTreeMap::new(), &outcomes(&text, "GetImageSet")),
        Vec::<String>::new(),
        "no errors"
    );
    assert!(rig
        .exporter
        .log_lines("polling image set failed", None)
        .is_empty());
    eprintln!(
        "peak exporter RSS during 20 MiB answers: {:.0} MB",
        peak_rss / 1e6
    );
    assert!(peak_rss < 400e6, "RSS {peak_rss} bytes");
}

#[tokio::test]
async fn unknown_enum_values_are_exported_verbatim_without_errors() {
    let rig = Rig::start(REQUEST_TIMEOUT).await;
    let (status, body) = rig
        .sim
        .put_image_set(
            DS,
            IS1,
            json!({"imageSetWorkflowStatus": "ARCHIVING", "imageSetState": "FROZEN",
                   "storageTier": "DEEP_ARCHIVE", "allowUnknownValues": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = eventually(
        "the unknown values exported",
        Duration::from_secs(10),
        || async {
            let text = rig.metrics().await;
            let has = |name: &str, label: &str, value: &str| {
                sample(&text, name, &[("image_set_id", IS1), (label, value)]) == Some(1.0)
            };
            (has(
                "healthimaging_image_set_workflow_status",
                "status",
                "ARCHIVING",
            ) && has("healthimaging_image_set_state", "state", "FROZEN")
                && has(
                    "healthimaging_image_set_storage_tier",
                    "tier",
                    "DEEP_ARCHIVE",
                ))
            .then_some(text)
        },
    )
    .await;
    assert_eq!(up(&text, IS1), Some(1.0));
    assert_eq!(
        new_errors(&BTreeMap::new(), &outcomes(&text, "GetImageSet")),
        Vec::<String>::new()
    );
    let changed = rig
        .exporter
        .wait_for_log("the transition to ARCHIVING", |l| {
            l["event"] == "workflow_status_changed" && l["to"] == "ARCHIVING"
        })
        .await;
    assert_eq!(changed["from"], "IMPORTED");
    assert!(rig
        .exporter
        .log_lines("polling image set failed", None)
        .is_empty());
}

// ---------------------------------------------------------------------------------------
// Credentials from the ECS container endpoint: missing first, then served.

/// A container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) that answers
/// `missing_status` until `serve` is set, then valid credentials; counts requests.
struct CredentialsEndpoint {
    url: String,
    serve: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CredentialsEndpoint {
    async fn start(missing_status: u16) -> CredentialsEndpoint {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/creds", listener.local_addr().unwrap());
        let serve = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (serve.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (flag, count) = (flag.clone(), count.clone());
                let service = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let resp = if flag.load(Ordering::SeqCst) {
                        let expiration = humantime::format_rfc3339_seconds(
                            std::time::SystemTime::now() + Duration::from_secs(3600),
                        );
                        let body = json!({
                            "AccessKeyId": "ASIACONTAINERTEST",
                            "SecretAccessKey": "container-secret",
                            "Token": "container-session-token",
                            "Expiration": expiration.to_string(),
                        });
                        hyper::Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                body.to_string(),
                            )))
                    } else {
                        hyper::Response::builder().status(missing_status).body(
                            http_body_util::Full::new(bytes::Bytes::from_static(
                                b"no credentials for this task",
                            )),
                        )
                    };
                    async move { resp }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        CredentialsEndpoint {
            url,
            serve,
            requests,
        }
    }

    fn start_serving(&self) {
        self.serve.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The exporter binary with credentials only from the container endpoint at `url`.
fn exporter_with_container_credentials(sim: &TestSimulator, url: &str) -> ExporterProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
         max_attempts = 1\n{}{}",
        sim.endpoint,
        polling(REQUEST_TIMEOUT),
        watched()
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = command();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
        .args(["run", "--config"])
        .arg(&path);
    ExporterProcess::spawn(cmd, dir)
}

/// Starts the exporter with container credentials missing (the endpoint answers
/// `status`) and waits until both image sets failed on them; returns the pieces.
async fn missing_credentials(status: u16) -> (TestSimulator, CredentialsEndpoint, ExporterProcess) {
    let sim = TestSimulator::start(&world()).await;
    let creds = CredentialsEndpoint::start(status).await;
    let exporter = exporter_with_container_credentials(&sim, &creds.url);
    eventually(
        "calls failing on credentials",
        Duration::from_secs(20),
        || async {
            let text = exporter.metrics().await;
            let failed = outcomes(&text, "GetImageSet")
                .get("credentials")
                .copied()
                .unwrap_or(0.0);
            (failed >= 2.0 * FAILED_POLLS_PER_SET).then_some(())
        },
    )
    .await;
    (sim, creds, exporter)
}

#[tokio::test]
async fn missing_container_credentials_are_counted_logged_and_recovered_from() {
    let (sim, creds, exporter) = missing_credentials(404).await;
    assert!(creds.requests() > 0, "the endpoint was asked");
    assert_eq!(
        sim.count("GetImageSet", "success").await,
        0,
        "no unsigned call went out"
    );
    let text = exporter.metrics().await;
    assert!(LAST_GOOD
        .iter()
        .all(|(is, _, _)| up(&text, is) == Some(0.0)));
    assert_eq!(exporter.get("/healthz").await.0, 200);
    eprintln!(
        "/readyz while every call fails on credentials: {}",
        exporter.get("/readyz").await.0
    );
    // Credentials are an account-wide condition: one line for all image sets, none each.
    for (is, _, _) in LAST_GOOD {
        let failed = exporter.log_lines("polling image set failed", Some(is));
        assert!(failed.is_empty(), "{is}: {failed:?}");
    }
    let failed: Vec<Value> = exporter
        .logs()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no usable AWS credentials"))
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["level"], "ERROR");
    assert_eq!(failed[0]["error_kind"], "credentials");
    assert_eq!(failed[0]["outcome"], "credentials");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("credentials"), "a clear error: {error}");
    assert!(
        !error.contains("container-secret") && !error.contains("ASIA"),
        "{error}"
    );

    creds.start_serving();
    let cleared = Instant::now();
    eventually(
        "recovery with served credentials",
        Duration::from_secs(15),
        || async {
            let text = exporter.metrics().await;
            LAST_GOOD
                .iter()
                .all(|(is, _, _)| up(&text, is) == Some(1.0))
                .then_some(())
        },
    )
    .await;
    let recovered = cleared.elapsed();
    eprintln!("recovered {recovered:?} after credentials were served");
    assert!(recovered <= recovery_within_an_interval(), "{recovered:?}");
    assert!(sim.count("GetImageSet", "success").await >= 2);
    let back = exporter
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "AWS credentials work again")
        .count();
    assert_eq!(back, 1);
    assert_eq!(exporter.get("/readyz").await.0, 200);
    let logs = serde_json::to_string(&exporter.logs()).unwrap();
    assert!(
        !logs.contains("container-secret") && !logs.contains("container-session-token"),
        "credentials are never logged"
    );
}

#[tokio::test]
async fn readiness_is_503_while_every_call_fails_on_credentials() {
    let (_sim, creds, exporter) = missing_credentials(404).await;
    assert_eq!(
        exporter.get("/readyz").await.0,
        503,
        "not ready without credentials"
    );
    creds.start_serving();
    eventually(
        "ready once credentials are served",
        Duration::from_secs(15),
        || async { (exporter.get("/readyz").await.0 == 200).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn failing_container_credentials_endpoint_is_counted_as_credentials() {
    let (_sim, _creds, exporter) = missing_credentials(500).await;
    // Not flipping between timeout and credentials: no per-image-set lines at all.
    for (is, _, _) in LAST_GOOD {
        let failed = exporter.log_lines("polling image set failed", Some(is));
        assert!(failed.is_empty(), "{is}: {failed:?}");
    }
    let text = exporter.metrics().await;
    assert_eq!(
        new_errors(&BTreeMap::new(), &outcomes(&text, "GetImageSet")),
        ["credentials"]
    );
}

// ---------------------------------------------------------------------------------------
// Invariant: whatever fails, only read-only, PHI-free operations are called.

/// The operations the exporter may call (README "Running it": IAM permissions).
const ALLOWED_OPERATIONS: [&str; 5] = [
    "GetImageSet",
    "SearchImageSets",
    "ListImageSetVersions",
    "ListDatastores",
    "GetDatastore",
];

#[tokio::test]
async fn only_read_only_operations_are_called_through_faults() {
    let sim = TestSimulator::start(&world()).await;
    let config = format!(
        "{}{}[[discovery]]\ndatastore_id = \"{DS}\"\nsearch_interval = \"500ms\"\nsearch_overlap = \"1s\"\n\
         reconcile_interval = \"1s\"\nrefresh_interval = \"1s\"\n",
        polling(REQUEST_TIMEOUT),
        watched()
    );
    let exporter = ExporterProcess::start_with_config(&sim, &config);
    let ops_seen = |wanted: &'static [&'static str]| {
        let sim = &sim;
        move || async move {
            let ops = sim.operations().await;
            wanted.iter().all(|op| ops.contains(*op)).then_some(())
        }
    };
    eventually(
        "discovery and polling at work",
        Duration::from_secs(15),
        ops_seen(&["GetImageSet", "SearchImageSets", "GetDatastore"]),
    )
    .await;
    // A version jump makes the exporter backfill with ListImageSetVersions.
    let (status, body) = sim.put_image_set(DS, IS1, json!({"versionId": "4"})).await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "a backfill",
        Duration::from_secs(15),
        ops_seen(&["ListImageSetVersions"]),
    )
    .await;
    // Every fault for a while, each until some answer carried it.
    for (faults, outcome) in [
        (json!({"throttleRatio": 1.0}), "ThrottlingException"),
        (json!({"errorRatio": 1.0}), "InternalServerException"),
        (json!({"accessDeniedRatio": 1.0}), "AccessDeniedException"),
        (json!({"corruption": "truncated"}), "truncated"),
        (json!({"corruption": "missing_fields"}), "missing_fields"),
        (json!({"corruption": "reset"}), "reset"),
    ] {
        let (status, body) = sim.set_faults(faults.clone()).await;
        assert_eq!(status, 200, "{body}");
        eventually(
            &format!("answers with {faults}"),
            Duration::from_secs(15),
            || async {
                let stats = sim.get("stats").await;
                let hit = ["SearchImageSets", "GetDatastore", "GetImageSet"]
                    .iter()
                    .filter(|op| stats["requests"][**op][outcome].as_u64().unwrap_or(0) > 0)
                    .count();
                (hit >= 2).then_some(())
            },
        )
        .await;
    }
    sim.set_faults(json!({})).await;
    let text = eventually("recovery", Duration::from_secs(15), || async {
        let text = exporter.metrics().await;
        LAST_GOOD
            .iter()
            .all(|(is, _, _)| up(&text, is) == Some(1.0))
            .then_some(text)
    })
    .await;
    assert!(exporter.try_wait().is_none());
    assert!(
        sample(
            &text,
            "healthimaging_datastore_status",
            &[("datastore_id", DS), ("status", "ACTIVE")]
        ) == Some(1.0)
    );

    let ops = sim.operations().await;
    let forbidden: Vec<_> = ops
        .iter()
        .filter(|op| !ALLOWED_OPERATIONS.contains(&op.as_str()))
        .collect();
    assert!(
        forbidden.is_empty(),
        "operations outside the read-only set: {forbidden:?}"
    );
    // The request log agrees with the statistics.
    let log = sim.get("requests?since=0").await;
    for request in log["requests"].as_array().unwrap() {
        let op = request["operation"].as_str().unwrap();
        assert!(ALLOWED_OPERATIONS.contains(&op), "{request}");
    }
}

#[tokio::test]
async fn the_simulator_records_forbidden_operations_by_name() {
    // The invariant above is only as good as the simulator's record of other calls.
    let sim = TestSimulator::start(&world()).await;
    let source = sim.source().await;
    let client = source.client();
    let _ = client
        .get_image_set_metadata()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await;
    let _ = client
        .get_image_frame()
        .datastore_id(DS)
        .image_set_id(IS1)
        .image_frame_information(
            aws_sdk_medicalimaging::types::ImageFrameInformation::builder()
                .image_frame_id("0123456789abcdef0123456789abcdef")
                .build()
                .unwrap(),
        )
        .send()
        .await;
    let _ = client
        .delete_image_set()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await;
    let _ = sim
        .http
        .get(format!("{}/not/an/operation", sim.endpoint))
        .send()
        .await;
    let ops = sim.operations().await;
    for op in [
        "GetImageSetMetadata",
        "GetImageFrame",
        "DeleteImageSet",
        "UnknownOperation",
    ] {
        assert!(ops.contains(op), "{op} recorded: {ops:?}");
    }
    let image_set: Value = sim.image_set(IS1).await;
    assert_eq!(image_set["imageSetState"], "ACTIVE", "nothing was deleted");
}
