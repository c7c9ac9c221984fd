//! Configuration: defaults, then the TOML file, then `HEALTHIMAGING_EXPORTER_<SECTION>__<KEY>`
//! environment variables (figment), validated into domain types before anything starts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::ids::{DatastoreId, ImageSetId, ImageSetKey, VersionId};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "HEALTHIMAGING_EXPORTER_";

/// The exporter's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The metrics and health HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// How to reach HealthImaging.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Poll cadence and limits.
    #[serde(default)]
    pub polling: PollingConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// What `/metrics` exposes.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Splitting the image sets between several exporter instances.
    #[serde(default)]
    pub sharding: ShardingConfig,
    /// The state file kept across restarts.
    #[serde(default)]
    pub persistence: PersistenceConfig,
    /// The image sets to watch.
    #[serde(default)]
    pub image_sets: Vec<ImageSetTarget>,
    /// Datastores whose image sets are discovered and watched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovery: Vec<DiscoveryRule>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address serving /metrics, /healthz and /readyz.
    #[serde(default = "default_listen", deserialize_with = "socket_addr")]
    pub listen_address: SocketAddr,
    /// exporter-toolkit style web config (YAML: TLS, basic auth); plaintext and open when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_config_file: Option<PathBuf>,
}

/// Parses a socket address with an error that shows the value.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address like 0.0.0.0:9712 or [::]:9712"
        ))
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9712))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen_address: default_listen(),
            web_config_file: None,
        }
    }
}

/// `[aws]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; the aws-config chain decides when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint URL; `AWS_ENDPOINT_URL_MEDICAL_IMAGING` / `AWS_ENDPOINT_URL` or AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Drop the `runtime-` host prefix; default: only when an endpoint is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_host_prefix: Option<bool>,
    /// Attempts per call by the SDK's standard retry mode (1 disables SDK retries).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    // The scheduler retries on its own cadence and budget; SDK retries would send
    // requests the rate limiter never counted, multiplying a throttling storm.
    1
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint_url: None,
            disable_host_prefix: None,
            max_attempts: default_max_attempts(),
        }
    }
}

/// `[polling]`: cadence and the API budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingConfig {
    /// Time between two polls of a settled image set.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time between two polls of an image set whose workflow is in progress.
    #[serde(default = "default_in_progress_interval", with = "humantime_serde")]
    pub in_progress_interval: Duration,
    /// Time between two polls of an image set in a failed status.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub failed_interval: Duration,
    /// Budget: sustained GetImageSet calls per second (the account quota is 25, shared).
    #[serde(default = "default_rate")]
    pub max_requests_per_second: f64,
    /// Budget: calls that may go at once after a quiet period.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// GetImageSet calls in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Random spread of every delay, as a fraction (0.1 = ±10 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Deadline of one GetImageSet call, SDK retries included.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest per-image-set backoff after repeated errors.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long an image set that vanished (404 after being seen) stays exported.
    #[serde(default = "default_gone_retention", with = "humantime_serde")]
    pub gone_retention: Duration,
    /// Price of 1,000 API calls in dollars, for the cost estimate.
    #[serde(default = "default_price")]
    pub price_per_1000_calls: f64,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_in_progress_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_rate() -> f64 {
    5.0
}
fn default_burst() -> u32 {
    10
}
fn default_jitter() -> f64 {
    0.1
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}
fn default_gone_retention() -> Duration {
    Duration::from_secs(3600)
}
fn default_price() -> f64 {
    0.005
}
fn default_concurrency() -> usize {
    4
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            interval: default_interval(),
            in_progress_interval: default_in_progress_interval(),
            failed_interval: default_interval(),
            max_requests_per_second: default_rate(),
            burst: default_burst(),
            concurrency: default_concurrency(),
            jitter: default_jitter(),
            request_timeout: default_request_timeout(),
            max_backoff: default_max_backoff(),
            gone_retention: default_gone_retention(),
            price_per_1000_calls: default_price(),
        }
    }
}

