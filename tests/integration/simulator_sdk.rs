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

// Discovery operations: ListDatastores, GetDatastore, SearchImageSets, ListImageSetVersions.

use aws_sdk_medicalimaging::types::{
    DatastoreStatus, Operator, SearchByAttributeValue, SearchCriteria, SearchFilter, Sort,
    SortField, SortOrder,
};
use aws_smithy_types::DateTime;

/// Another datastore id used by the discovery tests.
const DS2: &str = "2222222222222222222222222222222a";
/// See [`DS2`].
const DS3: &str = "3333333333333333333333333333333a";

fn discovery_scenario() -> String {
    format!(
        r#"seed = 1
[[datastores]]
id = "{DS}"
name = "radiology"

[[datastores]]
id = "{DS2}"
name = "cardiology"
status = "CREATING"

[[datastores]]
id = "{DS3}"

[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS1}"
is_primary = false
updated_ago = "1h"
dicom_tags = {{ DICOMPatientId = "PAT-1", DICOMPatientName = "DOE^JANE", DICOMStudyInstanceUID = "1.2.3.4", DICOMSeriesNumber = 3 }}

[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS2}"
created_ago = "2d"
updated_ago = "2h"

[[generate]]
datastore_id = "{DS}"
count = 300
workflow_status_mix = {{ IMPORTED = 97, IMPORT_FAILED = 1, IMPORTING = 2 }}
updated_spread = "30d"
"#
    )
}

type SdkErr<E> = aws_sdk_medicalimaging::error::SdkError<
    E,
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
>;

fn status_and_code<E: ProvideErrorMetadata>(e: &SdkErr<E>) -> (Option<u16>, Option<String>) {
    (
        e.raw_response().map(|r| r.status().as_u16()),
        e.code().map(String::from),
    )
}

fn validation() -> (Option<u16>, Option<String>) {
    (Some(400), Some("ValidationException".into()))
}

fn not_found() -> (Option<u16>, Option<String>) {
    (Some(404), Some("ResourceNotFoundException".into()))
}

fn between_updated(lo: f64, hi: f64) -> SearchFilter {
    SearchFilter::builder()
        .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs_f64(
            lo,
        )))
        .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs_f64(
            hi,
        )))
        .operator(Operator::Between)
        .build()
        .unwrap()
}

fn equal(value: SearchByAttributeValue) -> SearchFilter {
    SearchFilter::builder()
        .values(value)
        .operator(Operator::Equal)
        .build()
        .unwrap()
}

fn sort(field: SortField, order: SortOrder) -> Sort {
    Sort::builder()
        .sort_field(field)
        .sort_order(order)
        .build()
        .unwrap()
}

