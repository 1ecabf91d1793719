//! Lambda function URLs on the local stack: one loopback HTTP server per function that has a URL
//! in `template.yaml`, so a browser (or a headless Chromium test) talks to the same handler that
//! serves the function URL in AWS.
//!
//! Each request becomes the function URL request event (payload format 2.0, as AWS documents it
//! in "Invoking Lambda function URLs"), the function is called through a [`FunctionHost`], and its
//! answer becomes the HTTP response by the same rules Lambda applies: a response object
//! (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`), or any other JSON value as a
//! `200 application/json` body; a function error is a `502`. Lambda's 6 MB invocation payload
//! limit applies to the event (`413`) and to the answer (`502`).
//!
//! Not modelled: the `AWS_IAM` auth type (every URL behaves as `AuthType: NONE`), the URL's CORS
//! configuration (no preflight answers, no `access-control-*` headers added), response streaming
//! (`InvokeMode: RESPONSE_STREAM`), the function's timeout and concurrency limits, TLS, and
//! qualifiers (a URL on an alias calls the function the host knows by that logical id).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::task::JoinHandle;

use crate::functions::FunctionHost;

/// Lambda's limit on a synchronous invocation's payload, the event and the answer each
/// (6 MB = 6,291,456 bytes). The limit is on the event, so a base64-encoded binary body
/// reaches it at about 4.5 MB of raw bytes, as in AWS.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// How much of an oversized body is still read (and discarded) before answering `413`: an HTTP/1
/// client that is still sending when the server answers often sees a reset instead of the answer.
const OVERSIZED_DRAIN_LIMIT: usize = 4 * PAYLOAD_LIMIT;

/// Logical ids of the template's functions that have a function URL: `AWS::Serverless::Function`
/// resources with `Properties.FunctionUrlConfig`, and the targets of `AWS::Lambda::Url`
/// resources (`TargetFunctionArn: !GetAtt F.Arn` or `!Ref F`, also through an
/// `AWS::Lambda::Alias` or `AWS::Lambda::Version` of `F`). Sorted, each id once.
pub fn url_functions(template_yaml: &str) -> Result<Vec<String>> {
    let template: Yaml = serde_yaml::from_str(template_yaml).context("the template is not YAML")?;
    let resources = template
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| anyhow!("the template has no Resources"))?;
    let resource_type = |id: &str| -> Option<&str> {
        resources
            .get(id)
            .and_then(|r| r.get("Type"))
            .and_then(Yaml::as_str)
    };

    let mut ids = BTreeSet::new();
    for (id, resource) in resources {
        let Some(id) = id.as_str() else { continue };
        let properties = resource.get("Properties");
        match resource.get("Type").and_then(Yaml::as_str) {
            Some("AWS::Serverless::Function")
                if properties.is_some_and(|p| p.get("FunctionUrlConfig").is_some()) =>
            {
                ids.insert(id.to_owned());
            }
            Some("AWS::Lambda::Url") => {
                let target = properties
                    .and_then(|p| p.get("TargetFunctionArn"))
                    .and_then(referenced_id)
                    .ok_or_else(|| {
                        anyhow!(
                            "Resources.{id}.Properties.TargetFunctionArn must be `!GetAtt F.Arn` \
                             or `!Ref F` for a function F of this template: the local stack only \
                             serves the template's own functions"
                        )
                    })?;
                // An alias or a version stands for its function: the local stack runs one build
                // of each function, whatever the qualifier.
                let function = match resource_type(&target) {
                    Some("AWS::Lambda::Alias" | "AWS::Lambda::Version") => resources
                        .get(target.as_str())
                        .and_then(|r| r.get("Properties"))
                        .and_then(|p| p.get("FunctionName"))
                        .and_then(referenced_id)
                        .unwrap_or(target),
                    _ => target,
                };
                match resource_type(&function) {
                    Some("AWS::Serverless::Function" | "AWS::Lambda::Function") => {
                        ids.insert(function);
                    }
                    _ => bail!(
                        "Resources.{id}: the URL's target {function} is not a function of this \
                         template"
                    ),
                }
            }
            _ => {}
        }
    }
    Ok(ids.into_iter().collect())
}

