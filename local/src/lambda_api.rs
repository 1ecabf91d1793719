//! Lambda's `Invoke` for the template's functions, on the local stack's Lambda endpoint.
//!
//! moto keeps Lambda functions, versions and aliases but cannot run code, and the template's
//! functions are not in moto at all: they run in this process ([`LocalFunctions`]). So the
//! stack's `AWS_ENDPOINT_URL_LAMBDA` points here. `POST /2015-03-31/functions/{FunctionName}/invocations`
//! naming one of the template's functions (by its physical name, its ARN or partial ARN in the
//! tooling account, with or without a qualifier) is answered as the Lambda API reference's
//! `Invoke` documents it (<https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>):
//! - `X-Amz-Invocation-Type: Event`: `202`, empty body, `x-amzn-RequestId`; the event is then
//!   run with Lambda's retries and, after the last failure, goes to the function's dead-letter
//!   queue ([`LocalFunctions::invoke_async`]);
//! - `RequestResponse` (the default): `200` with the function's result, or with its error and
//!   `X-Amz-Function-Error: Unhandled`;
//! - `DryRun`: `204`;
//! - a body that is not JSON: `400 InvalidRequestContentException`; over 6 MB:
//!   `413 RequestTooLargeException`.
//!
//! Each environment account's test probe (`shipgate-test-probe`, created by `environment.yaml`
//! in moto, which cannot run it) is answered the same way by the probe's own handler
//! (`shipgate_probe::Probe`), when the ARN or partial ARN names that account.
//!
//! Every other request (other functions, other operations: aliases, versions, function URLs
//! configuration) goes on to moto unchanged, so clients see one Lambda endpoint as in AWS.
//!
//! Not modelled: IAM (who may invoke), the caller's account (a plain name resolves to the
//! tooling account's function whatever the credentials), qualifiers (every version and alias
//! runs the one local build), the async payload limit (256 KB), reserved concurrency and
//! throttling, `ClientContext`, `LogType=Tail`, and `EventInvokeConfig` (maximum retries, event
//! age, destinations): the retries and dead-letter queue are the template's.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::accounts;
use crate::function_urls::PAYLOAD_LIMIT;
use crate::functions::LocalFunctions;

/// How much of a request going on to moto is read (Lambda's `CreateFunction` takes a zip of up
/// to 50 MB, base64 in JSON).
const FORWARD_LIMIT: usize = 80 * 1024 * 1024;

/// The path prefix and suffix of `Invoke` (API version 2015-03-31).
const INVOKE_PREFIX: &str = "/2015-03-31/functions/";
const INVOKE_SUFFIX: &str = "/invocations";

/// The function `Invoke` names, read from its `FunctionName` path parameter (percent-decoded):
/// `name`, `name:qualifier`, `account:function:name[:qualifier]` or
/// `arn:aws:lambda:region:account:function:name[:qualifier]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionName {
    pub name: String,
    /// The account an ARN or partial ARN names.
    pub account: Option<String>,
}

impl FunctionName {
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.split(':').collect();
        let (account, name) = match parts.as_slice() {
            [name] | [name, _] => (None, *name),
            [account, "function", name] | [account, "function", name, _] => (Some(*account), *name),
            ["arn", _, "lambda", _, account, "function", name]
            | ["arn", _, "lambda", _, account, "function", name, _] => (Some(*account), *name),
            _ => return None,
        };
        (!name.is_empty()).then(|| Self {
            name: name.to_owned(),
            account: account.map(str::to_owned),
        })
    }
}