#[tokio::test]
async fn list_datastores_pages_through_every_datastore_and_filters_by_status() {
    let sim = TestSimulator::start(&discovery_scenario()).await;
    let client = sim.source().await.client().clone();
    let all: Vec<_> = client
        .list_datastores()
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListDatastores pages");
    let ids: Vec<_> = all.iter().map(|d| d.datastore_id()).collect();
    assert_eq!(ids, [DS, DS2, DS3], "every datastore once, in id order");
    assert_eq!(all[0].datastore_name(), "radiology");
    assert_eq!(all[1].datastore_status(), &DatastoreStatus::Creating);
    assert_eq!(all[2].datastore_name(), "datastore-33333333");
    assert_eq!(
        all[0].datastore_arn(),
        Some(format!("arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}").as_str())
    );
    assert!(all[0].created_at().unwrap() <= all[0].updated_at().unwrap());
    assert_eq!(sim.count("ListDatastores", "success").await, 3);

    let creating = client
        .list_datastores()
        .datastore_status(DatastoreStatus::Creating)
        .send()
        .await
        .unwrap();
    assert_eq!(creating.datastore_summaries().len(), 1);
    assert!(creating.next_token().is_none());

    // The control API changes a status, and creates datastores on the fly.
    let url = |d: &str| format!("{}/_simulator/datastore/{d}", sim.endpoint);
    let put = sim
        .http
        .put(url(DS2))
        .json(&json!({"datastoreStatus": "ACTIVE", "datastoreName": "cardio-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let new_ds = "4444444444444444444444444444444a";
    let put = sim
        .http
        .put(url(new_ds))
        .json(&json!({"datastoreStatus": "DELETING"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let bad = sim
        .http
        .put(url(DS2))
        .json(&json!({"datastoreStatus": "GONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let active = client
        .list_datastores()
        .datastore_status(DatastoreStatus::Active)
        .send()
        .await
        .unwrap();
    let names: Vec<_> = active
        .datastore_summaries()
        .iter()
        .map(|d| d.datastore_name())
        .collect();
    assert_eq!(names, ["radiology", "cardio-2", "datastore-33333333"]);
    let deleting = client
        .list_datastores()
        .datastore_status(DatastoreStatus::Deleting)
        .send()
        .await
        .unwrap();
    assert_eq!(deleting.datastore_summaries()[0].datastore_id(), new_ds);

    for call in [
        client.list_datastores().max_results(0),
        client.list_datastores().max_results(51),
        client.list_datastores().next_token("not-a-token"),
        client
            .list_datastores()
            .datastore_status(DatastoreStatus::from("RUNNING")),
    ] {
        let err = call.send().await.expect_err("invalid input is refused");
        assert_eq!(status_and_code(&err), validation(), "{err:?}");
    }
}

#[tokio::test]
async fn get_datastore_returns_its_properties_or_the_modelled_errors() {
    let sim = TestSimulator::start(&discovery_scenario()).await;
    let client = sim.source().await.client().clone();
    let out = client
        .get_datastore()
        .datastore_id(DS2)
        .send()
        .await
        .unwrap();
    let props = out.datastore_properties().expect("datastoreProperties");
    assert_eq!(props.datastore_id(), DS2);
    assert_eq!(props.datastore_name(), "cardiology");
    assert_eq!(props.datastore_status(), &DatastoreStatus::Creating);
    assert!(props.created_at().is_some() && props.updated_at().is_some());

    let unknown = client
        .get_datastore()
        .datastore_id("99999999999999999999999999999999")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&unknown), not_found());
    assert!(unknown
        .into_service_error()
        .is_resource_not_found_exception());
    let bad = client
        .get_datastore()
        .datastore_id("NOT-AN-ID")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&bad), validation());
    assert!(bad.message().unwrap_or_default().contains("datastoreId"));
    assert_eq!(sim.count("GetDatastore", "ValidationException").await, 1);
}

/// Every image set of [`DS`] with its latest updatedAt, from the control API.
async fn updated_times(sim: &TestSimulator) -> Vec<(String, f64)> {
    sim.get("image-sets").await["imageSets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["datastoreId"] == DS)
        .map(|s| {
            (
                s["imageSetId"].as_str().unwrap().to_string(),
                s["updatedAt"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn search_pages_newest_first_without_gaps_or_duplicates() {
    let sim = TestSimulator::start(&discovery_scenario()).await;
    let client = sim.source().await.client().clone();
    let items: Vec<_> = client
        .search_image_sets()
        .datastore_id(DS)
        .max_results(7)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("SearchImageSets pages");
    assert_eq!(items.len(), 302);
    let ids: std::collections::BTreeSet<_> = items.iter().map(|s| s.image_set_id()).collect();
    assert_eq!(ids.len(), 302, "no image set twice");
    let times: Vec<f64> = items
        .iter()
        .map(|s| s.updated_at().unwrap().as_secs_f64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "default order is updatedAt, newest first"
    );
    let mut expected = updated_times(&sim).await;
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    let got: Vec<_> = items.iter().map(|s| s.image_set_id().to_string()).collect();
    assert_eq!(
        got,
        expected.into_iter().map(|e| e.0).collect::<Vec<_>>(),
        "ties broken by id"
    );
    assert_eq!(
        sim.count("SearchImageSets", "success").await,
        302_u64.div_ceil(7)
    );

    let tagged = items.iter().find(|s| s.image_set_id() == IS1).unwrap();
    assert_eq!(tagged.version(), Some(1));
    assert_eq!(tagged.is_primary(), Some(false));
    assert_eq!(tagged.storage_tier(), Some(&StorageTier::FrequentAccess));
    let tags = tagged.dicom_tags().expect("DICOMTags");
    assert_eq!(tags.dicom_patient_name(), Some("DOE^JANE"));
    assert_eq!(tags.dicom_series_number(), Some(3));
    let generated = items
        .iter()
        .find(|s| s.image_set_id() == crate::helpers::generated_id(0, 5))
        .unwrap();
    let tags = generated.dicom_tags().expect("generated sets have tags");
    assert_eq!(tags.dicom_patient_name(), Some("GENERATED^PATIENT^0-5"));
    assert_eq!(tags.dicom_patient_id(), Some("GENPID0x5"));
    assert!(generated.created_at().unwrap() <= generated.updated_at().unwrap());

    // On the wire: no workflow status in a summary, and none of the DICOM tags in GetImageSet.
    let signed = |url: String| {
        sim.http
            .post(url)
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/medical-imaging/aws4_request, SignedHeaders=host, Signature=00")
    };
    let page: serde_json::Value = signed(format!(
        "{}/datastore/{DS}/searchImageSets?maxResults=2",
        sim.endpoint
    ))
    .body("{}")
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let first = &page["imageSetsMetadataSummaries"][0];
    assert!(
        first["version"].is_u64() && first["updatedAt"].is_number(),
        "{first}"
    );
    assert!(first.get("imageSetWorkflowStatus").is_none(), "{first}");
    assert!(page.get("sort").is_none(), "sort is echoed only when given");
    assert!(page["nextToken"].as_str().unwrap().is_ascii());
    let get: serde_json::Value = signed(format!(
        "{}/datastore/{DS}/imageSet/{IS1}/getImageSet",
        sim.endpoint
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(get.get("DICOMTags").is_none(), "{get}");
}

#[tokio::test]
async fn search_filters_and_sorts_like_the_service() {
    let sim = TestSimulator::start(&discovery_scenario()).await;
    let client = sim.source().await.client().clone();
    let search = |criteria: SearchCriteria| {
        client
            .search_image_sets()
            .datastore_id(DS)
            .search_criteria(criteria)
    };

    // BETWEEN updatedAt, inclusive, with an ascending sort that is echoed back.
    let times = updated_times(&sim).await;
    let mut sorted: Vec<f64> = times.iter().map(|t| t.1).collect();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[50], sorted[120]);
    let expected = times.iter().filter(|t| t.1 >= lo && t.1 <= hi).count();
    let criteria = SearchCriteria::builder()
        .filters(between_updated(lo, hi))
        .sort(sort(SortField::UpdatedAt, SortOrder::Asc))
        .build();
    let first = search(criteria.clone())
        .max_results(5)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.sort(),
        Some(&sort(SortField::UpdatedAt, SortOrder::Asc))
    );
    let items: Vec<_> = search(criteria)
        .max_results(5)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items.len(), expected);
    let got: Vec<f64> = items
        .iter()
        .map(|s| s.updated_at().unwrap().as_secs_f64())
        .collect();
    assert!((got[0] - lo).abs() < 0.001 && (got[got.len() - 1] - hi).abs() < 0.001);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "ascending");

    // createdAt, oldest first.
    let by_created: Vec<_> = search(
        SearchCriteria::builder()
            .sort(sort(SortField::CreatedAt, SortOrder::Asc))
            .build(),
    )
    .into_paginator()
    .items()
    .send()
    .try_collect()
    .await
    .unwrap();
    let created: Vec<f64> = by_created
        .iter()
        .map(|s| s.created_at().unwrap().as_secs_f64())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]));

    // EQUAL on DICOM tags and isPrimary.
    for (filter, expected) in [
        (
            equal(SearchByAttributeValue::DicomPatientId("PAT-1".into())),
            vec![IS1.to_string()],
        ),
        (
            equal(SearchByAttributeValue::DicomStudyInstanceUid(
                "1.2.3.4".into(),
            )),
            vec![IS1.to_string()],
        ),
        (
            equal(SearchByAttributeValue::DicomAccessionNumber(
                "GENACC0x7".into(),
            )),
            vec![crate::helpers::generated_id(0, 7)],
        ),
        (
            equal(SearchByAttributeValue::IsPrimary(false)),
            vec![IS1.to_string()],
        ),
        (
            equal(SearchByAttributeValue::DicomPatientId("nobody".into())),
            vec![],
        ),
    ] {
        let out = search(SearchCriteria::builder().filters(filter.clone()).build())
            .send()
            .await
            .unwrap();
        let ids: Vec<_> = out
            .image_sets_metadata_summaries()
            .iter()
            .map(|s| s.image_set_id().to_string())
            .collect();
        assert_eq!(ids, expected, "{filter:?}");
        assert!(out.next_token().is_none());
    }

    // Invalid criteria and parameters are 400 ValidationException, as the service answers.
    let one = || between_updated(lo, hi);
    let invalid = [
        SearchCriteria::builder()
            .filters(one())
            .filters(one())
            .filters(one())
            .build(),
        SearchCriteria::builder()
            .filters(
                SearchFilter::builder()
                    .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs(1)))
                    .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs(2)))
                    .operator(Operator::Equal)
                    .build()
                    .unwrap(),
            )
            .build(),
        SearchCriteria::builder()
            .filters(
                SearchFilter::builder()
                    .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs(1)))
                    .values(SearchByAttributeValue::CreatedAt(DateTime::from_secs(2)))
                    .operator(Operator::Between)
                    .build()
                    .unwrap(),
            )
            .build(),
        SearchCriteria::builder()
            .filters(
                SearchFilter::builder()
                    .values(SearchByAttributeValue::UpdatedAt(DateTime::from_secs(1)))
                    .operator(Operator::Between)
                    .build()
                    .unwrap(),
            )
            .build(),
    ];
    for criteria in invalid {
        let err = search(criteria.clone()).send().await.unwrap_err();
        assert_eq!(status_and_code(&err), validation(), "{criteria:?}");
        assert!(err.into_service_error().is_validation_exception());
    }
    for call in [
        search(SearchCriteria::builder().build()).max_results(0),
        search(SearchCriteria::builder().build()).max_results(51),
        search(SearchCriteria::builder().build()).next_token("s1.garbage"),
    ] {
        let err = call.send().await.unwrap_err();
        assert_eq!(status_and_code(&err), validation(), "{err:?}");
    }
    // A token is bound to its criteria.
    let token = search(SearchCriteria::builder().build())
        .max_results(1)
        .send()
        .await
        .unwrap()
        .next_token()
        .unwrap()
        .to_string();
    let err = search(
        SearchCriteria::builder()
            .sort(sort(SortField::CreatedAt, SortOrder::Asc))
            .build(),
    )
    .next_token(token)
    .send()
    .await
    .unwrap_err();
    assert_eq!(status_and_code(&err), validation());

    let unknown = client
        .search_image_sets()
        .datastore_id("99999999999999999999999999999999")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&unknown), not_found());
}

