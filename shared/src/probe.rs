//! The test probe: one HTTP request to an environment's test endpoint, made from inside that
//! environment's network.
//!
//! An environment's test listener (the ALB's :9000) is internal and open to the environment's
//! VPC only, and the checks function runs in the tooling account outside any VPC (a Lambda
//! function outside a VPC has no fixed address a security group could admit). So each
//! environment account runs a small function in its VPC, `shipgate-test-probe`
//! (`environment.yaml`), that makes one request for the checks function and answers what came
//! back; the checks function invokes it through the environment's `shipgate-checks` role and
//! keeps every decision (retries, expectations, messages) to itself.
//!
//! The probe requests only its own environment's test endpoint: a request for another origin
//! (scheme, host and port) is refused, and redirects are followed only to the same origin. A
//! release's stack names the endpoint (`ShipgateTestEndpoint`), so without that rule a release
//! could point the probe at anything its VPC reaches.
//!
//! This module holds what both sides share: the request ([`ProbeRequest`]), the answer
//! ([`Attempt`], also what a direct request gives), the request itself ([`attempt`]), the
//! HTTP client's rules ([`client_builder`]) and the invocation ([`invoke`]).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, aws_err};

/// The probe function's name in every environment account (`environment.yaml`).
pub const FUNCTION_NAME: &str = "shipgate-test-probe";
/// The role the checks function assumes to invoke it (`environment.yaml`).
pub const ROLE_NAME: &str = "shipgate-checks";

/// How much of a response body is read (to look for a check's `expect_body_contains`); the rest
/// is not.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many redirects to the same origin are followed.
const MAX_REDIRECTS: usize = 5;

/// The most an answer may weigh once serialised: Lambda's limit on a synchronous invocation's
/// response payload is 6 MB (Lambda Developer Guide, "Lambda quotas": "Invocation payload
/// (request and response): 6 MB each for request and response (synchronous)"), less a margin.
/// A body of [`MAX_BODY_BYTES`] full of control characters escapes to six times its size.
pub const MAX_ANSWER_BYTES: usize = 6 * 1000 * 1000 - 4096;

/// One request, as the checks function asks the probe to make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The absolute URL: the environment's test endpoint and the check's path.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The whole exchange's limit: connecting, answering and reading the body.
    pub timeout_ms: u64,
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase", deny_unknown_fields)]
pub enum Attempt {
    /// The endpoint answered (the body's first [`MAX_BODY_BYTES`], lossily decoded).
    Answered { status: u16, body: String },
    /// No complete answer within the request's timeout.
    TimedOut,
    /// The endpoint could not be reached (connection refused or reset, DNS, TLS…).
    Unreachable { error: String },
}

