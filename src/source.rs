//! The seam to AWS HealthImaging: the only module that knows the SDK.
//!
//! It builds the client from the aws-config chain, strips the `runtime-` host prefix for
//! explicit endpoints, and maps responses to [`Snapshot`] and failures to [`SourceError`].

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::Credentials;
use aws_sdk_medicalimaging::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_medicalimaging::operation::get_image_set::GetImageSetOutput;
use aws_sdk_medicalimaging::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::endpoint::EndpointPrefix;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::endpoint_config::EndpointUrl;

use crate::config::AwsConfig;
use crate::ids::{DatastoreId, ImageSetId, ImageSetKey, VersionId};
use crate::model::{
    DatastoreSummary, ImageSetState, ImageSetSummary, Page, SearchQuery, Snapshot, StorageTier,
    VersionRecord, WorkflowStatus,
};

/// What went wrong with a call, as a closed set (used for log de-duplication and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 429 ThrottlingException.
    Throttled,
    /// 404 ResourceNotFoundException.
    NotFound,
    /// 403 AccessDeniedException (or a rejected signature).
    AccessDenied,
    /// 400 ValidationException.
    Validation,
    /// 409 ConflictException.
    Conflict,
    /// 402 ServiceQuotaExceededException.
    QuotaExceeded,
    /// 5xx.
    ServerError,
    /// The call did not finish within the request timeout.
    Timeout,
    /// The connection failed (refused, reset, DNS, TLS).
    Transport,
    /// No usable credentials.
    Credentials,
    /// The response could not be read as a GetImageSet answer.
    InvalidResponse,
    /// Anything else.
    Unexpected,
}

impl ErrorKind {
    /// The snake_case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Validation => "validation",
            ErrorKind::Conflict => "conflict",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Credentials => "credentials",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

/// A failed GetImageSet call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind_name}{code_part}: {message}", kind_name = kind.as_str(), code_part = code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct SourceError {
    /// Classified kind.
    pub kind: ErrorKind,
    /// The AWS error code when the service sent one.
    pub code: Option<String>,
    /// Description with the cause chain (never request bodies or credentials).
    pub message: String,
}

impl SourceError {
    /// Builds an error without an AWS code.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SourceError {
            kind,
            code: None,
            message: message.into(),
        }
    }

    /// The `outcome` label: the AWS error code, or a fixed word when there is none.
    pub fn outcome(&self) -> &str {
        match (&self.code, self.kind) {
            (Some(code), _) => code,
            (None, ErrorKind::Timeout) => "timeout",
            (None, ErrorKind::Transport) => "transport",
            (None, ErrorKind::Credentials) => "credentials",
            (None, ErrorKind::InvalidResponse) => "invalid_response",
            (None, _) => "unexpected",
        }
    }
}

/// A boxed, sendable future (the trait must be object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads image set properties; implemented by the AWS client and by test fakes.
pub trait ImageSetSource: Send + Sync {
    /// GetImageSet: the properties of one image set (a fixed version or the latest).
    fn get_image_set(
        &self,
        key: ImageSetKey,
        version: Option<VersionId>,
    ) -> BoxFuture<'_, Result<Snapshot, SourceError>>;

