//! `demo`: the embedded simulator with the bundled scenario, and the exporter polling it.

use std::net::SocketAddr;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{Config, ImageSetTarget};
use crate::ids::{DatastoreId, ImageSetId};
use crate::simulator::{RunningSimulator, Scenario};
use crate::source::ClientOptions;

/// The bundled scenario (also at `config/simulator/demo.toml`).
pub const SCENARIO: &str = include_str!("../config/simulator/demo.toml");

/// Poll interval of settled image sets in the demo, short so transitions show within seconds.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Poll interval of image sets with a running workflow in the demo.
pub const IN_PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Request budget in the demo: the simulator is local, not an AWS account's quota.
pub const DEMO_REQUESTS_PER_SECOND: f64 = 50.0;

/// Adapts `base` to poll the demo simulator at `endpoint` for the scenario's image sets.
pub fn configure(
    base: Config,
    scenario: &Scenario,
    endpoint: &str,
    listen: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let mut config = base;
    if let Some(listen) = listen {
        config.server.listen_address = listen;
    }
    config.aws.endpoint_url = Some(endpoint.to_string());
    config.aws.region = Some(scenario.region.clone());
    config.polling.interval = POLL_INTERVAL;
    config.polling.failed_interval = POLL_INTERVAL;
    config.polling.in_progress_interval = IN_PROGRESS_INTERVAL;
    config.polling.max_requests_per_second = DEMO_REQUESTS_PER_SECOND;
    config.polling.burst = 50;
    config.image_sets = scenario
        .image_sets
        .iter()
        .map(|s| {
            Ok(ImageSetTarget {
                datastore_id: DatastoreId::parse(&s.datastore_id.0)?,
                image_set_id: ImageSetId::parse(&s.image_set_id.0)?,
                version_id: None,
            })
        })
        .collect::<Result<_, crate::ids::InvalidId>>()?;
    config.validate().map_err(|(field, value, message)| {
        anyhow::anyhow!("demo config: {field} = {value}: {message}")
    })?;
    Ok(config)
}

/// Runs the demo until `shutdown` fires.
pub async fn run(
    base: Config,
    listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let scenario = Scenario::parse(SCENARIO, " (built-in demo)")?;
    let sim_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot open a loopback port for the simulator")?;
    let simulator = RunningSimulator::start(&scenario, sim_listener, None)?;
    let endpoint = simulator.endpoint_url();
    let config = configure(base, &scenario, &endpoint, listen)?;
    let options = ClientOptions {
        static_credentials: Some(("DEMOACCESSKEY".into(), "demo-secret".into())),
    };
    let app = App::build(config, options).await?;
    let addr = app.local_addr();
    let shown = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    eprintln!(
        "\nhealthimaging-exporter demo\n  metrics:    http://{shown}/metrics\n  simulator:  {endpoint}  \
         (control API: {endpoint}/_simulator/image-sets)\n  In the first minute an import fails, a copy and an \
         update finish, image sets move to ARCHIVE_INSTANT_ACCESS and one is deleted; the log shows each \
         transition. Ctrl-C stops.\n"
    );
    app.run_until_stopped(shutdown).await;
    simulator.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid_and_polls_running_workflows_fastest() {
        let scenario = Scenario::parse(SCENARIO, "").unwrap();
        let config = configure(Config::default(), &scenario, "http://127.0.0.1:1", None).unwrap();
        assert_eq!(config.image_sets.len(), scenario.image_sets.len());
        assert!(config.polling.in_progress_interval < config.polling.interval);
        let demand = config.image_sets.len() as f64 / config.polling.interval.as_secs_f64()
            + config.image_sets.len() as f64 / config.polling.in_progress_interval.as_secs_f64();
        assert!(
            demand <= config.polling.max_requests_per_second,
            "the budget covers even all sets in progress"
        );
    }
}