impl PollingConfig {
    /// The scheduler's view of these settings.
    pub fn scheduler_settings(&self) -> crate::scheduler::Settings {
        crate::scheduler::Settings {
            interval: self.interval,
            in_progress_interval: self.in_progress_interval,
            failed_interval: self.failed_interval,
            max_requests_per_second: self.max_requests_per_second,
            burst: self.burst,
            jitter: self.jitter,
            max_backoff: self.max_backoff,
            gone_retention: self.gone_retention,
        }
    }

    fn validate(&self) -> Result<(), (String, String, String)> {
        let bad = |field: &str, value: String, message: &str| {
            Err((format!("polling.{field}"), value, message.to_string()))
        };
        let show = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        let durations = [
            ("interval", self.interval),
            ("in_progress_interval", self.in_progress_interval),
            ("failed_interval", self.failed_interval),
            ("request_timeout", self.request_timeout),
            ("max_backoff", self.max_backoff),
            ("gone_retention", self.gone_retention),
        ];
        for (field, d) in durations {
            if d.is_zero() {
                return bad(field, show(d), "must be greater than zero");
            }
        }
        for (field, d) in [
            ("interval", self.interval),
            ("failed_interval", self.failed_interval),
            ("max_backoff", self.max_backoff),
        ] {
            if d < self.in_progress_interval {
                return bad(
                    field,
                    show(d),
                    &format!(
                        "must not be shorter than polling.in_progress_interval ({})",
                        humantime::format_duration(self.in_progress_interval)
                    ),
                );
            }
        }
        let rate = self.max_requests_per_second;
        if !rate.is_finite() || rate <= 0.0 || rate > 1000.0 {
            return bad(
                "max_requests_per_second",
                rate.to_string(),
                "must be above 0 and at most 1000",
            );
        }
        if self.burst == 0 || self.burst > 10_000 {
            return bad(
                "burst",
                self.burst.to_string(),
                "must be between 1 and 10000",
            );
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return bad(
                "concurrency",
                self.concurrency.to_string(),
                "must be between 1 and 256",
            );
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return bad(
                "jitter",
                self.jitter.to_string(),
                "must be a fraction between 0 and 0.5",
            );
        }
        let price = self.price_per_1000_calls;
        if !price.is_finite() || price < 0.0 {
            return bad(
                "price_per_1000_calls",
                price.to_string(),
                "must be a non-negative number",
            );
        }
        Ok(())
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Which image sets get per-image-set series: `all`, `unhealthy` or `none`. When
    /// absent: `all` for `[[image_sets]]` entries, `unhealthy` for discovered ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_set_detail: Option<crate::metrics::render::Detail>,
    /// Most discovered image sets rendered with per-image-set series; the rest are counted
    /// in `healthimaging_image_set_detail_omitted` (aggregates always cover every set).
    /// Configured `[[image_sets]]` are not capped.
    #[serde(default = "default_max_detailed")]
    pub max_detailed_image_sets: usize,
    /// Only metric families whose name matches one of these regexes (all when empty).
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub include: Patterns,
    /// Metric families whose name matches one of these regexes are left out.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub exclude: Patterns,
}

fn default_max_detailed() -> usize {
    // ~13 series per image set: 5,000 sets stay below 70k series per exporter.
    5_000
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            image_set_detail: None,
            max_detailed_image_sets: default_max_detailed(),
            include: Patterns::default(),
            exclude: Patterns::default(),
        }
    }
}

impl MetricsConfig {
    /// Whether the metric family `name` is exposed under `include`/`exclude`.
    pub fn family_enabled(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.any_matches(name))
            && !self.exclude.any_matches(name)
    }
}

