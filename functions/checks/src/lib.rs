//! The checks action: a CodePipeline Lambda-invoke action that runs the release's HTTP checks
//! (`shipgate.checks/v1`, validated at intake) against the new version's *test* endpoint (the
//! ALB test listener for ECS blue/green, the new version's qualifier for Lambda) before any
//! production traffic moves.
//!
//! Each invocation re-reads the checks from the release artifact (the job's input artifact,
//! re-validated with [`inspect_release`] and compared with the manifest digest intake recorded)
//! and runs them in order, each with its own timeout. A try that cannot reach the endpoint,
//! times out, or gets a 5xx the check does not expect is tried again after a pause (250 ms,
//! doubling, at most 2 s), up to `SHIPGATE_CHECK_ATTEMPTS` tries in all. The first check that
//! fails fails the action, naming the check, the status and an excerpt of the body. When the
//! next check could end past the invocation's budget (`SHIPGATE_CHECKS_INVOCATION_SECONDS`),
//! the action answers with a continuation token holding the index of the next check, never
//! sleeping through CodePipeline's 20 minutes. A release without a checks file succeeds with
//! "no checks in the release".
//!
//! Requests never leave the endpoint: a check's path is relative to it (intake refuses hosts
//! in paths) and a redirect is followed only to the same scheme, host and port (at most 5);
//! any other redirect is the answer the check is evaluated on.

mod config;
mod error;
mod evaluate;
mod parameters;

pub use config::ChecksConfig;
pub use error::ChecksError;
pub use evaluate::{
    Attempt, MAX_BODY_BYTES, MAX_EXCERPT_CHARS, Mismatch, Progress, backoff, evaluate, excerpt,
    failure_message, should_retry, url_for, worst_case,
};
pub use parameters::{ActionParameters, Target};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use shipgate::http_client::HttpClientOnFirstUse;
use shipgate::job::artifact::read_release;
use shipgate::job::release::accepted_release;
use shipgate::job::{Call, Job, JobAction, ParameterError, RetryLimit, Scope, Verdict};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::release::{Check, Checks};
use shipgate::store::Store;
use tracing::{info, warn};

/// How many redirects to the same origin are followed.
const MAX_REDIRECTS: usize = 5;

/// The clients the action uses, built once per process.
#[derive(Debug, Clone)]
pub struct ChecksFunction {
    pub config: ChecksConfig,
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    /// The checks' HTTP client (rustls, same-origin redirects only), built by the first check.
    pub http: HttpClientOnFirstUse,
}

shipgate::function!(ChecksFunction, ChecksConfig);

impl JobAction for ChecksFunction {
    const NAME: &'static str = "checks";
    const PARAMETERS: &'static str = "environment, releaseId, executionId and endpoint";
    type Parameters = ActionParameters;
    type Target = Target;
    type State = Progress;
    type Error = ChecksError;

    fn target(&self, parameters: ActionParameters) -> Result<Target, ParameterError> {
        parameters.target()
    }

    fn scope(target: &Target) -> Scope<'_> {
        Scope {
            release_id: &target.release_id,
            execution_id: &target.execution_id,
            environment: &target.environment,
        }
    }

    fn retry_limit(&self) -> RetryLimit {
        self.config.retry
    }

    async fn work(
        &self,
        call: Call<'_, Target, Progress>,
    ) -> Result<Verdict<Progress>, ChecksError> {
        // Boxed: the checks' future (S3 reads, HTTP requests) is deep enough to overflow the
        // compiler's layout query depth when nested in the runtime's service future.
        Box::pin(self.run_checks(call.job, call.target, call.state)).await
    }
}

impl ChecksFunction {
    /// Builds the clients from one SDK configuration. Nothing fails here: the HTTP client is
    /// built by the first check, and a failure to build it (no TLS roots) fails that job
    /// ([`ChecksError::Client`]).
    pub fn new(config: ChecksConfig, sdk: &SdkConfig) -> Self {
        let (s3, store) = config.artifact.clients(sdk);
        Self {
            s3,
            store,
            http: HttpClientOnFirstUse::new(checks_http_client),
            config,
        }
    }