/// The logical id behind `!Ref X`, `!GetAtt X.Arn`, `!GetAtt [X, Arn]` or their long forms.
fn referenced_id(value: &Yaml) -> Option<String> {
    let get_att = |argument: &Yaml| -> Option<String> {
        match argument {
            Yaml::String(s) => match s.split_once('.') {
                Some((id, "Arn")) => Some(id.to_owned()),
                _ => None,
            },
            Yaml::Sequence(parts) => match parts.as_slice() {
                [Yaml::String(id), Yaml::String(attribute)] if attribute == "Arn" => {
                    Some(id.clone())
                }
                _ => None,
            },
            _ => None,
        }
    };
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => get_att(&tagged.value),
        Yaml::Mapping(mapping) if mapping.len() == 1 => {
            if let Some(id) = mapping.get("Ref") {
                id.as_str().map(str::to_owned)
            } else {
                mapping.get("Fn::GetAtt").and_then(get_att)
            }
        }
        _ => None,
    }
}

/// A function URL served on 127.0.0.1. Dropping it (or [`FunctionUrlServer::stop`]) stops
/// accepting connections; requests in flight finish.
pub struct FunctionUrlServer {
    function_logical_id: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FunctionUrlServer {
    /// Serves `function_logical_id`'s URL on a free loopback port, calling it through `host`.
    pub async fn start(
        function_logical_id: &str,
        host: Arc<dyn FunctionHost>,
    ) -> Result<FunctionUrlServer> {
        let listener = Self::bind(function_logical_id).await?;
        Self::serve_on(listener, function_logical_id, host)
    }

    /// A loopback listener for a function URL, so its address is known (and can be given to
    /// the template as `!GetAtt <Function>Url.FunctionUrl`) before the function is built.
    pub async fn bind(function_logical_id: &str) -> Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .with_context(|| format!("binding the function URL of {function_logical_id}"))
    }

