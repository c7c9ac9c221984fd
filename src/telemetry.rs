//! Logging setup: JSON lines (default) or pretty text on stdout, filtered by `RUST_LOG` or
//! `log.level`, with the AWS SDK and HTTP crates capped at INFO.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Crates whose DEBUG/TRACE output would leak what must never be logged: the SDK logs the
/// resolved identity (access key id) and signing details at DEBUG and whole response
/// bodies (SearchImageSets' DICOM tags: patient data) at TRACE.
const CAPPED: &[&str] = &[
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk_medicalimaging",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_sdk_sts",
    "aws_sigv4",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_json",
    "aws_smithy_types",
    "h2",
    "hyper",
    "hyper_util",
    "rustls",
    "tokio_rustls",
];

/// Installs the global subscriber; `RUST_LOG` wins over `log.level` when set.
pub fn init(log: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| format!("RUST_LOG={directives:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| format!("log.level = {:?}: {e}", log.level))?,
    };
    let cap = CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, krate| targets.with_target(*krate, LevelFilter::INFO),
    );
    let output = match log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(output.with_filter(filter).with_filter(cap))
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))
}
