//! HealthImaging's REST-JSON wire format as the simulator writes it.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::server::ApiBody;
use super::world::{Datastore, ImageSet, Version};

/// An API error: the code goes to `x-amzn-ErrorType`, the message to the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// AWS error code, e.g. `ValidationException`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// 400 ValidationException.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }
    /// 404 ResourceNotFoundException.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
    /// 403 AccessDeniedException.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }
    /// 429 ThrottlingException.
    pub fn throttling() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded",
        )
    }
    /// 500 InternalServerException.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "An internal error occurred. Try again.",
        )
    }
    /// 404 for a path that is no operation.
    pub fn unknown_operation() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        )
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The error as an HTTP response.
    pub fn into_response(self, request_id: &str) -> Response<ApiBody> {
        let body = json!({ "message": self.message }).to_string();
        let mut resp = json_response(self.status, body, request_id);
        resp.headers_mut().insert(
            HeaderName::from_static("x-amzn-errortype"),
            HeaderValue::from_static(self.code),
        );
        resp
    }
}

/// A JSON response carrying the request id header.
pub fn json_response(status: StatusCode, body: String, request_id: &str) -> Response<ApiBody> {
    let mut resp = Response::new(ApiBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-amzn-requestid"), id);
    }
    resp
}

fn timestamp(t: f64) -> Value {
    serde_json::Number::from_f64(t).map_or(Value::Null, Value::Number)
}

/// The GetImageSet response body for one version of an image set.
pub fn image_set_properties(
    datastore_id: &str,
    image_set_id: &str,
    version: &Version,
    arn: &str,
) -> Value {
    let mut body = Map::new();
    body.insert("datastoreId".into(), json!(datastore_id));
    body.insert("imageSetId".into(), json!(image_set_id));
    body.insert("versionId".into(), json!(version.number.to_string()));
    body.insert("imageSetState".into(), json!(version.state));
    body.insert(
        "imageSetWorkflowStatus".into(),
        json!(version.workflow_status),
    );
    body.insert("createdAt".into(), timestamp(version.created_at));
    body.insert("updatedAt".into(), timestamp(version.updated_at));
    if let Some(t) = version.deleted_at {
        body.insert("deletedAt".into(), timestamp(t));
    }
    if let Some(m) = &version.message {
        body.insert("message".into(), json!(m));
    }
    body.insert("imageSetArn".into(), json!(arn));
    if let Some(forced) = version.forced {
        body.insert("overrides".into(), json!({ "forced": forced }));
    }
    body.insert("isPrimary".into(), json!(version.is_primary));
    if let Some(t) = version.last_accessed_at {
        body.insert("lastAccessedAt".into(), timestamp(t));
    }
    body.insert("storageTier".into(), json!(version.storage_tier));
    Value::Object(body)
}

/// A `DatastoreSummary` (ListDatastores) or `DatastoreProperties` (GetDatastore): the
/// simulator has no KMS key, Lambda authorizer or storage format to report.
pub fn datastore(id: &str, ds: &Datastore, arn: &str) -> Value {
    json!({
        "datastoreId": id,
        "datastoreName": ds.name,
        "datastoreStatus": ds.status,
        "datastoreArn": arn,
        "createdAt": timestamp(ds.created_at),
        "updatedAt": timestamp(ds.updated_at),
    })
}

/// An `ImageSetsMetadataSummary` (SearchImageSets) of an image set's latest version: no
/// workflow status, state or message; the version is an integer; DICOM tags included.
pub fn image_set_summary(image_set_id: &str, set: &ImageSet) -> Value {
    let version = set.latest();
    let mut body = Map::new();
    body.insert("imageSetId".into(), json!(image_set_id));
    body.insert("version".into(), json!(version.number));
    body.insert("createdAt".into(), timestamp(version.created_at));
    body.insert("updatedAt".into(), timestamp(version.updated_at));
    if let Some(t) = version.last_accessed_at {
        body.insert("lastAccessedAt".into(), timestamp(t));
    }
    body.insert("storageTier".into(), json!(version.storage_tier));
    if let Some(tags) = set.tags.to_json() {
        body.insert("DICOMTags".into(), tags);
    }
    body.insert("isPrimary".into(), json!(version.is_primary));
    Value::Object(body)
}

/// An `ImageSetProperties` entry (ListImageSetVersions). The model spells the workflow
/// status key `ImageSetWorkflowStatus`, with a capital I, unlike GetImageSet.
pub fn image_set_version(image_set_id: &str, version: &Version) -> Value {
    let mut body = Map::new();
    body.insert("imageSetId".into(), json!(image_set_id));
    body.insert("versionId".into(), json!(version.number.to_string()));
    body.insert("imageSetState".into(), json!(version.state));
    body.insert(
        "ImageSetWorkflowStatus".into(),
        json!(version.workflow_status),
    );
    body.insert("createdAt".into(), timestamp(version.created_at));
    body.insert("updatedAt".into(), timestamp(version.updated_at));
    if let Some(t) = version.deleted_at {
        body.insert("deletedAt".into(), timestamp(t));
    }
    if let Some(m) = &version.message {
        body.insert("message".into(), json!(m));
    }
    if let Some(forced) = version.forced {
        body.insert("overrides".into(), json!({ "forced": forced }));
    }
    body.insert("isPrimary".into(), json!(version.is_primary));
    Value::Object(body)
}
