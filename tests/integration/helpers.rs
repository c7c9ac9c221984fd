//! Shared test plumbing: start the simulator (and later the exporter) on port 0.

use std::time::{Duration, Instant};

use healthimaging_exporter::config::AwsConfig;
use healthimaging_exporter::simulator::{RunningSimulator, Scenario};
use healthimaging_exporter::source::{AwsSource, ClientOptions};
use serde_json::Value;

/// A datastore id used across tests.
pub const DS: &str = "0123456789abcdef0123456789abcdef";
/// Image set ids used across tests.
pub const IS1: &str = "11111111111111111111111111111111";
/// See [`IS1`].
pub const IS2: &str = "22222222222222222222222222222222";
/// See [`IS1`].
pub const IS3: &str = "33333333333333333333333333333333";

/// Installs a test log subscriber once, printing only when `TEST_LOG` is set.
pub fn init_test_log() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A simulator on a random loopback port with an HTTP client for its control API.
pub struct TestSimulator {
    /// The running server (None when it runs in another process); stopped on drop.
    pub _server: Option<RunningSimulator>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Plain HTTP client.
    pub http: reqwest::Client,
}

impl TestSimulator {
    /// Starts a simulator with the given scenario text.
    pub async fn start(scenario_toml: &str) -> TestSimulator {
        init_test_log();
        let scenario = Scenario::parse(scenario_toml, " (test)").expect("test scenario is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let server =
            RunningSimulator::start(&scenario, listener, Some(1)).expect("start simulator");
        let endpoint = server.endpoint_url();
        TestSimulator {
            _server: Some(server),
            endpoint,
            http: reqwest::Client::new(),
        }
    }

    /// An SDK-backed source pointing at this simulator, with static test credentials.
    pub async fn source(&self) -> AwsSource {
        let aws = AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            max_attempts: 1,
            ..AwsConfig::default()
        };
        let options = ClientOptions {
            static_credentials: Some(("AKIDTESTTESTTEST".into(), "test-secret".into())),
        };
        AwsSource::build(&aws, Duration::from_secs(5), &options).await
    }

    /// `PUT /_simulator/datastore/{d}/imageSet/{i}` with `body`; returns status and JSON.
    pub async fn put_image_set(&self, ds: &str, is: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/_simulator/datastore/{ds}/imageSet/{is}", self.endpoint);
        let resp = self
            .http
            .put(url)
            .json(&body)
            .send()
            .await
            .expect("control API reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("control API answers JSON"))
    }

    /// `DELETE /_simulator/datastore/{d}/imageSet/{i}`; returns the status.
    pub async fn delete_image_set(&self, ds: &str, is: &str) -> u16 {
        let url = format!("{}/_simulator/datastore/{ds}/imageSet/{is}", self.endpoint);
        self.http
            .delete(url)
            .send()
            .await
            .expect("control API reachable")
            .status()
            .as_u16()
    }

    /// `PUT /_simulator/faults`.
    pub async fn set_faults(&self, body: Value) -> (u16, Value) {
        let url = format!("{}/_simulator/faults", self.endpoint);
        let resp = self
            .http
            .put(url)
            .json(&body)
            .send()
            .await
            .expect("control API reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("control API answers JSON"))
    }

    /// `GET /_simulator/{what}` as JSON.
    pub async fn get(&self, what: &str) -> Value {
        let url = format!("{}/_simulator/{what}", self.endpoint);
        self.http
            .get(url)
            .send()
            .await
            .expect("control API reachable")
            .json()
            .await
            .expect("JSON")
    }

    /// Requests counted by the simulator for `operation` with `outcome`.
    pub async fn count(&self, operation: &str, outcome: &str) -> u64 {
        self.get("stats").await["requests"][operation][outcome]
            .as_u64()
            .unwrap_or(0)
    }

    /// The latest properties of one image set, from the control API.
    pub async fn image_set(&self, is: &str) -> Value {
        let all = self.get("image-sets").await;
        all["imageSets"]
            .as_array()
            .and_then(|sets| sets.iter().find(|s| s["imageSetId"] == is).cloned())
            .unwrap_or(Value::Null)
    }
}

/// Polls `check` every 25 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A scenario with one datastore and the given image set blocks.
pub fn scenario(image_sets: &str) -> String {
    format!("seed = 1\n[[datastores]]\nid = \"{DS}\"\nname = \"test\"\n\n{image_sets}")
}
