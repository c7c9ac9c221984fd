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

/// Poll interval in the demo, short so transitions show within seconds.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

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
