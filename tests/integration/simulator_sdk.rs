//! The simulator as seen by the real aws-sdk-medicalimaging client over HTTP.

use std::time::Duration;

use aws_sdk_medicalimaging::error::ProvideErrorMetadata;
use aws_sdk_medicalimaging::types::{ImageSetState, ImageSetWorkflowStatus, StorageTier};
use healthimaging_exporter::ids::{DatastoreId, ImageSetId, ImageSetKey, VersionId};
use healthimaging_exporter::model::WorkflowStatus;
use healthimaging_exporter::source::{ErrorKind, ImageSetSource};
use serde_json::json;

use crate::helpers::{scenario, TestSimulator, DS, IS1, IS2};

fn full_scenario() -> String {
    scenario(&format!(
        r#"
[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS1}"
version_id = "3"
workflow_status = "UPDATE_FAILED"
state = "DELETED"
storage_tier = "ARCHIVE_INSTANT_ACCESS"
is_primary = false
forced = true
message = "Update failed: invalid DICOM tag"
created_ago = "10d"
updated_ago = "1h"
last_accessed_ago = "2h"

[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS2}"
"#
    ))
}

fn key(ds: &str, is: &str) -> ImageSetKey {
    ImageSetKey {
        datastore_id: DatastoreId::parse(ds).unwrap(),
        image_set_id: ImageSetId::parse(is).unwrap(),
    }
}

#[tokio::test]
async fn get_image_set_returns_every_field_of_the_model() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let source = sim.source().await;
    let out = source
        .client()
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await
        .expect("GetImageSet succeeds");
    let control = sim.image_set(IS1).await;

    assert_eq!(out.datastore_id(), DS);
    assert_eq!(out.image_set_id(), IS1);
    assert_eq!(out.version_id(), "3");
    assert_eq!(out.image_set_state(), &ImageSetState::Deleted);
    assert_eq!(
        out.image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::UpdateFailed)
    );
    assert_eq!(out.storage_tier(), Some(&StorageTier::ArchiveInstantAccess));
    assert_eq!(out.is_primary(), Some(false));
    assert_eq!(out.overrides().and_then(|o| o.forced()), Some(true));
    assert_eq!(out.message(), Some("Update failed: invalid DICOM tag"));
    assert_eq!(
        out.image_set_arn(),
        Some(
            format!("arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}/imageset/{IS1}")
                .as_str()
        )
    );
    for (name, value) in [
        ("createdAt", out.created_at()),
        ("updatedAt", out.updated_at()),
        ("deletedAt", out.deleted_at()),
        ("lastAccessedAt", out.last_accessed_at()),
    ] {
        let sdk = value
            .unwrap_or_else(|| panic!("{name} is present"))
            .as_secs_f64();
        let wire = control[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} is a number on the wire"));
        assert!(
            (sdk - wire).abs() < 0.001,
            "{name}: sdk {sdk} vs wire {wire}"
        );
    }
    let created = out.created_at().unwrap().as_secs_f64();
    let updated = out.updated_at().unwrap().as_secs_f64();
    let accessed = out.last_accessed_at().unwrap().as_secs_f64();
    assert!(
        (updated - created - (10.0 * 86400.0 - 3600.0)).abs() < 1.0,
        "created 10d ago, updated 1h ago"
    );
    assert!(
        (updated - accessed - 3600.0).abs() < 1.0,
        "accessed 2h ago, updated 1h ago"
    );
}

#[tokio::test]
async fn optional_fields_are_absent_when_unset() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let out = sim
        .source()
        .await
        .client()
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS2)
        .send()
        .await
        .expect("GetImageSet succeeds");
    assert_eq!(out.version_id(), "1");
    assert_eq!(out.image_set_state(), &ImageSetState::Active);
    assert_eq!(
        out.image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Imported)
    );
    assert!(out.message().is_none());
    assert!(out.overrides().is_none());
    assert!(out.deleted_at().is_none());
    assert!(out.last_accessed_at().is_none());
    assert_eq!(out.storage_tier(), Some(&StorageTier::FrequentAccess));
}

#[tokio::test]
async fn older_versions_stay_readable_with_the_version_query() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let (status, _) = sim
        .put_image_set(
            DS,
            IS2,
            json!({"versionId": "2", "imageSetWorkflowStatus": "UPDATING"}),
        )
        .await;
    assert_eq!(status, 200);
    let source = sim.source().await;
    let latest = source.get_image_set(key(DS, IS2), None).await.unwrap();
    assert_eq!(latest.version_id, VersionId::new(2));
    assert_eq!(latest.workflow_status, Some(WorkflowStatus::Updating));
    let v1 = source
        .get_image_set(key(DS, IS2), Some(VersionId::new(1)))
        .await
        .unwrap();
    assert_eq!(v1.version_id, VersionId::new(1));
    assert_eq!(v1.workflow_status, Some(WorkflowStatus::Imported));
    let missing = source
        .get_image_set(key(DS, IS2), Some(VersionId::new(9)))
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert_eq!(missing.outcome(), "ResourceNotFoundException");
}

