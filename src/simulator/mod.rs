//! A wire-compatible AWS HealthImaging simulator for the demo, the tests and users' CI.
//!
//! It shares nothing with the exporter but the HTTP accept loop: its own vocabulary,
//! scenario types and JSON writers, so a wire mistake cannot hide on both sides.

pub mod control;
pub mod scenario;
pub mod vocab;
pub mod wire;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::httpd;
use scenario::FaultsSpec;
pub use scenario::{Scenario, ScenarioError};
use wire::{json_response, ApiError};
use world::{Key, World};

/// Largest request body the simulator reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// API requests remembered for `GET /_simulator/requests` (oldest dropped first).
const REQUEST_LOG_CAPACITY: usize = 500_000;

/// One API request as the request log keeps it.
#[derive(Debug, Clone)]
struct LoggedRequest {
    at: f64,
    operation: &'static str,
    outcome: &'static str,
    image_set_id: Option<Box<str>>,
}

/// Shared simulator state behind the HTTP handlers.
#[derive(Debug)]
pub struct Simulator {
    world: Mutex<World>,
    faults: Mutex<FaultState>,
    stats: Mutex<BTreeMap<(String, String), u64>>,
    requests: Mutex<std::collections::VecDeque<LoggedRequest>>,
    started: Instant,
}

#[derive(Debug)]
struct FaultState {
    spec: FaultsSpec,
    dice: StdRng,
}

/// What the fault dice decided for one request.
enum Fault {
    Throttle,
    ServerError,
    AccessDenied,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the world half-updated in a way
    // that matters more than stopping the simulator would.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Simulator {
    /// Builds a simulator from a scenario; `seed` overrides the scenario's seed.
    pub fn new(scenario: &Scenario, seed: Option<u64>) -> Self {
        let dice = match seed.or(scenario.seed) {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Simulator {
            world: Mutex::new(World::new(scenario, now_epoch())),
            faults: Mutex::new(FaultState {
                spec: scenario.faults.clone(),
                dice,
            }),
            stats: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(std::collections::VecDeque::new()),
            started: Instant::now(),
        }
    }

    /// The world with every due timeline step applied.
    fn world(&self) -> MutexGuard<'_, World> {
        let mut world = lock(&self.world);
        world.advance(self.started.elapsed());
        world
    }

    fn count(&self, operation: &'static str, outcome: &'static str, image_set_id: Option<&str>) {
        *lock(&self.stats)
            .entry((operation.to_string(), outcome.to_string()))
            .or_default() += 1;
        let mut log = lock(&self.requests);
        if log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(LoggedRequest {
            at: now_epoch(),
            operation,
            outcome,
            image_set_id: image_set_id.map(Into::into),
        });
    }

    fn roll_faults(&self) -> (Option<Duration>, Option<Fault>) {
        let mut f = lock(&self.faults);
        let latency = f.spec.latency.filter(|d| !d.is_zero());
        let (throttle, error, denied) = (
            f.spec.throttle_ratio,
            f.spec.error_ratio,
            f.spec.access_denied_ratio,
        );
        let roll: f64 = f.dice.random();
        let fault = if roll < throttle {
            Some(Fault::Throttle)
        } else if roll < throttle + error {
            Some(Fault::ServerError)
        } else if roll < throttle + error + denied {
            Some(Fault::AccessDenied)
        } else {
            None
        };
        (latency, fault)
    }

