//! Discovery end to end: the exporter binary against the simulator, through the real SDK.
//! Datastores are listed, image sets found by SearchImageSets, polled newest first, changes
//! picked up by window searches, skipped versions backfilled, shards disjoint, and no DICOM
//! value ever reaches /metrics or the logs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const DS_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DS_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DS_SCRATCH: &str = "cccccccccccccccccccccccccccccccc";

/// Starts the exporter binary on `sim` with `body` (TOML sections beyond server and aws).
fn exporter(sim: &TestSimulator, body: &str) -> ExporterProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{}\"\nmax_attempts = 1\n{body}\n",
        sim.endpoint
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = command();
    cmd.args(["run", "--config"]).arg(&path);
    ExporterProcess::spawn(cmd, dir)
}

/// Fast polling with a generous budget; discovered sets are re-read only on change.
const FAST: &str = "[polling]\ninterval = \"2s\"\nin_progress_interval = \"500ms\"\n\
                    failed_interval = \"2s\"\nmax_requests_per_second = 300\nburst = 50\n\
                    request_timeout = \"2s\"\njitter = 0\n";

/// A discovery entry with quick windows.
fn discovery(selector: &str, extra: &str) -> String {
    format!(
        "[[discovery]]\n{selector}\nsearch_interval = \"300ms\"\nsearch_overlap = \"5s\"\n\
         reconcile_interval = \"1h\"\nrefresh_interval = \"1h\"\n{extra}\n"
    )
}

/// The value of label `key` of a parsed sample.
fn label<'a>(s: &'a Sample, key: &str) -> Option<&'a str> {
    s.1.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Sum of `healthimaging_image_sets` for one datastore, and the part still `unknown`.
fn counted(text: &str, ds: &str) -> (f64, f64) {
    let mut total = 0.0;
    let mut unknown = 0.0;
    for s in samples(text) {
        if s.0 == "healthimaging_image_sets" && label(&s, "datastore_id") == Some(ds) {
            total += s.2;
            if label(&s, "workflow_status") == Some("unknown") {
                unknown += s.2;
            }
        }
    }
    (total, unknown)
}