/// A regular expression from the config, matched against a whole value (anchored, as in
/// Prometheus relabelling).
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `text` as an anchored regex.
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{text})$"))?;
        Ok(Pattern {
            text: text.to_string(),
            regex,
        })
    }

    /// Whether the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::new(&text).map_err(|e| {
            let why = e.to_string();
            let last = why.lines().last().unwrap_or("invalid").trim().to_string();
            serde::de::Error::custom(format!("`{text}` is not a valid regex: {last}"))
        })
    }
}

/// One regex or a list of them (`"a.*"` or `["a.*", "b"]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patterns(pub Vec<Pattern>);

impl Patterns {
    /// No pattern configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any pattern matches the whole of `value`.
    pub fn any_matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| p.matches(value))
    }
}

impl Serialize for Patterns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Patterns;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a regex string or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Patterns, E> {
                Pattern::deserialize(serde::de::value::StrDeserializer::new(v))
                    .map(|p| Patterns(vec![p]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Patterns, A::Error> {
                let mut all = Vec::new();
                while let Some(p) = seq.next_element::<Pattern>()? {
                    all.push(p);
                }
                Ok(Patterns(all))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// `[persistence]`: the store saved across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Where the state is kept; no persistence when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// How often the state is written (it is also written at shutdown).
    #[serde(default = "default_persist_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_persist_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            state_file: None,
            interval: default_persist_interval(),
        }
    }
}

/// `[sharding]`: this instance watches the image sets whose id hashes to `shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    /// This instance's shard, 0-based (e.g. a StatefulSet pod ordinal).
    #[serde(default)]
    pub shard: u32,
    /// How many instances share the image sets.
    #[serde(default = "default_total_shards")]
    pub total_shards: u32,
}

fn default_total_shards() -> u32 {
    1
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig {
            shard: 0,
            total_shards: default_total_shards(),
        }
    }
}

/// One `[[discovery]]` entry: a datastore (or all of them) whose image sets are watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryRule {
    /// One datastore to watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_id: Option<DatastoreId>,
    /// Watch every datastore ListDatastores returns (filtered by include/exclude).
    #[serde(default)]
    pub all_datastores: bool,
    /// With `all_datastores`: only datastores whose id or name matches one of these.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub include: Patterns,
    /// With `all_datastores`: skip datastores whose id or name matches one of these.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub exclude: Patterns,
    /// Only primary (`true`) or only non-primary (`false`) image sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_primary: Option<bool>,
    /// How often the datastore list and statuses are refreshed.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How often SearchImageSets looks for image sets updated since the last search.
    #[serde(default = "default_search_interval", with = "humantime_serde")]
    pub search_interval: Duration,
    /// How far each search window reaches back before the previous one ended, so clock
    /// skew and late index updates do not hide a change.
    #[serde(default = "default_search_overlap", with = "humantime_serde")]
    pub search_overlap: Duration,
    /// How often every image set is listed again, to catch what the windows missed.
    #[serde(default = "default_reconcile_interval", with = "humantime_serde")]
    pub reconcile_interval: Duration,
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_search_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_search_overlap() -> Duration {
    Duration::from_secs(120)
}
fn default_reconcile_interval() -> Duration {
    Duration::from_secs(6 * 3600)
}

