//! Response corruption faults: successful API answers that a client must survive, as a
//! misbehaving proxy, a broken connection or a future API could produce them.

use std::fmt;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::server::ApiBody;
use super::wire::json_response;

/// Size of the `padding` member a `huge_body` answer carries.
pub const HUGE_BODY_PADDING_BYTES: usize = 20 * 1024 * 1024;

/// Required members of the operations' output shapes; `missing_fields` drops them
/// wherever they occur (top level, `datastoreProperties`, list entries).
const REQUIRED_MEMBERS: &[&str] = &[
    "datastoreId",
    "imageSetId",
    "versionId",
    "imageSetState",
    "datastoreName",
    "datastoreStatus",
];

/// How a successful answer is corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Corruption {
    /// Valid JSON cut in half (with a matching Content-Length).
    Truncated,
    /// A body that is not JSON at all.
    Malformed,
    /// A `text/html` error page instead of JSON.
    WrongContentType,
    /// The operation's required members dropped.
    MissingFields,
    /// The right answer plus a 20 MiB `padding` member.
    HugeBody,
    /// Headers announcing the whole body, half of it, then the connection is closed.
    Reset,
}

impl Corruption {
    /// Every mode, in documentation order.
    pub const ALL: [Corruption; 6] = [
        Corruption::Truncated,
        Corruption::Malformed,
        Corruption::WrongContentType,
        Corruption::MissingFields,
        Corruption::HugeBody,
        Corruption::Reset,
    ];

    /// The name used in scenarios, the control API, statistics and the request log.
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::Truncated => "truncated",
            Corruption::Malformed => "malformed",
            Corruption::WrongContentType => "wrong_content_type",
            Corruption::MissingFields => "missing_fields",
            Corruption::HugeBody => "huge_body",
            Corruption::Reset => "reset",
        }
    }

    /// Parses a mode name; the error lists the known ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| format!("`{name}` is not one of {}", Self::names()))
    }

    fn names() -> String {
        let known: Vec<_> = Self::ALL.iter().map(|c| c.as_str()).collect();
        known.join(", ")
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Corruption {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value).map_err(|_| {
            format!(
                "invalid corruption `{value}`: expected one of {}",
                Self::names()
            )
        })
    }
}

/// The corrupted form of the successful answer `body`.
pub fn respond(mode: Corruption, body: Value, request_id: &str) -> Response<ApiBody> {
    let json = |text: String| json_response(StatusCode::OK, text, request_id);
    match mode {
        Corruption::Truncated => {
            let text = body.to_string();
            json(text[..half(&text)].to_string())
        }
        Corruption::Malformed => json(format!("{{<<simulated malformed body>> {body}")),
        Corruption::WrongContentType => {
            let mut resp = json(
                "<!DOCTYPE html><html><head><title>Bad Gateway</title></head>\
                 <body><h1>502 Bad Gateway</h1><p>simulated proxy error page</p></body></html>"
                    .to_string(),
            );
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        Corruption::MissingFields => {
            let mut body = body;
            drop_required(&mut body);
            json(body.to_string())
        }
        Corruption::HugeBody => json(padded(&body)),
        Corruption::Reset => {
            let text = Bytes::from(body.to_string());
            let mut resp = json_response(StatusCode::OK, String::new(), request_id)
                .map(|_| ApiBody::reset_after(text.slice(..half_bytes(&text))));
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
            resp
        }
    }
}

/// Half of `text`, on a character boundary.
fn half(text: &str) -> usize {
    let mut at = text.len() / 2;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn half_bytes(text: &[u8]) -> usize {
    std::str::from_utf8(text).map_or(text.len() / 2, half)
}

fn drop_required(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for name in REQUIRED_MEMBERS {
                members.remove(*name);
            }
            members.values_mut().for_each(drop_required);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_required),
        _ => {}
    }
}