/// API requests of `operation` since `since`, as (time, image set id).
async fn requests(sim: &TestSimulator, operation: &str, since: f64) -> Vec<(f64, String)> {
    let body = sim.get(&format!("requests?since={since}")).await;
    body["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["operation"] == operation)
        .map(|r| {
            (
                r["at"].as_f64().unwrap_or(0.0),
                r["imageSetId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The simulator's image set ids, most recently updated first.
async fn newest_first(sim: &TestSimulator) -> Vec<String> {
    let mut sets: Vec<(f64, String)> = sim.get("image-sets").await["imageSets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["updatedAt"].as_f64().unwrap(),
                s["imageSetId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    sets.sort_by(|a, b| b.0.total_cmp(&a.0));
    sets.into_iter().map(|(_, id)| id).collect()
}

async fn ready(exporter: &ExporterProcess) {
    let addr = exporter.addr().await;
    eventually("/readyz 200", Duration::from_secs(30), || async {
        let resp = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_datastores_are_discovered_and_changes_are_polled_without_re_polling_the_rest() {
    let sim = TestSimulator::start(&format!(
        "seed = 1\n\
         [[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[datastores]]\nid = \"{DS_B}\"\nname = \"prod-b\"\n\
         [[datastores]]\nid = \"{DS_SCRATCH}\"\nname = \"scratch-c\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 120\n\
         [[generate]]\ndatastore_id = \"{DS_B}\"\ncount = 80\n\
         [[generate]]\ndatastore_id = \"{DS_SCRATCH}\"\ncount = 10\n"
    ))
    .await;
    let exporter = exporter(
        &sim,
        &format!(
            "{FAST}{}",
            discovery("all_datastores = true\nexclude = \"scratch-.*\"", "")
        ),
    );
    ready(&exporter).await;
    let text = exporter.metrics().await;
    assert_eq!(counted(&text, DS_A).0, 120.0, "{text}");
    assert_eq!(counted(&text, DS_B).0, 80.0);
    assert_eq!(counted(&text, DS_SCRATCH).0, 0.0, "excluded by name");
    assert_eq!(
        sample(
            &text,
            "healthimaging_datastore_info",
            &[("datastore_id", DS_A), ("datastore_name", "prod-a")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "healthimaging_datastore_status",
            &[("datastore_id", DS_B), ("status", "ACTIVE")]
        ),
        Some(1.0)
    );
    assert!(!text.contains(DS_SCRATCH));
    // Every discovered set is read once, then nothing is unknown any more.
    eventually("every set polled", Duration::from_secs(30), || async {
        let text = exporter.metrics().await;
        (counted(&text, DS_A) == (120.0, 0.0) && counted(&text, DS_B) == (80.0, 0.0)).then_some(())
    })
    .await;
    // Healthy discovered sets get no per-image-set series by default.
    let text = exporter.metrics().await;
    assert_eq!(
        samples(&text)
            .iter()
            .filter(|s| s.0 == "healthimaging_image_set_up")
            .count(),
        0
    );

    // A change is found by the window search and polled; nothing else is re-polled.
    let changed = generated_id(1, 17);
    let since = epoch_now();
    let (status, _) = sim
        .put_image_set(
            DS_B,
            &changed,
            json!({"imageSetWorkflowStatus": "IMPORT_FAILED", "message": "bad DICOM"}),
        )
        .await;
    assert_eq!(status, 200);
    let failed = [
        ("datastore_id", DS_B),
        ("image_set_id", changed.as_str()),
        ("status", "IMPORT_FAILED"),
    ];
    eventually(
        "the failure on /metrics",
        Duration::from_secs(10),
        || async {
            let text = exporter.metrics().await;
            (sample(&text, "healthimaging_image_set_workflow_status", &failed) == Some(1.0))
                .then_some(())
        },
    )
    .await;
    let took = epoch_now() - since;
    let text = exporter.metrics().await;
    assert_eq!(
        sample(
            &text,
            "healthimaging_workflow_transitions_total",
            &[
                ("datastore_id", DS_B),
                ("from", "IMPORTED"),
                ("to", "IMPORT_FAILED")
            ]
        ),
        Some(1.0)
    );
    // Three settled intervals later, only the changed set was read again.
    let settle_until = epoch_now() + 6.0;
    eventually("6 s to pass", Duration::from_secs(10), || async {
        (epoch_now() >= settle_until).then_some(())
    })
    .await;
    let polled: BTreeSet<String> = requests(&sim, "GetImageSet", since)
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(polled, BTreeSet::from([changed.clone()]), "took {took:.2}s");
    assert!(!requests(&sim, "SearchImageSets", since).await.is_empty());
    let event = exporter
        .wait_for_log("the transition event", |l| {
            l["event"] == "workflow_status_changed" && l["image_set_id"] == changed.as_str()
        })
        .await;
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["message"], "bad DICOM");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sweep_counts_unknown_sets_at_once_and_reads_the_newest_first() {
    let sim = TestSimulator::start(&format!(
        "seed = 3\n[[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 150\nupdated_spread = \"30d\"\n"
    ))
    .await;
    // 3 calls a second: the listing (3 pages) is done long before the polls. Every window
    // search costs a call too: at most one every 2 s here.
    let exporter = exporter(
        &sim,
        &format!(
            "[polling]\nmax_requests_per_second = 3\nburst = 3\njitter = 0\n{}",
            discovery(&format!("datastore_id = \"{DS_A}\""), "")
                .replace("search_interval = \"300ms\"", "search_interval = \"2s\"")
        ),
    );
    ready(&exporter).await;
    let (total, unknown) = counted(&exporter.metrics().await, DS_A);
    assert_eq!(total, 150.0);
    assert!(
        unknown > 100.0,
        "{unknown} of 150 still unknown right after discovery"
    );
    // The first reads go to the most recently updated image sets.
    let newest = newest_first(&sim).await;
    let first: Vec<String> = eventually("5 polls", Duration::from_secs(10), || async {
        let polls = requests(&sim, "GetImageSet", 0.0).await;
        (polls.len() >= 5).then(|| polls.into_iter().take(5).map(|(_, id)| id).collect())
    })
    .await;
    let expected: Vec<String> = newest.into_iter().take(5).collect();
    assert_eq!(first, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_that_happened_and_reverted_between_polls_is_backfilled() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"UPDATED\"\n"
    )))
    .await;
    let exporter = ExporterProcess::start(&sim, &[IS1]);
    exporter
        .wait_for_log("the first poll round", |l| {
            l["message"] == "first poll round completed"
        })
        .await;
    // Hold the polls off (every call throttled) while version 2 fails and version 3 fixes it.
    sim.set_faults(json!({"throttleRatio": 1.0})).await;
    let (s2, _) = sim
        .put_image_set(
            DS,
            IS1,
            json!({"versionId": "2", "imageSetWorkflowStatus": "UPDATE_FAILED", "message": "tag mismatch"}),
        )
        .await;
    let (s3, _) = sim
        .put_image_set(
            DS,
            IS1,
            json!({"versionId": "3", "imageSetWorkflowStatus": "UPDATED"}),
        )
        .await;
    assert_eq!((s2, s3), (200, 200));
    sim.set_faults(json!({"throttleRatio": 0.0})).await;
    let failed = exporter
        .wait_for_log("the backfilled failure", |l| {
            l["event"] == "workflow_status_changed" && l["to"] == "UPDATE_FAILED"
        })
        .await;
    assert_eq!(failed["backfilled"], true, "{failed}");
    assert_eq!(failed["version_id"], "2");
    assert_eq!(failed["from"], "UPDATED");
    assert_eq!(failed["message"], "tag mismatch");
    assert_eq!(failed["level"], "WARN");
    let recovered = exporter
        .wait_for_log("the observed recovery", |l| {
            l["event"] == "workflow_status_changed" && l["to"] == "UPDATED"
        })
        .await;
    assert_eq!(recovered["version_id"], "3");
    assert!(recovered.get("backfilled").is_none(), "{recovered}");
    let text = exporter.metrics().await;
    for (from, to) in [("UPDATED", "UPDATE_FAILED"), ("UPDATE_FAILED", "UPDATED")] {
        assert_eq!(
            sample(
                &text,
                "healthimaging_workflow_transitions_total",
                &[("datastore_id", DS), ("from", from), ("to", to)]
            ),
            Some(1.0),
            "{from} -> {to}"
        );
    }
    assert_eq!(sim.count("ListImageSetVersions", "success").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_cover_every_image_set_exactly_once() {
    let sim = TestSimulator::start(&format!(
        "seed = 5\n\
         [[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[datastores]]\nid = \"{DS}\"\nname = \"static\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 300\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS2}\"\n\
         [[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS3}\"\n"
    ))
    .await;
    let statics: String = [IS1, IS2, IS3]
        .iter()
        .map(|is| format!("[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{is}\"\n"))
        .collect();
    let shard = |n: u32| {
        exporter(
            &sim,
            &format!(
                "{FAST}[metrics]\nimage_set_detail = \"all\"\n[sharding]\nshard = {n}\ntotal_shards = 2\n{statics}{}",
                discovery(&format!("datastore_id = \"{DS_A}\""), "")
            ),
        )
    };
    let shards = [shard(0), shard(1)];
    let mut seen: Vec<BTreeSet<String>> = Vec::new();
    for (n, exporter) in shards.iter().enumerate() {
        ready(exporter).await;
        let text = exporter.metrics().await;
        assert_eq!(
            sample(&text, "healthimaging_shard_ordinal", &[]),
            Some(n as f64)
        );
        assert_eq!(sample(&text, "healthimaging_total_shards", &[]), Some(2.0));
        let ids: BTreeSet<String> = samples(&text)
            .into_iter()
            .filter(|s| s.0 == "healthimaging_image_set_up")
            .filter_map(|s| label(&s, "image_set_id").map(str::to_owned))
            .collect();
        assert!(ids.len() > 100, "shard {n} watches {} sets", ids.len());
        assert_eq!(
            sample(&text, "healthimaging_targets", &[]),
            Some(ids.len() as f64)
        );
        seen.push(ids);
    }
    assert!(
        seen[0].is_disjoint(&seen[1]),
        "an image set is watched twice"
    );
    let mut all: BTreeSet<String> = (0..300).map(|i| generated_id(0, i)).collect();
    all.extend([IS1, IS2, IS3].map(str::to_owned));
    let union: BTreeSet<String> = seen[0].union(&seen[1]).cloned().collect();
    assert_eq!(union, all);
}

#[tokio::test(flavor = "multi_thread")]
async fn dicom_values_and_credentials_never_reach_metrics_or_logs() {
    let sentinels = [
        "SENTINEL^PHI^PATIENT",
        "PHIPID424242",
        "SENTINEL STUDY OF THE HEAD",
        "ACCSENTINEL77",
        "1.2.3.999999.424242",
        "GENERATED^PATIENT",
        "GENPID",
    ];
    let sim = TestSimulator::start(&format!(
        "seed = 9\n[[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 60\n\
         [[image_sets]]\ndatastore_id = \"{DS_A}\"\nimage_set_id = \"{IS1}\"\n\
         workflow_status = \"IMPORT_FAILED\"\nmessage = \"import failed\"\n\
         dicom_tags = {{ DICOMPatientName = \"{}\", DICOMPatientId = \"{}\", \
         DICOMStudyDescription = \"{}\", DICOMAccessionNumber = \"{}\", \
         DICOMStudyInstanceUID = \"{}\" }}\n",
        sentinels[0], sentinels[1], sentinels[2], sentinels[3], sentinels[4]
    ))
    .await;
    // The search really returns them: otherwise this test would prove nothing.
    let listed = reqwest::Client::new()
        .post(format!("{}/datastore/{DS_A}/searchImageSets", sim.endpoint))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test")
        .body("{}")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(sentinels[0]) && listed.contains("GENERATED^PATIENT"));

    let exporter = exporter(
        &sim,
        &format!(
            "{FAST}[log]\nlevel = \"debug\"\n[metrics]\nimage_set_detail = \"all\"\n{}",
            discovery(&format!("datastore_id = \"{DS_A}\""), "")
        ),
    );
    ready(&exporter).await;
    eventually("every set polled", Duration::from_secs(30), || async {
        (counted(&exporter.metrics().await, DS_A) == (61.0, 0.0)).then_some(())
    })
    .await;
    let text = exporter.metrics().await;
    let logs: String = exporter
        .logs()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(logs.contains("SearchImageSets") || logs.contains("datastore listed in full"));
    for s in sentinels {
        assert!(!text.contains(s), "{s} in /metrics");
        assert!(!logs.contains(s), "{s} in the logs");
    }
    // Nor credentials or signatures (helpers::command() sets these test credentials).
    for secret in [
        "AKIDPROCESSTEST",
        "process-secret",
        "Signature=",
        "AWS4-HMAC-SHA256",
    ] {
        assert!(!text.contains(secret), "{secret} in /metrics");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_finds_image_sets_that_vanished_without_an_update() {
    let sim = TestSimulator::start(&format!(
        "seed = 11\n[[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 20\n"
    ))
    .await;
    let exporter = exporter(
        &sim,
        &format!(
            "{FAST}{}",
            discovery(&format!("datastore_id = \"{DS_A}\""), "")
                .replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\"")
        ),
    );
    ready(&exporter).await;
    eventually("every set polled", Duration::from_secs(30), || async {
        (counted(&exporter.metrics().await, DS_A) == (20.0, 0.0)).then_some(())
    })
    .await;
    let victim = generated_id(0, 7);
    assert_eq!(sim.delete_image_set(DS_A, &victim).await, 200);
    let gone = exporter
        .wait_for_log("image_set_gone", |l| {
            l["event"] == "image_set_gone" && l["image_set_id"] == victim.as_str()
        })
        .await;
    assert_eq!(gone["to"], "gone");
    let text = exporter.metrics().await;
    assert!(text.contains("sweep=\"full\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn three_datastores_under_a_five_calls_per_second_budget() {
    // The 100k run (examples/discovery-scale.rs) scaled down to 3,000 sets for CI.
    let mut scenario = String::from("seed = 13\n");
    let datastores = [DS_A, DS_B, DS_SCRATCH];
    for (n, ds) in datastores.iter().enumerate() {
        scenario.push_str(&format!(
            "[[datastores]]\nid = \"{ds}\"\nname = \"scale-{n}\"\n"
        ));
    }
    for ds in datastores {
        scenario.push_str(&format!(
            "[[generate]]\ndatastore_id = \"{ds}\"\ncount = 1000\nupdated_spread = \"30d\"\n\
             workflow_status_mix = {{ IMPORTED = 98, IMPORT_FAILED = 2 }}\n"
        ));
    }
    let sim = TestSimulator::start(&scenario).await;
    let since = epoch_now();
    let exporter = exporter(
        &sim,
        "[polling]\nmax_requests_per_second = 5\n\
         [[discovery]]\nall_datastores = true\nsearch_interval = \"5s\"\n",
    );
    let addr = exporter.addr().await;
    eventually(
        "discovery of 3,000 sets",
        Duration::from_secs(60),
        || async {
            let ready = reqwest::get(format!("http://{addr}/readyz"))
                .await
                .ok()?
                .status()
                == 200;
            let text = exporter.metrics().await;
            let total: f64 = datastores.iter().map(|ds| counted(&text, ds).0).sum();
            (ready && total == 3000.0).then_some(())
        },
    )
    .await;
    let discovered = epoch_now() - since;
    // 60 pages + 1 ListDatastores at 5/s with a burst of 10: about 10-13 s.
    assert!(discovered < 30.0, "discovery took {discovered:.1}s");

    let changed = generated_id(2, 500);
    let at = epoch_now();
    sim.put_image_set(
        DS_SCRATCH,
        &changed,
        json!({"imageSetWorkflowStatus": "IMPORT_FAILED"}),
    )
    .await;
    let failed = [
        ("image_set_id", changed.as_str()),
        ("status", "IMPORT_FAILED"),
    ];
    eventually(
        "the failure on /metrics",
        Duration::from_secs(30),
        || async {
            let text = exporter.metrics().await;
            (sample(&text, "healthimaging_image_set_workflow_status", &failed) == Some(1.0))
                .then_some(())
        },
    )
    .await;
    let detected = epoch_now() - at;
    assert!(detected < 15.0, "detected after {detected:.1}s");

    let requests = sim.requests_since(since).await;
    assert!(
        max_in_window(&requests, 10.0) <= 5 * 10 + 10,
        "more than rate x window + burst in a 10 s window"
    );
    assert!(max_in_window(&requests, 1.0) <= 5 + 10);
    assert!(requests.iter().all(|r| r.2 != "ThrottlingException"));
    eprintln!(
        "3,000 sets: discovered in {discovered:.1}s, failure on /metrics after {detected:.1}s, \
         {} calls, max {} in 10 s",
        requests.len(),
        max_in_window(&requests, 10.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovered_set_deleted_before_its_first_read_is_dropped() {
    let sim = TestSimulator::start(&format!(
        "seed = 17\n[[datastores]]\nid = \"{DS_A}\"\nname = \"prod-a\"\n\
         [[generate]]\ndatastore_id = \"{DS_A}\"\ncount = 100\nupdated_spread = \"30d\"\n"
    ))
    .await;
    // The oldest set is read last: delete it as soon as discovery has listed it.
    let oldest = newest_first(&sim).await.pop().unwrap();
    let exporter = exporter(
        &sim,
        &format!(
            "[polling]\nmax_requests_per_second = 20\nburst = 5\ngone_retention = \"1s\"\n\
             in_progress_interval = \"200ms\"\nmax_backoff = \"500ms\"\n{}",
            discovery(&format!("datastore_id = \"{DS_A}\""), "")
        ),
    );
    ready(&exporter).await;
    assert_eq!(sim.delete_image_set(DS_A, &oldest).await, 200);
    exporter
        .wait_for_log("the drop", |l| {
            l["message"] == "image set dropped: gone for longer than polling.gone_retention"
                && l["image_set_id"] == oldest.as_str()
        })
        .await;
    let text = exporter.metrics().await;
    assert_eq!(sample(&text, "healthimaging_targets", &[]), Some(99.0));
    assert_eq!(counted(&text, DS_A).0, 99.0);
    let config_hint = exporter.logs().into_iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("check the datastore and image set ids"))
    });
    assert!(
        !config_hint,
        "a deleted discovered set is no config mistake"
    );
}