impl DiscoveryRule {
    fn validate(&self, n: usize) -> Result<(), (String, String, String)> {
        let bad = |field: &str, value: String, message: &str| {
            Err((
                format!("discovery[{n}].{field}"),
                value,
                message.to_string(),
            ))
        };
        match (&self.datastore_id, self.all_datastores) {
            (Some(id), true) => {
                return bad(
                    "datastore_id",
                    format!("\"{id}\""),
                    "conflicts with all_datastores = true: set one of them",
                )
            }
            (None, false) => {
                return bad(
                    "datastore_id",
                    "(absent)".into(),
                    "set datastore_id = \"...\" or all_datastores = true",
                )
            }
            _ => {}
        }
        if !self.all_datastores {
            for (field, p) in [("include", &self.include), ("exclude", &self.exclude)] {
                if let Some(p) = p.0.first() {
                    return bad(
                        field,
                        format!("{:?}", p.as_str()),
                        "only applies with all_datastores = true",
                    );
                }
            }
        }
        let show = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        for (field, d) in [
            ("refresh_interval", self.refresh_interval),
            ("search_interval", self.search_interval),
            ("reconcile_interval", self.reconcile_interval),
        ] {
            if d.is_zero() {
                return bad(field, show(d), "must be greater than zero");
            }
        }
        if self.reconcile_interval < self.search_interval {
            return bad(
                "reconcile_interval",
                show(self.reconcile_interval),
                &format!(
                    "must not be shorter than search_interval ({})",
                    humantime::format_duration(self.search_interval)
                ),
            );
        }
        Ok(())
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` or `pretty`.
    #[serde(default)]
    pub format: LogFormat,
    /// Level or tracing filter directives; `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

/// One `[[image_sets]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSetTarget {
    /// Owning datastore.
    pub datastore_id: DatastoreId,
    /// The image set.
    pub image_set_id: ImageSetId,
    /// A fixed version to watch; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<VersionId>,
}

impl ImageSetTarget {
    /// The image set this target watches.
    pub fn key(&self) -> ImageSetKey {
        ImageSetKey {
            datastore_id: self.datastore_id,
            image_set_id: self.image_set_id,
        }
    }
}

/// The configuration could not be loaded; every variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file does not exist or cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parsing failed (syntax, unknown key, wrong type, bad id, bad duration).
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{field} = {value}: {message} (from {origin})")]
    Invalid {
        /// Dotted key, e.g. `polling.interval`.
        field: String,
        /// The value as configured.
        value: String,
        /// What is wrong.
        message: String,
        /// Where the value came from (file or environment variable).
        origin: String,
    },
}