    /// Serves `function_logical_id`'s URL on `listener`, calling it through `host`.
    pub fn serve_on(
        listener: tokio::net::TcpListener,
        function_logical_id: &str,
        host: Arc<dyn FunctionHost>,
    ) -> Result<FunctionUrlServer> {
        let addr = listener.local_addr()?;
        let endpoint = Arc::new(Endpoint {
            function: function_logical_id.to_owned(),
            url_id: url_id(function_logical_id),
            local_addr: addr,
            host,
        });
        let app = Router::new()
            .fallback(serve_request)
            .with_state(endpoint)
            .into_make_service_with_connect_info::<SocketAddr>();
        let function = function_logical_id.to_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(function, %error, "function URL server stopped");
            }
        });
        tracing::info!(function = function_logical_id, url = %format!("http://{addr}/"), "function URL serving");
        Ok(FunctionUrlServer {
            function_logical_id: function_logical_id.to_owned(),
            addr,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn function_logical_id(&self) -> &str {
        &self.function_logical_id
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FunctionUrlServer {
    fn drop(&mut self) {
        // Aborting the accept loop also drops the connections' shutdown watch, so idle
        // keep-alive connections close and requests in flight finish.
        self.task.abort();
    }
}

impl std::fmt::Debug for FunctionUrlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionUrlServer")
            .field("function_logical_id", &self.function_logical_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The URL id: 32 lowercase alphanumerics like AWS's, derived from the logical id so a function
/// keeps its id across restarts of the stack (an AWS URL id never changes either).
fn url_id(function_logical_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(function_logical_id.as_bytes()));
    digest[..32].to_owned()
}

struct Endpoint {
    function: String,
    url_id: String,
    local_addr: SocketAddr,
    host: Arc<dyn FunctionHost>,
}

async fn serve_request(
    State(endpoint): State<Arc<Endpoint>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(&request_id),
        Err(BodyError::Broken(error)) => {
            tracing::debug!(function = endpoint.function, %error, "request body unreadable");
            return error_response(StatusCode::BAD_REQUEST, "Bad Request", &request_id);
        }
    };
    let request = IncomingRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        version: parts.version,
        headers: &parts.headers,
        body: &body,
        source_ip: peer.ip(),
    };
    let url = UrlIdentity {
        url_id: &endpoint.url_id,
        local_addr: endpoint.local_addr,
    };
    let event = request_event(&url, &request, &request_id, OffsetDateTime::now_utc());
    if serde_json::to_vec(&event).map_or(true, |bytes| bytes.len() > PAYLOAD_LIMIT) {
        return too_large(&request_id);
    }

    // Its own task: a handler that panics is a failed invocation (502), as in Lambda, not a
    // dropped connection.
    let call = tokio::spawn(endpoint.host.call(&endpoint.function, event)).await;
    let answer = match call {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            // Computed outside the macro: its expansion brings tracing's own `Value` in scope.
            let error_type = error.get("errorType").and_then(Value::as_str);
            let error_message = error.get("errorMessage").and_then(Value::as_str);
            tracing::warn!(
                function = endpoint.function,
                request_id,
                error_type = error_type.unwrap_or_default(),
                error_message = error_message.unwrap_or_default(),
                "function URL invocation failed"
            );
            return bad_gateway(&request_id);
        }
        Err(join_error) => {
            tracing::error!(function = endpoint.function, request_id, error = %join_error, "function panicked");
            return bad_gateway(&request_id);
        }
    };
    match http_answer(answer) {
        Ok(answer) => {
            tracing::debug!(
                function = endpoint.function,
                request_id,
                method = request.method,
                path = request.raw_path,
                status = answer.status.as_u16(),
                "function URL request"
            );
            answer.into_response_with_id(&request_id)
        }
        Err(error) => {
            tracing::warn!(
                function = endpoint.function,
                request_id,
                error = format!("{error:#}"),
                "function answered a response a function URL cannot return"
            );
            bad_gateway(&request_id)
        }
    }
}

enum BodyError {
    TooLarge,
    Broken(axum::Error),
}

/// The whole body, at most [`PAYLOAD_LIMIT`] bytes.
async fn read_body(body: Body) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        seen = seen.saturating_add(chunk.len());
        if seen > OVERSIZED_DRAIN_LIMIT {
            return Err(BodyError::TooLarge);
        }
        if seen <= PAYLOAD_LIMIT {
            buffer.extend_from_slice(&chunk);
        }
    }
    if seen > PAYLOAD_LIMIT {
        return Err(BodyError::TooLarge);
    }
    Ok(Bytes::from(buffer))
}

/// What the event says about the URL itself.
struct UrlIdentity<'a> {
    url_id: &'a str,
    local_addr: SocketAddr,
}

/// One HTTP request, as received.
struct IncomingRequest<'a> {
    method: &'a str,
    raw_path: &'a str,
    raw_query: &'a str,
    version: Version,
    headers: &'a HeaderMap,
    body: &'a [u8],
    source_ip: IpAddr,
}

