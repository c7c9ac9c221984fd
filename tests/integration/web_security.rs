//! Web security: TLS, client certificates and basic auth from `server.web_config_file`,
//! the per-connection limits, and `/metrics` under 200 concurrent scrapers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use healthimaging_exporter::config::Config;
use healthimaging_exporter::httpd::{self, Limits};
use healthimaging_exporter::web_config::WebSecurity;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::helpers::{
    command, eventually, expectation_table, generated_id, samples, scenario, test_config,
    ExporterProcess, TestApp, TestSimulator, DS, IS1,
};

/// A test CA with a server certificate for localhost/127.0.0.1 and two client identities:
/// one issued by the CA, one by a stranger.
struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, "test");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca = new_ca("healthimaging-exporter test CA");
    let stranger = new_ca("a stranger's CA");
    let (server_cert, server_key) = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&ca, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
    let (rogue_cert, rogue_key) = leaf(
        &stranger,
        &["prometheus"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki {
        ca_pem: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// Writes the PEM files and `web.yml` (with `yaml` appended to the cert/key lines) into `dir`.
fn write_web_config(dir: &Path, pki: &Pki, tls_extra: &str, rest: &str) -> PathBuf {
    for (name, text) in [
        ("ca.crt", &pki.ca_pem),
        ("server.crt", &pki.server_cert),
        ("server.key", &pki.server_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_extra}{rest}"
        ),
    )
    .unwrap();
    path
}

/// `basic_auth_users` with `user: bcrypt(password)` at the lowest cost (tests run unoptimised).
fn users_yaml(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).unwrap();
    format!("basic_auth_users:\n  {user}: '{hash}'\n")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A reqwest client trusting only the test CA, optionally presenting a client certificate.
fn tls_client(
    pki: &Pki,
    identity: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn both_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

/// An exporter polling IS1 with the given web config file.
async fn spawn_with(web_config: &Path) -> (TestSimulator, TestApp) {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTED\"\n"
    )))
    .await;
    let mut config = test_config(&sim, &[(DS, IS1)]);
    config.server.web_config_file = Some(web_config.to_path_buf());
    let app = TestApp::spawn(config).await;
    (sim, app)
}

