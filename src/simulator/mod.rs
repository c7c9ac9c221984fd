//! A wire-compatible AWS HealthImaging simulator for the demo, the tests and users' CI.
//!
//! It shares nothing with the exporter: its own vocabulary, scenario types, JSON writers
//! and accept loop, so a wire mistake cannot hide on both sides.

pub mod control;
pub mod corruption;
pub mod scenario;
pub mod search;
pub mod server;
pub mod vocab;
pub mod wire;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::httpd;
pub use corruption::Corruption;
use scenario::FaultsSpec;
pub use scenario::{Scenario, ScenarioError};
use search::Criteria;
use server::ApiBody;
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

    /// Whether this successful answer is corrupted, and how.
    fn roll_corruption(&self) -> Option<Corruption> {
        let mut f = lock(&self.faults);
        let (mode, ratio) = f.spec.corruption()?;
        (f.dice.random::<f64>() < ratio).then_some(mode)
    }

    /// Handles one HTTP request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ApiBody> {
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
        match result {
            Ok(body) => match self.roll_corruption() {
                None => {
                    self.count(operation, "success", image_set_id.as_deref());
                    json_response(StatusCode::OK, body.to_string(), &request_id)
                }
                Some(mode) => {
                    self.count(operation, mode.as_str(), image_set_id.as_deref());
                    corruption::respond(mode, body, &request_id)
                }
            },
            Err(e) => {
                self.count(operation, e.code, image_set_id.as_deref());
                e.into_response(&request_id)
            }
        }
    }

    async fn api(
        &self,
        req: Request<Incoming>,
    ) -> (&'static str, Result<serde_json::Value, ApiError>) {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let operation = match (req.method(), segments.as_slice()) {
            (&Method::GET, ["datastore"]) => "ListDatastores",
            (&Method::GET, ["datastore", _]) => "GetDatastore",
            (&Method::POST, ["datastore", _, "searchImageSets"]) => "SearchImageSets",
            (&Method::POST, ["datastore", _, "imageSet", _, "getImageSet"]) => "GetImageSet",
            (&Method::POST, ["datastore", _, "imageSet", _, "listImageSetVersions"]) => {
                "ListImageSetVersions"
            }
            (method, path) => {
                // Recorded under the operation's name, so a client calling anything else
                // (reading PHI, writing) shows in the statistics and the request log.
                let operation = unsupported_operation(method, path);
                return (operation, Err(ApiError::unknown_operation()));
            }
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
                    Err(ApiError::access_denied(format!(
                        "User is not authorized to perform: medical-imaging:{operation}"
                    ))),
                )
            }
            None => {}
        }
        let query = req.uri().query().unwrap_or("").to_string();
        let result = match operation {
            "ListDatastores" => self.list_datastores(&query),
            "GetDatastore" => self.get_datastore(segments[1]),
            "SearchImageSets" => match read_body(req).await {
                Ok(body) => self.search_image_sets(segments[1], &query, &body),
                Err(message) => Err(ApiError::validation(message)),
            },
            "ListImageSetVersions" => {
                self.list_image_set_versions(segments[1], segments[3], &query)
            }
            _ => self.get_image_set(segments[1], segments[3], query_param(&query, "version")),
        };
        (operation, result)
    }

    fn list_datastores(&self, query: &str) -> Result<serde_json::Value, ApiError> {
        let status = query_value(query, "datastoreStatus");
        if let Some(s) = status.as_deref() {
            if !vocab::DATASTORE_STATUSES.contains(&s) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{s}' at 'datastoreStatus' failed to satisfy constraint: \
                     Member must satisfy enum value set: [{}]",
                    vocab::DATASTORE_STATUSES.join(", ")
                )));
            }
        }
        let max = search::parse_max_results(query_value(query, "maxResults").as_deref())
            .map_err(ApiError::validation)?;
        let after = query_value(query, "nextToken")
            .map(|t| search::parse_datastore_token(&t))
            .transpose()
            .map_err(ApiError::validation)?;
        let world = self.world();
        let range = match &after {
            Some(id) => (Bound::Excluded(id.as_str()), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut matching = world
            .datastores()
            .range::<str, _>(range)
            .filter(|(_, ds)| status.as_deref().is_none_or(|s| ds.status == s));
        let page: Vec<_> = matching.by_ref().take(max).collect();
        let mut body = json!({
            "datastoreSummaries": page
                .iter()
                .map(|(id, ds)| wire::datastore(id, ds, &world.datastore_arn(id)))
                .collect::<Vec<_>>(),
        });
        if let (Some(_), Some((last, _))) = (matching.next(), page.last()) {
            body["nextToken"] = json!(search::datastore_token(last));
        }
        Ok(body)
    }

    fn get_datastore(&self, datastore_id: &str) -> Result<serde_json::Value, ApiError> {
        check_ids(&[("datastoreId", datastore_id)])?;
        let world = self.world();
        let ds = world
            .datastores()
            .get(datastore_id)
            .ok_or_else(|| ApiError::not_found(format!("Datastore {datastore_id} not found")))?;
        Ok(json!({
            "datastoreProperties": wire::datastore(datastore_id, ds, &world.datastore_arn(datastore_id)),
        }))
    }

    fn search_image_sets(
        &self,
        datastore_id: &str,
        query: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        check_ids(&[("datastoreId", datastore_id)])?;
        let max = search::parse_max_results(query_value(query, "maxResults").as_deref())
            .map_err(ApiError::validation)?;
        let criteria: Criteria = search::parse_criteria(body).map_err(ApiError::validation)?;
        let cursor = query_value(query, "nextToken")
            .map(|t| criteria.parse_token(&t))
            .transpose()
            .map_err(ApiError::validation)?;
        let world = self.world();
        let ds = world
            .datastores()
            .get(datastore_id)
            .ok_or_else(|| ApiError::not_found(format!("Datastore {datastore_id} not found")))?;
        let (field, descending) = criteria.order();
        let mut matching = ds
            .scan(field, descending, criteria.range(), cursor)
            .filter(|(_, set)| criteria.matches(set));
        let page: Vec<_> = matching.by_ref().take(max).collect();
        let mut out = json!({
            "imageSetsMetadataSummaries": page
                .iter()
                .map(|(id, set)| wire::image_set_summary(id, set))
                .collect::<Vec<_>>(),
        });
        if let Some(sort) = criteria.sort_json() {
            out["sort"] = sort;
        }
        if let (Some(_), Some((id, set))) = (matching.next(), page.last()) {
            out["nextToken"] = json!(criteria.token(criteria.cursor_of(id, set)));
        }
        Ok(out)
    }

    fn list_image_set_versions(
        &self,
        datastore_id: &str,
        image_set_id: &str,
        query: &str,
    ) -> Result<serde_json::Value, ApiError> {
        check_ids(&[("datastoreId", datastore_id), ("imageSetId", image_set_id)])?;
        let max = search::parse_max_results(query_value(query, "maxResults").as_deref())
            .map_err(ApiError::validation)?;
        let below = query_value(query, "nextToken")
            .map(|t| search::parse_version_token(&t))
            .transpose()
            .map_err(ApiError::validation)?;
        let world = self.world();
        let set = world
            .image_set(datastore_id, image_set_id)
            .ok_or_else(|| image_set_not_found(datastore_id, image_set_id))?;
        let mut newest_first = set
            .versions
            .iter()
            .rev()
            .filter(|v| below.is_none_or(|b| v.number < b));
        let page: Vec<_> = newest_first.by_ref().take(max).collect();
        let mut out = json!({
            "imageSetPropertiesList": page
                .iter()
                .map(|v| wire::image_set_version(image_set_id, v))
                .collect::<Vec<_>>(),
        });
        if let (Some(_), Some(last)) = (newest_first.next(), page.last()) {
            out["nextToken"] = json!(search::version_token(last.number));
        }
        Ok(out)
    }

    fn get_image_set(
        &self,
        datastore_id: &str,
        image_set_id: &str,
        version: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let mut problems =
            id_problems(&[("datastoreId", datastore_id), ("imageSetId", image_set_id)]);
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
        validation_problems(problems)?;
        let world = self.world();
        let set = world
            .image_set(datastore_id, image_set_id)
            .ok_or_else(|| image_set_not_found(datastore_id, image_set_id))?;
        let props = match version {
            None => set.latest(),
            Some(n) => set.version(n).ok_or_else(|| {
                ApiError::not_found(format!("Version {n} of image set {image_set_id} not found"))
            })?,
        };
        Ok(wire::image_set_properties(
            datastore_id,
            image_set_id,
            props,
            &world.image_set_arn(datastore_id, image_set_id),
        ))
    }

    fn control(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
        request_id: &str,
    ) -> Response<ApiBody> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ok =
            |value: serde_json::Value| json_response(StatusCode::OK, value.to_string(), request_id);
        match (method, &segments[1..]) {
            (&Method::GET, ["image-sets"]) => {
                let world = self.world();
                let sets: Vec<_> = world
                    .image_sets()
                    .map(|(d, i, set)| {
                        let mut props = wire::image_set_properties(
                            d,
                            i,
                            set.latest(),
                            &world.image_set_arn(d, i),
                        );
                        props["versions"] = json!(set
                            .versions
                            .iter()
                            .map(|v| v.number.to_string())
                            .collect::<Vec<_>>());
                        props
                    })
                    .collect();
                ok(json!({ "imageSets": sets }))
            }
            (&Method::GET, ["datastores"]) => {
                let world = self.world();
                let all: Vec<_> = world
                    .datastores()
                    .iter()
                    .map(|(id, ds)| wire::datastore(id, ds, &world.datastore_arn(id)))
                    .collect();
                ok(json!({ "datastores": all }))
            }
            (&Method::PUT, ["datastore", d]) => {
                if !vocab::is_resource_id(d) {
                    return control_error(
                        StatusCode::BAD_REQUEST,
                        "the datastore id must be 32 characters of 0-9 and a-z",
                        request_id,
                    );
                }
                let (name, status) = match control::parse_datastore_patch(body) {
                    Ok(patch) => patch,
                    Err(m) => return control_error(StatusCode::BAD_REQUEST, &m, request_id),
                };
                let mut world = self.world();
                world.put_datastore(d, name, status, now_epoch());
                let arn = world.datastore_arn(d);
                ok(wire::datastore(d, &world.datastores()[*d], &arn))
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
                                d,
                                i,
                                &version,
                                &world.image_set_arn(d, i),
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

/// The problems of ids that do not match the model's `[0-9a-z]{32}`.
fn id_problems(ids: &[(&str, &str)]) -> Vec<String> {
    ids.iter()
        .filter(|(_, value)| !vocab::is_resource_id(value))
        .map(|(member, value)| format!(
            "Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-z]{{32}}"
        ))
        .collect()
}

/// A ValidationException listing `problems` as the service does, if there are any.
fn validation_problems(problems: Vec<String>) -> Result<(), ApiError> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "{} validation error{} detected: {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("; ")
    )))
}

