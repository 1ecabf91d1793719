//! The new version behind each environment's ALB test listener (:9000), as the release's checks
//! reach it.
//!
//! moto creates load balancers, listeners and ECS services but runs no task and serves no
//! request, so the checks action would have nothing to call. The local stack serves the sample
//! application (`examples/orders`) here, one server per environment account, and deploys
//! `environment.yaml` with its `TestEndpointUrl` parameter set to that server: the stack's
//! `TestEndpoint` export, which the applications' stacks output as `ShipgateTestEndpoint` and the
//! deploy action passes to the checks action, then names it. In AWS the parameter stays empty
//! and the export is the ALB's own DNS name on :9000 (or a private DNS name in front of it).
//!
//! The sample application answers `GET /health` (`{"status":"ok"}`) and `GET /orders`
//! (`{"orders":[...]}`, `limit` honoured), which is what `examples/orders/checks.json` checks.
//! In AWS the test listener is internal and its security group admits the environment's test
//! probe only (`environment.yaml`); the checks function, outside any VPC, cannot reach it. The
//! local stack routes no packets, so the stand-in tells the probe's requests by their user
//! agent (`shipgate-probe/…`, which `shipgate_probe` sets) and answers any other request with
//! `403` and why: checks made from outside the environment fail here as they would in AWS
//! (where they would time out).
//!
//! To show a failing check stopping a release, an operator (`shipgate-local app-health`) or a
//! test makes `/health` answer another status with `PUT /_stand-in/health` (body: the status).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tokio::task::JoinHandle;

use crate::accounts;

/// The path that changes `/health`'s status (the stand-in's own, not the application's).
pub const HEALTH_CONTROL_PATH: &str = "/_stand-in/health";

/// One environment's test endpoint.
pub struct TestEndpoint {
    pub environment: String,
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl TestEndpoint {
    /// Serves the sample application on a free loopback port.
    pub async fn start(environment: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let health = Arc::new(AtomicU16::new(200));
        let app = Router::new()
            .route("/health", get(health_check))
            .route("/orders", get(orders))
            .route_layer(axum::middleware::from_fn(only_from_the_probe))
            .route(HEALTH_CONTROL_PATH, put(set_health))
            .with_state(health.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "test endpoint stand-in stopped");
            }
        });
        Ok(Self {
            environment: environment.to_owned(),
            addr,
            health,
            task,
        })
    }

    /// The base URL the checks call (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `/health` answer `status` (200: healthy again).
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// One server per environment account (int, stg, prod).
pub async fn start_all() -> Result<BTreeMap<String, TestEndpoint>> {
    let mut all = BTreeMap::new();
    for (environment, _) in accounts::ENVIRONMENTS {
        all.insert(
            (*environment).to_owned(),
            TestEndpoint::start(environment).await?,
        );
    }
    Ok(all)
}

/// The env-file variable naming an environment's test endpoint.
pub fn env_var(environment: &str) -> String {
    format!(
        "SHIPGATE_LOCAL_TEST_ENDPOINT_{}",
        environment.to_ascii_uppercase()
    )
}

/// Sets `/health`'s status on a running stand-in at `base_url` (for the CLI).
pub async fn set_health_at(base_url: &str, status: u16) -> Result<()> {
    if !(100..=599).contains(&status) {
        bail!("{status} is not an HTTP status");
    }
    let url = format!("{}{HEALTH_CONTROL_PATH}", base_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .put(&url)
        .body(status.to_string())
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    if !response.status().is_success() {
        bail!("PUT {url}: HTTP {}", response.status());
    }
    Ok(())
}

/// What the test listener's security group lets through: the environment's test probe.
async fn only_from_the_probe(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let from_probe = request
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|agent| agent.starts_with(PROBE_USER_AGENT_PREFIX));
    if from_probe {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        "the test listener is internal: in AWS only the environment's test probe \
         (shipgate-test-probe, in the environment's VPC) reaches it",
    )
        .into_response()
}

/// How the probe's requests begin their user agent (`shipgate_probe::USER_AGENT`).
const PROBE_USER_AGENT_PREFIX: &str = "shipgate-probe/";

async fn health_check(State(health): State<Arc<AtomicU16>>) -> Response {
    let status = health.load(Ordering::SeqCst);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if code.is_success() {
        r#"{"status":"ok"}"#.to_owned()
    } else {
        r#"{"status":"failing","error":"orders database: connection refused (pool exhausted)"}"#
            .to_owned()
    };
    (code, [("content-type", "application/json")], body).into_response()
}

#[derive(serde::Deserialize)]
struct OrdersQuery {
    limit: Option<usize>,
}

async fn orders(Query(query): Query<OrdersQuery>) -> Response {
    let all = [
        serde_json::json!({"id": "o-1001", "status": "shipped"}),
        serde_json::json!({"id": "o-1002", "status": "packed"}),
        serde_json::json!({"id": "o-1003", "status": "new"}),
    ];
    let limit = query.limit.unwrap_or(all.len()).min(all.len());
    let body = serde_json::json!({ "orders": &all[..limit] });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn set_health(State(health): State<Arc<AtomicU16>>, body: String) -> Response {
    match body.trim().parse::<u16>() {
        Ok(status) if (100..=599).contains(&status) => {
            health.store(status, Ordering::SeqCst);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "the body must be an HTTP status").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GET `path` of the endpoint as the environment's probe: status and body.
    async fn get(endpoint: &TestEndpoint, path: &str) -> (u16, String) {
        get_as(endpoint, path, shipgate_probe::USER_AGENT).await
    }

    async fn get_as(endpoint: &TestEndpoint, path: &str, agent: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", endpoint.url()))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn only_the_environment_probe_gets_through() {
        let endpoint = TestEndpoint::start("int").await.unwrap();
        for agent in ["shipgate-checks/0.1.0", "curl/8.0"] {
            let (status, body) = get_as(&endpoint, "/health", agent).await;
            assert_eq!(status, 403, "{agent}");
            assert!(body.contains("shipgate-test-probe"), "{body}");
        }
        assert_eq!(get(&endpoint, "/health").await.0, 200);
        endpoint.stop();
    }

    #[tokio::test]
    async fn serves_what_the_sample_checks_expect_and_fails_health_on_demand() {
        let endpoint = TestEndpoint::start("int").await.unwrap();
        let (status, body) = get(&endpoint, "/health").await;
        assert_eq!(status, 200);
        assert!(body.contains("ok"));
        let (_, orders) = get(&endpoint, "/orders?limit=1").await;
        let orders: serde_json::Value = serde_json::from_str(&orders).unwrap();
        assert_eq!(orders["orders"].as_array().unwrap().len(), 1);

        set_health_at(&endpoint.url(), 503).await.unwrap();
        let (status, body) = get(&endpoint, "/health").await;
        assert_eq!(status, 503);
        assert!(!body.contains("\"ok\""));
        assert!(set_health_at(&endpoint.url(), 42).await.is_err());
        endpoint.set_health(200);
        assert_eq!(get(&endpoint, "/health").await.0, 200);
        endpoint.stop();
    }
}
