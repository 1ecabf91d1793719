//! Function URLs on the local stack: real HTTP requests, as a browser sends them, reach a function
//! as AWS's function URL event (checked against `aws_lambda_events`' type), and the function's
//! answer reaches the browser as Lambda maps it. The functions here are test handlers behind a
//! `FunctionHost`; no moto is needed.

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use shipgate_local::function_urls::{FunctionUrlServer, PAYLOAD_LIMIT};
use shipgate_local::functions::FunctionHost;

/// A few PNG-signature bytes: not UTF-8, so only base64 carries them intact.
const IMAGE: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe,
];

/// Test functions, by logical id.
struct TestFunctions;

impl FunctionHost for TestFunctions {
    fn call(
        &self,
        function_logical_id: &str,
        event: Value,
    ) -> BoxFuture<'static, Result<Value, Value>> {
        let answer = match function_logical_id {
            // The event it got, as the body of a response object.
            "EchoFunction" => Ok(json!({
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": event.to_string(),
                "isBase64Encoded": false,
            })),
            // No statusCode: Lambda reads the whole answer as a JSON body.
            "BareValueFunction" => Ok(json!({
                "message": "hello",
                "bodyLength": event["body"].as_str().map_or(0, str::len),
            })),
            // What the approval page does after a decision: set cookies, see other.
            "DecisionFunction" => Ok(json!({
                "statusCode": 303,
                "headers": {"location": "/decided?id=42", "cache-control": "no-store"},
                "cookies": ["decided=42; Path=/; HttpOnly; SameSite=Strict", "theme=dark"],
                "body": "",
                "isBase64Encoded": false,
            })),
            "ImageFunction" => Ok(json!({
                "statusCode": 200,
                "headers": {"content-type": "image/png"},
                "body": BASE64.encode(IMAGE),
                "isBase64Encoded": true,
            })),
            "FailingFunction" => Err(json!({
                "errorType": "ApprovalError",
                "errorMessage": "the signing key is unavailable",
            })),
            other => Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("no test function {other}"),
            })),
        };
        Box::pin(async move { answer })
    }
}

async fn serve(function_logical_id: &str) -> Result<FunctionUrlServer> {
    if std::env::var_os("TEST_LOG").is_some() {
        shipgate::telemetry::init();
    }
    FunctionUrlServer::start(function_logical_id, Arc::new(TestFunctions)).await
}

/// A browser-like client that shows redirects instead of following them.
fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("shipgate-tests/1.0 (like Chromium)")
        .build()?)
}

/// Sends `request` to the echo function and reads back the event it received, both as raw JSON
/// and as `aws_lambda_events`' type.
async fn echoed_event(
    request: reqwest::RequestBuilder,
) -> Result<(Value, LambdaFunctionUrlRequest)> {
    let response = request.send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let raw: Value = serde_json::from_str(&response.text().await?).context("echo body")?;
    let typed = serde_json::from_value(raw.clone()).context("not a LambdaFunctionUrlRequest")?;
    Ok((raw, typed))
}

#[tokio::test]
async fn a_browser_get_reaches_the_function_as_a_function_url_event() -> Result<()> {
    let server = serve("EchoFunction").await?;
    let started = i64::try_from(std::time::UNIX_EPOCH.elapsed()?.as_millis())?;
    let request = browser()?
        .get(format!(
            "{}approvals/abc%20d?token=t%2B1&stage=prod&stage=int&empty",
            server.url()
        ))
        .header(COOKIE, "session=s1; theme=dark")
        .header("x-approver", "alice")
        .header("x-approver", "bob");
    let (raw, event) = echoed_event(request).await?;

    assert_eq!(event.version.as_deref(), Some("2.0"));
    assert_eq!(event.raw_path.as_deref(), Some("/approvals/abc%20d"));
    assert_eq!(
        event.raw_query_string.as_deref(),
        Some("token=t%2B1&stage=prod&stage=int&empty")
    );
    assert_eq!(event.query_string_parameters["token"], "t+1");
    assert_eq!(event.query_string_parameters["stage"], "prod,int");
    assert_eq!(event.query_string_parameters["empty"], "");
    assert_eq!(
        event.cookies,
        Some(vec!["session=s1".to_owned(), "theme=dark".to_owned()])
    );
    assert_eq!(event.headers["x-approver"], "alice,bob");
    assert_eq!(
        event.headers["user-agent"],
        "shipgate-tests/1.0 (like Chromium)"
    );
    assert!(
        event.headers.get("cookie").is_none(),
        "cookies move to `cookies`"
    );
    assert_eq!(event.body, None);
    assert!(!event.is_base64_encoded);

    let context = &event.request_context;
    assert_eq!(context.account_id.as_deref(), Some("anonymous"));
    assert_eq!(
        context.domain_name.as_deref(),
        Some(format!("127.0.0.1:{}", server.port()).as_str())
    );
    let api_id = context.apiid.as_deref().context("apiId")?;
    assert_eq!(api_id.len(), 32);
    assert_eq!(context.domain_prefix.as_deref(), Some(api_id));
    assert_eq!(context.http.method.as_deref(), Some("GET"));
    assert_eq!(context.http.path.as_deref(), Some("/approvals/abc%20d"));
    assert_eq!(context.http.protocol.as_deref(), Some("HTTP/1.1"));
    assert_eq!(context.http.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        context.http.user_agent.as_deref(),
        Some("shipgate-tests/1.0 (like Chromium)")
    );
    uuid::Uuid::parse_str(context.request_id.as_deref().context("requestId")?)?;
    assert!(context.time_epoch >= started && context.time_epoch < started + 60_000);
    let time = context.time.as_deref().context("time")?;
    assert!(time.ends_with(" +0000") && time.len() == 26, "{time}");

    // What the typed struct does not carry: the placeholders payload 2.0 always has.
    assert_eq!(raw["routeKey"], "$default");
    assert_eq!(raw["requestContext"]["routeKey"], "$default");
    assert_eq!(raw["requestContext"]["stage"], "$default");
    Ok(())
}

