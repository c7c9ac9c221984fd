//! Entry point: parse the CLI, dispatch, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use healthimaging_exporter::cli::{Cli, Command, SimulateArgs};
use healthimaging_exporter::simulator::{RunningSimulator, Scenario};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Simulate(args)) => run_simulator(args),
        _ => {
            eprintln!("not implemented yet");
            ExitCode::from(2)
        }
    }
}

fn run_simulator(args: SimulateArgs) -> ExitCode {
    let scenario = match &args.scenario {
        Some(path) => match Scenario::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => Scenario::empty(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
        let sim = match RunningSimulator::start(&scenario, listener, args.seed) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        eprintln!("simulator listening on {}", sim.endpoint_url());
        let _ = tokio::signal::ctrl_c().await;
        sim.stop().await;
        ExitCode::SUCCESS
    })
}