#[tokio::test]
async fn each_error_maps_to_its_sdk_error_code_and_status() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let source = sim.source().await;
    let client = source.client();

    let call = |ds: &'static str, is: &'static str, version: Option<&'static str>| {
        let client = client.clone();
        async move {
            client
                .get_image_set()
                .datastore_id(ds)
                .image_set_id(is)
                .set_version_id(version.map(String::from))
                .send()
                .await
                .expect_err("the call fails")
        }
    };
    type GetError = aws_sdk_medicalimaging::error::SdkError<
        aws_sdk_medicalimaging::operation::get_image_set::GetImageSetError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >;
    let status_and_code = |e: &GetError| {
        (
            e.raw_response().map(|r| r.status().as_u16()),
            e.code().map(String::from),
        )
    };

    let bad_id = call(DS, "not-an-id", None).await;
    assert_eq!(
        status_and_code(&bad_id),
        (Some(400), Some("ValidationException".into()))
    );
    assert!(bad_id.message().unwrap_or_default().contains("imageSetId"));
    assert!(bad_id.into_service_error().is_validation_exception());

    let bad_version = call(DS, IS1, Some("v2")).await;
    assert_eq!(
        status_and_code(&bad_version),
        (Some(400), Some("ValidationException".into()))
    );

    let unknown = call(DS, "99999999999999999999999999999999", None).await;
    assert_eq!(
        status_and_code(&unknown),
        (Some(404), Some("ResourceNotFoundException".into()))
    );
    assert!(unknown
        .into_service_error()
        .is_resource_not_found_exception());

    sim.set_faults(json!({"throttleRatio": 1.0})).await;
    let throttled = call(DS, IS1, None).await;
    assert_eq!(
        status_and_code(&throttled),
        (Some(429), Some("ThrottlingException".into()))
    );
    assert!(throttled.into_service_error().is_throttling_exception());

    sim.set_faults(json!({"errorRatio": 1.0})).await;
    let server = call(DS, IS1, None).await;
    assert_eq!(
        status_and_code(&server),
        (Some(500), Some("InternalServerException".into()))
    );
    assert!(server.into_service_error().is_internal_server_exception());

    sim.set_faults(json!({})).await;
    assert!(client
        .get_image_set()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await
        .is_ok());
    assert_eq!(sim.count("GetImageSet", "ThrottlingException").await, 1);
    assert_eq!(sim.count("GetImageSet", "InternalServerException").await, 1);
    assert_eq!(sim.count("GetImageSet", "ValidationException").await, 2);
    assert_eq!(
        sim.count("GetImageSet", "ResourceNotFoundException").await,
        1
    );
    assert_eq!(sim.count("GetImageSet", "success").await, 1);
}

#[tokio::test]
async fn source_classifies_errors_into_kinds_and_outcomes() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let source = sim.source().await;
    let k = key(DS, IS1);
    for (faults, kind, outcome) in [
        (
            json!({"throttleRatio": 1.0}),
            ErrorKind::Throttled,
            "ThrottlingException",
        ),
        (
            json!({"errorRatio": 1.0}),
            ErrorKind::ServerError,
            "InternalServerException",
        ),
    ] {
        sim.set_faults(faults).await;
        let err = source.get_image_set(k, None).await.unwrap_err();
        assert_eq!((err.kind, err.outcome()), (kind, outcome));
    }
    sim.set_faults(json!({})).await;
    let gone = source
        .get_image_set(key(DS, "99999999999999999999999999999999"), None)
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_classified() {
    let sim = TestSimulator::start(&full_scenario()).await;
    sim.set_faults(json!({"latency": "3s"})).await;
    let aws = healthimaging_exporter::config::AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(sim.endpoint.clone()),
        max_attempts: 1,
        ..Default::default()
    };
    let options = healthimaging_exporter::source::ClientOptions {
        static_credentials: Some(("AKIDTEST".into(), "secret".into())),
    };
    let slow = healthimaging_exporter::source::AwsSource::build(
        &aws,
        Duration::from_millis(300),
        &options,
    )
    .await
    .unwrap();
    let err = slow.get_image_set(key(DS, IS1), None).await.unwrap_err();
    assert_eq!((err.kind, err.outcome()), (ErrorKind::Timeout, "timeout"));

    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aws = healthimaging_exporter::config::AwsConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        ..aws
    };
    let refused =
        healthimaging_exporter::source::AwsSource::build(&aws, Duration::from_secs(2), &options)
            .await
            .unwrap();
    let err = refused.get_image_set(key(DS, IS1), None).await.unwrap_err();
    assert_eq!(
        (err.kind, err.outcome()),
        (ErrorKind::Transport, "transport")
    );
}

#[tokio::test]
async fn raw_http_answers_carry_request_ids_and_error_shapes() {
    let sim = TestSimulator::start(&full_scenario()).await;
    let url = format!("{}/datastore/{DS}/imageSet/{IS1}/getImageSet", sim.endpoint);

    let unsigned = sim.http.post(&url).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    assert_eq!(
        unsigned.headers()["x-amzn-errortype"],
        "AccessDeniedException"
    );
    assert!(unsigned.headers().contains_key("x-amzn-requestid"));
    let body: serde_json::Value = unsigned.json().await.unwrap();
    assert!(body["message"].is_string());

    // Any Host is accepted, with or without the runtime- prefix.
    let signed = sim
        .http
        .post(&url)
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/medical-imaging/aws4_request, SignedHeaders=host, Signature=00")
        .header("host", "runtime-medical-imaging.us-east-1.amazonaws.com")
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    assert_eq!(signed.headers()["content-type"], "application/json");
    assert!(signed.headers().contains_key("x-amzn-requestid"));
    let body: serde_json::Value = signed.json().await.unwrap();
    assert!(
        body["createdAt"].is_number(),
        "timestamps are epoch-second numbers: {body}"
    );

    let unknown = sim
        .http
        .post(format!("{}/nope", sim.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(unknown.headers().contains_key("x-amzn-requestid"));
    assert!(unknown.headers().contains_key("x-amzn-errortype"));

    let wrong_method = sim.http.get(&url).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 404);
}