    /// Handles one HTTP request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let request_id = new_request_id();
        let path = req.uri().path().to_string();
        if path.starts_with("/_simulator/") {
            let method = req.method().clone();
            let query = req.uri().query().unwrap_or("").to_string();
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(message) => {
                    return control_error(StatusCode::BAD_REQUEST, &message, &request_id)
                }
            };
            return self.control(&method, &path, &query, &body, &request_id);
        }
        let image_set_id = image_set_of(req.uri().path());
        let (operation, result) = self.api(req).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.code,
        };
        self.count(operation, outcome, image_set_id.as_deref());
        match result {
            Ok(body) => json_response(StatusCode::OK, body.to_string(), &request_id),
            Err(e) => e.into_response(&request_id),
        }
    }

    async fn api(
        &self,
        req: Request<Incoming>,
    ) -> (&'static str, Result<serde_json::Value, ApiError>) {
        let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        let operation = match (req.method(), segments.as_slice()) {
            (&Method::POST, ["datastore", _, "imageSet", _, "getImageSet"]) => "GetImageSet",
            _ => return ("UnknownOperation", Err(ApiError::unknown_operation())),
        };
        let signed = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
        if !signed {
            return (
                operation,
                Err(ApiError::access_denied("Missing Authentication Token")),
            );
        }
        let (latency, fault) = self.roll_faults();
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Some(Fault::Throttle) => return (operation, Err(ApiError::throttling())),
            Some(Fault::ServerError) => return (operation, Err(ApiError::internal())),
            Some(Fault::AccessDenied) => {
                return (
                    operation,
                    Err(ApiError::access_denied(
                        "User is not authorized to perform: medical-imaging:GetImageSet",
                    )),
                )
            }
            None => {}
        }
        let query = req.uri().query().unwrap_or("");
        let result = self.get_image_set(segments[1], segments[3], query_param(query, "version"));
        (operation, result)
    }

    fn get_image_set(
        &self,
        datastore_id: &str,
        image_set_id: &str,
        version: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let mut problems = Vec::new();
        for (member, value) in [("datastoreId", datastore_id), ("imageSetId", image_set_id)] {
            if !vocab::is_resource_id(value) {
                problems.push(format!(
                    "Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-z]{{32}}"
                ));
            }
        }
        let version = match version {
            None => None,
            Some(v) => match vocab::parse_version(v) {
                Some(n) => Some(n),
                None => {
                    problems.push(format!(
                        "Value '{v}' at 'versionId' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d+"
                    ));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(ApiError::validation(format!(
                "{} validation error{} detected: {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("; ")
            )));
        }
        let world = self.world();
        let key: Key = (datastore_id.to_string(), image_set_id.to_string());
        let set = world.image_sets.get(&key).ok_or_else(|| {
            ApiError::not_found(format!(
                "Image set {image_set_id} not found in datastore {datastore_id}"
            ))
        })?;
        let props = match version {
            None => set.latest(),
            Some(n) => set.versions.get(&n).ok_or_else(|| {
                ApiError::not_found(format!("Version {n} of image set {image_set_id} not found"))
            })?,
        };
        Ok(wire::image_set_properties(
            &key,
            props,
            &world.image_set_arn(&key),
        ))
    }

    fn control(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ok =
            |value: serde_json::Value| json_response(StatusCode::OK, value.to_string(), request_id);
        match (method, &segments[1..]) {
            (&Method::GET, ["image-sets"]) => {
                let world = self.world();
                let sets: Vec<_> = world
                    .image_sets
                    .iter()
                    .map(|(key, set)| {
                        let mut props = wire::image_set_properties(
                            key,
                            set.latest(),
                            &world.image_set_arn(key),
                        );
                        props["versions"] =
                            json!(set.versions.keys().map(u64::to_string).collect::<Vec<_>>());
                        props
                    })
                    .collect();
                ok(json!({ "imageSets": sets }))
            }
            (_, ["datastore", d, "imageSet", i]) => {
                if !vocab::is_resource_id(d) || !vocab::is_resource_id(i) {
                    return control_error(
                        StatusCode::BAD_REQUEST,
                        "datastore and image set ids must be 32 characters of 0-9 and a-z",
                        request_id,
                    );
                }
                let key: Key = (d.to_string(), i.to_string());
                match *method {
                    Method::PUT => {
                        let patch = match control::parse_patch(&key, body) {
                            Ok(p) => p,
                            Err(m) => {
                                return control_error(StatusCode::BAD_REQUEST, &m, request_id)
                            }
                        };
                        let mut world = self.world();
                        match world.apply(&key, &patch, now_epoch()) {
                            Ok(version) => ok(wire::image_set_properties(
                                &key,
                                &version,
                                &world.image_set_arn(&key),
                            )),
                            Err(e) => {
                                control_error(StatusCode::BAD_REQUEST, &e.to_string(), request_id)
                            }
                        }
                    }
                    Method::DELETE => {
                        if self.world().remove(&key) {
                            json_response(StatusCode::OK, "{}".into(), request_id)
                        } else {
                            control_error(StatusCode::NOT_FOUND, "no such image set", request_id)
                        }
                    }
                    _ => control_error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "use PUT or DELETE",
                        request_id,
                    ),
                }
            }
            (&Method::GET, ["faults"]) => ok(control::faults_json(&lock(&self.faults).spec)),
            (&Method::PUT, ["faults"]) => match control::parse_faults(body) {
                Ok(spec) => {
                    let mut faults = lock(&self.faults);
                    faults.spec = spec;
                    ok(control::faults_json(&faults.spec))
                }
                Err(m) => control_error(StatusCode::BAD_REQUEST, &m, request_id),
            },
            (&Method::GET, ["stats"]) => ok(control::stats_json(lock(&self.stats).iter())),
            (&Method::GET, ["requests"]) => {
                let since = query_param(query, "since")
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
                let log = lock(&self.requests);
                let entries: Vec<_> = log
                    .iter()
                    .filter(|r| r.at >= since)
                    .map(|r| json!({"at": r.at, "operation": r.operation, "outcome": r.outcome, "imageSetId": r.image_set_id}))
                    .collect();
                ok(json!({ "requests": entries }))
            }
            _ => control_error(
                StatusCode::NOT_FOUND,
                &format!("no control endpoint {method} {path}"),
                request_id,
            ),
        }
    }
}