/// The `FunctionName` of an `Invoke` request's path, if it is one.
pub fn invoked_function(method: &Method, path: &str) -> Option<FunctionName> {
    if method != Method::POST {
        return None;
    }
    let raw = path
        .strip_prefix(INVOKE_PREFIX)?
        .strip_suffix(INVOKE_SUFFIX)?;
    if raw.contains('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    FunctionName::parse(&decoded)
}

/// The environment accounts' test probes, by account.
pub type Probes = BTreeMap<String, Arc<shipgate_probe::Probe>>;

struct LambdaApi {
    functions: Arc<LocalFunctions>,
    probes: Probes,
    /// Physical function name → template logical id.
    logical_ids: BTreeMap<String, String>,
    moto: String,
    client: reqwest::Client,
}

impl LambdaApi {
    /// The logical id of a template function `name` designates, if it is one of ours.
    fn local_function(&self, name: &FunctionName) -> Option<&str> {
        if name
            .account
            .as_deref()
            .is_some_and(|account| account != accounts::TOOLING)
        {
            return None;
        }
        self.logical_ids.get(&name.name).map(String::as_str)
    }

    /// The test probe `name` designates, if it names one by an environment account's ARN.
    fn probe(&self, name: &FunctionName) -> Option<Arc<shipgate_probe::Probe>> {
        if name.name != shipgate::probe::FUNCTION_NAME {
            return None;
        }
        self.probes.get(name.account.as_deref()?).cloned()
    }
}

/// What runs an invocation.
enum Invoked {
    /// A template function, by logical id.
    Template(String),
    Probe(Arc<shipgate_probe::Probe>),
}

/// A loopback listener for the Lambda endpoint, bound first so its URL can go into the stack's
/// SDK configuration before the functions exist.
pub async fn bind() -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the local Lambda endpoint")
}

/// Serves the Lambda endpoint on `listener`: the template's functions (`logical_ids`: physical
/// name → logical id) through `functions`, everything else forwarded to `moto`.
pub fn serve(
    listener: tokio::net::TcpListener,
    functions: Arc<LocalFunctions>,
    probes: Probes,
    logical_ids: BTreeMap<String, String>,
    moto: String,
) -> JoinHandle<()> {
    let api = Arc::new(LambdaApi {
        functions,
        probes,
        logical_ids,
        moto: moto.trim_end_matches('/').to_owned(),
        client: reqwest::Client::new(),
    });
    let app = Router::new().fallback(handle).with_state(api);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "local Lambda endpoint stopped");
        }
    })
}

async fn handle(State(api): State<Arc<LambdaApi>>, request: Request) -> Response {
    let function = invoked_function(request.method(), request.uri().path());
    let invoked = function.as_ref().and_then(|f| {
        api.local_function(f)
            .map(|id| Invoked::Template(id.to_owned()))
            .or_else(|| api.probe(f).map(Invoked::Probe))
    });
    match invoked {
        Some(invoked) => invoke(&api, invoked, request).await,
        None => forward(&api, request).await.unwrap_or_else(|error| {
            tracing::warn!(error = %format!("{error:#}"), "forwarding a Lambda request to moto failed");
            lambda_error(StatusCode::BAD_GATEWAY, "ServiceException", &format!("{error:#}"))
        }),
    }
}

async fn invoke(api: &LambdaApi, invoked: Invoked, request: Request) -> Response {
    let invocation_type = request
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let body = match axum::body::to_bytes(request.into_body(), PAYLOAD_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return lambda_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!(
                    "Request must be smaller than {PAYLOAD_LIMIT} bytes for the InvokeFunction operation"
                ),
            );
        }
    };
    let event: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(e) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                );
            }
        }
    };
    let id = match invoked {
        Invoked::Template(id) => id,
        Invoked::Probe(probe) => return invoke_probe(&probe, &invocation_type, event).await,
    };
    let id = id.as_str();
    match invocation_type.as_str() {
        "Event" => match api.functions.invoke_async(id, event) {
            Ok(request_id) => {
                tracing::info!(function = id, %request_id, "asynchronous invocation accepted");
                with_request_id(StatusCode::ACCEPTED.into_response(), &request_id)
            }
            Err(error) => lambda_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                error["errorMessage"].as_str().unwrap_or_default(),
            ),
        },
        "RequestResponse" => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let result = api
                .functions
                .invoke_with_id(id, event, request_id.clone())
                .await;
            synchronous_answer(result, &request_id)
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        other => lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("Unsupported invocation type {other:?}: Event, RequestResponse or DryRun"),
        ),
    }
}

