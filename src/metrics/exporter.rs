//! The exporter's metrics about itself: API calls by operation and outcome, and build info.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Self-metrics owned by the app; each field's help text is its HELP line.
#[derive(Debug, Clone)]
pub struct ExporterMetrics {
    /// `healthimaging_api_requests_total{operation,outcome}`.
    pub api_requests: IntCounterVec,
    /// `healthimaging_api_request_duration_seconds{operation}`.
    pub api_request_duration: HistogramVec,
    build_info: IntGaugeVec,
}

/// Operations the exporter calls, pre-initialised so rates start at zero.
pub const OPERATIONS: &[&str] = &["GetImageSet"];

impl ExporterMetrics {
    /// Creates the metrics (not yet registered).
    pub fn new() -> Result<Self, prometheus::Error> {
        let api_requests = IntCounterVec::new(
            Opts::new(
                "healthimaging_api_requests_total",
                "HealthImaging API calls made by the exporter, by operation and outcome (success or the AWS error code, timeout, transport, credentials, invalid_response, unexpected).",
            ),
            &["operation", "outcome"],
        )?;
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "healthimaging_api_request_duration_seconds",
                "Duration of HealthImaging API calls made by the exporter, SDK retries included.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "healthimaging_exporter_build_info",
                "A metric with a constant value of 1 labelled with the exporter's version and git revision.",
            ),
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[crate::build::VERSION, crate::build::REVISION])
            .set(1);
        for op in OPERATIONS {
            api_requests.with_label_values(&[op, "success"]);
            api_request_duration.with_label_values(&[op]);
        }
        Ok(ExporterMetrics {
            api_requests,
            api_request_duration,
            build_info,
        })
    }

    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.api_requests.clone()))?;
        registry.register(Box::new(self.api_request_duration.clone()))?;
        registry.register(Box::new(self.build_info.clone()))?;
        Ok(())
    }

    /// Counts one API call and records its duration.
    pub fn observe_call(&self, operation: &str, outcome: &str, seconds: f64) {
        self.api_requests
            .with_label_values(&[operation, outcome])
            .inc();
        self.api_request_duration
            .with_label_values(&[operation])
            .observe(seconds);
    }
}
