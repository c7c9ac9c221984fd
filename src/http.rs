//! The exporter's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and a landing page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::app::ReloadHandle;
use crate::httpd::response;
use crate::metrics::{self, Exposition};
use crate::web_config::BasicAuth;

/// What the handlers read.
pub struct WebState {
    /// What `/metrics` serves.
    pub exposition: Exposition,
    /// True once the first poll round completed.
    pub ready: Arc<AtomicBool>,
    /// True while API calls fail for want of usable AWS credentials.
    pub credentials_failing: Arc<AtomicBool>,
    /// Triggers configuration reloads (`POST /-/reload`).
    pub reload: Option<ReloadHandle>,
    /// Basic auth every endpoint requires (`basic_auth_users`); open when absent.
    pub auth: Option<Arc<BasicAuth>>,
}

const LANDING: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>HealthImaging Exporter</title></head>
<body><h1>HealthImaging Exporter</h1>
<p>Prometheus exporter for AWS HealthImaging image sets.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li><li><a href="readyz">/readyz</a></li></ul>
</body></html>
"#;

/// Routes one request; with basic auth configured, every path needs it (as in the
/// exporter-toolkit), `/healthz` and `/-/reload` included.
pub async fn handle(state: Arc<WebState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(auth) = &state.auth {
        if !auth
            .authorize(req.headers().get(hyper::header::AUTHORIZATION))
            .await
        {
            let mut resp = response(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "unauthorized\n",
            );
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static(
                    "Basic realm=\"healthimaging-exporter\", charset=\"UTF-8\"",
                ),
            );
            return resp;
        }
    }
    if req.uri().path() == "/-/reload" {
        return reload(&state, req.method()).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return resp;
    }
    match req.uri().path() {
        "/metrics" => match state.exposition.encode() {
            Ok(body) => response(StatusCode::OK, metrics::CONTENT_TYPE, body),
            Err(error) => {
                tracing::error!(%error, "encoding metrics failed");
                response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("encoding metrics failed: {error}\n"),
                )
            }
        },
        "/healthz" => response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            if state.credentials_failing.load(Ordering::Acquire) {
                response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "not ready: no usable AWS credentials (see the log)\n",
                )
            } else if state.ready.load(Ordering::Acquire) {
                response(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "not ready: first poll round in progress\n",
                )
            }
        }
        "/" => response(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// `POST /-/reload` (or `PUT`, as Prometheus accepts): re-reads the config; 200 when it
/// applied, 500 with the reason when it was rejected (the old config stays).
async fn reload(state: &WebState, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::POST && method != Method::PUT {
        let mut resp = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use POST to reload the configuration\n",
        );
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("POST, PUT"),
        );
        return resp;
    }
    let Some(handle) = &state.reload else {
        return response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "reloading is not available\n",
        );
    };
    match handle.reload().await {
        Ok(()) => response(StatusCode::OK, "text/plain; charset=utf-8", "reloaded\n"),
        Err(error) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("failed to reload config: {error}\n"),
        ),
    }
}
