//! healthimaging-exporter: watches AWS HealthImaging image sets and reports workflow
//! failures, stalls and tier, state and version changes to Prometheus and the logs.

pub mod app;
pub mod build;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod events;
pub mod http;
pub mod httpd;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod persistence;
pub mod poller;
pub mod scheduler;
pub mod sharding;
pub mod simulator;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod transitions;
pub mod web_config;