#[tokio::test]
async fn list_image_set_versions_shows_every_version_newest_first() {
    let sim = TestSimulator::start(&scenario(&format!(
        r#"[[image_sets]]
datastore_id = "{DS}"
image_set_id = "{IS1}"
workflow_status = "IMPORT_FAILED"
message = "Import failed"
[[image_sets.timeline]]
after = "200ms"
version_id = "2"
workflow_status = "UPDATING"
forced = true
[[image_sets.timeline]]
after = "200ms"
version_id = "3"
workflow_status = "UPDATED"
state = "LOCKED"
"#
    )))
    .await;
    let client = sim.source().await.client().clone();
    crate::helpers::eventually("versions 2 and 3", Duration::from_secs(5), || async {
        (sim.image_set(IS1).await["versionId"] == "3").then_some(())
    })
    .await;
    let versions: Vec<_> = client
        .list_image_set_versions()
        .datastore_id(DS)
        .image_set_id(IS1)
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListImageSetVersions pages");
    let numbers: Vec<_> = versions.iter().map(|v| v.version_id()).collect();
    assert_eq!(numbers, ["3", "2", "1"]);
    assert_eq!(
        versions[0].image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Updated),
        "the ImageSetWorkflowStatus key (capital I) parses"
    );
    assert_eq!(versions[0].image_set_state(), &ImageSetState::Locked);
    assert_eq!(
        versions[1].image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Updating),
        "an old version keeps its final properties"
    );
    assert_eq!(versions[1].overrides().and_then(|o| o.forced()), Some(true));
    assert_eq!(
        versions[2].image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::ImportFailed)
    );
    assert_eq!(versions[2].message(), Some("Import failed"));
    let updated: Vec<f64> = versions
        .iter()
        .map(|v| v.updated_at().unwrap().as_secs_f64())
        .collect();
    assert!(
        updated[0] > updated[1] && updated[1] > updated[2],
        "{updated:?}"
    );
    assert_eq!(sim.count("ListImageSetVersions", "success").await, 3);

    let unknown = client
        .list_image_set_versions()
        .datastore_id(DS)
        .image_set_id(IS2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&unknown), not_found());
    for call in [
        client
            .list_image_set_versions()
            .datastore_id(DS)
            .image_set_id("bad"),
        client
            .list_image_set_versions()
            .datastore_id(DS)
            .image_set_id(IS1)
            .max_results(0),
        client
            .list_image_set_versions()
            .datastore_id(DS)
            .image_set_id(IS1)
            .next_token("v1.x"),
    ] {
        let err = call.send().await.unwrap_err();
        assert_eq!(status_and_code(&err), validation(), "{err:?}");
    }
}

