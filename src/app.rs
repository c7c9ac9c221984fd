//! The buildable application: binds its listener, wires source, store, poller, metrics
//! and HTTP together, and runs until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError, DiscoveryRule, ImageSetTarget, ShardingConfig};
use crate::http::{self, WebState};
use crate::httpd;
use crate::ids::ImageSetKey;
use crate::metrics::{ExporterMetrics, Exposition};
use crate::persistence;
use crate::poller::{PollContext, Poller};
use crate::source::{AwsSource, ClientOptions, ImageSetSource};
use crate::store::Store;
use crate::web_config::WebSecurity;

/// How long tasks get to finish after shutdown starts (the contract says exit within 5 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// Re-reads the configuration (the file and the environment) for a reload.
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Asks the running app to reload its configuration; answers with the outcome.
#[derive(Clone, Debug)]
pub struct ReloadHandle(mpsc::Sender<oneshot::Sender<Result<(), String>>>);

impl ReloadHandle {
    /// Requests a reload and waits for its outcome (the error names the problem).
    pub async fn reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the exporter is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the exporter is shutting down".to_string())?
    }
}

/// A built, not yet running exporter.
pub struct App {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    web: Arc<WebState>,
    store: Arc<Store>,
    config: Config,
    source: Arc<dyn ImageSetSource>,
    /// How the source was built; `None` when it was given (kept across reloads).
    options: Option<ClientOptions>,
    metrics: ExporterMetrics,
    ready: Arc<AtomicBool>,
    credentials_failing: Arc<AtomicBool>,
    restored: Vec<ImageSetKey>,
    loader: Option<ConfigLoader>,
    reloads: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
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
        let mut app = Self::with_source(config, listener, Arc::new(source))?;
        app.options = Some(options);
        Ok(app)
    }

    /// Builds around an already bound listener and a given source.
    pub fn with_source(
        config: Config,
        listener: TcpListener,
        source: Arc<dyn ImageSetSource>,
    ) -> anyhow::Result<App> {
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let security = match &config.server.web_config_file {
            Some(path) => WebSecurity::load(path).context("server.web_config_file")?,
            None => WebSecurity::default(),
        };
        let sharding = config.sharding;
        let targets = owned_targets(&config);
        let store = Arc::new(Store::new(&targets));
        let restored = match &config.persistence.state_file {
            Some(path) => restore(&store, path, &config.discovery, sharding),
            None => Vec::new(),
        };
        let metrics = ExporterMetrics::new(config.polling.price_per_1000_calls)
            .context("creating self-metrics")?;
        let exposition = Exposition::new(store.clone(), &config.metrics, sharding, &metrics)
            .context("registering metrics")?;
        let ready = Arc::new(AtomicBool::new(false));
        let credentials_failing = Arc::new(AtomicBool::new(false));
        let (reload_tx, reloads) = mpsc::channel(4);
        Ok(App {
            listener: Some(listener),
            local_addr,
            web: Arc::new(WebState {
                exposition,
                ready: ready.clone(),
                credentials_failing: credentials_failing.clone(),
                reload: Some(ReloadHandle(reload_tx)),
                auth: security.auth,
            }),
            store,
            config,
            source,
            options: None,
            metrics,
            ready,
            credentials_failing,
            restored,
            loader: None,
            reloads,
            tls: security.tls,
        })
    }

    /// Enables reloads (SIGHUP, `POST /-/reload`) that re-read the config with `loader`.
    pub fn with_loader(mut self, loader: ConfigLoader) -> Self {
        self.loader = Some(loader);
        self
    }

    /// A handle that triggers reloads (for the SIGHUP handler).
    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        self.web.reload.clone()
    }

    /// The address `/metrics` is served on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A poller for `config`'s targets, plus the discovered image sets in `discovered`.
    fn poller(&self, config: &Config, discovered: Vec<ImageSetKey>) -> Poller {
        let ctx = PollContext {
            source: self.source.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            call_timeout: config.polling.request_timeout + Duration::from_secs(1),
            credentials_failing: self.credentials_failing.clone(),
        };
        Poller::new(
            ctx,
            owned_targets(config),
            discovered,
            config.discovery.clone(),
            &config.polling,
            config.sharding,
            self.ready.clone(),
        )
    }

    /// Serves and polls until `shutdown` fires, then stops within [`STOP_TIMEOUT`].
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) {
        tracing::info!(
            version = crate::build::VERSION,
            revision = crate::build::REVISION,
            targets = self.config.image_sets.len(),
            listen_address = %self.local_addr,
            tls = self.tls.is_some(),
            basic_auth = self.web.auth.is_some(),
            "exporter started"
        );
        if self.web.auth.is_some() && self.tls.is_none() {
            tracing::warn!("basic auth without TLS: passwords cross the network in clear text");
        }
        let tracker = TaskTracker::new();
        let web = self.web.clone();
        let handler = move |req| http::handle(web.clone(), req);
        let limits = httpd::Limits {
            drain_timeout: Duration::from_secs(3),
            ..httpd::Limits::default()
        };
        if let Some(listener) = self.listener.take() {
            tracker.spawn(httpd::serve_with_tls(
                listener,
                self.tls.clone(),
                handler,
                shutdown.clone(),
                limits,
            ));
        }
        let persistence = self.config.persistence.clone();
        let saver = persistence.state_file.clone().map(|path| {
            let saver = Saver::new(self.store.clone(), path);
            tracker.spawn(
                saver
                    .clone()
                    .run_every(persistence.interval, shutdown.clone()),
            );
            saver
        });
        tracker.close();
        let restored = std::mem::take(&mut self.restored);
        let mut polling = shutdown.child_token();
        let mut poller = tokio::spawn(self.poller(&self.config, restored).run(polling.clone()));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(reply) = self.reloads.recv() => {
                    let result = self.reload(&mut polling, &mut poller, &shutdown).await;
                    let _ = reply.send(result);
                }
            }
        }
        tracing::info!("shutting down");
        let all = async {
            let _ = poller.await;
            tracker.wait().await;
        };
        if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
            tracing::warn!(timeout = ?STOP_TIMEOUT, "tasks did not stop in time; exiting anyway");
        }
        if let Some(saver) = saver {
            saver.save().await;
        }
        tracing::info!("stopped");
    }

    /// Re-reads the config and, if it is valid, restarts polling with it (the store and
    /// every counter stay); an invalid config is logged and the old one kept.
    async fn reload(
        &mut self,
        polling: &mut CancellationToken,
        poller: &mut tokio::task::JoinHandle<()>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let result = self.try_reload(polling, poller, shutdown).await;
        let m = &self.metrics;
        match &result {
            Ok(()) => {
                m.config_last_reload_successful.set(1);
                m.config_last_reload_success_timestamp.set(now_epoch());
                tracing::info!("configuration reloaded");
            }
            Err(error) => {
                m.config_last_reload_successful.set(0);
                tracing::error!(%error, "configuration reload failed: keeping the previous configuration");
            }
        }
        result
    }

    async fn try_reload(
        &mut self,
        polling: &mut CancellationToken,
        poller: &mut tokio::task::JoinHandle<()>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let Some(loader) = &self.loader else {
            return Err("reloading is not available: the config was not loaded from a file or the environment".into());
        };
        let new = loader().map_err(|e| e.to_string())?;
        let old = &self.config;
        for (what, changed) in [
            (
                "server.listen_address",
                new.server.listen_address != old.server.listen_address,
            ),
            (
                "server.web_config_file",
                new.server.web_config_file != old.server.web_config_file,
            ),
            ("log", new.log != old.log),
            ("persistence", new.persistence != old.persistence),
            (
                "polling.price_per_1000_calls",
                new.polling.price_per_1000_calls != old.polling.price_per_1000_calls,
            ),
        ] {
            if changed {
                tracing::warn!(
                    setting = what,
                    "this setting changed but applies only at restart"
                );
            }
        }
        let rebuild =
            new.aws != old.aws || new.polling.request_timeout != old.polling.request_timeout;
        if let (true, Some(options)) = (rebuild, &self.options) {
            let source = AwsSource::build(&new.aws, new.polling.request_timeout, options)
                .await
                .map_err(|e| e.to_string())?;
            self.source = Arc::new(source);
        }
        // Stop the old poller (its in-flight calls are abandoned) and start the new one
        // on the same store.
        polling.cancel();
        let _ = (&mut *poller).await;
        let sharding = new.sharding;
        let discovered = self.store.retarget(&owned_targets(&new), |key| {
            keeps(&new.discovery, sharding, key)
        });
        self.web.exposition.reconfigure(&new.metrics, sharding);
        *polling = shutdown.child_token();
        *poller = tokio::spawn(self.poller(&new, discovered).run(polling.clone()));
        self.config = new;
        Ok(())
    }
}

