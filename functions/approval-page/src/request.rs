//! Reading a function URL event into the request the page answers (pure).
//!
//! Lambda delivers whatever the browser (or anything else) sent: a raw query string with `"`,
//! `<` or `>` in it, a method that is no HTTP token, a body marked base64 that is not. An
//! adapter that builds a URI from the raw query or decodes the body with `expect` panics on
//! those before the page's code runs, and the caller gets Lambda's error instead of a page. Here
//! every step that can fail returns a [`RequestError`], which the page answers with a 400 page.
//! The query is read from `rawQueryString` into the request's query parameters and never parsed
//! as part of a URI.
//!
//! A function URL's event is payload format 2.0, API Gateway's HTTP API shape, which
//! `lambda_http` reads as [`ApiGatewayV2httpRequest`]; so does the page (the method must be an
//! HTTP token for it to read).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::Uri;
use lambda_http::{Body, Request, RequestExt};
use serde::Deserialize;

/// Why an event could not be read as a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the event is not a function URL request: {0}")]
    NotAFunctionUrlEvent(#[source] serde_json::Error),
    #[error("the request's body is marked base64 but is not base64")]
    Base64Body,
}

/// A function URL event (payload format 2.0) → the request, or why it cannot be one.
pub fn read_function_url_event(event: &serde_json::Value) -> Result<Request, RequestError> {
    let event =
        ApiGatewayV2httpRequest::deserialize(event).map_err(RequestError::NotAFunctionUrlEvent)?;
    let method = event.request_context.http.method;
    let body = match event.body {
        None => Body::Empty,
        Some(body) if event.is_base64_encoded => Body::Binary(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| RequestError::Base64Body)?,
        ),
        Some(body) => Body::Text(body),
    };
    // The page answers one path; a path that is no valid URI path is still that page.
    let uri = event
        .raw_path
        .as_deref()
        .and_then(|p| p.parse::<Uri>().ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    // Reading a query as a form cannot fail (`QueryMap`'s parse error is `Infallible`).
    let Ok(query) = event
        .raw_query_string
        .as_deref()
        .unwrap_or_default()
        .parse::<QueryMap>();
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = event.headers;
    Ok(request.with_query_string_parameters(query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::Method;
    use serde_json::json;

    /// AWS's function URL request sample (Lambda developer guide, "Request payload format").
    fn sample() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/function-url-request.json"))
            .expect("the fixture is JSON")
    }

    #[test]
    fn aws_sample_reads_with_its_query_headers_and_body() {
        let request = read_function_url_event(&sample()).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.query_string_parameters().first("parameter1"),
            Some("value1")
        );
        assert_eq!(
            request
                .headers()
                .get("header1")
                .and_then(|v| v.to_str().ok()),
            Some("value1")
        );
        assert_eq!(request.body().as_ref(), b"Hello from client!");
    }

    #[test]
    fn raw_characters_in_the_query_are_read_not_refused() {
        let mut event = sample();
        event["rawQueryString"] = json!("t=a\"<b>&i=approve");
        let request = read_function_url_event(&event).unwrap();
        let query = request.query_string_parameters();
        assert_eq!(query.first("t"), Some("a\"<b>"));
        assert_eq!(query.first("i"), Some("approve"));
    }

    #[test]
    fn what_cannot_be_a_request_says_why() {
        let mut event = sample();
        event["isBase64Encoded"] = json!(true);
        event["body"] = json!("not base64!");
        assert!(matches!(
            read_function_url_event(&event),
            Err(RequestError::Base64Body)
        ));
        let mut event = sample();
        event["requestContext"]["http"]["method"] = json!("GE T");
        assert!(matches!(
            read_function_url_event(&event),
            Err(RequestError::NotAFunctionUrlEvent(_))
        ));
        assert!(matches!(
            read_function_url_event(&json!("GET /")),
            Err(RequestError::NotAFunctionUrlEvent(_))
        ));
    }
}
