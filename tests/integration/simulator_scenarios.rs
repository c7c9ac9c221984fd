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