#[tokio::test]
async fn an_html_form_post_arrives_base64_encoded_as_in_aws() -> Result<()> {
    let server = serve("EchoFunction").await?;
    let form = "decision=approve&comment=looks+good%21";
    let request = browser()?
        .post(format!("{}decide", server.url()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form);
    let (_, event) = echoed_event(request).await?;

    assert_eq!(event.request_context.http.method.as_deref(), Some("POST"));
    assert_eq!(event.raw_path.as_deref(), Some("/decide"));
    assert_eq!(
        event.headers[CONTENT_TYPE.as_str()],
        "application/x-www-form-urlencoded"
    );
    assert!(event.is_base64_encoded);
    let body = BASE64.decode(event.body.context("body")?)?;
    assert_eq!(body, form.as_bytes());
    Ok(())
}

#[tokio::test]
async fn a_json_post_arrives_as_text() -> Result<()> {
    let server = serve("EchoFunction").await?;
    let request = browser()?
        .post(server.url())
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"decision":"reject","reason":"not now"}"#);
    let (_, event) = echoed_event(request).await?;

    assert!(!event.is_base64_encoded);
    assert_eq!(
        event.body.as_deref(),
        Some(r#"{"decision":"reject","reason":"not now"}"#)
    );
    Ok(())
}

#[tokio::test]
async fn a_binary_post_arrives_base64_encoded() -> Result<()> {
    let server = serve("EchoFunction").await?;
    let request = browser()?
        .post(format!("{}upload", server.url()))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(IMAGE.to_vec());
    let (_, event) = echoed_event(request).await?;

    assert!(event.is_base64_encoded);
    assert_eq!(BASE64.decode(event.body.context("body")?)?, IMAGE);
    assert_eq!(
        event.headers["content-length"],
        IMAGE.len().to_string().as_str()
    );
    Ok(())
}

#[tokio::test]
async fn cookies_and_a_redirect_reach_the_browser() -> Result<()> {
    let server = serve("DecisionFunction").await?;
    let response = browser()?
        .post(format!("{}decide", server.url()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("decision=approve")
        .send()
        .await?;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/decided?id=42");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookies: Vec<&str> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()?;
    assert_eq!(
        cookies,
        [
            "decided=42; Path=/; HttpOnly; SameSite=Strict",
            "theme=dark"
        ]
    );
    assert!(response.headers().contains_key("x-amzn-requestid"));
    assert!(response.bytes().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_base64_body_is_decoded_for_the_browser() -> Result<()> {
    let server = serve("ImageFunction").await?;
    let response = browser()?.get(server.url()).send().await?;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(&response.bytes().await?[..], IMAGE);
    Ok(())
}

#[tokio::test]
async fn a_bare_json_value_answers_200_json() -> Result<()> {
    let server = serve("BareValueFunction").await?;
    let response = browser()?.get(server.url()).send().await?;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body: Value = response.json().await?;
    assert_eq!(body, json!({"message": "hello", "bodyLength": 0}));
    Ok(())
}

#[tokio::test]
async fn a_function_error_answers_502() -> Result<()> {
    let server = serve("FailingFunction").await?;
    let response = browser()?.get(server.url()).send().await?;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await?;
    assert_eq!(body, json!({"Message": "Internal Server Error"}));
    Ok(())
}

#[tokio::test]
async fn a_body_over_lambdas_payload_limit_answers_413() -> Result<()> {
    let server = serve("BareValueFunction").await?;
    let client = browser()?;

    let oversized = vec![b'a'; PAYLOAD_LIMIT + 1];
    let response = client
        .post(server.url())
        .header(CONTENT_TYPE, "text/plain")
        .body(oversized)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The limit is on the event: base64 makes a 5 MiB binary body too large, as in AWS.
    let binary = vec![0u8; 5 * 1024 * 1024];
    let response = client
        .post(server.url())
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(binary)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Just under the limit, as text, still reaches the function.
    let under = PAYLOAD_LIMIT - 64 * 1024;
    let response = client
        .post(server.url())
        .header(CONTENT_TYPE, "text/plain")
        .body(vec![b'a'; under])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(body["bodyLength"], under);
    Ok(())
}

#[tokio::test]
async fn a_stopped_url_refuses_connections() -> Result<()> {
    let server = serve("BareValueFunction").await?;
    let url = server.url();
    let client = browser()?;
    assert_eq!(client.get(&url).send().await?.status(), StatusCode::OK);

    server.stop().await;
    // A fresh client: the old one's pooled connection is closed by the server's shutdown.
    let refused = browser()?.get(&url).send().await;
    assert!(refused.is_err(), "{refused:?}");
    Ok(())
}
