//! Metrics: the store rendered at scrape time by a custom collector, the exporter's
//! self-metrics, and process metrics, all in one app-owned registry.

mod exporter;
pub mod render;

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};

pub use exporter::ExporterMetrics;

use crate::store::Store;

/// A [`Collector`] that renders the store on every scrape.
pub struct StoreCollector {
    store: Arc<Store>,
    descs: Vec<Desc>,
}

impl StoreCollector {
    /// A collector over `store`.
    pub fn new(store: Arc<Store>) -> Result<Self, prometheus::Error> {
        let descs = render::FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(StoreCollector { store, descs })
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        render::render(&self.store.read())
    }
}

/// Builds the registry behind `/metrics`.
pub fn registry(
    store: Arc<Store>,
    exporter: &ExporterMetrics,
) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    registry.register(Box::new(StoreCollector::new(store)?))?;
    exporter.register(&registry)?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

/// Renders `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut buffer = Vec::with_capacity(64 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    Ok(buffer)
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
