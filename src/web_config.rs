//! The web configuration file (`server.web_config_file`): TLS and basic auth for the HTTP
//! endpoints, in the Prometheus exporter-toolkit `web.config` YAML format.
//!
//! Loaded and checked once at start-up (and by `check-config`); every error names the file
//! and the field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The file as written (exporter-toolkit field names; unknown keys are errors).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// The web config file is unusable; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The web config file itself cannot be read.
    #[error("cannot read web config file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a wrong type.
    #[error("web config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and the line).
        message: String,
    },
    /// A value that parsed but cannot be used.
    #[error("web config file {}: {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `tls_server_config.cert_file`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// What the web config file asks for: TLS, basic auth, both or neither.
#[derive(Default)]
pub struct WebSecurity {
    /// Server TLS settings; plaintext HTTP when absent.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users allowed in; every request is open when absent.
    pub auth: Option<Arc<BasicAuth>>,
}

impl fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

impl WebSecurity {
    /// Reads and checks `path`; relative file names inside are relative to its directory.
    pub fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_norway::from_str::<Option<WebConfigFile>>(&text)
                .map_err(|e| WebConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
                .unwrap_or_default()
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |(field, message): (String, String)| WebConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        let tls = match &parsed.tls_server_config {
            Some(tls) => Some(Arc::new(tls.build(base).map_err(invalid)?)),
            None => None,
        };
        let auth = match parsed.basic_auth_users {
            Some(users) if !users.is_empty() => {
                Some(Arc::new(BasicAuth::new(users).map_err(invalid)?))
            }
            _ => None,
        };
        Ok(WebSecurity { tls, auth })
    }
}

/// A (field, message) pair for [`WebConfigError::Invalid`].
type Problem = (String, String);

fn problem(field: &str, message: impl Into<String>) -> Problem {
    (format!("tls_server_config.{field}"), message.into())
}

/// TLS versions rustls speaks, in the exporter-toolkit spelling.
fn tls_version(field: &str, value: &str) -> Result<u8, Problem> {
    match value {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(problem(
            field,
            format!("`{value}` is not supported (insecure); use TLS12 or TLS13"),
        )),
        _ => Err(problem(
            field,
            format!("`{value}` is not a TLS version; use TLS12 or TLS13"),
        )),
    }
}

/// Whether and how client certificates are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

impl TlsServerConfig {
    /// Checks every field and builds the rustls server configuration.
    fn build(&self, base: &Path) -> Result<rustls::ServerConfig, Problem> {
        let client_auth = match self.client_auth_type.as_deref() {
            None | Some("NoClientCert") => ClientAuth::None,
            Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
            Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
            Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
                return Err(problem(
                    "client_auth_type",
                    format!(
                        "`{other}` accepts certificates nobody verified and is not supported; \
                         use RequireAndVerifyClientCert"
                    ),
                ))
            }
            Some(other) => {
                return Err(problem(
                    "client_auth_type",
                    format!(
                        "`{other}` is not one of NoClientCert, VerifyClientCertIfGiven, \
                         RequireAndVerifyClientCert"
                    ),
                ))
            }
        };
        let min = tls_version(
            "min_version",
            self.min_version.as_deref().unwrap_or("TLS12"),
        )?;
        let max = tls_version(
            "max_version",
            self.max_version.as_deref().unwrap_or("TLS13"),
        )?;
        if max < min {
            return Err(problem(
                "max_version",
                format!("TLS{max} is below min_version TLS{min}"),
            ));
        }
        let has_client_ca = self.client_ca_file.is_some() || self.client_ca.is_some();
        if has_client_ca && client_auth == ClientAuth::None {
            return Err(problem(
                "client_auth_type",
                "a client CA is configured without a client auth policy: \
                 set client_auth_type: RequireAndVerifyClientCert",
            ));
        }
        if !has_client_ca && client_auth != ClientAuth::None {
            return Err(problem(
                "client_ca_file",
                "missing: client_auth_type verifies client certificates against this CA",
            ));
        }

        let cert_pem = pem_source(base, "cert_file", &self.cert_file, "cert", &self.cert)?;
        let key_pem = pem_source(base, "key_file", &self.key_file, "key", &self.key)?;
        let (cert_field, cert_bytes) = cert_pem;
        let (key_field, key_bytes) = key_pem;
        let certs = certificates(&cert_field, &cert_bytes)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
            problem(
                &key_field,
                format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, version)| version)
                .collect();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| problem("min_version", e.to_string()))?;
        let builder = if client_auth == ClientAuth::None {
            builder.with_no_client_auth()
        } else {
            let ca_source = pem_source(
                base,
                "client_ca_file",
                &self.client_ca_file,
                "client_ca",
                &self.client_ca,
            )?;
            let (ca_field, ca_bytes) = ca_source;
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(&ca_field, &ca_bytes)? {
                roots
                    .add(cert)
                    .map_err(|e| problem(&ca_field, format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| problem(&ca_field, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!("the key does not match the certificate in {cert_field}")
                }
                other => format!("unusable certificate or key: {other}"),
            };
            problem(&key_field, why)
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The PEM text of a `*_file` field or its inline twin; returns the field used and the bytes.
fn pem_source(
    base: &Path,
    file_field: &str,
    file: &Option<PathBuf>,
    inline_field: &str,
    inline: &Option<String>,
) -> Result<(String, Vec<u8>), Problem> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(problem(
            inline_field,
            format!("set either {file_field} or {inline_field}, not both"),
        )),
        (None, Some(text)) => Ok((inline_field.to_string(), text.as_bytes().to_vec())),
        (None, None) => Err(problem(file_field, "missing")),
        (Some(file), None) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map(|bytes| (file_field.to_string(), bytes))
                .map_err(|e| problem(file_field, format!("cannot read {}: {e}", path.display())))
        }
    }
}

