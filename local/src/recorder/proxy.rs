//! A recording front for an endpoint of the stack that is not moto: each request is logged
//! ([`super::Logged`]) with the key that signed it, then passed on unchanged to the endpoint,
//! and its answer back. The endpoint sees the request as it was sent, `Host` aside: the front
//! says which host was asked in `X-Forwarded-Host`, so a registry's `Location` headers lead back
//! to the front (the CNCF registry builds them from it).
//!
//! What each endpoint's requests are:
//! - [`Endpoint::CodePipeline`]: the operation `X-Amz-Target` names, its JSON input;
//! - [`Endpoint::Lambda`]: `Invoke` (function and qualifier from the path and query); the
//!   endpoint's other operations go on to moto, which logs them itself;
//! - [`Endpoint::Registry`]: every OCI request, the caller read from its Basic credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{CallLog, Logged, registry_caller, signing_access_key};
use crate::accounts;
use crate::lambda_api::end_to_end;

/// How much of a request the front reads before passing it on (a registry's monolithic blob
/// upload is the largest).
const BODY_LIMIT: usize = 1024 * 1024 * 1024;

/// Which endpoint a front stands before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    CodePipeline,
    Lambda,
    /// The registry standing in for `account`'s ECR registry.
    Registry {
        account: String,
    },
}

struct Front {
    endpoint: Endpoint,
    upstream: String,
    log: Arc<CallLog>,
    http: reqwest::Client,
}

/// A running front: its URL, and its task.
pub struct RecordingProxy {
    url: String,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    /// Starts a front for `endpoint`, which listens at `upstream` (`http://host:port`), on a
    /// loopback port of its own.
    pub async fn start(endpoint: Endpoint, upstream: String, log: Arc<CallLog>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a recording proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .context("building the recording proxy's client")?;
        let front = Arc::new(Front {
            endpoint,
            upstream: upstream.trim_end_matches('/').to_owned(),
            log,
            http,
        });
        let app = Router::new().fallback(pass_on).with_state(front);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "recording proxy stopped");
            }
        });
        Ok(Self { url, task })
    }

    /// Where clients send their requests instead of the endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn pass_on(State(front): State<Arc<Front>>, request: Request) -> Response {
    match forward(&front, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), upstream = front.upstream, "recording proxy could not pass a request on");
            (StatusCode::BAD_GATEWAY, format!("{error:#}")).into_response()
        }
    }
}

async fn forward(front: &Front, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .context("reading the request")?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = parts.headers.get("host").cloned();
    let mut headers = end_to_end(&parts.headers);
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    let answer = front
        .http
        .request(
            parts.method.clone(),
            format!("{}{path_and_query}", front.upstream),
        )
        .headers(headers)
        .body(body.clone())
        .send()
        .await
        .context("calling the endpoint")?;
    let status = answer.status();
    let answer_headers = answer.headers().clone();
    if let Some(logged) = front.endpoint.logged(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &body,
        status.as_u16(),
    ) {
        front.log.push(logged);
    }
    let mut response = Response::new(Body::from_stream(
        answer.bytes_stream().map_err(std::io::Error::other),
    ));
    *response.status_mut() = status;
    *response.headers_mut() = end_to_end(&answer_headers);
    // As the endpoint said it: a HEAD's answer announces the length of what a GET would send.
    if let Some(length) = answer_headers.get("content-length") {
        response
            .headers_mut()
            .insert("content-length", length.clone());
    }
    Ok(response)
}