fn check_ids(ids: &[(&str, &str)]) -> Result<(), ApiError> {
    validation_problems(id_problems(ids))
}

fn image_set_not_found(datastore_id: &str, image_set_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Image set {image_set_id} not found in datastore {datastore_id}"
    ))
}

/// The HealthImaging operation the simulator does not serve that a request is for, by
/// the model's method and path, or `UnknownOperation`.
fn unsupported_operation(method: &Method, path: &[&str]) -> &'static str {
    match (method, path) {
        (&Method::POST, ["datastore", _, "imageSet", _, action]) => match *action {
            "getImageSetMetadata" => "GetImageSetMetadata",
            "getImageFrame" => "GetImageFrame",
            "copyImageSet" => "CopyImageSet",
            "deleteImageSet" => "DeleteImageSet",
            "updateImageSetMetadata" => "UpdateImageSetMetadata",
            _ => "UnknownOperation",
        },
        (&Method::POST, ["datastore"]) => "CreateDatastore",
        (&Method::DELETE, ["datastore", _]) => "DeleteDatastore",
        (&Method::POST, ["startDICOMImportJob", "datastore", _]) => "StartDICOMImportJob",
        (&Method::GET, ["getDICOMImportJob", "datastore", _, "job", _]) => "GetDICOMImportJob",
        (&Method::GET, ["listDICOMImportJobs", "datastore", _]) => "ListDICOMImportJobs",
        (&Method::GET, ["tags", _]) => "ListTagsForResource",
        (&Method::POST, ["tags", _]) => "TagResource",
        (&Method::DELETE, ["tags", _]) => "UntagResource",
        _ => "UnknownOperation",
    }
}