/// `body` with a `padding` member of [`HUGE_BODY_PADDING_BYTES`] characters, as text.
fn padded(body: &Value) -> String {
    let text = body.to_string();
    let Some(open) = text.strip_suffix('}') else {
        return text;
    };
    let separator = if open == "{" { "" } else { "," };
    let mut out = String::with_capacity(text.len() + HUGE_BODY_PADDING_BYTES + 16);
    out.push_str(open);
    out.push_str(separator);
    out.push_str("\"padding\":\"");
    out.extend(std::iter::repeat_n('x', HUGE_BODY_PADDING_BYTES));
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    fn answer() -> Value {
        json!({
            "datastoreId": "0123456789abcdef0123456789abcdef",
            "imageSetId": "fedcba9876543210fedcba9876543210",
            "versionId": "1",
            "imageSetState": "ACTIVE",
            "imageSetWorkflowStatus": "IMPORTED",
            "message": "naïve ünïcödé",
        })
    }

    async fn body_of(resp: Response<ApiBody>) -> Result<Bytes, std::io::Error> {
        resp.into_body().collect().await.map(|c| c.to_bytes())
    }

    #[test]
    fn modes_parse_by_name_and_unknown_ones_are_listed() {
        for mode in Corruption::ALL {
            assert_eq!(Corruption::parse(mode.as_str()), Ok(mode));
        }
        let err = Corruption::parse("gzip").unwrap_err();
        assert!(err.contains("`gzip`") && err.contains("huge_body"), "{err}");
    }

    #[tokio::test]
    async fn truncated_is_half_of_valid_json_and_not_json() {
        let full = answer().to_string();
        let body = body_of(respond(Corruption::Truncated, answer(), "r"))
            .await
            .unwrap();
        assert!(full.as_bytes().starts_with(&body));
        assert!(body.len() * 2 <= full.len() && body.len() * 2 >= full.len() - 4);
        assert!(serde_json::from_slice::<Value>(&body).is_err());
    }

    #[tokio::test]
    async fn malformed_and_html_bodies_are_not_json() {
        let body = body_of(respond(Corruption::Malformed, answer(), "r"))
            .await
            .unwrap();
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        let resp = respond(Corruption::WrongContentType, answer(), "r");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(resp.headers().contains_key("x-amzn-requestid"));
        let body = body_of(resp).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<html>"));
    }

    #[tokio::test]
    async fn missing_fields_drops_required_members_at_every_depth() {
        let nested = json!({"datastoreSummaries": [{"datastoreId": "a", "datastoreName": "n", "datastoreStatus": "ACTIVE", "datastoreArn": "arn"}]});
        for (input, kept) in [
            (answer(), "imageSetWorkflowStatus"),
            (nested, "datastoreArn"),
        ] {
            let body = body_of(respond(Corruption::MissingFields, input, "r"))
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body).to_string();
            serde_json::from_str::<Value>(&text).expect("still JSON");
            for name in REQUIRED_MEMBERS {
                assert!(!text.contains(&format!("\"{name}\"")), "{name} in {text}");
            }
            assert!(text.contains(kept), "{text}");
        }
    }

    #[tokio::test]
    async fn huge_body_is_valid_json_with_the_answer_and_padding() {
        for input in [answer(), json!({})] {
            let body = body_of(respond(Corruption::HugeBody, input.clone(), "r"))
                .await
                .unwrap();
            assert!(body.len() > HUGE_BODY_PADDING_BYTES);
            let mut parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
            let padding = parsed.as_object_mut().unwrap().remove("padding").unwrap();
            assert_eq!(padding.as_str().unwrap().len(), HUGE_BODY_PADDING_BYTES);
            assert_eq!(parsed, input);
        }
    }

    #[tokio::test]
    async fn reset_announces_the_whole_body_and_fails_after_half() {
        let full = answer().to_string();
        let resp = respond(Corruption::Reset, answer(), "r");
        assert_eq!(
            resp.headers()[CONTENT_LENGTH].to_str().unwrap(),
            full.len().to_string()
        );
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(full.as_bytes().starts_with(&first) && first.len() < full.len());
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
