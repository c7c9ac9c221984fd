//! The scheduler against the simulator at scale: the request budget holds, cadences are
//! kept, throttling cuts the rate and it recovers. Measured from the simulator's own
//! request log, not from the exporter's view of itself.

use std::collections::HashMap;
use std::time::Duration;

use healthimaging_exporter::config::ImageSetTarget;
use healthimaging_exporter::ids::{DatastoreId, ImageSetId};
use serde_json::json;

use crate::helpers::{
    epoch_now, eventually, generated_id, max_in_window, rate_between, sample, test_config,
    ExporterProcess, TestApp, TestSimulator, DS,
};

fn polls_per_set(requests: &[crate::helpers::Logged]) -> HashMap<&str, Vec<f64>> {
    let mut per: HashMap<&str, Vec<f64>> = HashMap::new();
    for (at, id, _) in requests {
        per.entry(id.as_str()).or_default().push(*at);
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_sets_stay_within_budget_and_in_progress_sets_keep_their_cadence() {
    let sim = TestSimulator::start(&format!(
        "seed = 1\n[[generate]]\ndatastore_id = \"{DS}\"\ncount = 2000\n\
         [[generate]]\ndatastore_id = \"{DS}\"\ncount = 5\nworkflow_status = \"IMPORTING\"\n"
    ))
    .await;
    let mut config = test_config(&sim, &[]);
    config.polling.max_requests_per_second = 20.0;
    config.polling.burst = 20;
    // Demand 2,000 / 110 s + 5 / 5 s = 19.2 calls/s: within the 20/s budget.
    config.polling.interval = Duration::from_secs(110);
    config.polling.failed_interval = Duration::from_secs(110);
    config.polling.in_progress_interval = Duration::from_secs(5);
    config.polling.max_backoff = Duration::from_secs(60);
    config.polling.jitter = 0.05;
    config.polling.concurrency = 8;
    let settled: Vec<String> = (0..2000).map(|i| generated_id(0, i)).collect();
    let importing: Vec<String> = (0..5).map(|i| generated_id(1, i)).collect();
    // The importing sets come first, so the first sweep reads them at once and knows they
    // are in progress; from then on they must keep their cadence while the 2,000 settled
    // sets saturate the budget.
    config.image_sets = importing
        .iter()
        .chain(&settled)
        .map(|id| ImageSetTarget {
            datastore_id: DatastoreId::parse(DS).unwrap(),
            image_set_id: ImageSetId::parse(id).unwrap(),
            version_id: None,
        })
        .collect();
    let t0 = epoch_now();
    let started = tokio::time::Instant::now();
    let app = TestApp::spawn(config).await;

    // Mid first sweep, while the budget is saturated by 2,000 settled sets, an import ends.
    tokio::time::sleep_until(started + Duration::from_secs(40)).await;
    let text = app.metrics().await;
    let lag = sample(&text, "healthimaging_scheduler_queue_lag_seconds", &[]).unwrap();
    assert!(lag > 1.0, "the saturated first sweep shows as lag: {lag}");
    assert_eq!(
        sample(&text, "healthimaging_scheduler_effective_rate", &[]),
        Some(20.0)
    );
    let changed = importing[0].clone();
    sim.put_image_set(DS, &changed, json!({"imageSetWorkflowStatus": "IMPORTED"}))
        .await;
    let put_at = std::time::Instant::now();
    let labels = [("image_set_id", changed.as_str()), ("status", "IMPORTED")];
    eventually(
        "the finished import on /metrics",
        Duration::from_secs(30),
        || async {
            (sample(
                &app.metrics().await,
                "healthimaging_image_set_workflow_status",
                &labels,
            ) == Some(1.0))
            .then_some(())
        },
    )
    .await;
    let detection = put_at.elapsed();
    assert!(
        detection <= Duration::from_secs(7),
        "in_progress_interval + 2 s, got {detection:?}"
    );

    // The first sweep takes ~105 s (2,000 sets at ~19/s); one more interval after it.
    tokio::time::sleep_until(started + Duration::from_secs(232)).await;
    let requests = sim.requests_since(t0).await;
    let span = requests.last().unwrap().0 - requests[0].0;
    let average = requests.len() as f64 / span;
    let windows: Vec<_> = [1.0, 10.0, 60.0]
        .iter()
        .map(|w| (*w, max_in_window(&requests, *w)))
        .collect();
    // A token bucket allows rate × time + burst, in every window as over the whole run.
    // Timestamps are taken at the simulator, after transport, while the limiter runs on
    // the exporter's clock: 100 ms of slack absorbs that latency jitter.
    let allowed = |seconds: f64| 20.0 * (seconds + 0.1) + 20.0;
    for (w, n) in &windows {
        assert!(
            *n as f64 <= allowed(*w),
            "{n} requests in {w} s exceed rate 20 + burst 20"
        );
    }
    assert!(
        requests.len() as f64 <= allowed(span),
        "{} requests in {span:.0} s (average {average:.2}/s) exceed 20/s + burst 20",
        requests.len()
    );

    let per_set = polls_per_set(&requests);
    for id in &settled {
        let times = &per_set[id.as_str()];
        assert!(
            times.len() >= 2,
            "{id} polled {} times in {span:.0} s",
            times.len()
        );
        let gap = times[1] - times[0];
        assert!(
            (103.5..=119.0).contains(&gap),
            "{id}: second poll {gap:.1} s after the first (interval 110 s ± 5 %)"
        );
    }
    let mut worst_gap: f64 = 0.0;
    for id in &importing[1..] {
        let times = &per_set[id.as_str()];
        for w in times.windows(2) {
            worst_gap = worst_gap.max(w[1] - w[0]);
        }
        assert!(times.len() >= 40, "{id}: {} polls", times.len());
    }
    assert!(
        worst_gap <= 6.5,
        "in-progress polls {worst_gap:.2} s apart (in_progress_interval 5 s)"
    );
    let text = app.metrics().await;
    let cost = sample(&text, "healthimaging_api_estimated_cost_dollars_total", &[]).unwrap();
    let calls: f64 = crate::helpers::samples(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "healthimaging_api_requests_total")
        .map(|(_, _, v)| v)
        .sum();
    // Families are gathered one after another while up to 8 polls are in flight.
    let priced = cost / (0.005 / 1000.0);
    assert!(
        (priced - calls).abs() <= 8.0,
        "cost {cost} prices {priced:.0} calls, counted {calls}"
    );
    eprintln!(
        "budget: {} requests in {span:.0} s, average {average:.2}/s, max per window {windows:?}; \
         status change on /metrics after {detection:?}; worst in-progress gap {worst_gap:.2} s",
        requests.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttling_storm_cuts_the_rate_which_recovers_afterwards_without_log_floods() {
    let sim = TestSimulator::start(&format!(
        "seed = 2\n[[generate]]\ndatastore_id = \"{DS}\"\ncount = 200\n"
    ))
    .await;
    let ids: Vec<String> = (0..200).map(|i| generated_id(0, i)).collect();
    let polling = "interval = \"10s\"\nin_progress_interval = \"5s\"\nfailed_interval = \"10s\"\nmax_backoff = \"30s\"\n\
                   max_requests_per_second = 20\nburst = 20\njitter = 0.05\nconcurrency = 8\nrequest_timeout = \"5s\"\n";
    let exporter = ExporterProcess::start_with(&sim, polling, &ids);
    let addr = exporter.addr().await;
    exporter
        .wait_for_log("first sweep", |l| {
            l["message"] == "first poll round completed"
        })
        .await;
    let sleep = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));

    sleep(10).await;
    let storm_start = epoch_now();
    let logs_before = exporter.logs().len();
    sim.set_faults(json!({"throttleRatio": 0.5})).await;
    sleep(15).await;
    let http = reqwest::Client::new();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let status = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status.is_success(),
            "{path} answers {status} during the storm"
        );
    }
    let text = exporter.metrics().await;
    let effective = sample(&text, "healthimaging_scheduler_effective_rate", &[]).unwrap();
    assert!(
        effective < 5.0,
        "effective rate {effective} during the storm"
    );
    assert!(sample(&text, "healthimaging_api_throttled_total", &[]).unwrap() > 0.0);
    sleep(15).await;
    let storm_end = epoch_now();
    sim.set_faults(json!({})).await;
    let storm_logs = exporter.logs()[logs_before..].to_vec();
    sleep(35).await;

    let requests = sim.requests_since(storm_start - 10.0).await;
    let before = rate_between(&requests, storm_start - 10.0, storm_start);
    let during = rate_between(&requests, storm_start + 5.0, storm_end);
    let after = rate_between(&requests, storm_end + 25.0, storm_end + 35.0);
    eprintln!(
        "throttling storm: {before:.1}/s before, {during:.1}/s during, {after:.1}/s 25-35 s after"
    );
    assert!(
        before >= 15.0,
        "steady state before the storm: {before:.1}/s"
    );
    assert!(during <= 6.0, "rate cut within seconds: {during:.1}/s");
    assert!(
        after >= 15.0,
        "rate recovered after the storm: {after:.1}/s"
    );
    assert!(
        exporter.try_wait().is_none(),
        "the exporter is still running"
    );

    let throttled_calls = requests
        .iter()
        .filter(|r| r.2 == "ThrottlingException")
        .count();
    let lines = storm_logs.len();
    assert!(
        throttled_calls >= 20,
        "the storm throttled {throttled_calls} calls"
    );
    assert!(
        lines <= 3,
        "{lines} log lines for {throttled_calls} throttled calls: {storm_logs:?}"
    );
    exporter
        .wait_for_log("recovery line", |l| {
            l["message"] == "api request rate recovered"
        })
        .await;
}