/// Every `CERTIFICATE` block of a PEM text, at least one.
fn certificates(field: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(field, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(problem(field, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Most cached verification results; beyond that an arbitrary entry is evicted.
const CACHE_CAPACITY: usize = 1024;

/// Basic auth against bcrypt hashes, with verified credentials cached.
///
/// bcrypt is slow by design (~50-100 ms at cost 10), and Prometheus sends the same
/// credentials on every scrape; so results are cached by a salted SHA-256 of user and
/// password (never the password itself), and uncached verifications run one at a time on
/// the blocking pool, so a flood of wrong passwords costs at most one core.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// A configured hash that unknown users are checked against, so that an unknown user
    /// takes as long as a wrong password.
    decoy: String,
    salt: [u8; 16],
    cache: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt_turn: tokio::sync::Mutex<()>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Checks the user names and bcrypt hashes of `basic_auth_users`.
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, Problem> {
        let bad = |user: &str, message: String| (format!("basic_auth_users.{user}"), message);
        for (user, hash) in &users {
            if user.is_empty() {
                return Err(("basic_auth_users".into(), "a user name is empty".into()));
            }
            if user.contains(':') || user.chars().any(char::is_control) {
                return Err(bad(
                    user,
                    "a user name cannot contain `:` or control characters".into(),
                ));
            }
            let parts = bcrypt::HashParts::from_str(hash).map_err(|e| {
                bad(
                    user,
                    format!("is not a bcrypt hash like $2y$10$... ({e}); see README"),
                )
            })?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(bad(
                    user,
                    format!("bcrypt cost {} is outside 4-31", parts.get_cost()),
                ));
            }
        }
        let decoy = users.values().next().cloned().unwrap_or_default();
        let mut salt = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut salt);
        Ok(BasicAuth {
            users: users.into_iter().collect(),
            decoy,
            salt,
            cache: Mutex::new(HashMap::new()),
            bcrypt_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    pub async fn authorize(&self, header: Option<&hyper::header::HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let key = self.cache_key(&user, &password);
        if let Some(ok) = self.cached(&key) {
            return ok;
        }
        // One bcrypt at a time; whoever waited for the same credentials finds them cached.
        let _turn = self.bcrypt_turn.lock().await;
        if let Some(ok) = self.cached(&key) {
            return ok;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let matched = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matched && known;
        self.remember(key, ok);
        ok
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.salt);
        digest.update((user.len() as u64).to_le_bytes());
        digest.update(user.as_bytes());
        digest.update(password.as_bytes());
        digest.finalize().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        self.cache.lock().ok()?.get(key).copied()
    }

    fn remember(&self, key: [u8; 32], ok: bool) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                if let Some(evict) = cache.keys().next().copied() {
                    cache.remove(&evict);
                }
            }
            cache.insert(key, ok);
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &hyper::header::HeaderValue) -> Option<(String, String)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)])).unwrap()
    }

    #[tokio::test]
    async fn right_credentials_pass_and_wrong_ones_do_not() {
        let auth = auth();
        assert!(auth.authorize(Some(&header("alice", "s3cret"))).await);
        assert!(
            auth.authorize(Some(&header("alice", "s3cret"))).await,
            "cached"
        );
        assert!(!auth.authorize(Some(&header("alice", "wrong"))).await);
        assert!(!auth.authorize(Some(&header("bob", "s3cret"))).await);
        assert!(!auth.authorize(Some(&header("alice", ""))).await);
        assert!(!auth.authorize(None).await);
        let bearer = HeaderValue::from_static("Bearer abc");
        assert!(!auth.authorize(Some(&bearer)).await);
        let garbage = HeaderValue::from_static("Basic !!!");
        assert!(!auth.authorize(Some(&garbage)).await);
    }

    #[test]
    fn scheme_is_case_insensitive_and_passwords_may_contain_colons() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("u:p:q");
        let value = HeaderValue::from_str(&format!("bAsIc {encoded}")).unwrap();
        assert_eq!(parse_basic(&value), Some(("u".into(), "p:q".into())));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let auth = auth();
        for n in 0..(CACHE_CAPACITY + 10) {
            let key = auth.cache_key("mallory", &n.to_string());
            auth.remember(key, false);
        }
        assert_eq!(auth.cache.lock().unwrap().len(), CACHE_CAPACITY);
    }

    #[test]
    fn bad_hashes_and_user_names_name_the_user() {
        for (user, hash, field) in [
            ("alice", "plaintext", "basic_auth_users.alice"),
            (
                "a:b",
                "$2y$04$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi",
                "basic_auth_users.a:b",
            ),
            ("", "x", "basic_auth_users"),
        ] {
            let err =
                BasicAuth::new(BTreeMap::from([(user.to_string(), hash.to_string())])).unwrap_err();
            assert_eq!(err.0, field);
        }
    }
}
