//! The log contract: one structured event per transition, and poll errors logged once per
//! change of error kind. Field names here are what users' log pipelines match on.

use crate::ids::{DatastoreId, ImageSetKey, VersionId};
use crate::source::{ErrorKind, SourceError};
use crate::transitions::Transition;

/// Logs one transition: WARN into a `*_FAILED` status, INFO otherwise. `message` is the
/// API's own explanation and is only present when the API sent one; `backfilled: true`
/// marks transitions recovered from ListImageSetVersions for versions no poll saw;
/// `changed_after`/`changed_before` bound a transition that happened while the exporter
/// was down (found on the first poll after a restart).
pub fn transition(
    key: &ImageSetKey,
    version: VersionId,
    t: &Transition,
    api_message: Option<&str>,
    backfilled: bool,
    downtime: Option<(f64, f64)>,
) {
    let backfilled = backfilled.then_some(true);
    let rfc3339 = |t: f64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
        tracing::field::display(humantime::format_rfc3339_seconds(at))
    };
    let changed_after = downtime.map(|(from, _)| rfc3339(from));
    let changed_before = downtime.map(|(_, to)| rfc3339(to));
    macro_rules! emit {
        ($level:expr) => {
            match api_message {
                Some(message) => tracing::event!(
                    $level,
                    event = t.kind.as_str(),
                    datastore_id = %key.datastore_id,
                    image_set_id = %key.image_set_id,
                    version_id = %version,
                    from = %t.from,
                    to = %t.to,
                    message = %message,
                    backfilled,
                    changed_after,
                    changed_before,
                ),
                None => tracing::event!(
                    $level,
                    event = t.kind.as_str(),
                    datastore_id = %key.datastore_id,
                    image_set_id = %key.image_set_id,
                    version_id = %version,
                    from = %t.from,
                    to = %t.to,
                    backfilled,
                    changed_after,
                    changed_before,
                ),
            }
        };
    }
    if t.is_failure() {
        emit!(tracing::Level::WARN)
    } else {
        emit!(tracing::Level::INFO)
    }
}

/// Logs a poll error (callers call it once per change of error kind).
pub fn poll_failed(key: &ImageSetKey, error: &SourceError, seen_before: bool) {
    if error.kind == ErrorKind::NotFound && !seen_before {
        tracing::warn!(
            datastore_id = %key.datastore_id,
            image_set_id = %key.image_set_id,
            error_kind = error.kind.as_str(),
            outcome = error.outcome(),
            error = %error,
            "image set not found: check the datastore and image set ids in the config",
        );
    } else {
        tracing::warn!(
            datastore_id = %key.datastore_id,
            image_set_id = %key.image_set_id,
            error_kind = error.kind.as_str(),
            outcome = error.outcome(),
            error = %error,
            "polling image set failed",
        );
    }
}

/// Logs the first successful poll after errors.
pub fn poll_recovered(key: &ImageSetKey, previous: ErrorKind) {
    tracing::info!(
        datastore_id = %key.datastore_id,
        image_set_id = %key.image_set_id,
        previous_error_kind = previous.as_str(),
        "polling image set recovered",
    );
}

/// Logs that HealthImaging throttles the exporter and the request rate was cut.
pub fn throttling(effective_rate: f64, max_rate: f64, throttled_calls: u64) {
    tracing::warn!(
        error_kind = ErrorKind::Throttled.as_str(),
        outcome = "ThrottlingException",
        effective_rate,
        max_requests_per_second = max_rate,
        throttled_calls,
        "api throttling: request rate lowered",
    );
}

/// Logs that the request rate is back at the configured budget after throttling.
pub fn throttling_over(effective_rate: f64) {
    tracing::info!(effective_rate, "api request rate recovered");
}

/// Logs a discovery request that failed for a new reason (once per change of kind).
pub fn discovery_failed(datastore: Option<DatastoreId>, operation: &str, error: &SourceError) {
    match datastore {
        Some(ds) => tracing::warn!(
            datastore_id = %ds,
            operation,
            error_kind = error.kind.as_str(),
            outcome = error.outcome(),
            error = %error,
            "discovery request failed",
        ),
        None => tracing::warn!(
            operation,
            error_kind = error.kind.as_str(),
            outcome = error.outcome(),
            error = %error,
            "discovery request failed",
        ),
    }
}

/// Logs that a discovery request works again.
pub fn discovery_recovered(datastore: Option<DatastoreId>, operation: &str) {
    match datastore {
        Some(ds) => tracing::info!(datastore_id = %ds, operation, "discovery request recovered"),
        None => tracing::info!(operation, "discovery request recovered"),
    }
}

/// Logs that ListImageSetVersions failed, so skipped versions' transitions are not
/// backfilled (the jump itself is still reported).
pub fn backfill_failed(key: &ImageSetKey, from: VersionId, to: VersionId, error: &SourceError) {
    tracing::warn!(
        datastore_id = %key.datastore_id,
        image_set_id = %key.image_set_id,
        from_version = %from,
        to_version = %to,
        error_kind = error.kind.as_str(),
        outcome = error.outcome(),
        error = %error,
        "backfill of skipped versions failed",
    );
}

/// Logs that API calls fail for want of usable AWS credentials (once, until they work).
pub fn credentials_failed(error: &SourceError) {
    tracing::error!(
        error_kind = error.kind.as_str(),
        outcome = error.outcome(),
        error = %error,
        "no usable AWS credentials: every call fails until the credential chain provides some (readiness is off)",
    );
}

/// Logs that calls succeed again after a credentials failure.
pub fn credentials_recovered() {
    tracing::info!("AWS credentials work again");
}
