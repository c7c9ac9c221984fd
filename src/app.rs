//! The buildable application: binds its listener, wires source, store, poller, metrics
//! and HTTP together, and runs until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, PersistenceConfig, ShardingConfig};
use crate::http::{self, WebState};
use crate::httpd;
use crate::ids::ImageSetKey;
use crate::metrics::{ExporterMetrics, Exposition};
use crate::persistence;
use crate::poller::{PollContext, Poller};
use crate::source::{AwsSource, ClientOptions, ImageSetSource};
use crate::store::Store;

/// How long tasks get to finish after shutdown starts (the contract says exit within 5 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// A built, not yet running exporter.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    poller: Poller,
    web: Arc<WebState>,
    targets: usize,
    store: Arc<Store>,
    persistence: PersistenceConfig,
}

impl App {
    /// Binds `server.listen_address` and builds the AWS client from `config`.
    pub async fn build(config: Config, options: ClientOptions) -> anyhow::Result<App> {
        let listener = bind(config.server.listen_address).await?;
        let source =
            AwsSource::build(&config.aws, config.polling.request_timeout, &options).await?;
        if let Some(region) = source.region() {
            tracing::debug!(%region, "aws client ready");
        }
        Self::with_source(config, listener, Arc::new(source))
    }

    /// Builds around an already bound listener and a given source.
    pub fn with_source(
        config: Config,
        listener: TcpListener,
        source: Arc<dyn ImageSetSource>,
    ) -> anyhow::Result<App> {
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let sharding = config.sharding;
        let total = config.image_sets.len();
        let targets: Vec<_> = config
            .image_sets
            .into_iter()
            .filter(|t| sharding.owns(&t.image_set_id))
            .collect();
        if sharding.total_shards > 1 {
            tracing::info!(
                shard = sharding.shard,
                total_shards = sharding.total_shards,
                configured = total,
                owned = targets.len(),
                "sharding: watching the image sets that hash to this shard"
            );
        }
        let store = Arc::new(Store::new(&targets));
        let restored = match &config.persistence.state_file {
            Some(path) => restore(&store, path, !config.discovery.is_empty(), sharding),
            None => Vec::new(),
        };
        let exporter_metrics = ExporterMetrics::new(config.polling.price_per_1000_calls)
            .context("creating self-metrics")?;
        let exposition =
            Exposition::new(store.clone(), &config.metrics, sharding, &exporter_metrics)
                .context("registering metrics")?;
        let ready = Arc::new(AtomicBool::new(false));
        let credentials_failing = Arc::new(AtomicBool::new(false));
        let ctx = PollContext {
            source,
            store: store.clone(),
            metrics: exporter_metrics,
            call_timeout: config.polling.request_timeout + Duration::from_secs(1),
            credentials_failing: credentials_failing.clone(),
        };
        let poller = Poller::new(
            ctx,
            targets,
            restored,
            config.discovery,
            &config.polling,
            sharding,
            ready.clone(),
        );
        Ok(App {
            listener,
            local_addr,
            poller,
            web: Arc::new(WebState {
                exposition,
                ready,
                credentials_failing,
            }),
            targets: total,
            store,
            persistence: config.persistence,
        })
    }

    /// The address `/metrics` is served on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves and polls until `shutdown` fires, then stops within [`STOP_TIMEOUT`].
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        tracing::info!(
            version = crate::build::VERSION,
            revision = crate::build::REVISION,
            targets = self.targets,
            listen_address = %self.local_addr,
            "exporter started"
        );
        let tracker = TaskTracker::new();
        let web = self.web.clone();
        let handler = move |req| http::handle(web.clone(), req);
        let limits = httpd::Limits {
            drain_timeout: Duration::from_secs(3),
            ..httpd::Limits::default()
        };
        tracker.spawn(httpd::serve(
            self.listener,
            handler,
            shutdown.clone(),
            limits,
        ));
        tracker.spawn(self.poller.run(shutdown.clone()));
        let saver = self.persistence.state_file.clone().map(|path| {
            let saver = Saver::new(self.store.clone(), path);
            tracker.spawn(
                saver
                    .clone()
                    .run_every(self.persistence.interval, shutdown.clone()),
            );
            saver
        });
        tracker.close();
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        if tokio::time::timeout(STOP_TIMEOUT, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?STOP_TIMEOUT, "tasks did not stop in time; exiting anyway");
        }
        if let Some(saver) = saver {
            saver.save().await;
        }
        tracing::info!("stopped");
    }
}

/// Loads the state file into `store`; a damaged or foreign file is a warning and a fresh
/// start. Returns the discovered image sets restored (for the poller).
fn restore(
    store: &Store,
    path: &std::path::Path,
    discovering: bool,
    sharding: ShardingConfig,
) -> Vec<ImageSetKey> {
    match persistence::read(path) {
        Ok(Some(saved)) => {
            let restored = store.restore(&saved, |key| {
                discovering && sharding.owns(&key.image_set_id)
            });
            tracing::info!(
                state_file = %path.display(),
                image_sets = saved.image_sets.len(),
                discovered = restored.len(),
                written_at = saved.written_at,
                "state restored: changes while the exporter was down are reported on the first poll"
            );
            restored
        }
        Ok(None) => {
            tracing::info!(state_file = %path.display(), "no state file yet: starting fresh");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(%error, "ignoring the state file: starting fresh");
            Vec::new()
        }
    }
}

/// Writes the store to the state file on a cadence and once more at shutdown.
#[derive(Clone)]
struct Saver {
    store: Arc<Store>,
    path: std::path::PathBuf,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl Saver {
    fn new(store: Arc<Store>, path: std::path::PathBuf) -> Self {
        Saver {
            store,
            path,
            last_error: Default::default(),
        }
    }

    async fn run_every(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => self.save().await,
            }
        }
    }

    /// One atomic write; failures are logged once per distinct error.
    async fn save(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let saved = persistence::capture(&self.store.read(), now);
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || persistence::write(&path, &saved))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!(state_file = %self.path.display(), "state file written again");
                }
            }
            Err(error) => {
                let text = error.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(state_file = %self.path.display(), error = %text, "cannot write the state file");
                    *last = Some(text);
                }
            }
        }
    }
}

/// Binds the metrics listener with an error that names the setting.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen_address)"))
}