#[tokio::test]
async fn tls_serves_every_endpoint_to_a_client_trusting_the_ca_and_plaintext_fails() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "", "");
    let (_sim, app) = spawn_with(&web).await;
    let client = tls_client(&pki, None, &both_versions());
    let port = app.addr.port();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/metrics");
        let resp = client.get(&url).send().await.expect("TLS scrape works");
        assert_eq!(resp.status(), 200, "{url}");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("healthimaging_targets 1"));
    }
    for path in ["/healthz", "/"] {
        let resp = client
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plaintext to a TLS port must fail: {plain:?}"
    );
    let untrusting = reqwest::Client::new()
        .get(format!("https://localhost:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA must not connect"
    );
    // The server still serves after the failed handshakes.
    let resp = client
        .get(format!("https://localhost:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(resp.status() == 200 || resp.status() == 503);
    app.stop().await;
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "  min_version: TLS13\n", "");
    let (_sim, app) = spawn_with(&web).await;
    let url = format!("https://localhost:{}/healthz", app.addr.port());
    let old = tls_client(&pki, None, &[&rustls::version::TLS12]);
    assert!(old.get(&url).send().await.is_err(), "TLS 1.2 was accepted");
    let new = tls_client(&pki, None, &[&rustls::version::TLS13]);
    assert_eq!(new.get(&url).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_basic_auth_is_401_and_the_right_one_200_on_every_endpoint() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "", &users_yaml("prometheus", "s3cret"));
    let (_sim, app) = spawn_with(&web).await;
    let client = tls_client(&pki, None, &both_versions());
    let base = format!("https://localhost:{}", app.addr.port());
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/-/reload",
        "/nothing-here",
    ] {
        let url = format!("{base}{path}");
        for (user, password) in [
            (None, None),
            (Some("prometheus"), Some("wrong")),
            (Some("prometheus"), Some("")),
            (Some("prometheus"), None),
            (Some("nobody"), Some("s3cret")),
            (Some("PROMETHEUS"), Some("s3cret")),
        ] {
            let mut req = client.get(&url);
            if let Some(user) = user {
                req = req.basic_auth(user, password);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} as {user:?}/{password:?}");
            let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic"), "{challenge}");
            assert_eq!(
                resp.text().await.unwrap(),
                "unauthorized\n",
                "the body must not tell what was wrong"
            );
        }
        let bearer = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(bearer.status(), 401);
    }
    for path in ["/metrics", "/healthz", "/"] {
        let resp = client
            .get(format!("{base}{path}"))
            .basic_auth("prometheus", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn basic_auth_works_without_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users_yaml("prometheus", "s3cret")).unwrap();
    let (_sim, app) = spawn_with(&web).await;
    let url = format!("http://{}/metrics", app.addr);
    let denied = app.http.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let allowed = app
        .http
        .get(&url)
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_required_client_certificate_must_be_issued_by_the_client_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(
        dir.path(),
        &pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        "",
    );
    let (_sim, app) = spawn_with(&web).await;
    let url = format!("https://localhost:{}/metrics", app.addr.port());
    for versions in [vec![&rustls::version::TLS13], vec![&rustls::version::TLS12]] {
        let anonymous = tls_client(&pki, None, &versions);
        let result = anonymous.get(&url).send().await;
        assert!(result.is_err(), "no client certificate: {result:?}");
        let rogue = tls_client(&pki, Some((&pki.rogue_cert, &pki.rogue_key)), &versions);
        let result = rogue.get(&url).send().await;
        assert!(result.is_err(), "a stranger's certificate: {result:?}");
        let trusted = tls_client(&pki, Some((&pki.client_cert, &pki.client_key)), &versions);
        let resp = trusted
            .get(&url)
            .send()
            .await
            .expect("client cert accepted");
        assert_eq!(resp.status(), 200);
    }
    app.stop().await;
}

/// Serves a tiny and a 16 MiB response on loopback with the given limits.
async fn limited_server(
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handler = |req: hyper::Request<hyper::body::Incoming>| async move {
        let body = if req.uri().path() == "/big" {
            vec![b'x'; 16 << 20]
        } else {
            b"small\n".to_vec()
        };
        httpd::response(hyper::StatusCode::OK, "text/plain", body)
    };
    tokio::spawn(httpd::serve_with_tls(
        listener,
        tls,
        handler,
        shutdown.clone(),
        limits,
    ));
    (addr, shutdown)
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_and_frees_its_connection_slot() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "", "");
    let tls = WebSecurity::load(&web).unwrap().tls;
    let limits = Limits {
        max_connections: 1,
        tls_handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, shutdown) = limited_server(limits, tls).await;
    // Connects and never says hello: holds the only slot until the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let client = tls_client(&pki, None, &both_versions());
    let resp = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await
        .expect("served once the silent client is gone");
    assert_eq!(resp.status(), 200);
    let waited = started.elapsed();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was closed: {read:?}"
    );
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_stall_timeout() {
    for tls in [false, true] {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let web = write_web_config(dir.path(), &pki, "", "");
        let config = tls.then(|| WebSecurity::load(&web).unwrap().tls.unwrap());
        let limits = Limits {
            max_connections: 1,
            write_stall_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, shutdown) = limited_server(limits, config).await;
        let client = if tls {
            tls_client(&pki, None, &both_versions())
        } else {
            reqwest::Client::new()
        };
        let scheme = if tls { "https" } else { "http" };
        // Asks for 16 MiB and reads only the head: the kernel buffers fill, writes stall.
        let big = client
            .get(format!("{scheme}://localhost:{}/big", addr.port()))
            .send()
            .await
            .unwrap();
        let started = Instant::now();
        let small = client
            .get(format!("{scheme}://localhost:{}/small", addr.port()))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("the stalled connection's slot is freed");
        assert_eq!(small.status(), 200);
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(3), "tls={tls}: {waited:?}");
        let rest = big.bytes().await;
        assert!(
            rest.map(|b| b.len() < 16 << 20).unwrap_or(true),
            "the stalled response was cut off"
        );
        shutdown.cancel();
    }
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let (addr, shutdown) = limited_server(Limits::default(), None).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    shutdown.cancel();
}

/// The last metric family of an exposition (the last `# TYPE` line).
fn last_family(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("# TYPE "))
        .and_then(|l| l.split(' ').next())
}