    /// ListDatastores: one page of the account's datastores.
    fn list_datastores(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<DatastoreSummary>, SourceError>>;

    /// GetDatastore: one datastore's name and status.
    fn get_datastore(
        &self,
        datastore: DatastoreId,
    ) -> BoxFuture<'_, Result<DatastoreSummary, SourceError>>;

    /// SearchImageSets: one page of a datastore's image sets, newest `updatedAt` first.
    fn search_image_sets(
        &self,
        datastore: DatastoreId,
        query: SearchQuery,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<ImageSetSummary>, SourceError>>;

    /// ListImageSetVersions: one page of an image set's versions.
    fn list_image_set_versions(
        &self,
        key: ImageSetKey,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<VersionRecord>, SourceError>>;
}

/// Options for building the AWS client that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Static credentials (the demo and tests, against the simulator); the chain otherwise.
    pub static_credentials: Option<(String, String)>,
}

/// The AWS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Neither config, environment nor profile names a region.
    #[error("no AWS region configured: set aws.region, AWS_REGION or a profile region")]
    NoRegion,
}

/// True when an endpoint URL comes from the config or the standard environment variables.
fn endpoint_configured(aws: &AwsConfig) -> bool {
    aws.endpoint_url.is_some()
        || ["AWS_ENDPOINT_URL_MEDICAL_IMAGING", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// [`ImageSetSource`] over aws-sdk-medicalimaging.
#[derive(Debug, Clone)]
pub struct AwsSource {
    client: Client,
}

/// Removes the `runtime-` endpoint prefix before the request is signed.
///
/// Needed for custom endpoints (simulator, VPC endpoint, proxy) where `runtime-<host>`
/// does not resolve. Done before the retry loop so URI, Host header and SigV4 agree.
#[derive(Debug)]
struct HostPrefixRemover {
    /// `None`: only when an endpoint URL is configured.
    force: Option<bool>,
}

impl Intercept for HostPrefixRemover {
    fn name(&self) -> &'static str {
        "HostPrefixRemover"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let remove = self
            .force
            .unwrap_or_else(|| cfg.load::<EndpointUrl>().is_some());
        if remove {
            cfg.interceptor_state().unset::<EndpointPrefix>();
        }
        Ok(())
    }
}

impl AwsSource {
    /// Builds the client from `aws` settings and the standard aws-config chain.
    ///
    /// Fails only when no region can be found and no endpoint is configured: without one
    /// the SDK cannot know where the datastores are.
    pub async fn build(
        aws: &AwsConfig,
        request_timeout: Duration,
        options: &ClientOptions,
    ) -> Result<Self, BuildError> {
        // Credential loading (IMDS, container endpoint, STS) gets a deadline well inside the
        // call's, so a credential source that hangs or retries 5xx is reported as the
        // credentials problem it is, not as a timeout of the call.
        let identity_cache = IdentityCache::lazy()
            .load_timeout(request_timeout.mul_f64(0.6).max(Duration::from_millis(200)))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .identity_cache(identity_cache)
            .retry_config(RetryConfig::standard().with_max_attempts(aws.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(request_timeout)
                    .connect_timeout(request_timeout.min(Duration::from_secs(5)))
                    .build(),
            )
            // Responses are a few KB and every call has an operation timeout; the stalled
            // stream guard's per-response timer costs CPU on every call for nothing.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((id, secret)) = &options.static_credentials {
            loader =
                loader.credentials_provider(Credentials::new(id, secret, None, None, "static"));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_medicalimaging::config::Builder::from(&shared);
        if shared.region().is_none() {
            if !endpoint_configured(aws) {
                return Err(BuildError::NoRegion);
            }
            // With an explicit endpoint (simulator, proxy) any region signs correctly.
            config = config.region(Region::new("us-east-1"));
        }
        let config = config
            .interceptor(HostPrefixRemover {
                force: aws.disable_host_prefix,
            })
            .build();
        Ok(AwsSource {
            client: Client::from_conf(config),
        })
    }

    /// The underlying SDK client, for wire-conformance tests against the simulator.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The region requests are signed for.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }
}

impl ImageSetSource for AwsSource {
    fn get_image_set(
        &self,
        key: ImageSetKey,
        version: Option<VersionId>,
    ) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_image_set()
                .datastore_id(key.datastore_id.as_str())
                .image_set_id(key.image_set_id.as_str())
                .set_version_id(version.map(|v| v.to_string()))
                .send()
                .await
                .map_err(classify)?;
            snapshot_from(&key, output)
        })
    }

