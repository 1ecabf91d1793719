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
//!
//! Where the requests come from: the environment's test listener is internal, reachable from
//! the environment's VPC only, and this function runs in the tooling account outside any VPC.
//! When the action's parameters name the environment's test probe (`probe`: environment.yaml's
//! `shipgate-test-probe` and its `shipgate-checks` role), each try is one synchronous
//! invocation of the probe, which makes the request from inside the VPC
//! ([`shipgate::probe`]); every decision stays here. Without `probe`, this function makes the
//! requests itself (an endpoint the internet reaches). A probe that cannot be invoked
//! (AccessDenied, no such function) or that refuses the request fails the action with what to
//! fix; a throttled invocation counts as a try that could not reach the endpoint.

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
pub use parameters::{ActionParameters, Probe, ProbeParameters, Target};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use shipgate::aws::sts::Sessions;
use shipgate::http_client::HttpClientOnFirstUse;
use shipgate::job::artifact::read_release;
use shipgate::job::release::accepted_release;
use shipgate::job::{Call, Job, JobAction, ParameterError, RetryLimit, Scope, Verdict};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::probe::{ProbeRequest, attempt, client_builder};
use shipgate::release::{Check, Checks};
use shipgate::store::Store;
use tracing::{info, warn};

/// The clients the action uses, built once per process.
#[derive(Debug, Clone)]
pub struct ChecksFunction {
    pub config: ChecksConfig,
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    /// The checks' HTTP client (rustls, same-origin redirects only), built by the first check
    /// made from this function.
    pub http: HttpClientOnFirstUse,
    /// The `shipgate-checks` roles, to invoke the environments' test probes.
    pub sessions: Sessions,
}

/// Where a try's request is made from.
enum Prober<'a> {
    /// This function.
    Direct(reqwest::Client),
    /// The environment's test probe, invoked as its `shipgate-checks` role.
    Probe {
        lambda: aws_sdk_lambda::Client,
        probe: &'a Probe,
    },
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
            sessions: Sessions::new(sdk, "checks"),
            config,
        }
    }

    async fn run_checks(
        &self,
        job: &Job,
        target: &Target,
        progress: Option<Progress>,
    ) -> Result<Verdict<Progress>, ChecksError> {
        let Some(checks) = self
            .release_checks(job, &target.release_id, target.application.as_deref())
            .await?
        else {
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
        let prober = self.prober(target).await?;
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
            let (tries, result) = self.run_check(&prober, target, check, &url).await?;
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

    /// Where the tries are made from: the environment's probe, its role assumed, when the
    /// parameters name one; this function otherwise.
    async fn prober<'a>(&self, target: &'a Target) -> Result<Prober<'a>, ChecksError> {
        match &target.probe {
            Some(probe) => {
                let config = self
                    .sessions
                    .config(&probe.role_arn, &target.release_id)
                    .await
                    .map_err(|source| ChecksError::AssumeRole {
                        environment: target.environment.clone(),
                        source,
                    })?;
                Ok(Prober::Probe {
                    lambda: aws_sdk_lambda::Client::new(&config),
                    probe,
                })
            }
            None => Ok(Prober::Direct(
                self.http.get().map_err(ChecksError::Client)?,
            )),
        }
    }

    /// Runs one check with its retries; the number of tries and the verdict on the last.
    async fn run_check(
        &self,
        prober: &Prober<'_>,
        target: &Target,
        check: &Check,
        url: &str,
    ) -> Result<(u32, Result<(), Mismatch>), ChecksError> {
        let request = ProbeRequest {
            method: check.method.as_str().to_owned(),
            url: url.to_owned(),
            headers: check.headers.clone(),
            body: check.body.clone(),
            timeout_ms: check.timeout_ms,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = Self::attempt(prober, target, &request).await?;
            if tries < self.config.attempts && should_retry(check, &attempt) {
                info!(check = %check.name, tries, attempt = ?attempt_label(&attempt), "trying the check again");
                tokio::time::sleep(backoff(tries)).await;
                continue;
            }
            return Ok((tries, evaluate(check, &attempt)));
        }
    }

    /// One try. The probe's refusals and a refused invocation are errors: no retry mends them.
    async fn attempt(
        prober: &Prober<'_>,
        target: &Target,
        request: &ProbeRequest,
    ) -> Result<Attempt, ChecksError> {
        match prober {
            Prober::Direct(http) => Ok(attempt(http, request).await),
            Prober::Probe { lambda, probe } => {
                match shipgate::probe::invoke(lambda, &probe.function, request).await {
                    Ok(attempt) => Ok(attempt),
                    Err(e) if e.is_retryable() => Ok(Attempt::Unreachable {
                        error: format!(
                            "the test probe {} could not be invoked: {e}",
                            probe.function
                        ),
                    }),
                    Err(source) => Err(ChecksError::Probe {
                        environment: target.environment.clone(),
                        function: probe.function.clone(),
                        role_arn: probe.role_arn.to_string(),
                        source,
                    }),
                }
            }
        }
    }

    /// The release's checks, from the job's input artifact, which must be the release intake
    /// validated. `None` when the release has no checks file.
    async fn release_checks(
        &self,
        job: &Job,
        release_id: &str,
        application: Option<&str>,
    ) -> Result<Option<Checks>, ChecksError> {
        let record = accepted_release(&self.store, release_id, application).await?;
        let inspection = read_release(&self.s3, job, &record, &self.config.artifact.limits).await?;
        Ok(inspection.checks)
    }
}

/// The checks' HTTP client, for checks made from this function: same-origin redirects only,
/// shipgate's user agent.
fn checks_http_client() -> reqwest::ClientBuilder {
    client_builder(concat!("shipgate-checks/", env!("CARGO_PKG_VERSION")))
}

fn attempt_label(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Answered { status, .. } => format!("status {status}"),
        Attempt::TimedOut => "timed out".into(),
        Attempt::Unreachable { error } => excerpt(error),
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
