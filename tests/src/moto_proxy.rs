//! A loopback proxy in front of moto's query-protocol API (CloudFormation), for the tests'
//! stand-ins that answer as AWS documents where moto does not: every request reaches the
//! stand-in's `answer`, which forwards it to moto as it is, asks moto something else with the
//! caller's credentials, or answers itself.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Result;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;

type Answer = Arc<dyn Fn(QueryRequest) -> BoxFuture<'static, Result<Response>> + Send + Sync>;

/// The proxy, served until dropped.
pub struct MotoProxy {
    /// The endpoint to give the SDK (`AWS_ENDPOINT_URL_CLOUDFORMATION`).
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl MotoProxy {
    /// Serves `answer` on a free loopback port, in front of moto at `moto`.
    pub async fn start<F, Fut>(moto: &str, answer: F) -> Result<Self>
    where
        F: Fn(QueryRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        let answer: Answer = Arc::new(move |request| Box::pin(answer(request)));
        let moto = moto.to_owned();
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (answer, moto, http) = (answer.clone(), moto.clone(), http.clone());
            async move {
                let result = async {
                    let (parts, body) = request.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX).await?;
                    answer(QueryRequest {
                        form: form_fields(&body),
                        headers: parts.headers,
                        body,
                        moto,
                        http,
                    })
                    .await
                }
                .await;
                result.unwrap_or_else(|e| xml(500, format!("stand-in error: {e:#}")))
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, task })
    }
}

impl Drop for MotoProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One query-protocol request (`Action=…&…`, form-encoded) on its way to moto.
pub struct QueryRequest {
    headers: HeaderMap,
    body: Bytes,
    form: HashMap<String, String>,
    moto: String,
    http: reqwest::Client,
}

impl QueryRequest {
    /// A field of the request (empty when absent): `Action`, `StackName`, …
    pub fn field(&self, name: &str) -> String {
        self.form.get(name).cloned().unwrap_or_default()
    }

    /// Every field of the request.
    pub fn fields(&self) -> &HashMap<String, String> {
        &self.form
    }

    /// Sends the request to moto as it is: moto's status and body.
    pub async fn forward(&self) -> Result<(u16, String)> {
        self.ask(self.body.clone()).await
    }

    /// Sends another request (`body`) to moto with this one's headers: moto finds the account
    /// from the credentials in `Authorization`.
    pub async fn ask(&self, body: impl Into<Bytes>) -> Result<(u16, String)> {
        let mut request = self.http.post(&self.moto).body(body.into());
        for (name, value) in &self.headers {
            if name != "host" && name != "content-length" {
                request = request.header(name.as_str(), value.as_bytes());
            }
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Forwards the request and hands moto's answer back unchanged.
    pub async fn pass(&self) -> Result<Response> {
        let (status, reply) = self.forward().await?;
        Ok(xml(status, reply))
    }
}

/// An XML answer, as the query protocol sends them.
pub fn xml(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// The text between the first `start` and the `end` after it.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// `text` escaped for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