/// Whether a discovered image set is still watched under `rules` and `sharding` (for
/// `all_datastores`, the first datastore listing settles it).
fn keeps(rules: &[DiscoveryRule], sharding: ShardingConfig, key: &ImageSetKey) -> bool {
    sharding.owns(&key.image_set_id)
        && rules
            .iter()
            .any(|r| r.all_datastores || r.datastore_id == Some(key.datastore_id))
}

/// The configured image sets this instance's shard owns.
fn owned_targets(config: &Config) -> Vec<ImageSetTarget> {
    let sharding = config.sharding;
    let targets: Vec<_> = config
        .image_sets
        .iter()
        .filter(|t| sharding.owns(&t.image_set_id))
        .cloned()
        .collect();
    if sharding.total_shards > 1 {
        tracing::info!(
            shard = sharding.shard,
            total_shards = sharding.total_shards,
            configured = config.image_sets.len(),
            owned = targets.len(),
            "sharding: watching the image sets that hash to this shard"
        );
    }
    targets
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Loads the state file into `store`; a damaged or foreign file is a warning and a fresh
/// start. Returns the discovered image sets restored (for the poller).
fn restore(
    store: &Store,
    path: &std::path::Path,
    rules: &[DiscoveryRule],
    sharding: ShardingConfig,
) -> Vec<ImageSetKey> {
    match persistence::read(path) {
        Ok(Some(saved)) => {
            let restored = store.restore(&saved, |key| keeps(rules, sharding, key));
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
