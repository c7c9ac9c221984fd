//! Scenario files: every invalid file in tests/data/bad-scenarios is rejected with an error
//! naming the field (its first line `# expect: TEXT` says what the error must contain),
//! and the shipped scenarios load and behave as documented.

use std::path::Path;
use std::time::Duration;

use healthimaging_exporter::simulator::Scenario;

use crate::helpers::{eventually, expectation_table, scenario, TestSimulator, DS, IS1};

#[test]
fn every_bad_scenario_file_is_rejected_with_the_field_named() {
    for (file, expect) in expectation_table("bad-scenarios") {
        let expect = expect.as_str();
        let err = Scenario::from_file(&file)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", file.display()))
            .to_string();
        assert!(
            err.contains(expect),
            "{}: error `{err}` does not mention `{expect}`",
            file.display()
        );
        assert!(
            err.contains(&file.display().to_string()),
            "error names the file: {err}"
        );
    }
}

#[test]
fn shipped_demo_scenario_covers_what_the_demo_needs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulator/demo.toml");
    let s = Scenario::from_file(&path).expect("demo scenario is valid");
    assert_eq!(s.datastores.len(), 2);
    assert!(s.image_sets.len() >= 20);
    let statuses: std::collections::BTreeSet<_> = s
        .image_sets
        .iter()
        .filter_map(|i| i.workflow_status.as_ref().map(|w| w.0.as_str()))
        .collect();
    for status in healthimaging_exporter::simulator::vocab::WORKFLOW_STATUSES {
        assert!(statuses.contains(status), "demo lacks {status}");
    }
    let within_a_minute =
        |pred: &dyn Fn(&healthimaging_exporter::simulator::scenario::TimelineStep) -> bool| {
            s.image_sets
                .iter()
                .flat_map(|i| &i.timeline)
                .any(|step| step.after <= Duration::from_secs(60) && pred(step))
        };
    let status_is = |w: &'static str| {
        move |step: &healthimaging_exporter::simulator::scenario::TimelineStep| {
            step.workflow_status.as_ref().is_some_and(|s| s.0 == w)
        }
    };
    assert!(within_a_minute(&status_is("IMPORT_FAILED")));
    assert!(within_a_minute(&status_is("COPIED")));
    assert!(within_a_minute(&status_is("UPDATE_FAILED")));
    assert!(within_a_minute(&|step| step
        .storage_tier
        .as_ref()
        .is_some_and(|t| t.0 == "ARCHIVE_INSTANT_ACCESS")));
    assert!(s.image_sets.iter().any(|i| i.forced == Some(true)));
    assert!(s.image_sets.iter().any(|i| i.is_primary == Some(false)));
    assert!(s
        .image_sets
        .iter()
        .any(|i| i.state.as_ref().is_some_and(|st| st.0 == "LOCKED")));
    assert!(s
        .image_sets
        .iter()
        .any(|i| i.state.as_ref().is_some_and(|st| st.0 == "DELETED")));
}

#[tokio::test]
async fn timeline_steps_are_served_once_due() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTING\"\n\
         [[image_sets.timeline]]\nafter = \"300ms\"\nworkflow_status = \"IMPORT_FAILED\"\nmessage = \"broken\"\n"
    )))
    .await;
    assert_eq!(
        sim.image_set(IS1).await["imageSetWorkflowStatus"],
        "IMPORTING"
    );
    let failed = eventually("the timeline step", Duration::from_secs(5), || async {
        let set = sim.image_set(IS1).await;
        (set["imageSetWorkflowStatus"] == "IMPORT_FAILED").then_some(set)
    })
    .await;
    assert_eq!(failed["message"], "broken");
    assert!(failed["updatedAt"].as_f64().unwrap() > failed["createdAt"].as_f64().unwrap());
}

/// The shipped 100k scenario: datastore ids and the largest one's size.
const SCALE_DATASTORES: [&str; 3] = [
    "ed4bd7fbe3a4620e9167607cf724b0f5",
    "47a04854d48a6b2b62b8423d8e8b9abc",
    "41d15ac2c41c893fb65e0d84ef4946cc",
];

#[test]
fn shipped_scale_scenario_has_100k_image_sets_in_3_named_datastores() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulator/scale-100k.toml");
    let s = Scenario::from_file(&path).expect("scale scenario is valid");
    assert_eq!(s.datastores.len(), 3);
    assert!(s.datastores.iter().all(|d| d.name.is_some()));
    assert_eq!(s.generate.iter().map(|g| g.count).sum::<u32>(), 100_000);
    assert_eq!(s.generate[0].datastore_id.0, SCALE_DATASTORES[0]);
    assert!(s.generate.iter().all(|g| {
        g.updated_spread == Some(Duration::from_secs(30 * 86_400))
            && g.workflow_status_mix.as_ref().is_some_and(|m| {
                m.get("IMPORT_FAILED") == Some(&1) && m.get("IMPORTING") == Some(&2)
            })
            && g.storage_tier_mix
                .as_ref()
                .is_some_and(|m| m.contains_key("ARCHIVE_INSTANT_ACCESS"))
    }));
}

/// Measures the simulator process with the 100k scenario: its resident memory, and a full
/// SearchImageSets listing of the 34k-set datastore through the SDK paginator. Run in
/// release mode: `cargo test --release --test integration scale -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; run in release mode"]
async fn scale_100k_memory_and_search_page_latency() {
    use std::io::{BufRead, BufReader};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulator/scale-100k.toml");
    let started = std::time::Instant::now();
    let mut child = crate::helpers::command()
        .args(["simulate", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("simulator starts");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("simulator listening on URL")
        .to_string();
    let startup = started.elapsed();
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let rss_idle = rss(child.id());

    let sim = TestSimulator {
        _server: None,
        endpoint,
        http: reqwest::Client::new(),
    };
    let client = sim.source().await.client().clone();
    let ds = SCALE_DATASTORES[0];
    let mut pages = 0;
    let mut items = std::collections::BTreeSet::new();
    let mut last_updated = f64::MAX;
    let mut stream = client
        .search_image_sets()
        .datastore_id(ds)
        .into_paginator()
        .send();
    let listing = std::time::Instant::now();
    while let Some(page) = stream.next().await {
        let page = page.expect("page");
        pages += 1;
        for s in page.image_sets_metadata_summaries() {
            let t = s.updated_at().unwrap().as_secs_f64();
            assert!(t <= last_updated, "newest first");
            last_updated = t;
            assert!(items.insert(s.image_set_id().to_string()), "no duplicates");
        }
    }
    let elapsed = listing.elapsed();
    let rss_after = rss(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let per_page = elapsed.as_secs_f64() * 1000.0 / f64::from(pages);
    eprintln!(
        "scale-100k: startup {startup:?}, RSS {} MiB idle, {} MiB after listing; \
         {} image sets in {pages} pages in {elapsed:?}: {per_page:.2} ms per page (SDK, HTTP, loopback)",
        rss_idle / 1024,
        rss_after / 1024,
        items.len(),
    );
    assert_eq!(items.len(), 34_000);
    assert_eq!(pages, 680);
    assert!(per_page < 25.0, "{per_page} ms per page");
}