fn control_error(status: StatusCode, message: &str, request_id: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({ "message": message }).to_string(),
        request_id,
    )
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("cannot read request body: {e}"))
}

/// The image set id in an image-set operation's path, if any.
fn image_set_of(path: &str) -> Option<String> {
    let mut segments = path.trim_matches('/').split('/');
    while let Some(s) = segments.next() {
        if s == "imageSet" {
            return segments.next().map(str::to_string);
        }
    }
    None
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn new_request_id() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A simulator serving on a socket until stopped.
pub struct RunningSimulator {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningSimulator {
    /// Starts serving `scenario` on `listener`; `seed` overrides the scenario's seed.
    pub fn start(
        scenario: &Scenario,
        listener: TcpListener,
        seed: Option<u64>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let simulator = Arc::new(Simulator::new(scenario, seed));
        let shutdown = CancellationToken::new();
        let handler = move |req| simulator.clone().handle(req);
        let limits = httpd::Limits {
            drain_timeout: Duration::from_secs(1),
            ..httpd::Limits::default()
        };
        let task = tokio::spawn(httpd::serve(listener, handler, shutdown.clone(), limits));
        Ok(RunningSimulator {
            addr,
            shutdown,
            task,
        })
    }

    /// The socket address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to use as an endpoint, e.g. `http://127.0.0.1:4566`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains open connections and waits for the server to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found() {
        assert_eq!(query_param("version=3", "version"), Some("3"));
        assert_eq!(query_param("a=1&version=12", "version"), Some("12"));
        assert_eq!(query_param("versions=1", "version"), None);
        assert_eq!(query_param("", "version"), None);
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }

    #[test]
    fn fault_dice_are_reproducible_with_a_seed() {
        let mut scenario = Scenario::empty();
        scenario.faults.throttle_ratio = 0.5;
        let rolls = |seed| {
            let sim = Simulator::new(&scenario, Some(seed));
            (0..32)
                .map(|_| matches!(sim.roll_faults().1, Some(Fault::Throttle)))
                .collect::<Vec<_>>()
        };
        assert_eq!(rolls(7), rolls(7));
        assert!(rolls(7).iter().any(|t| *t) && rolls(7).iter().any(|t| !*t));
    }
}