#[tokio::test]
async fn faults_stats_and_the_request_log_cover_the_discovery_operations() {
    let sim = TestSimulator::start(&discovery_scenario()).await;
    let client = sim.source().await.client().clone();
    sim.set_faults(json!({"throttleRatio": 1.0})).await;
    let err = client
        .search_image_sets()
        .datastore_id(DS)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        status_and_code(&err),
        (Some(429), Some("ThrottlingException".into()))
    );
    sim.set_faults(json!({"accessDeniedRatio": 1.0})).await;
    let err = client.list_datastores().send().await.unwrap_err();
    assert_eq!(
        status_and_code(&err),
        (Some(403), Some("AccessDeniedException".into()))
    );
    assert!(err.message().unwrap_or_default().contains("ListDatastores"));
    sim.set_faults(json!({"errorRatio": 1.0})).await;
    let err = client
        .list_image_set_versions()
        .datastore_id(DS)
        .image_set_id(IS1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        status_and_code(&err),
        (Some(500), Some("InternalServerException".into()))
    );
    sim.set_faults(json!({})).await;
    client
        .get_datastore()
        .datastore_id(DS)
        .send()
        .await
        .unwrap();
    assert_eq!(sim.count("SearchImageSets", "ThrottlingException").await, 1);
    assert_eq!(
        sim.count("ListDatastores", "AccessDeniedException").await,
        1
    );
    assert_eq!(
        sim.count("ListImageSetVersions", "InternalServerException")
            .await,
        1
    );
    assert_eq!(sim.count("GetDatastore", "success").await, 1);
    let log = sim.get("requests").await;
    let operations: Vec<_> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        operations,
        [
            "SearchImageSets",
            "ListDatastores",
            "ListImageSetVersions",
            "GetDatastore"
        ]
    );
}