    async fn run_checks(
        &self,
        job: &Job,
        target: &Target,
        progress: Option<Progress>,
    ) -> Result<Verdict<Progress>, ChecksError> {
        let Some(checks) = self.release_checks(job, &target.release_id).await? else {
            info!(outcome = "done", "no checks in the release");
            return Ok(Verdict::Done {
                summary: "no checks in the release".into(),
                output_variables: BTreeMap::from([("ChecksPassed".to_owned(), "0".to_owned())]),
            });
        };
        let endpoint = target.parameters.endpoint()?;
        let total = checks.checks.len();
        let mut state = progress.unwrap_or(Progress {
            next: 0,
            total,
            elapsed_ms: 0,
        });
        if state.total != total || state.next > total {
            return Err(ChecksError::ForeignProgress {
                total: state.total,
                found: total,
            });
        }
        let budget = Duration::from_secs(self.config.invocation_seconds);
        let started = Instant::now();
        let first = state.next;
        let http = self.http.get().map_err(ChecksError::Client)?;
        let metrics = StageMetrics::new(
            &target.environment,
            &target.release_id,
            &target.execution_id,
        );
        while let Some(check) = checks.checks.get(state.next) {
            let worst = worst_case(check, self.config.attempts);
            if state.next > first && started.elapsed() + worst > budget {
                info!(
                    next = state.next,
                    total,
                    outcome = "continue",
                    "checks go on in the next invocation"
                );
                return Ok(Verdict::Continue(state));
            }
            let url = url_for(&endpoint, check);
            let check_started = Instant::now();
            let (tries, result) = self.run_check(&http, check, &url).await;
            let ms = elapsed_ms(check_started);
            if let Err(mismatch) = result {
                let message = failure_message(&target.environment, check, &url, tries, &mismatch);
                warn!(check = %check.name, tries, ms, outcome = "failed", reason = %message, "check failed");
                let event = metrics.event(MetricName::ChecksFailed, 1.0);
                event.property("check", check.name.as_str()).emit();
                return Ok(Verdict::fail(message));
            }
            info!(check = %check.name, tries, ms, outcome = "passed", "check passed");
            let event = metrics.event(MetricName::ChecksPassed, 1.0);
            event.property("check", check.name.as_str()).emit();
            state.elapsed_ms = state.elapsed_ms.saturating_add(ms);
            state.next += 1;
        }
        let summary = format!(
            "{total} check{} passed in {} ms",
            if total == 1 { "" } else { "s" },
            state.elapsed_ms
        );
        info!(outcome = "done", summary = %summary, "checks passed");
        Ok(Verdict::Done {
            summary,
            output_variables: BTreeMap::from([
                ("ChecksPassed".to_owned(), total.to_string()),
                ("ChecksMs".to_owned(), state.elapsed_ms.to_string()),
            ]),
        })
    }

    /// Runs one check with its retries; the number of tries and the verdict on the last.
    async fn run_check(
        &self,
        http: &reqwest::Client,
        check: &Check,
        url: &str,
    ) -> (u32, Result<(), Mismatch>) {
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = Self::attempt(http, check, url).await;
            if tries < self.config.attempts && should_retry(check, &attempt) {
                info!(check = %check.name, tries, attempt = ?attempt_label(&attempt), "trying the check again");
                tokio::time::sleep(backoff(tries)).await;
                continue;
            }
            return (tries, evaluate(check, &attempt));
        }
    }

    /// One request, within the check's timeout (connecting, answering and reading the body).
    async fn attempt(http: &reqwest::Client, check: &Check, url: &str) -> Attempt {
        let timeout = Duration::from_millis(check.timeout_ms);
        let method = reqwest::Method::from_bytes(check.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut request = http.request(method, url).timeout(timeout);
        for (name, value) in &check.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &check.body {
            request = request.body(body.clone());
        }
        let read = async {
            let mut response = request.send().await?;
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

    /// The release's checks, from the job's input artifact, which must be the release intake
    /// validated. `None` when the release has no checks file.
    async fn release_checks(
        &self,
        job: &Job,
        release_id: &str,
    ) -> Result<Option<Checks>, ChecksError> {
        let record = accepted_release(&self.store, release_id).await?;
        let inspection = read_release(&self.s3, job, &record, &self.config.artifact.limits).await?;
        Ok(inspection.checks)
    }
}

/// The checks' HTTP client: same-origin redirects only, shipgate's user agent.
fn checks_http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(same_origin_redirects())
        .user_agent(concat!("shipgate-checks/", env!("CARGO_PKG_VERSION")))
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

fn attempt_label(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Answered { status, .. } => format!("status {status}"),
        Attempt::TimedOut => "timed out".into(),
        Attempt::Unreachable { error } => excerpt(error),
    }
}

/// An error and its causes, "a: b: c" (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