/// Panics unless `body` is a whole exposition: ends with a newline, its last family is
/// `last`, and every sample line parses.
fn assert_complete(body: &str, last: &str) {
    assert!(
        body.ends_with('\n'),
        "truncated: ...{:?}",
        &body[body.len().saturating_sub(80)..]
    );
    assert_eq!(last_family(body), Some(last), "last family");
    let sample_lines = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        samples(body).len(),
        sample_lines,
        "every sample line parses"
    );
    let final_line = body.lines().last().unwrap_or("");
    assert!(final_line.starts_with(last), "{final_line}");
}

/// Latency percentiles (p50, p99, max) of `durations`.
fn percentiles(durations: &mut [Duration]) -> (Duration, Duration, Duration) {
    durations.sort();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// `scrapers` clients, each with its own connection, scrape `url` `rounds` times at once
/// while a probe checks `/healthz`; every scrape must be a complete 200.
async fn scrape_storm(
    clients: Vec<reqwest::Client>,
    base: &str,
    auth: Option<(&str, &str)>,
    rounds: usize,
) -> (Vec<Duration>, Duration, Duration) {
    let url = format!("{base}/metrics");
    let first = {
        let mut req = clients[0].get(&url);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await.unwrap().text().await.unwrap()
    };
    let last = last_family(&first).expect("families").to_string();
    let scrapers = clients.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(scrapers));
    let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
    let started = Instant::now();
    let stop_probe = tokio_util::sync::CancellationToken::new();
    let probe = {
        let client = clients[0].clone();
        let url = format!("{base}/healthz");
        let auth = auth.clone();
        let stop = stop_probe.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.is_cancelled() {
                let t = Instant::now();
                let mut req = client.get(&url);
                if let Some((u, p)) = &auth {
                    req = req.basic_auth(u, Some(p));
                }
                let status = req
                    .send()
                    .await
                    .expect("healthz answers under load")
                    .status();
                assert_eq!(status, 200);
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        })
    };
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let barrier = barrier.clone();
            let url = url.clone();
            let last = last.clone();
            let auth = auth.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut took = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let t = Instant::now();
                    let mut req = client.get(&url);
                    if let Some((u, p)) = &auth {
                        req = req.basic_auth(u, Some(p));
                    }
                    let resp = req.send().await.expect("scrape answered");
                    assert_eq!(resp.status(), 200);
                    let body = resp.text().await.expect("whole body read");
                    took.push(t.elapsed());
                    assert_complete(&body, &last);
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("scraper finished"));
    }
    let wall = started.elapsed();
    stop_probe.cancel();
    let worst_probe = probe.await.expect("probe finished");
    assert_eq!(all.len(), scrapers * rounds);
    (all, wall, worst_probe)
}

