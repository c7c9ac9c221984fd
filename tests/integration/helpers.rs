//! Shared test plumbing: start the simulator (and later the exporter) on port 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use healthimaging_exporter::config::AwsConfig;
use healthimaging_exporter::simulator::{RunningSimulator, Scenario};
use healthimaging_exporter::source::{AwsSource, ClientOptions};
use serde_json::{json, Value};

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
        AwsSource::build(&aws, Duration::from_secs(5), &options)
            .await
            .expect("client builds")
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

/// True when the external tool `program` runs (`--version`). Outside CI a missing tool
/// skips the calling test with a notice; in CI (`CI` set) it fails, since `.ci/run`
/// installs it.
pub fn tool_available(program: &str, install_hint: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is required in CI ({install_hint})"
        );
        eprintln!("SKIPPED: {program} is not installed ({install_hint})");
    }
    ok
}

/// The files of a bad-input table under `tests/data/{dir}`, each with the text its first
/// line (`# expect: TEXT`) says the error must contain, in name order.
pub fn expectation_table(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "the table {} has {} files",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", file.display()))
                .to_string();
            (file, expect)
        })
        .collect()
}

/// A scenario with one datastore and the given image set blocks.
pub fn scenario(image_sets: &str) -> String {
    format!("seed = 1\n[[datastores]]\nid = \"{DS}\"\nname = \"test\"\n\n{image_sets}")
}

/// An exporter running in-process against a [`TestSimulator`], on a random port.
pub struct TestApp {
    /// Where /metrics is served.
    pub addr: std::net::SocketAddr,
    /// Plain HTTP client.
    pub http: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A config polling `targets` on the simulator every 200 ms (budget no constraint), on port 0.
pub fn test_config(
    sim: &TestSimulator,
    targets: &[(&str, &str)],
) -> healthimaging_exporter::config::Config {
    use healthimaging_exporter::config::{Config, ImageSetTarget};
    use healthimaging_exporter::ids::{DatastoreId, ImageSetId};
    let mut config = Config::default();
    config.server.listen_address = "127.0.0.1:0".parse().unwrap();
    config.aws.endpoint_url = Some(sim.endpoint.clone());
    config.aws.region = Some("us-east-1".into());
    config.aws.max_attempts = 1;
    config.polling.interval = Duration::from_millis(200);
    config.polling.in_progress_interval = Duration::from_millis(100);
    config.polling.failed_interval = Duration::from_millis(200);
    config.polling.max_backoff = Duration::from_secs(1);
    config.polling.max_requests_per_second = 1000.0;
    config.polling.burst = 100;
    config.polling.jitter = 0.0;
    config.polling.request_timeout = Duration::from_secs(2);
    config.image_sets = targets
        .iter()
        .map(|(ds, is)| ImageSetTarget {
            datastore_id: DatastoreId::parse(ds).unwrap(),
            image_set_id: ImageSetId::parse(is).unwrap(),
            version_id: None,
        })
        .collect();
    config
}

impl TestApp {
    /// Builds and starts the exporter with `config`.
    pub async fn spawn(config: healthimaging_exporter::config::Config) -> TestApp {
        init_test_log();
        let options = ClientOptions {
            static_credentials: Some(("AKIDTESTTESTTEST".into(), "test-secret".into())),
        };
        let app = healthimaging_exporter::app::App::build(config, options)
            .await
            .expect("app builds");
        let addr = app.local_addr();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        TestApp {
            addr,
            http: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        }
    }

    /// GET `path`; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("exporter reachable");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// Waits until /metrics has a sample `name{labels}` equal to `value`; returns the text.
    pub async fn wait_for(&self, name: &str, labels: &[(&str, &str)], value: f64) -> String {
        let what = format!("{name}{labels:?} == {value}");
        eventually(&what, Duration::from_secs(10), || async {
            let text = self.metrics().await;
            (sample(&text, name, labels) == Some(value)).then_some(text)
        })
        .await
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&self) {
        eventually("readiness", Duration::from_secs(10), || async {
            (self.get("/readyz").await.0 == 200).then_some(())
        })
        .await
    }

    /// Stops the exporter and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The value of the sample `name` whose labels include every pair in `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find_map(|(metric, pairs, value)| {
            let all = labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v));
            (metric == name && all).then_some(value)
        })
}

/// One parsed sample line: (name, labels, value).
pub type Sample = (String, Vec<(String, String)>, f64);

/// Every sample line of an exposition.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let mut pairs = Vec::new();
        let mut chars = rest.trim_end_matches('}').chars().peekable();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() {
                break;
            }
            chars.next(); // opening quote
            let mut val = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.push(chars.next().unwrap_or('\\')),
                    '"' => break,
                    c => val.push(c),
                }
            }
            if chars.peek() == Some(&',') {
                chars.next();
            }
            pairs.push((key.trim().to_string(), val));
        }
        out.push((metric.to_string(), pairs, value));
    }
    out
}

/// The exporter binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_healthimaging-exporter");

/// The exporter binary with its stdout parsed as JSON log lines; killed on drop.
pub struct ExporterProcess {
    /// The process.
    pub child: Mutex<Child>,
    /// Parsed stdout lines.
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// Holds the config file.
    pub _dir: tempfile::TempDir,
}

