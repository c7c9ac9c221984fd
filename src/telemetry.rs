//! Logging setup: JSON lines (default) or pretty text on stdout, filtered by `RUST_LOG` or
//! `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; `RUST_LOG` wins over `log.level` when set.
pub fn init(log: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| format!("RUST_LOG={directives:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| format!("log.level = {:?}: {e}", log.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