/// Connection-level headers the function URL's front end consumes: they describe the client's
/// connection to it, not the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The function URL request event (payload format 2.0) for `request`.
fn request_event(
    url: &UrlIdentity<'_>,
    request: &IncomingRequest<'_>,
    request_id: &str,
    now: OffsetDateTime,
) -> Value {
    let header_text = |value: &HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();

    // Payload 2.0 moves the Cookie header to `cookies` and joins repeated headers with commas.
    let mut headers = Map::new();
    for name in request.headers.keys() {
        if name == COOKIE || HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let joined = request
            .headers
            .get_all(name)
            .iter()
            .map(header_text)
            .collect::<Vec<_>>()
            .join(",");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    // What AWS's front end adds: the client's address and how it connected.
    let source_ip = request.source_ip.to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(Value::as_str) {
        Some(earlier) => format!("{earlier}, {source_ip}"),
        None => source_ip.clone(),
    };
    headers.insert("x-forwarded-for".into(), forwarded_for.into());
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert(
        "x-forwarded-port".into(),
        url.local_addr.port().to_string().into(),
    );
    headers
        .entry("x-amzn-trace-id")
        .or_insert_with(|| trace_id(now, request_id).into());

    let cookies: Vec<Value> = request
        .headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| {
            header_text(value)
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Value::String(c.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();

    let domain_name = request
        .headers
        .get(HOST)
        .map(header_text)
        .unwrap_or_else(|| url.local_addr.to_string());
    let user_agent = request
        .headers
        .get(USER_AGENT)
        .map(header_text)
        .unwrap_or_default();
    let protocol = match request.version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let time = now
        .format(format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    let time_epoch = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), "$default".into());
    event.insert("rawPath".into(), request.raw_path.into());
    event.insert("rawQueryString".into(), request.raw_query.into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    let parameters = query_string_parameters(request.raw_query);
    if !parameters.is_empty() {
        event.insert(
            "queryStringParameters".into(),
            serde_json::to_value(parameters).unwrap_or_default(),
        );
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": "anonymous",
            "apiId": url.url_id,
            "domainName": domain_name,
            "domainPrefix": url.url_id,
            "http": {
                "method": request.method,
                "path": request.raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time,
            "timeEpoch": time_epoch,
        }),
    );
    let is_base64_encoded = match request_body(request) {
        Some(RequestBody::Text(text)) => {
            event.insert("body".into(), text.into());
            false
        }
        Some(RequestBody::Binary(bytes)) => {
            event.insert("body".into(), BASE64.encode(bytes).into());
            true
        }
        None => false,
    };
    event.insert("isBase64Encoded".into(), is_base64_encoded.into());
    Value::Object(event)
}

enum RequestBody<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// The body as the event carries it: no body at all when empty (as AWS omits it), text for the
/// text media types, base64 for everything else.
fn request_body<'a>(request: &IncomingRequest<'a>) -> Option<RequestBody<'a>> {
    if request.body.is_empty() {
        return None;
    }
    let content_type = request
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match std::str::from_utf8(request.body) {
        Ok(text) if is_text_media_type(content_type) => Some(RequestBody::Text(text)),
        _ => Some(RequestBody::Binary(request.body)),
    }
}

/// Whether Lambda passes a request body of this content type as text. AWS documents only that
/// "binary" bodies are base64-encoded; what is observed (function URLs and HTTP APIs, payload
/// 2.0) is text for `text/*`, `application/json`, `application/xml` and `application/javascript`,
/// and base64 for everything else, including `application/x-www-form-urlencoded` (an HTML form's
/// POST) and a body with no content type.
fn is_text_media_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media_type.starts_with("text/")
        || matches!(
            media_type.as_str(),
            "application/json" | "application/xml" | "application/javascript"
        )
}

/// The decoded query parameters, repeated names joined with commas as payload 2.0 does.
fn query_string_parameters(raw_query: &str) -> BTreeMap<String, String> {
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode_query_component(name), decode_query_component(value));
        parameters
            .entry(name)
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    parameters
}