fn control_error(status: StatusCode, message: &str, request_id: &str) -> Response<ApiBody> {
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

/// A query parameter's value, percent-decoded; None when absent or not valid UTF-8.
fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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
    simulator: Arc<Simulator>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// A simulator whose port is closed (clients are refused), with its world, faults,
/// statistics and request log kept for [`SuspendedSimulator::resume`].
pub struct SuspendedSimulator {
    addr: SocketAddr,
    simulator: Arc<Simulator>,
}

impl RunningSimulator {
    /// Starts serving `scenario` on `listener`; `seed` overrides the scenario's seed.
    pub fn start(
        scenario: &Scenario,
        listener: TcpListener,
        seed: Option<u64>,
    ) -> std::io::Result<Self> {
        Self::serve(Arc::new(Simulator::new(scenario, seed)), listener)
    }

    fn serve(simulator: Arc<Simulator>, listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let shared = simulator.clone();
        let handler = move |req| shared.clone().handle(req);
        let limits = httpd::Limits {
            drain_timeout: Duration::from_secs(1),
            ..httpd::Limits::default()
        };
        let task = tokio::spawn(httpd::serve(listener, handler, shutdown.clone(), limits));
        Ok(RunningSimulator {
            addr,
            simulator,
            shutdown,
            task,
        })
    }

    /// Closes the port (new connections are refused, open ones drained) but keeps the
    /// state, to simulate an outage of the service followed by [`SuspendedSimulator::resume`].
    pub async fn suspend(self) -> SuspendedSimulator {
        self.shutdown.cancel();
        let _ = self.task.await;
        SuspendedSimulator {
            addr: self.addr,
            simulator: self.simulator,
        }
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

impl SuspendedSimulator {
    /// The address it served on and will serve on again.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the same state on the same address again (the timeline kept running).
    pub async fn resume(self) -> std::io::Result<RunningSimulator> {
        // The old listener is closed; SO_REUSEADDR (set by tokio on Unix) lets the port
        // be bound again despite connections in TIME_WAIT.
        let listener = TcpListener::bind(self.addr).await?;
        RunningSimulator::serve(self.simulator, listener)
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
        assert_eq!(
            query_value("maxResults=5&nextToken=a%2Eb%3D", "nextToken").as_deref(),
            Some("a.b=")
        );
        assert_eq!(
            query_value("nextToken=%4", "nextToken").as_deref(),
            Some("%4")
        );
        assert_eq!(
            query_value("nextToken=%", "nextToken").as_deref(),
            Some("%")
        );
        assert_eq!(query_value("a=1", "nextToken"), None);
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }

    #[test]
    fn unsupported_operations_are_named_after_the_model() {
        let name = |method: Method, path: &str| {
            let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
            unsupported_operation(&method, &segments)
        };
        let ds = "0123456789abcdef0123456789abcdef";
        let set = format!("/datastore/{ds}/imageSet/{ds}");
        assert_eq!(
            name(Method::POST, &format!("{set}/getImageSetMetadata")),
            "GetImageSetMetadata"
        );
        assert_eq!(
            name(Method::POST, &format!("{set}/getImageFrame")),
            "GetImageFrame"
        );
        assert_eq!(
            name(Method::POST, &format!("{set}/deleteImageSet")),
            "DeleteImageSet"
        );
        assert_eq!(
            name(Method::POST, &format!("{set}/updateImageSetMetadata")),
            "UpdateImageSetMetadata"
        );
        assert_eq!(
            name(Method::POST, &format!("{set}/copyImageSet")),
            "CopyImageSet"
        );
        assert_eq!(name(Method::POST, "/datastore"), "CreateDatastore");
        assert_eq!(
            name(Method::DELETE, &format!("/datastore/{ds}")),
            "DeleteDatastore"
        );
        assert_eq!(
            name(
                Method::POST,
                &format!("/startDICOMImportJob/datastore/{ds}")
            ),
            "StartDICOMImportJob"
        );
        assert_eq!(
            name(Method::GET, &format!("/listDICOMImportJobs/datastore/{ds}")),
            "ListDICOMImportJobs"
        );
        assert_eq!(name(Method::POST, "/tags/arn%3Aaws"), "TagResource");
        assert_eq!(name(Method::GET, "/somewhere/else"), "UnknownOperation");
        assert_eq!(
            name(Method::PUT, &format!("{set}/getImageSet")),
            "UnknownOperation"
        );
    }

    #[test]
    fn corruption_dice_follow_the_ratio() {
        let mut scenario = Scenario::empty();
        scenario.faults.corruption = Some(Corruption::Malformed);
        let sim = Simulator::new(&scenario, Some(3));
        assert!((0..64).all(|_| sim.roll_corruption() == Some(Corruption::Malformed)));
        scenario.faults.corruption_ratio = Some(0.5);
        let sim = Simulator::new(&scenario, Some(3));
        let hits = (0..400).filter(|_| sim.roll_corruption().is_some()).count();
        assert!((140..=260).contains(&hits), "{hits}");
        scenario.faults.corruption_ratio = Some(0.0);
        let sim = Simulator::new(&scenario, Some(3));
        assert!((0..64).all(|_| sim.roll_corruption().is_none()));
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