/// A synchronous invocation's answer: `200` with the result, or with the function's error and
/// `X-Amz-Function-Error: Unhandled`.
fn synchronous_answer(result: Result<Value, Value>, request_id: &str) -> Response {
    let (payload, function_error) = match result {
        Ok(result) => (result, false),
        Err(error) => (error, true),
    };
    let mut response = (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-amz-executed-version", "$LATEST"),
        ],
        payload.to_string(),
    )
        .into_response();
    if function_error {
        response.headers_mut().insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    with_request_id(response, request_id)
}

/// The probe's answer, as `Invoke` gives a function's: synchronous invocations only (the checks
/// function makes no other).
async fn invoke_probe(
    probe: &shipgate_probe::Probe,
    invocation_type: &str,
    event: Value,
) -> Response {
    use shipgate::lambda::EventHandler;
    match invocation_type {
        "RequestResponse" => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let result = match EventHandler::handle(probe, event, &request_id).await {
                Ok(answer) => Ok(json!(answer)),
                Err(error) => {
                    Err(json!({"errorType": error.error_type(), "errorMessage": error.to_string()}))
                }
            };
            synchronous_answer(result, &request_id)
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        other => lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!(
                "the local stack runs {} synchronously only, not as {other:?}",
                shipgate::probe::FUNCTION_NAME
            ),
        ),
    }
}

/// Passes a request on to moto and its answer back.
async fn forward(api: &LambdaApi, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = axum::body::to_bytes(body, FORWARD_LIMIT)
        .await
        .context("reading the request")?;
    let answer = api
        .client
        .request(parts.method, format!("{}{path}", api.moto))
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await
        .context("calling moto")?;
    let status = answer.status();
    let headers = end_to_end(answer.headers());
    let bytes = answer.bytes().await.context("reading moto's answer")?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The headers that travel end to end (RFC 9110 §7.6.1: not the hop-by-hop ones, not `Host`,
/// and not the length, which the next hop sets for the body it sends).
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    ];
    headers
        .iter()
        .filter(|(name, _)| !HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-amzn-requestid"), value);
    }
    response
}

/// An error as Lambda's REST-JSON API answers it: the type in `x-amzn-ErrorType`, `Type` and
/// `message` in the body.
fn lambda_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let response = (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", error_type),
        ],
        json!({"Type": "User", "message": message}).to_string(),
    )
        .into_response();
    with_request_id(response, &uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(name: &str, account: Option<&str>) -> Option<FunctionName> {
        Some(FunctionName {
            name: name.to_owned(),
            account: account.map(str::to_owned),
        })
    }

    #[test]
    fn every_form_of_function_name_is_read() {
        assert_eq!(FunctionName::parse("intake"), name("intake", None));
        assert_eq!(FunctionName::parse("intake:live"), name("intake", None));
        assert_eq!(
            FunctionName::parse("123456789012:function:intake"),
            name("intake", Some("123456789012"))
        );
        assert_eq!(
            FunctionName::parse("arn:aws:lambda:eu-west-1:123456789012:function:intake:7"),
            name("intake", Some("123456789012"))
        );
        assert_eq!(FunctionName::parse(""), None);
        assert_eq!(FunctionName::parse("a:b:c:d:e"), None);
    }

    #[test]
    fn only_a_post_to_invocations_is_an_invoke() {
        let arn = "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aintake";
        assert_eq!(
            invoked_function(
                &Method::POST,
                &format!("/2015-03-31/functions/{arn}/invocations")
            ),
            name("intake", Some("123456789012"))
        );
        assert_eq!(
            invoked_function(&Method::GET, "/2015-03-31/functions/intake/invocations"),
            None
        );
        assert_eq!(
            invoked_function(&Method::POST, "/2015-03-31/functions/intake/aliases"),
            None
        );
        assert_eq!(
            invoked_function(&Method::POST, "/2015-03-31/functions/a/b/invocations"),
            None
        );
    }

    #[test]
    fn hop_by_hop_headers_do_not_travel() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 x"),
        );
        headers.insert("x-amz-date", HeaderValue::from_static("20261126T100000Z"));
        let kept = end_to_end(&headers);
        assert_eq!(kept.len(), 2);
        assert!(kept.contains_key("authorization") && kept.contains_key("x-amz-date"));
    }
}