/// Percent-decoding with `+` as a space: how browsers encode a GET form's fields.
fn decode_query_component(component: &str) -> String {
    let spaced = component.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// An X-Ray trace header of the shape AWS adds (`Root=1-<epoch hex>-<24 hex>`).
fn trace_id(now: OffsetDateTime, request_id: &str) -> String {
    let unique: String = request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect();
    format!("Root=1-{:08x}-{unique}", now.unix_timestamp())
}

/// The HTTP response a function's answer maps to.
#[derive(Debug)]
struct HttpAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpAnswer {
    fn into_response_with_id(self, request_id: &str) -> Response {
        let mut response = (self.status, self.body).into_response();
        *response.headers_mut() = self.headers;
        set_request_id(&mut response, request_id);
        response
    }
}

/// Maps the function's answer the way Lambda does: an object with `statusCode` is a response
/// object; any other JSON value is a `200 application/json` response whose body is that value.
fn http_answer(answer: Value) -> Result<HttpAnswer> {
    let size = serde_json::to_vec(&answer).map(|bytes| bytes.len())?;
    if size > PAYLOAD_LIMIT {
        bail!("the answer is {size} bytes, over Lambda's {PAYLOAD_LIMIT}-byte payload limit");
    }
    let response = match answer {
        Value::Object(response) if response.contains_key("statusCode") => response,
        bare => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(HttpAnswer {
                status: StatusCode::OK,
                headers,
                body: Bytes::from(bare.to_string()),
            });
        }
    };

    let status = match &response["statusCode"] {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse::<u16>().ok(),
        _ => None,
    }
    .and_then(|code| StatusCode::from_u16(code).ok())
    .ok_or_else(|| {
        anyhow!(
            "statusCode {} is not an HTTP status",
            response["statusCode"]
        )
    })?;

    let mut headers = HeaderMap::new();
    if let Some(single) = response.get("headers").filter(|h| !h.is_null()) {
        let single = single
            .as_object()
            .ok_or_else(|| anyhow!("headers must be an object"))?;
        for (name, value) in single {
            if let Some(value) = header_value_text(value) {
                headers.append(header_name(name)?, header_value(name, &value)?);
            }
        }
    }
    if let Some(multi) = response.get("multiValueHeaders").filter(|h| !h.is_null()) {
        let multi = multi
            .as_object()
            .ok_or_else(|| anyhow!("multiValueHeaders must be an object"))?;
        for (name, values) in multi {
            let values = values
                .as_array()
                .ok_or_else(|| anyhow!("multiValueHeaders.{name} must be an array"))?;
            for value in values.iter().filter_map(header_value_text) {
                headers.append(header_name(name)?, header_value(name, &value)?);
            }
        }
    }
    // Lambda turns `cookies` into one Set-Cookie header each.
    if let Some(cookies) = response.get("cookies").filter(|c| !c.is_null()) {
        let cookies = cookies
            .as_array()
            .ok_or_else(|| anyhow!("cookies must be an array"))?;
        for cookie in cookies {
            let cookie = cookie
                .as_str()
                .ok_or_else(|| anyhow!("each cookie must be a string"))?;
            headers.append(SET_COOKIE, header_value("set-cookie", cookie)?);
        }
    }

    let is_base64_encoded = response
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match response.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if is_base64_encoded => Bytes::from(
            BASE64
                .decode(text.trim())
                .context("isBase64Encoded is true but body is not base64")?,
        ),
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

/// A header value as text: strings as they are, numbers and booleans written out, null skipped.
fn header_value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn header_name(name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .with_context(|| format!("{name:?} is not a header name"))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).with_context(|| format!("header {name} has an invalid value"))
}

fn set_request_id(response: &mut Response, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
}

/// The small JSON error bodies a function URL answers with.
fn error_response(status: StatusCode, message: &str, request_id: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "Message": message }))).into_response();
    set_request_id(&mut response, request_id);
    response
}

fn bad_gateway(request_id: &str) -> Response {
    error_response(StatusCode::BAD_GATEWAY, "Internal Server Error", request_id)
}

fn too_large(request_id: &str) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "Request must be smaller than {PAYLOAD_LIMIT} bytes for the InvokeFunction operation"
        ),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  ApprovalPageFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: bootstrap
      FunctionUrlConfig:
        AuthType: NONE
  IntakeFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: bootstrap
  WebhookFunction:
    Type: AWS::Lambda::Function
    Properties:
      Handler: bootstrap
  WebhookUrl:
    Type: AWS::Lambda::Url
    Properties:
      AuthType: NONE
      TargetFunctionArn: !GetAtt WebhookFunction.Arn
  StatusFunction:
    Type: AWS::Serverless::Function
  StatusLive:
    Type: AWS::Lambda::Alias
    Properties:
      FunctionName: !Ref StatusFunction
      Name: live
  StatusUrl:
    Type: AWS::Lambda::Url
    Properties:
      AuthType: NONE
      TargetFunctionArn: !Ref StatusLive
  LongFormUrl:
    Type: AWS::Lambda::Url
    Properties:
      AuthType: NONE
      TargetFunctionArn:
        Fn::GetAtt: [ApprovalPageFunction, Arn]