/// An exporter watching 40 generated image sets, polled slowly so the scrapes dominate.
async fn spawn_loaded(web_config: Option<PathBuf>) -> (TestSimulator, TestApp) {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[generate]]\ndatastore_id = \"{DS}\"\ncount = 40\n"
    )))
    .await;
    let ids: Vec<String> = (0..40).map(|i| generated_id(0, i)).collect();
    let targets: Vec<(&str, &str)> = ids.iter().map(|id| (DS, id.as_str())).collect();
    let mut config: Config = test_config(&sim, &targets);
    config.polling.interval = Duration::from_secs(60);
    config.polling.failed_interval = Duration::from_secs(60);
    config.polling.in_progress_interval = Duration::from_secs(5);
    config.server.web_config_file = web_config;
    let app = TestApp::spawn(config).await;
    (sim, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_complete_under_200_concurrent_scrapers() {
    let (_sim, app) = spawn_loaded(None).await;
    app.wait_ready().await;
    let clients: Vec<_> = (0..200).map(|_| reqwest::Client::new()).collect();
    let rounds = 5;
    let base = format!("http://{}", app.addr);
    let (mut took, wall, probe) = scrape_storm(clients, &base, None, rounds).await;
    let (p50, p99, max) = percentiles(&mut took);
    eprintln!(
        "plaintext: 200 scrapers x {rounds} = {} complete scrapes in {wall:?}; \
         latency p50 {p50:?} p99 {p99:?} max {max:?}; worst /healthz under load {probe:?}",
        took.len()
    );
    assert!(probe < Duration::from_secs(10), "unresponsive: {probe:?}");
    // Still answering normally afterwards.
    assert_eq!(app.get("/healthz").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_complete_under_concurrent_tls_scrapers_with_basic_auth() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "", &users_yaml("prometheus", "s3cret"));
    let (_sim, app) = spawn_loaded(Some(web)).await;
    let clients: Vec<_> = (0..50)
        .map(|_| tls_client(&pki, None, &both_versions()))
        .collect();
    let rounds = 4;
    let base = format!("https://localhost:{}", app.addr.port());
    eventually("readiness over TLS", Duration::from_secs(10), || async {
        let resp = clients[0]
            .get(format!("{base}/readyz"))
            .basic_auth("prometheus", Some("s3cret"))
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    let (mut took, wall, probe) =
        scrape_storm(clients, &base, Some(("prometheus", "s3cret")), rounds).await;
    let (p50, p99, max) = percentiles(&mut took);
    eprintln!(
        "tls+auth: 50 scrapers x {rounds} = {} complete scrapes in {wall:?}; \
         latency p50 {p50:?} p99 {p99:?} max {max:?}; worst /healthz under load {probe:?}",
        took.len()
    );
    assert!(probe < Duration::from_secs(10), "unresponsive: {probe:?}");
    app.stop().await;
}

#[test]
fn every_bad_web_config_file_is_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    for (file, expect) in expectation_table("web-configs/invalid") {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten_address = \"127.0.0.1:0\"\nweb_config_file = {:?}\n\
                 [aws]\nregion = \"us-east-1\"\n",
                file.display().to_string()
            ),
        )
        .unwrap();
        for subcommand in ["check-config", "run"] {
            let out = command()
                .args([subcommand, "--config"])
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{subcommand} {}: {stderr}",
                file.display()
            );
            for needle in [expect.as_str(), "server.web_config_file"] {
                assert!(
                    stderr.contains(needle),
                    "{subcommand} {}: `{stderr}` lacks `{needle}`",
                    file.display()
                );
            }
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn a_missing_web_config_file_is_an_error_naming_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[aws]\nregion = \"us-east-1\"\n").unwrap();
    for subcommand in ["check-config", "run"] {
        let out = command()
            .args([subcommand, "--config"])
            .arg(&config)
            .env(
                "HEALTHIMAGING_EXPORTER_SERVER__WEB_CONFIG_FILE",
                "/nonexistent/web.yml",
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "server.web_config_file",
            "/nonexistent/web.yml",
            "HEALTHIMAGING_EXPORTER_SERVER__WEB_CONFIG_FILE",
        ] {
            assert!(
                stderr.contains(needle),
                "{subcommand}: {stderr} lacks {needle}"
            );
        }
    }
}

#[tokio::test]
async fn the_binary_serves_tls_and_basic_auth_configured_through_the_environment() {
    let sim = TestSimulator::start(&scenario(&format!(
        "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\nworkflow_status = \"IMPORTED\"\n"
    )))
    .await;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &pki, "", &users_yaml("prometheus", "s3cret"));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten_address = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\n[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS1}\"\n",
            sim.endpoint
        ),
    )
    .unwrap();
    let check = command()
        .args(["check-config", "--config"])
        .arg(&config)
        .env("HEALTHIMAGING_EXPORTER_SERVER__WEB_CONFIG_FILE", &web)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&check.stdout).contains("web_config_file"));
    let mut cmd = command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("HEALTHIMAGING_EXPORTER_SERVER__WEB_CONFIG_FILE", &web);
    let exporter = ExporterProcess::spawn(cmd, dir);
    let started = exporter
        .wait_for_log("the startup line", |l| l["message"] == "exporter started")
        .await;
    assert_eq!(started["tls"], true);
    assert_eq!(started["basic_auth"], true);
    let addr: std::net::SocketAddr = started["listen_address"].as_str().unwrap().parse().unwrap();
    let client = tls_client(&pki, None, &both_versions());
    let url = format!("https://localhost:{}/metrics", addr.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let resp = client
        .get(&url)
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("healthimaging_targets 1"));
    exporter.signal("TERM");
    let exited = eventually("exit", Duration::from_secs(6), || async {
        exporter.try_wait()
    })
    .await;
    assert_eq!(exited.code(), Some(0));
}