    fn list_datastores(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<DatastoreSummary>, SourceError>> {
        Box::pin(async move {
            let output = self
                .client
                .list_datastores()
                .max_results(PAGE_SIZE)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(classify)?;
            page(
                output.datastore_summaries(),
                |d| {
                    datastore_from(
                        d.datastore_id(),
                        d.datastore_name(),
                        d.datastore_status().as_str(),
                    )
                },
                output.next_token(),
            )
        })
    }

    fn get_datastore(
        &self,
        datastore: DatastoreId,
    ) -> BoxFuture<'_, Result<DatastoreSummary, SourceError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_datastore()
                .datastore_id(datastore.as_str())
                .send()
                .await
                .map_err(classify)?;
            let Some(d) = output.datastore_properties() else {
                return Err(SourceError::new(
                    ErrorKind::InvalidResponse,
                    "GetDatastore answered without datastoreProperties",
                ));
            };
            let summary = datastore_from(
                d.datastore_id(),
                d.datastore_name(),
                d.datastore_status().as_str(),
            )?;
            if summary.id != datastore {
                return Err(SourceError::new(
                    ErrorKind::InvalidResponse,
                    format!("GetDatastore answered for {}, not {datastore}", summary.id),
                ));
            }
            Ok(summary)
        })
    }

    fn search_image_sets(
        &self,
        datastore: DatastoreId,
        query: SearchQuery,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<ImageSetSummary>, SourceError>> {
        Box::pin(async move {
            let output = self
                .client
                .search_image_sets()
                .datastore_id(datastore.as_str())
                .search_criteria(search_criteria(&query)?)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(classify)?;
            page(
                output.image_sets_metadata_summaries(),
                summary_from,
                output.next_token(),
            )
        })
    }

    fn list_image_set_versions(
        &self,
        key: ImageSetKey,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<VersionRecord>, SourceError>> {
        Box::pin(async move {
            let output = self
                .client
                .list_image_set_versions()
                .datastore_id(key.datastore_id.as_str())
                .image_set_id(key.image_set_id.as_str())
                .max_results(PAGE_SIZE)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(classify)?;
            page(
                output.image_set_properties_list(),
                |p| version_from(&key, p),
                output.next_token(),
            )
        })
    }
}

/// Maps one page of a listing; any bad item makes the page an invalid response.
fn page<S, T>(
    items: &[S],
    map: impl Fn(&S) -> Result<T, SourceError>,
    next_token: Option<&str>,
) -> Result<Page<T>, SourceError> {
    Ok(Page {
        items: items.iter().map(map).collect::<Result<_, _>>()?,
        next_token: next_token.map(str::to_owned),
    })
}

/// Largest page the listing operations allow.
const PAGE_SIZE: i32 = 50;

fn invalid(what: String) -> SourceError {
    SourceError::new(ErrorKind::InvalidResponse, what)
}

fn epoch(t: Option<&aws_smithy_types::DateTime>) -> Option<f64> {
    t.map(|t| t.as_secs_f64())
}

fn datastore_from(id: &str, name: &str, status: &str) -> Result<DatastoreSummary, SourceError> {
    let id = DatastoreId::parse(id).map_err(|e| invalid(format!("datastoreId: {e}")))?;
    Ok(DatastoreSummary {
        id,
        name: name.chars().take(256).collect(),
        status: status.chars().take(64).collect(),
    })
}

/// The SDK request for `query`: filters as the API wants them, newest first.
fn search_criteria(
    query: &SearchQuery,
) -> Result<aws_sdk_medicalimaging::types::SearchCriteria, SourceError> {
    use aws_sdk_medicalimaging::types::{
        Operator, SearchByAttributeValue, SearchCriteria, SearchFilter, Sort, SortField, SortOrder,
    };
    let build = |e: aws_smithy_types::error::operation::BuildError| {
        SourceError::new(ErrorKind::Unexpected, format!("building the search: {e}"))
    };
    let mut criteria = SearchCriteria::builder().sort(
        Sort::builder()
            .sort_field(SortField::UpdatedAt)
            .sort_order(SortOrder::Desc)
            .build()
            .map_err(build)?,
    );
    if let Some((from, to)) = query.updated_between {
        let at = |t: f64| {
            SearchByAttributeValue::UpdatedAt(aws_smithy_types::DateTime::from_secs_f64(t))
        };
        criteria = criteria.filters(
            SearchFilter::builder()
                .operator(Operator::Between)
                .values(at(from))
                .values(at(to))
                .build()
                .map_err(build)?,
        );
    }
    if let Some(primary) = query.is_primary {
        criteria = criteria.filters(
            SearchFilter::builder()
                .operator(Operator::Equal)
                .values(SearchByAttributeValue::IsPrimary(primary))
                .build()
                .map_err(build)?,
        );
    }
    Ok(criteria.build())
}

/// Maps one search result, dropping its DICOM tags on the spot: patient data must never
/// reach the store, labels or logs.
fn summary_from(
    s: &aws_sdk_medicalimaging::types::ImageSetsMetadataSummary,
) -> Result<ImageSetSummary, SourceError> {
    let image_set_id =
        ImageSetId::parse(s.image_set_id()).map_err(|e| invalid(format!("imageSetId: {e}")))?;
    let version = match s.version() {
        Some(v) if v >= 0 => Some(VersionId::new(v as u64)),
        Some(v) => return Err(invalid(format!("version: {v} is negative"))),
        None => None,
    };
    Ok(ImageSetSummary {
        image_set_id,
        version,
        created_at: epoch(s.created_at()),
        updated_at: epoch(s.updated_at()),
        storage_tier: s.storage_tier().map(|t| StorageTier::from_api(t.as_str())),
        is_primary: s.is_primary(),
    })
}

fn version_from(
    key: &ImageSetKey,
    p: &aws_sdk_medicalimaging::types::ImageSetProperties,
) -> Result<VersionRecord, SourceError> {
    if p.image_set_id() != key.image_set_id.as_str() {
        return Err(invalid(format!(
            "ListImageSetVersions answered for {}, not {}",
            truncate(p.image_set_id()),
            key.image_set_id
        )));
    }
    let version_id =
        VersionId::parse(p.version_id()).map_err(|e| invalid(format!("versionId: {e}")))?;
    Ok(VersionRecord {
        version_id,
        workflow_status: p
            .image_set_workflow_status()
            .map(|s| WorkflowStatus::from_api(s.as_str())),
        state: ImageSetState::from_api(p.image_set_state().as_str()),
        is_primary: p.is_primary(),
        forced: p.overrides().and_then(|o| o.forced()),
        message: p.message().map(|m| m.chars().take(2048).collect()),
        updated_at: epoch(p.updated_at()),
        deleted_at: epoch(p.deleted_at()),
    })
}

/// Maps a GetImageSet response to a snapshot, rejecting answers about another image set.
pub fn snapshot_from(key: &ImageSetKey, out: GetImageSetOutput) -> Result<Snapshot, SourceError> {
    let invalid = |what: String| SourceError::new(ErrorKind::InvalidResponse, what);
    if out.datastore_id() != key.datastore_id.as_str()
        || out.image_set_id() != key.image_set_id.as_str()
    {
        return Err(invalid(format!(
            "response is for {}/{}, not the requested image set",
            truncate(out.datastore_id()),
            truncate(out.image_set_id())
        )));
    }
    let version_id =
        VersionId::parse(out.version_id()).map_err(|e| invalid(format!("versionId: {e}")))?;
    let time = |t: Option<&aws_smithy_types::DateTime>| t.map(|t| t.as_secs_f64());
    Ok(Snapshot {
        version_id,
        workflow_status: out
            .image_set_workflow_status()
            .map(|s| WorkflowStatus::from_api(s.as_str())),
        state: ImageSetState::from_api(out.image_set_state().as_str()),
        storage_tier: out
            .storage_tier()
            .map(|t| StorageTier::from_api(t.as_str())),
        image_set_arn: out.image_set_arn().map(str::to_owned),
        is_primary: out.is_primary(),
        forced: out.overrides().and_then(|o| o.forced()),
        message: out.message().map(str::to_owned),
        created_at: time(out.created_at()),
        updated_at: time(out.updated_at()),
        deleted_at: time(out.deleted_at()),
        last_accessed_at: time(out.last_accessed_at()),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Only identifier-like AWS codes become label values; anything else is `unexpected`.
fn sane_code(code: &str) -> Option<String> {
    let ok =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| code.to_string())
}

/// The error and its causes, one line, at most 1,024 characters (log and label safety).
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = full_chain(error);
    if text.len() > 1024 {
        let cut = (0..=1024)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn full_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

fn has_cause<T: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// How the SDK's identity cache reports a credential load that exceeded its deadline (its
/// error type is private; the fault suite pins this behaviour).
const IDENTITY_TIMEOUT: &str = "identity resolver timed out";

fn classify<E>(error: SdkError<E, HttpResponse>) -> SourceError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if !matches!(error, SdkError::ServiceError(_)) && full_chain(&error).contains(IDENTITY_TIMEOUT)
    {
        return SourceError::new(ErrorKind::Credentials, chain(&error));
    }
    match &error {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let code = err.code().and_then(sane_code);
            if code.is_none() && ctx.raw().status().is_success() {
                // A 2xx the SDK could not deserialize (truncated, not JSON, HTML, missing
                // required members): the body is at fault, not the service's verdict.
                return SourceError::new(ErrorKind::InvalidResponse, chain(&error));
            }
            let kind = match code.as_deref() {
                Some("ThrottlingException") | Some("TooManyRequestsException") => {
                    ErrorKind::Throttled
                }
                Some("ResourceNotFoundException") => ErrorKind::NotFound,
                Some("AccessDeniedException")
                | Some("UnrecognizedClientException")
                | Some("InvalidSignatureException")
                | Some("MissingAuthenticationTokenException") => ErrorKind::AccessDenied,
                Some("ExpiredTokenException") | Some("ExpiredToken") => ErrorKind::Credentials,
                Some("ValidationException") => ErrorKind::Validation,
                Some("ConflictException") => ErrorKind::Conflict,
                Some("ServiceQuotaExceededException") => ErrorKind::QuotaExceeded,
                Some("InternalServerException") | Some("ServiceUnavailableException") => {
                    ErrorKind::ServerError
                }
                _ => ErrorKind::Unexpected,
            };
            SourceError {
                kind,
                code,
                message: err
                    .message()
                    .unwrap_or("no message")
                    .chars()
                    .take(512)
                    .collect(),
            }
        }
        SdkError::TimeoutError(_) => SourceError::new(ErrorKind::Timeout, chain(&error)),
        SdkError::DispatchFailure(failure) => {
            if has_cause::<CredentialsError>(&error) {
                SourceError::new(ErrorKind::Credentials, chain(&error))
            } else if failure.is_timeout() {
                SourceError::new(ErrorKind::Timeout, chain(&error))
            } else if failure.is_io() || failure.is_other() {
                SourceError::new(ErrorKind::Transport, chain(&error))
            } else {
                SourceError::new(ErrorKind::Unexpected, chain(&error))
            }
        }
        SdkError::ResponseError(_) => {
            // Reading the body failed: a connection cut mid-response is the network's
            // doing; anything else is a body that cannot be read as HTTP.
            let kind = if has_cause::<hyper::Error>(&error) || has_cause::<std::io::Error>(&error) {
                ErrorKind::Transport
            } else {
                ErrorKind::InvalidResponse
            };
            SourceError::new(kind, chain(&error))
        }
        SdkError::ConstructionFailure(_) => {
            let kind = if has_cause::<CredentialsError>(&error) {
                ErrorKind::Credentials
            } else {
                ErrorKind::Unexpected
            };
            SourceError::new(kind, chain(&error))
        }
        _ => SourceError::new(ErrorKind::Unexpected, chain(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_the_aws_code_or_a_fixed_word() {
        let mut e = SourceError::new(ErrorKind::Throttled, "x");
        e.code = Some("ThrottlingException".into());
        assert_eq!(e.outcome(), "ThrottlingException");
        assert_eq!(
            SourceError::new(ErrorKind::Timeout, "x").outcome(),
            "timeout"
        );
        assert_eq!(
            SourceError::new(ErrorKind::Transport, "x").outcome(),
            "transport"
        );
        assert_eq!(
            SourceError::new(ErrorKind::Unexpected, "x").outcome(),
            "unexpected"
        );
    }

    #[test]
    fn only_identifier_codes_become_labels() {
        assert_eq!(
            sane_code("ThrottlingException").as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(sane_code("Bad code\n"), None);
        assert_eq!(sane_code(&"A".repeat(100)), None);
    }
}
