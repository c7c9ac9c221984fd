//! Metrics: the store rendered as text at scrape time, followed by the exporter's
//! self-metrics and process metrics from an app-owned prometheus registry.

mod exporter;
pub mod render;

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};

pub use exporter::ExporterMetrics;

use crate::config::{MetricsConfig, ShardingConfig};
use crate::store::Store;

/// Everything `/metrics` serves.
pub struct Exposition {
    store: Arc<Store>,
    view: std::sync::RwLock<(render::View, MetricsConfig)>,
    registry: Registry,
}

impl Exposition {
    /// The store's families (as `metrics` and `sharding` say), self-metrics and, on
    /// Linux, process metrics.
    pub fn new(
        store: Arc<Store>,
        metrics: &MetricsConfig,
        sharding: ShardingConfig,
        exporter: &ExporterMetrics,
    ) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        exporter.register(&registry)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Exposition {
            store,
            view: std::sync::RwLock::new((render::View::new(metrics, sharding), metrics.clone())),
            registry,
        })
    }

    /// Applies a reloaded `[metrics]` and `[sharding]` from the next scrape on.
    pub fn reconfigure(&self, metrics: &MetricsConfig, sharding: ShardingConfig) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) =
            (render::View::new(metrics, sharding), metrics.clone());
    }

    /// Renders the text exposition. The store's read lock is held only while its part renders.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut text = String::new();
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        render::render(&self.store.read(), &view.0, &mut text);
        let mut body = text.into_bytes();
        let mut families = self.registry.gather();
        families.retain(|f| view.1.family_enabled(f.name()));
        TextEncoder::new().encode(&families, &mut body)?;
        Ok(body)
    }
}

/// The content type of [`Exposition::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
