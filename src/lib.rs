//! healthimaging-exporter: watches AWS HealthImaging image sets and reports workflow
//! failures, stalls and tier, state and version changes to Prometheus and the logs.

pub mod build;
pub mod cli;
pub mod config;
pub mod httpd;
pub mod ids;
pub mod model;
pub mod simulator;
pub mod source;
