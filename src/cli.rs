//! Command-line interface (clap): the `run`, `demo`, `simulate` and `check-config` commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Prometheus exporter for AWS HealthImaging image sets.
#[derive(Debug, Parser)]
#[command(name = "healthimaging-exporter", version = crate::build::VERSION_LINE, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The command; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, accepted without the word `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the exporter daemon (the default).
    Run(RunArgs),
    /// Start the embedded simulator with a demo scenario and the exporter polling it.
    Demo(DemoArgs),
    /// Run the HealthImaging simulator alone.
    Simulate(SimulateArgs),
    /// Validate a config file, print the effective config and exit.
    CheckConfig(CheckConfigArgs),
}

/// Options of `run`.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// Config file (TOML).
    #[arg(long, value_name = "FILE", env = "HEALTHIMAGING_EXPORTER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options of `demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Address for /metrics, /healthz and /readyz (default: server.listen_address).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Options of `simulate`.
#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Address to serve the HealthImaging API and the control API on.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Scenario file (TOML); an empty world when absent.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed for the fault dice (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Options of `check-config`.
#[derive(Debug, Args, Clone)]
pub struct CheckConfigArgs {
    /// Config file (TOML) to check.
    #[arg(long, value_name = "FILE", env = "HEALTHIMAGING_EXPORTER_CONFIG")]
    pub config: PathBuf,
}