impl Attempt {
    /// The answer as the probe returns it: its body cut (at a character boundary) until the
    /// serialised answer fits in [`MAX_ANSWER_BYTES`].
    pub fn fitted(self) -> Self {
        match self {
            Attempt::Answered { status, mut body } => {
                while escaped_len(&body) > MAX_ANSWER_BYTES - 64 {
                    let mut cut = body.len() * 3 / 4;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                Attempt::Answered { status, body }
            }
            other => other,
        }
    }
}

/// The length of `text` as a JSON string's content.
fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0C}' => 2,
            c if c.is_control() && (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// An origin: scheme, host and port (the scheme's default when the URL gives none), lowercase.
/// `None` for a URL that does not parse or has no host.
pub fn origin(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", url.scheme()))
}

/// The HTTP client's rules, for the probe and for checks made directly: same-origin redirects
/// only (at most 5), the caller's user agent.
pub fn client_builder(user_agent: &'static str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(same_origin_redirects())
        .user_agent(user_agent)
}

/// Follows a redirect only to the same scheme, host and port as the request that started it,
/// at most [`MAX_REDIRECTS`] times; any other redirect is returned as the answer.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Makes the request within its timeout and says what came back.
pub async fn attempt(http: &reqwest::Client, request: &ProbeRequest) -> Attempt {
    let timeout = Duration::from_millis(request.timeout_ms);
    let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
        Ok(method) => method,
        Err(_) => {
            return Attempt::Unreachable {
                error: format!("{:?} is not an HTTP method", request.method),
            };
        }
    };
    let mut builder = http.request(method, &request.url).timeout(timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let read = async {
        let mut response = builder.send().await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_BODY_BYTES);
        Ok::<_, reqwest::Error>(Attempt::Answered {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    // reqwest's own timeout covers the whole exchange; this one is a guard around it.
    match tokio::time::timeout(timeout + Duration::from_millis(100), read).await {
        Ok(Ok(attempt)) => attempt,
        Ok(Err(e)) if e.is_timeout() => Attempt::TimedOut,
        Ok(Err(e)) => Attempt::Unreachable {
            error: error_chain(&e),
        },
        Err(_) => Attempt::TimedOut,
    }
}

/// An error and its causes, "a: b: c" (reqwest's own message alone says little).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why the probe gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Lambda refused or failed the invocation (no permission, no such function, throttled).
    #[error(transparent)]
    Lambda(#[from] AwsError),
    /// The probe ran and failed (`errorType`, `errorMessage`): it refused the request, or
    /// crashed.
    #[error("the probe failed ({error_type}): {message}")]
    Function { error_type: String, message: String },
    /// The probe answered something that is not an [`Attempt`].
    #[error("the probe's answer is not one it gives: {0}")]
    Answer(String),
}

impl InvokeError {
    /// Throttling, 5xx and transport failures of the invocation may pass; the rest is a setup
    /// to fix (a permission, the function, its configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Lambda(e) => e.retryable,
            InvokeError::Function { .. } | InvokeError::Answer(_) => false,
        }
    }

    pub fn is_access_denied(&self) -> bool {
        matches!(self, InvokeError::Lambda(e) if e.is_access_denied())
    }
}

/// Invokes the probe `function` (a name or ARN) synchronously with `request`.
pub async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    request: &ProbeRequest,
) -> Result<Attempt, InvokeError> {
    let payload = serde_json::to_vec(request).map_err(|e| InvokeError::Answer(e.to_string()))?;
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(aws_err("Lambda", "InvokeFunction"))?;
    let payload = out.payload().map(Blob::as_ref).unwrap_or_default();
    if out.function_error().is_some() {
        let error: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(payload).unwrap_or_default();
        let text = |key: &str| {
            error
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Err(InvokeError::Function {
            error_type: text("errorType"),
            message: text("errorMessage"),
        });
    }
    serde_json::from_slice(payload).map_err(|e| {
        InvokeError::Answer(format!(
            "{e}: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_as_the_probe_writes_them() {
        for attempt in [
            Attempt::Answered {
                status: 503,
                body: "warming up".into(),
            },
            Attempt::TimedOut,
            Attempt::Unreachable {
                error: "connection refused".into(),
            },
        ] {
            let json = serde_json::to_string(&attempt).unwrap();
            assert_eq!(serde_json::from_str::<Attempt>(&json).unwrap(), attempt);
        }
        assert_eq!(
            serde_json::to_value(Attempt::TimedOut).unwrap(),
            serde_json::json!({"outcome": "timedOut"})
        );
    }

    #[test]
    fn an_answer_always_fits_in_a_lambda_response() {
        let worst = Attempt::Answered {
            status: 200,
            body: "\u{1}".repeat(MAX_BODY_BYTES),
        };
        let fitted = worst.fitted();
        let json = serde_json::to_vec(&fitted).unwrap();
        assert!(json.len() <= MAX_ANSWER_BYTES, "{}", json.len());
        let Attempt::Answered { body, .. } = &fitted else {
            panic!("{fitted:?}")
        };
        assert!(body.len() > MAX_BODY_BYTES / 8, "{}", body.len());
        let plain = Attempt::Answered {
            status: 200,
            body: "é".repeat(MAX_BODY_BYTES / 2),
        };
        assert_eq!(plain.clone().fitted(), plain);
    }

    #[test]
    fn origins_carry_the_default_port_and_ignore_the_path() {
        assert_eq!(
            origin("http://ALB.example/health?x=1").as_deref(),
            Some("http://alb.example:80")
        );
        assert_eq!(
            origin("https://alb.example:9000/").as_deref(),
            Some("https://alb.example:9000")
        );
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn requests_are_strict_json() {
        let request: ProbeRequest = serde_json::from_value(serde_json::json!({
            "method": "GET", "url": "http://alb:9000/health", "timeoutMs": 500
        }))
        .unwrap();
        assert!(request.headers.is_empty() && request.body.is_none());
        assert!(
            serde_json::from_value::<ProbeRequest>(serde_json::json!({
                "method": "GET", "url": "http://alb:9000/", "timeoutMs": 1, "host": "x"
            }))
            .is_err()
        );
    }
}
