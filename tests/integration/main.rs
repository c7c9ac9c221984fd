//! Integration tests: the simulator and the exporter over real HTTP, through the real SDK.

mod alerting;
mod budget;
mod deploy;
mod discovery;
mod exporter_metrics;
mod exporter_process;
mod faults;
mod helpers;
mod persistence;
mod reload;
mod simulator_cli;
mod simulator_control;
mod simulator_scenarios;
mod simulator_sdk;
mod web_security;
