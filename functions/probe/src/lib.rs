//! The test probe: a Lambda function in each environment account's VPC (`environment.yaml`,
//! `shipgate-test-probe`) that makes one HTTP request to that environment's test endpoint for the
//! checks function, which invokes it through the environment's `shipgate-checks` role.
//!
//! The event is a [`ProbeRequest`]; the answer an [`Attempt`] (`{"outcome": "answered",
//! "status", "body"}`, `{"outcome": "timedOut"}` or `{"outcome": "unreachable", "error"}`).
//! The probe decides nothing about a check: retries, expectations and messages stay with the
//! checks function. It refuses, as a function error, a request that is not one
//! (`InvalidProbeRequest`) and a request for any origin other than its environment's test
//! endpoint (`ForeignOrigin`): the endpoint comes from a release's stack output, and the probe
//! must not become a way into whatever else its VPC reaches. Redirects are followed only to
//! the same origin.
//!
//! Configuration: `SHIPGATE_PROBE_ENDPOINT`, the environment's test endpoint (the
//! `TestEndpoint` export of `environment.yaml`); only its origin (scheme, host, port) counts.

use serde_json::Value;
use shipgate::config::{ConfigError, Env};
use shipgate::http_client::HttpClientOnFirstUse;
use shipgate::lambda::SdkConfig;
use shipgate::probe::{Attempt, ProbeRequest, attempt, client_builder, origin};
use tracing::info;

/// The user agent of the probe's requests.
pub const USER_AGENT: &str = concat!("shipgate-probe/", env!("CARGO_PKG_VERSION"));

/// The probe's configuration.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The origin (`http://internal-alb-123.eu-west-1.elb.amazonaws.com:9000`) of
    /// `SHIPGATE_PROBE_ENDPOINT`.
    pub origin: String,
}

impl ProbeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const NAME: &str = "SHIPGATE_PROBE_ENDPOINT";
        let value = env.required(NAME)?;
        let origin = origin(&value)
            .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
            .ok_or_else(|| ConfigError::Invalid {
                name: NAME.into(),
                value: value.clone(),
                reason: "expected the test endpoint's http or https URL".into(),
            })?;
        Ok(Self { origin })
    }
}

/// Why the probe made no request.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the event is not a probe request: {0}")]
    InvalidRequest(String),
    #[error(
        "this probe requests only its environment's test endpoint ({allowed}), not {requested}"
    )]
    ForeignOrigin { allowed: String, requested: String },
    #[error("the HTTP client could not be built: {0}")]
    Client(#[source] reqwest::Error),
}

impl ProbeError {
    pub fn error_type(&self) -> &'static str {
        match self {
            ProbeError::InvalidRequest(_) => "InvalidProbeRequest",
            ProbeError::ForeignOrigin { .. } => "ForeignOrigin",
            ProbeError::Client(_) => "HttpClientError",
        }
    }
}

/// The probe, built once per process.
#[derive(Debug, Clone)]
pub struct Probe {
    pub config: ProbeConfig,
    pub http: HttpClientOnFirstUse,
}

impl Probe {
    /// Nothing is built until the first request (the TLS set-up is most of an init).
    pub fn new(config: ProbeConfig, _sdk: &SdkConfig) -> Self {
        Self {
            config,
            http: HttpClientOnFirstUse::new(probe_http_client),
        }
    }

    /// One request, if it is for this environment's test endpoint.
    pub async fn handle(&self, event: Value) -> Result<Attempt, ProbeError> {
        let request: ProbeRequest =
            serde_json::from_value(event).map_err(|e| ProbeError::InvalidRequest(e.to_string()))?;
        let requested = origin(&request.url).unwrap_or_else(|| request.url.clone());
        if requested != self.config.origin {
            return Err(ProbeError::ForeignOrigin {
                allowed: self.config.origin.clone(),
                requested,
            });
        }
        let http = self.http.get().map_err(ProbeError::Client)?;
        let answer = attempt(&http, &request).await.fitted();
        info!(method = %request.method, url = %request.url, outcome = ?outcome(&answer), "probed");
        Ok(answer)
    }
}

