//! The exporter's metrics about itself: API calls by operation and outcome, the
//! scheduler's state, the estimated cost, and build info.

use prometheus::{
    Counter, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Self-metrics owned by the app; each metric's help text is its HELP line.
#[derive(Debug, Clone)]
pub struct ExporterMetrics {
    /// `healthimaging_api_requests_total{operation,outcome}`.
    pub api_requests: IntCounterVec,
    /// `healthimaging_api_request_duration_seconds{operation}`.
    pub api_request_duration: HistogramVec,
    /// `healthimaging_api_throttled_total`.
    pub api_throttled: IntCounter,
    /// `healthimaging_api_estimated_cost_dollars_total`.
    pub api_estimated_cost: Counter,
    /// `healthimaging_scheduler_effective_rate`.
    pub scheduler_effective_rate: Gauge,
    /// `healthimaging_scheduler_queue_lag_seconds`.
    pub scheduler_queue_lag: Gauge,
    /// `healthimaging_scheduler_backoff_targets`.
    pub scheduler_backoff_targets: IntGauge,
    /// `healthimaging_exporter_config_last_reload_successful`.
    pub config_last_reload_successful: IntGauge,
    /// `healthimaging_exporter_config_last_reload_success_timestamp_seconds`.
    pub config_last_reload_success_timestamp: Gauge,
    build_info: IntGaugeVec,
    dollars_per_call: f64,
}

/// Operations the exporter calls, pre-initialised so rates start at zero.
pub const OPERATIONS: &[&str] = &["GetImageSet"];

impl ExporterMetrics {
    /// Creates the metrics (not yet registered); `price_per_1000_calls` feeds the cost estimate.
    pub fn new(price_per_1000_calls: f64) -> Result<Self, prometheus::Error> {
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
        let api_throttled = IntCounter::new(
            "healthimaging_api_throttled_total",
            "HealthImaging API calls answered with ThrottlingException.",
        )?;
        let api_estimated_cost = Counter::new(
            "healthimaging_api_estimated_cost_dollars_total",
            "Estimated cost of the exporter's HealthImaging API calls in US dollars (calls times polling.price_per_1000_calls / 1000; an estimate, not a bill).",
        )?;
        let scheduler_effective_rate = Gauge::new(
            "healthimaging_scheduler_effective_rate",
            "API calls per second the scheduler currently allows (polling.max_requests_per_second, lowered after throttling).",
        )?;
        let scheduler_queue_lag = Gauge::new(
            "healthimaging_scheduler_queue_lag_seconds",
            "How long the most overdue image set has been waiting past its due time; above zero the budget cannot keep up.",
        )?;
        let scheduler_backoff_targets = IntGauge::new(
            "healthimaging_scheduler_backoff_targets",
            "Image sets whose polls are delayed by exponential backoff after errors.",
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
        let config_last_reload_successful = IntGauge::new(
            "healthimaging_exporter_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful (1) or not (0).",
        )?;
        config_last_reload_successful.set(1);
        let config_last_reload_success_timestamp = Gauge::new(
            "healthimaging_exporter_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration load or reload, in Unix seconds.",
        )?;
        config_last_reload_success_timestamp.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        Ok(ExporterMetrics {
            config_last_reload_successful,
            config_last_reload_success_timestamp,
            api_requests,
            api_request_duration,
            api_throttled,
            api_estimated_cost,
            scheduler_effective_rate,
            scheduler_queue_lag,
            scheduler_backoff_targets,
            build_info,
            dollars_per_call: price_per_1000_calls / 1000.0,
        })
    }

    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.api_requests.clone()))?;
        registry.register(Box::new(self.api_request_duration.clone()))?;
        registry.register(Box::new(self.api_throttled.clone()))?;
        registry.register(Box::new(self.api_estimated_cost.clone()))?;
        registry.register(Box::new(self.scheduler_effective_rate.clone()))?;
        registry.register(Box::new(self.scheduler_queue_lag.clone()))?;
        registry.register(Box::new(self.scheduler_backoff_targets.clone()))?;
        registry.register(Box::new(self.build_info.clone()))?;
        registry.register(Box::new(self.config_last_reload_successful.clone()))?;
        registry.register(Box::new(self.config_last_reload_success_timestamp.clone()))?;
        Ok(())
    }

    /// Counts one API call: outcome, duration, throttling and cost.
    pub fn observe_call(&self, operation: &str, outcome: &str, seconds: f64) {
        self.api_requests
            .with_label_values(&[operation, outcome])
            .inc();
        self.api_request_duration
            .with_label_values(&[operation])
            .observe(seconds);
        if outcome == "ThrottlingException" {
            self.api_throttled.inc();
        }
        self.api_estimated_cost.inc_by(self.dollars_per_call);
    }
}
