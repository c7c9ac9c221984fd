//! The simulator's control API: upserts, versions, deletes, faults, stats, bad input.

use aws_sdk_medicalimaging::types::ImageSetWorkflowStatus;
use serde_json::json;

use crate::helpers::{scenario, TestSimulator, DS, IS1, IS3};

fn one_set() -> String {
    scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n"
    ))
}

#[tokio::test]
async fn put_upserts_fields_and_creates_image_sets() {
    let sim = TestSimulator::start(&one_set()).await;
    let (status, body) = sim
        .put_image_set(
            DS,
            IS1,
            json!({"imageSetWorkflowStatus": "IMPORT_FAILED", "message": "bad file"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imageSetWorkflowStatus"], "IMPORT_FAILED");
    assert_eq!(body["versionId"], "1");

    let (status, created) = sim
        .put_image_set(DS, IS3, json!({"storageTier": "ARCHIVE_INSTANT_ACCESS"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["imageSetWorkflowStatus"], "CREATED");
    let out = sim
        .source()
        .await
        .client()
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS3)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Created)
    );
}

#[tokio::test]
async fn invalid_control_input_is_rejected_and_changes_nothing() {
    let sim = TestSimulator::start(&one_set()).await;
    let before = sim.image_set(IS1).await;
    for body in [
        json!({"imageSetWorkflowStatus": "DONE"}),
        json!({"versionId": "0"}),
        json!({"versionId": 2}),
        json!({"unknownField": 1}),
        json!([1, 2]),
    ] {
        let (status, answer) = sim.put_image_set(DS, IS1, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, _) = sim.put_image_set(DS, "BAD", json!({})).await;
    assert_eq!(status, 400);
    let (status, answer) = sim.set_faults(json!({"throttleRatio": 2})).await;
    assert_eq!(status, 400);
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("throttleRatio"));
    assert_eq!(sim.image_set(IS1).await, before);
    assert_eq!(sim.get("faults").await["throttleRatio"], 0.0);
}

#[tokio::test]
async fn delete_makes_get_image_set_answer_404() {
    let sim = TestSimulator::start(&one_set()).await;
    assert_eq!(sim.delete_image_set(DS, IS1).await, 200);
    assert_eq!(sim.delete_image_set(DS, IS1).await, 404);
    let err = sim
        .source()
        .await
        .client()
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    assert_eq!(sim.get("image-sets").await["imageSets"], json!([]));
}

#[tokio::test]
async fn unknown_enum_values_can_be_served_on_request() {
    let sim = TestSimulator::start(&one_set()).await;
    let (status, _) = sim
        .put_image_set(
            DS,
            IS1,
            json!({"imageSetWorkflowStatus": "ARCHIVING", "allowUnknownValues": true}),
        )
        .await;
    assert_eq!(status, 200);
    let out = sim
        .source()
        .await
        .client()
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.image_set_workflow_status().map(|s| s.as_str()),
        Some("ARCHIVING")
    );
}

#[tokio::test]
async fn stats_count_requests_by_operation_and_outcome() {
    let sim = TestSimulator::start(&one_set()).await;
    let client = sim.source().await;
    for _ in 0..3 {
        client
            .client()
            .get_image_set()
            .datastore_id(DS)
            .image_set_id(IS1)
            .send()
            .await
            .unwrap();
    }
    let stats = sim.get("stats").await;
    assert_eq!(stats["requests"]["GetImageSet"]["success"], 3);
    assert_eq!(stats["total"], 3);
}