impl Endpoint {
    /// What this endpoint's request is, as the recorder logs it; `None` for a request the front
    /// does not log (the Lambda endpoint's operations other than `Invoke`).
    pub fn logged(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        status: u16,
    ) -> Option<Logged> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let query = parse_query(query);
        match self {
            Endpoint::CodePipeline => {
                let operation = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|t| t.rsplit_once('.'))
                    .map(|(_, op)| op.to_owned())
                    .unwrap_or_default();
                Some(Logged::Api {
                    access_key: signing_access_key(authorization)
                        .unwrap_or_default()
                        .to_owned(),
                    service: "codepipeline".to_owned(),
                    operation,
                    params: serde_json::from_slice(body).unwrap_or(Value::Null),
                    // The caller's: its credentials' account (filled in by the evaluation).
                    account: String::new(),
                    region: accounts::REGION.to_owned(),
                    status,
                    issued_access_key: None,
                })
            }
            Endpoint::Lambda => {
                let name =
                    crate::lambda_api::invoked_function(&method.parse().ok()?, path).map(|_| {
                        let raw = path
                            .trim_start_matches("/2015-03-31/functions/")
                            .trim_end_matches("/invocations");
                        percent_encoding::percent_decode_str(raw)
                            .decode_utf8_lossy()
                            .into_owned()
                    })?;
                let mut params = json!({ "FunctionName": name });
                if let Some(qualifier) = query.get("Qualifier").and_then(|q| q.first()) {
                    params["Qualifier"] = json!(qualifier);
                }
                Some(Logged::Api {
                    access_key: signing_access_key(authorization)
                        .unwrap_or_default()
                        .to_owned(),
                    service: "lambda".to_owned(),
                    operation: "Invoke".to_owned(),
                    params,
                    account: String::new(),
                    region: accounts::REGION.to_owned(),
                    status,
                    issued_access_key: None,
                })
            }
            Endpoint::Registry { account } => Some(Logged::Registry {
                access_key: registry_caller(authorization).unwrap_or_default(),
                account: account.clone(),
                region: accounts::REGION.to_owned(),
                method: method.to_owned(),
                path: path.to_owned(),
                query,
                status,
            }),
        }
    }
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut parsed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        parsed.entry(decode(k)).or_default().push(decode(v));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    axum::http::HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=shipgate_local_IntakeFunction/20261126/\
                          eu-west-1/codepipeline/aws4_request, SignedHeaders=host, Signature=0";

    #[test]
    fn a_codepipeline_request_is_its_target_operation_and_json_input() {
        let logged = Endpoint::CodePipeline.logged(
            "POST",
            "/",
            None,
            &headers(&[
                ("authorization", SIGNED),
                (
                    "x-amz-target",
                    "CodePipeline_20150709.StartPipelineExecution",
                ),
            ]),
            br#"{"name":"shipgate"}"#,
            200,
        );
        let Some(Logged::Api {
            access_key,
            operation,
            params,
            ..
        }) = logged
        else {
            panic!("{logged:?}")
        };
        assert_eq!(access_key, "shipgate_local_IntakeFunction");
        assert_eq!(operation, "StartPipelineExecution");
        assert_eq!(params, json!({"name": "shipgate"}));
    }

    #[test]
    fn only_invoke_is_logged_at_the_lambda_endpoint() {
        let h = headers(&[("authorization", SIGNED)]);
        let invoke = Endpoint::Lambda.logged(
            "POST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A2%3Afunction%3Aprobe/invocations",
            Some("Qualifier=live"),
            &h,
            b"{}",
            200,
        );
        let Some(Logged::Api { params, .. }) = invoke else {
            panic!("{invoke:?}")
        };
        assert_eq!(
            params,
            json!({"FunctionName": "arn:aws:lambda:eu-west-1:2:function:probe", "Qualifier": "live"})
        );
        let alias = Endpoint::Lambda.logged(
            "GET",
            "/2015-03-31/functions/f/aliases/live",
            None,
            &h,
            b"",
            200,
        );
        assert_eq!(alias, None);
    }

    #[test]
    fn a_registry_request_is_logged_with_the_caller_its_token_names() {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD
            .encode("AWS:333333333333-auth-token;caller=ASIAPROMOTE");
        let logged = Endpoint::Registry {
            account: "333333333333".into(),
        }
        .logged(
            "PUT",
            "/v2/orders/web/blobs/uploads/u-1",
            Some("digest=sha256%3Aab"),
            &headers(&[("authorization", &format!("Basic {token}"))]),
            b"",
            201,
        );
        assert_eq!(
            logged,
            Some(Logged::Registry {
                access_key: "ASIAPROMOTE".into(),
                account: "333333333333".into(),
                region: accounts::REGION.into(),
                method: "PUT".into(),
                path: "/v2/orders/web/blobs/uploads/u-1".into(),
                query: BTreeMap::from([("digest".into(), vec!["sha256:ab".into()])]),
                status: 201,
            })
        );
    }
}