"#;

    #[test]
    fn functions_with_urls_are_found_in_both_forms() {
        let ids = url_functions(TEMPLATE).unwrap();
        assert_eq!(
            ids,
            ["ApprovalPageFunction", "StatusFunction", "WebhookFunction"]
        );
    }

    #[test]
    fn the_projects_template_is_read() {
        let template = include_str!("../../template.yaml");
        url_functions(template).expect("template.yaml's function URLs");
    }

    #[test]
    fn a_template_without_urls_has_none() {
        let ids = url_functions("Resources:\n  F:\n    Type: AWS::Serverless::Function\n").unwrap();
        assert!(ids.is_empty());
    }

    #[test]
    fn a_url_on_a_function_outside_the_template_is_an_error() {
        let template = "Resources:\n  U:\n    Type: AWS::Lambda::Url\n    Properties:\n      TargetFunctionArn: arn:aws:lambda:eu-west-1:111111111111:function:elsewhere\n";
        let error = url_functions(template).unwrap_err().to_string();
        assert!(error.contains("Resources.U"), "{error}");
        let dangling = "Resources:\n  U:\n    Type: AWS::Lambda::Url\n    Properties:\n      TargetFunctionArn: !GetAtt Missing.Arn\n";
        assert!(url_functions(dangling).is_err());
    }

    #[test]
    fn text_media_types_are_the_observed_ones() {
        for text in [
            "text/html",
            "text/plain; charset=utf-8",
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/xml",
            "application/javascript",
        ] {
            assert!(is_text_media_type(Some(text)), "{text}");
        }
        for binary in [
            "application/x-www-form-urlencoded",
            "application/octet-stream",
            "image/png",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!is_text_media_type(Some(binary)), "{binary}");
        }
        assert!(!is_text_media_type(None));
    }

    #[test]
    fn repeated_query_parameters_are_comma_joined_and_decoded() {
        let parameters = query_string_parameters("a=1&a=2&b=x%20y+z&flag&&c=%E2%9C%93");
        assert_eq!(parameters["a"], "1,2");
        assert_eq!(parameters["b"], "x y z");
        assert_eq!(parameters["flag"], "");
        assert_eq!(parameters["c"], "✓");
    }

    fn event_for(headers: &[(&str, &str)], query: &str, body: &[u8]) -> Value {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let request = IncomingRequest {
            method: "POST",
            raw_path: "/approve/abc",
            raw_query: query,
            version: Version::HTTP_11,
            headers: &map,
            body,
            source_ip: "127.0.0.1".parse().unwrap(),
        };
        let url = UrlIdentity {
            url_id: "0123456789abcdef0123456789abcdef",
            local_addr: "127.0.0.1:4321".parse().unwrap(),
        };
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_795_687_200_123_000_000).unwrap();
        request_event(&url, &request, "req-1", now)
    }

    #[test]
    fn the_event_has_the_payload_2_0_shape() {
        let event = event_for(
            &[
                ("host", "127.0.0.1:4321"),
                ("user-agent", "test-agent"),
                ("accept", "text/html"),
                ("accept", "application/json"),
                ("cookie", "session=1; theme=dark"),
                ("connection", "keep-alive"),
                ("content-type", "application/json"),
            ],
            "x=1&x=2",
            br#"{"ok":true}"#,
        );
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/approve/abc");
        assert_eq!(event["rawQueryString"], "x=1&x=2");
        assert_eq!(event["queryStringParameters"], json!({"x": "1,2"}));
        assert_eq!(event["cookies"], json!(["session=1", "theme=dark"]));
        assert_eq!(event["headers"]["accept"], "text/html,application/json");
        assert!(event["headers"].get("cookie").is_none());
        assert!(event["headers"].get("connection").is_none());
        assert_eq!(event["headers"]["x-forwarded-port"], "4321");
        assert_eq!(event["body"], r#"{"ok":true}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let context = &event["requestContext"];
        assert_eq!(context["accountId"], "anonymous");
        assert_eq!(context["apiId"], "0123456789abcdef0123456789abcdef");
        assert_eq!(context["domainName"], "127.0.0.1:4321");
        assert_eq!(context["http"]["method"], "POST");
        assert_eq!(context["http"]["path"], "/approve/abc");
        assert_eq!(context["http"]["protocol"], "HTTP/1.1");
        assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(context["http"]["userAgent"], "test-agent");
        assert_eq!(context["requestId"], "req-1");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["time"], "26/Nov/2026:10:00:00 +0000");
        assert_eq!(context["timeEpoch"], 1_795_687_200_123_i64);
    }

    #[test]
    fn a_get_without_body_or_query_omits_them() {
        let event = event_for(&[], "", b"");
        assert!(event.get("body").is_none());
        assert!(event.get("cookies").is_none());
        assert!(event.get("queryStringParameters").is_none());
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["requestContext"]["domainName"], "127.0.0.1:4321");
    }

    #[test]
    fn form_and_binary_bodies_are_base64() {
        let form = event_for(
            &[("content-type", "application/x-www-form-urlencoded")],
            "",
            b"decision=approve",
        );
        assert_eq!(form["isBase64Encoded"], true);
        assert_eq!(form["body"], BASE64.encode("decision=approve"));
        // Text content type but not UTF-8: base64 is the only faithful JSON string.
        let latin1 = event_for(&[("content-type", "text/plain")], "", &[0xe9, 0x74, 0xe9]);
        assert_eq!(latin1["isBase64Encoded"], true);
    }

    #[test]
    fn a_response_object_maps_status_headers_cookies_and_body() {
        let answer = http_answer(json!({
            "statusCode": 303,
            "headers": {"Location": "/done", "X-Count": 3},
            "multiValueHeaders": {"vary": ["accept", "cookie"]},
            "cookies": ["a=1; HttpOnly", "b=2"],
            "body": "",
        }))
        .unwrap();
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        assert_eq!(answer.headers["location"], "/done");
        assert_eq!(answer.headers["x-count"], "3");
        assert_eq!(answer.headers.get_all("vary").iter().count(), 2);
        let cookies: Vec<_> = answer.headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; HttpOnly", "b=2"]);
        assert!(answer.body.is_empty());
    }

    #[test]
    fn a_base64_body_is_decoded() {
        let answer = http_answer(json!({
            "statusCode": "200",
            "body": BASE64.encode([0u8, 159, 146, 150]),
            "isBase64Encoded": true,
        }))
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], &[0u8, 159, 146, 150]);
    }

    #[test]
    fn a_bare_value_is_a_json_200() {
        let answer = http_answer(json!("Hello, world!")).unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[CONTENT_TYPE], "application/json");
        assert_eq!(&answer.body[..], br#""Hello, world!""#);
        // An object without statusCode is a value too, not a response object.
        let answer = http_answer(json!({"body": "x"})).unwrap();
        assert_eq!(&answer.body[..], br#"{"body":"x"}"#);
    }

    #[test]
    fn malformed_response_objects_are_rejected() {
        for bad in [
            json!({"statusCode": 1000}),
            json!({"statusCode": "abc"}),
            json!({"statusCode": 200, "headers": ["x"]}),
            json!({"statusCode": 200, "headers": {"bad name": "x"}}),
            json!({"statusCode": 200, "headers": {"x": "line\nbreak"}}),
            json!({"statusCode": 200, "cookies": [1]}),
            json!({"statusCode": 200, "body": "%%%", "isBase64Encoded": true}),
        ] {
            assert!(http_answer(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_ids_look_like_aws_and_are_stable() {
        let id = url_id("ApprovalPageFunction");
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(id, url_id("ApprovalPageFunction"));
        assert_ne!(id, url_id("OtherFunction"));
    }
}