impl Config {
    /// Loads defaults, the optional file and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, Env::prefixed(ENV_PREFIX))
    }

    /// Like [`Config::load`] with an explicit environment provider (for tests).
    pub fn load_with_env(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // figment treats a missing file as empty; a named file that is absent is an error.
            std::fs::metadata(path).map_err(|source| ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        // `_CONFIG` names the file itself, it is no key.
        let env = env.split("__").filter(|key| key.as_str() != "config");
        let figment = figment.merge(env);
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe(e)))?;
        config
            .validate()
            .map_err(|(field, value, message)| ConfigError::Invalid {
                origin: origin_of(&figment, &field),
                field,
                value,
                message,
            })?;
        if let Some(path) = &config.server.web_config_file {
            // Certificates, keys and hashes are checked here too, so check-config sees them.
            crate::web_config::WebSecurity::load(path).map_err(|e| ConfigError::Invalid {
                field: "server.web_config_file".into(),
                value: format!("{:?}", path.display().to_string()),
                message: e.to_string(),
                origin: origin_of(&figment, "server.web_config_file"),
            })?;
        }
        Ok(config)
    }

    /// Checks values that parse but make no sense; returns (field, value, message).
    pub fn validate(&self) -> Result<(), (String, String, String)> {
        let bad = |field: &str, value: String, message: &str| {
            Err((field.to_string(), value, message.to_string()))
        };
        self.polling.validate()?;
        if self.aws.max_attempts == 0 || self.aws.max_attempts > 10 {
            return bad(
                "aws.max_attempts",
                self.aws.max_attempts.to_string(),
                "must be between 1 and 10",
            );
        }
        if let Some(region) = &self.aws.region {
            let ok = !region.is_empty()
                && region.len() <= 32
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return bad(
                    "aws.region",
                    format!("{region:?}"),
                    "is not a region name like us-east-1",
                );
            }
        }
        if let Some(url) = &self.aws.endpoint_url {
            if let Err(why) = check_endpoint_url(url) {
                return bad("aws.endpoint_url", format!("{url:?}"), &why);
            }
        }
        if let Err(e) = check_log_level(&self.log.level) {
            return bad(
                "log.level",
                format!("{:?}", self.log.level),
                &format!("is not a level or filter: {e}"),
            );
        }
        if self.persistence.interval.is_zero() {
            return bad(
                "persistence.interval",
                "\"0s\"".into(),
                "must be greater than zero",
            );
        }
        if let Some(path) = &self.persistence.state_file {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if path.as_os_str().is_empty() || path.is_dir() {
                return bad(
                    "persistence.state_file",
                    format!("{path:?}"),
                    "must name a file",
                );
            }
            if !dir.is_dir() {
                return bad(
                    "persistence.state_file",
                    format!("{path:?}"),
                    &format!("directory {} does not exist", dir.display()),
                );
            }
        }
        let sharding = self.sharding;
        if sharding.total_shards == 0 || sharding.total_shards > 1024 {
            return bad(
                "sharding.total_shards",
                sharding.total_shards.to_string(),
                "must be between 1 and 1024",
            );
        }
        if sharding.shard >= sharding.total_shards {
            return bad(
                "sharding.shard",
                sharding.shard.to_string(),
                &format!(
                    "must be below sharding.total_shards ({})",
                    sharding.total_shards
                ),
            );
        }
        if self.metrics.max_detailed_image_sets > 1_000_000 {
            return bad(
                "metrics.max_detailed_image_sets",
                self.metrics.max_detailed_image_sets.to_string(),
                "must be at most 1000000",
            );
        }
        let mut datastores = HashSet::new();
        let mut all_at = None;
        for (n, rule) in self.discovery.iter().enumerate() {
            rule.validate(n)?;
            if let Some(id) = rule.datastore_id {
                if !datastores.insert(id) {
                    return bad(
                        &format!("discovery[{n}].datastore_id"),
                        format!("\"{id}\""),
                        "duplicate of an earlier [[discovery]] entry",
                    );
                }
            }
            if rule.all_datastores {
                if let Some(first) = all_at.replace(n) {
                    return bad(
                        &format!("discovery[{n}].all_datastores"),
                        "true".into(),
                        &format!("discovery[{first}] already has all_datastores = true; combine include/exclude there"),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (n, target) in self.image_sets.iter().enumerate() {
            if !seen.insert(target.key()) {
                return bad(
                    &format!("image_sets[{n}].image_set_id"),
                    format!("\"{}\"", target.image_set_id),
                    &format!(
                        "duplicate of an earlier entry in datastore {}",
                        target.datastore_id
                    ),
                );
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Accepts a level name or tracing directives; a bare word must be a level, so a typo
/// like `infos` is not silently read as a target name.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    for directive in level.split(',').map(str::trim) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("`{directive}` is not one of {}", LEVELS.join(", ")));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_endpoint_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

/// One line per figment error: `field: problem (from source)`.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let field = if e.path.is_empty() {
                "config".to_string()
            } else {
                dotted(&e.path)
            };
            let origin = match &e.metadata {
                Some(md) => describe_origin(md, &e.path),
                None => "configuration".into(),
            };
            format!("{field}: {} (from {origin})", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `["image_sets", "0", "datastore_id"]` → `image_sets[0].datastore_id`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Names where a value came from: the file, the exact environment variable, or defaults.
fn describe_origin<S: AsRef<str>>(md: &figment::Metadata, path: &[S]) -> String {
    if let Some(source) = &md.source {
        return format!("{source}");
    }
    if md.name.contains("environment") {
        let key: Vec<String> = path.iter().map(|p| p.as_ref().to_uppercase()).collect();
        return format!("environment variable {ENV_PREFIX}{}", key.join("__"));
    }
    md.name.to_string()
}

fn origin_of(figment: &Figment, field: &str) -> String {
    let key = field.split('[').next().unwrap_or(field);
    match figment.find_metadata(key) {
        Some(md) => describe_origin(md, &key.split('.').collect::<Vec<_>>()),
        None => "defaults".into(),
    }
}