/// The exporter binary, isolated from the developer's AWS setup, with test credentials.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    // Isolate from the developer's AWS setup; credentials come from the standard env chain.
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDPROCESSTEST")
        .env("AWS_SECRET_ACCESS_KEY", "process-secret")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_MEDICAL_IMAGING")
        .env_remove("RUST_LOG");
    cmd
}

impl ExporterProcess {
    /// Starts the binary polling `image_sets` of [`DS`] fast (200 ms, no budget constraint).
    pub fn start(sim: &TestSimulator, image_sets: &[&str]) -> ExporterProcess {
        let polling = "interval = \"200ms\"\nin_progress_interval = \"100ms\"\nfailed_interval = \"200ms\"\n\
                       max_backoff = \"1s\"\nmax_requests_per_second = 1000\nburst = 100\nrequest_timeout = \"2s\"\n";
        let ids: Vec<String> = image_sets.iter().map(|s| s.to_string()).collect();
        Self::start_with(sim, polling, &ids)
    }

    /// Starts the binary with the given `[polling]` body, polling `image_sets` of [`DS`].
    pub fn start_with(
        sim: &TestSimulator,
        polling: &str,
        image_sets: &[String],
    ) -> ExporterProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             max_attempts = 1\n[polling]\n{polling}\n",
            sim.endpoint
        );
        for is in image_sets {
            config.push_str(&format!(
                "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{is}\"\n"
            ));
        }
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = command();
        cmd.args(["run", "--config"]).arg(&path);
        Self::spawn(cmd, dir)
    }

    /// Spawns `cmd` (stdout captured as JSON log lines, stderr inherited); `dir` is kept alive.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> ExporterProcess {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({ "unparsed": line }));
                sink.lock().unwrap().push(value);
            }
        });
        ExporterProcess {
            child: Mutex::new(child),
            logs,
            _dir: dir,
        }
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line matching `pred`; fails at once if the process exits.
    pub async fn wait_for_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, Duration::from_secs(15), || async {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!(
                    "exporter exited with {status} while waiting for {what}: {:?}",
                    self.logs()
                );
            }
            self.logs().into_iter().find(|l| pred(l))
        })
        .await
    }

    /// The exit status, once exited.
    pub fn try_wait(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// The metrics address, from the startup line.
    pub async fn addr(&self) -> SocketAddr {
        let started = self
            .wait_for_log("the startup line", |l| l["message"] == "exporter started")
            .await;
        started["listen_address"].as_str().unwrap().parse().unwrap()
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        let addr = self.addr().await;
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends a signal (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.lock().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One API request from the simulator's request log: (epoch seconds, image set id, outcome).
pub type Logged = (f64, String, String);

impl TestSimulator {
    /// API requests the simulator served since `since` (epoch seconds).
    pub async fn requests_since(&self, since: f64) -> Vec<Logged> {
        let body = self.get(&format!("requests?since={since}")).await;
        body["requests"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|r| {
                        (
                            r["at"].as_f64().unwrap_or(0.0),
                            r["imageSetId"].as_str().unwrap_or("").to_string(),
                            r["outcome"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The most requests in any window of `seconds` (requests sorted by time).
pub fn max_in_window(requests: &[Logged], seconds: f64) -> usize {
    let times: Vec<f64> = requests.iter().map(|r| r.0).collect();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= seconds {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

/// Requests per second within [from, to) (epoch seconds).
pub fn rate_between(requests: &[Logged], from: f64, to: f64) -> f64 {
    requests.iter().filter(|r| r.0 >= from && r.0 < to).count() as f64 / (to - from)
}

/// Now, in epoch seconds.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The id of the `index`-th image set of the scenario's generate block `block`.
pub fn generated_id(block: usize, index: u32) -> String {
    format!("{block:016x}{index:016x}")
}

impl TestSimulator {
    /// Closes the simulator's port (clients are refused) keeping its state; give the
    /// handle back to [`TestSimulator::resume`].
    pub async fn suspend(&mut self) -> healthimaging_exporter::simulator::SuspendedSimulator {
        let server = self._server.take().expect("an in-process simulator");
        server.suspend().await
    }

    /// Serves the suspended simulator again on the same address.
    pub async fn resume(
        &mut self,
        suspended: healthimaging_exporter::simulator::SuspendedSimulator,
    ) {
        let server = suspended
            .resume()
            .await
            .expect("the port can be bound again");
        assert_eq!(server.endpoint_url(), self.endpoint);
        self._server = Some(server);
    }

    /// Every operation the simulator was asked for (unknown routes included), from its stats.
    pub async fn operations(&self) -> std::collections::BTreeSet<String> {
        self.get("stats").await["requests"]
            .as_object()
            .map(|ops| ops.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl ExporterProcess {
    /// Starts the binary against `sim` with `rest` (e.g. `[polling]`, `[[image_sets]]`,
    /// `[[discovery]]`) after the `[server]` and `[aws]` sections.
    pub fn start_with_config(sim: &TestSimulator, rest: &str) -> ExporterProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             max_attempts = 1\n{rest}\n",
            sim.endpoint
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = command();
        cmd.args(["run", "--config"]).arg(&path);
        Self::spawn(cmd, dir)
    }

    /// GET `path` on the exporter; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let addr = self.addr().await;
        let resp = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("exporter reachable");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// Log lines with this `message`, optionally only those about `image_set_id`.
    pub fn log_lines(&self, message: &str, image_set_id: Option<&str>) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .filter(|l| image_set_id.is_none_or(|is| l["image_set_id"] == is))
            .collect()
    }
}