fn probe_http_client() -> reqwest::ClientBuilder {
    client_builder(USER_AGENT)
}

fn outcome(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Answered { status, .. } => format!("status {status}"),
        Attempt::TimedOut => "timed out".into(),
        Attempt::Unreachable { .. } => "unreachable".into(),
    }
}

shipgate::event_function!(
    Probe,
    ProbeConfig,
    Attempt,
    ProbeError,
    |probe, event, _request_id| probe.handle(event)
);

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::Redirect;
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route(
                "/health",
                get(|headers: HeaderMap| async move {
                    let agent = headers
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    (StatusCode::OK, agent)
                }),
            )
            .route(
                "/away",
                get(|| async { Redirect::temporary("http://169.254.169.254/latest") }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn probe(endpoint: &str) -> Probe {
        let env = Env::from_pairs([("SHIPGATE_PROBE_ENDPOINT", endpoint)]);
        let sdk = SdkConfig::builder().build();
        Probe::new(ProbeConfig::from_env(&env).unwrap(), &sdk)
    }

    fn request(url: String) -> Value {
        json!({"method": "GET", "url": url, "timeoutMs": 2000})
    }

    #[tokio::test]
    async fn answers_for_its_own_endpoint_and_refuses_any_other() {
        let addr = serve().await;
        let probe = probe(&format!("http://{addr}/"));
        let answer = probe
            .handle(request(format!("http://{addr}/health")))
            .await
            .unwrap();
        assert_eq!(
            answer,
            Attempt::Answered {
                status: 200,
                body: USER_AGENT.into()
            }
        );
        // Redirects leave the origin only as an answer, never as a request.
        let away = probe
            .handle(request(format!("http://{addr}/away")))
            .await
            .unwrap();
        assert!(
            matches!(away, Attempt::Answered { status: 307, .. }),
            "{away:?}"
        );
        for foreign in [
            "http://169.254.169.254/latest/meta-data".to_owned(),
            format!("https://{addr}/health"),
            format!("http://localhost:{}/health", addr.port()),
        ] {
            let refused = probe.handle(request(foreign.clone())).await.unwrap_err();
            assert_eq!(refused.error_type(), "ForeignOrigin", "{foreign}");
            assert!(
                refused.to_string().contains(&probe.config.origin),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn a_malformed_request_is_refused_and_an_absent_endpoint_is_an_answer() {
        let probe = probe("http://127.0.0.1:9/");
        let bad = probe.handle(json!({"url": "http://127.0.0.1:9/"})).await;
        assert_eq!(bad.unwrap_err().error_type(), "InvalidProbeRequest");
        let closed = probe
            .handle(request("http://127.0.0.1:9/health".into()))
            .await
            .unwrap();
        assert!(matches!(closed, Attempt::Unreachable { .. }), "{closed:?}");
    }

    #[test]
    fn the_endpoint_is_required_and_must_be_http() {
        for env in [
            Env::default(),
            Env::from_pairs([("SHIPGATE_PROBE_ENDPOINT", "ftp://alb:21")]),
            Env::from_pairs([("SHIPGATE_PROBE_ENDPOINT", "alb:9000")]),
        ] {
            let refused = ProbeConfig::from_env(&env).unwrap_err().to_string();
            assert!(refused.contains("SHIPGATE_PROBE_ENDPOINT"), "{refused}");
        }
        let config = ProbeConfig::from_env(&Env::from_pairs([(
            "SHIPGATE_PROBE_ENDPOINT",
            "http://Internal-ALB.example:9000",
        )]))
        .unwrap();
        assert_eq!(config.origin, "http://internal-alb.example:9000");
    }
}
