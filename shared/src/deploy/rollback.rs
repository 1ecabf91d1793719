//! Rolling deployments back: one request (an alarm, an operator, the traffic action) on one
//! deployment or on every deployment an alarm hits, the steps of the module doc of
//! [`crate::deploy`] for all of them at once.
//!
//! Each step is taken for every deployment before the next, so the calls grow with what an API
//! can take together rather than with the deployments: the claims are written by one
//! transaction, each role is assumed once, the aliases of a function and the listeners of an
//! account are read together, each environment's team gets one email. What no API does in bulk
//! (moving a weight, failing a pipeline job) is one call per deployment, [`ROLLBACK_CONCURRENCY`]
//! at a time. A deployment that fails a step leaves the others going: it is released (its lease
//! cleared) for the next invocation to finish, and its error is its own answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use tracing::{info, warn};

use super::{
    AccountClients, DeployError, Deployer, JobHandling, MAX_RACES, Observed, RollbackNext,
    RollbackOutcome, RollbackReport, RollbackRequest, failure_message, observe_alias,
    observe_listener, rfc3339, rollback_digest, rollback_next, team_variable,
};
use crate::aws::codepipeline::{JobFailureKind, put_job_failure};
use crate::aws::sts::AssumeRoleError;
use crate::error::AwsError;
use crate::store::{
    AppliedStep, Deployment, DeploymentState, Lease, LeaseIntent, Rollback, SaveError,
    TrafficTarget,
};

/// How many calls a rollback has in flight at once (weights, jobs, reads): a popular alarm must
/// not flood the APIs of an account.
pub const ROLLBACK_CONCURRENCY: usize = 8;

/// A deployment whose rollback this request holds (its claim is saved), and what was done.
struct Held {
    /// Its place in the request.
    index: usize,
    /// As last saved, with the tasks done since.
    d: Deployment,
    report: RollbackReport,
}

impl Held {
    fn pending(&self, task: impl Fn(&Rollback) -> bool) -> bool {
        self.d.rollback.as_ref().is_some_and(|r| !task(r))
    }
}

/// A deployment this request stopped working on, and why.
struct Stopped {
    index: usize,
    d: Deployment,
    error: DeployError,
}

impl Stopped {
    fn new(h: Held, error: DeployError) -> Self {
        Self {
            index: h.index,
            d: h.d,
            error,
        }
    }
}

impl Deployer {
    /// Rolls `deployment` back (see the module doc of [`crate::deploy`]), deciding from the
    /// record as it stands and again after every lost race. `clients`: the account's clients
    /// when the caller has them.
    pub async fn roll_back(
        &self,
        deployment: Deployment,
        request: RollbackRequest<'_>,
        clients: Option<&AccountClients>,
    ) -> Result<RollbackReport, DeployError> {
        let id = deployment.deployment_id.clone();
        Box::pin(self.roll_back_all(vec![deployment], request, clients))
            .await
            .pop()
            .unwrap_or(Err(DeployError::NotFound(id)))
    }

    /// Rolls back each of `deployments` for one request, as [`Deployer::roll_back`] does one,
    /// each step for all of them at once (see the module doc); the answers are in the order of
    /// `deployments`. `clients`: the account's clients when the caller has them (all the
    /// deployments then act as that one role).
    pub async fn roll_back_all(
        &self,
        deployments: Vec<Deployment>,
        request: RollbackRequest<'_>,
        clients: Option<&AccountClients>,
    ) -> Vec<Result<RollbackReport, DeployError>> {
        let ids: Vec<String> = deployments
            .iter()
            .map(|d| d.deployment_id.clone())
            .collect();
        let mut answers: Vec<Option<Result<RollbackReport, DeployError>>> =
            ids.iter().map(|_| None).collect();
        let mut stopped = Vec::new();

        let held = self.claim_all(deployments, request, &mut answers).await;
        let held = self
            .restore_traffic_all(held, request, clients, &mut stopped)
            .await;
        let held = self.answer_jobs(held, request.job).await;
        let mut held = self.notify_all(held, &mut stopped).await;
        for h in &mut held {
            h.d.lease = None;
        }
        for h in self.save_held_all(held, &mut stopped).await {
            answers[h.index] = Some(Ok(h.report));
        }
        self.release_all(&stopped).await;
        for s in stopped {
            answers[s.index] = Some(Err(s.error));
        }
        answers
            .into_iter()
            .zip(ids)
            .map(|(answer, id)| answer.unwrap_or(Err(DeployError::NotFound(id))))
            .collect()
    }

    /// Step 1: claims each rollback (one conditional write each, all in one transaction),
    /// deciding again from the record for the ones that changed since they were read. The
    /// deployments with nothing to do, and the ones that could not be claimed, are answered.
    async fn claim_all(
        &self,
        deployments: Vec<Deployment>,
        request: RollbackRequest<'_>,
        answers: &mut [Option<Result<RollbackReport, DeployError>>],
    ) -> Vec<Held> {
        let mut undecided: Vec<(usize, Deployment)> = deployments.into_iter().enumerate().collect();
        let mut held = Vec::new();
        for _ in 0..MAX_RACES {
            if undecided.is_empty() {
                break;
            }
            let mut claims = Vec::new();
            let mut records = Vec::new();
            for (index, current) in undecided.drain(..) {
                let outcome = match rollback_next(&current, request.owner, request.now_ms) {
                    RollbackNext::Claim => RollbackOutcome::RolledBack,
                    RollbackNext::Finish => RollbackOutcome::Completed,
                    RollbackNext::Finished => RollbackOutcome::AlreadySucceeded,
                    RollbackNext::AlreadyRolledBack => RollbackOutcome::AlreadyRolledBack,
                    RollbackNext::InProgress { owner } => {
                        info!(deployment_id = %current.deployment_id, holder = %owner, outcome = "in_progress_elsewhere", "rollback already being carried out");
                        RollbackOutcome::InProgressElsewhere
                    }
                };
                if carries_out(outcome) {
                    records.push(claim(&current, &request, outcome, self.lease_ms));
                    claims.push((index, outcome));
                } else {
                    answers[index] = Some(Ok(RollbackReport::of(&current, outcome)));
                }
            }
            let saved = self.store.save_deployments(&records).await;
            for ((index, outcome), result) in claims.into_iter().zip(saved) {
                match result {
                    Ok(saved) => {
                        let logged = match outcome {
                            RollbackOutcome::RolledBack => "rollback_claimed",
                            _ => "rollback_resumed",
                        };
                        info!(
                            deployment_id = %saved.deployment_id,
                            release_id = %saved.release_id,
                            execution_id = %saved.execution_id,
                            env = %saved.environment,
                            percent = saved.percent,
                            alarm = request.alarm.unwrap_or_default(),
                            by = request.by,
                            outcome = logged,
                            "rolling back"
                        );
                        held.push(Held {
                            index,
                            report: RollbackReport::of(&saved, outcome),
                            d: saved,
                        });
                    }
                    Err(SaveError::Conflict(fresh)) => undecided.push((index, *fresh)),
                    Err(SaveError::Store(e)) => answers[index] = Some(Err(e.into())),
                }
            }
        }
        for (index, current) in undecided {
            answers[index] = Some(Err(DeployError::Contended {
                id: current.deployment_id,
                attempts: MAX_RACES,
            }));
        }
        held
    }

    /// Step 2: all traffic back on the previous version (the alias or listener read first, a
    /// carrier changed by someone else left alone), and the new version's task set scaled in.
    async fn restore_traffic_all(
        &self,
        held: Vec<Held>,
        request: RollbackRequest<'_>,
        clients: Option<&AccountClients>,
        stopped: &mut Vec<Stopped>,
    ) -> Vec<Held> {
        let (todo, mut done): (Vec<Held>, Vec<Held>) = held
            .into_iter()
            .partition(|h| h.pending(|r| r.traffic_restored));
        if todo.is_empty() {
            return done;
        }
        let roles = match clients {
            Some(_) => HashMap::new(),
            None => self.clients_by_role(todo.iter().map(|h| &h.d)).await,
        };
        let mut ready = Vec::new();
        for h in todo {
            match clients
                .map(Ok::<_, &Arc<AssumeRoleError>>)
                .or_else(|| roles.get(&h.d.role_arn).map(|r| r.as_ref()))
            {
                Some(Ok(c)) => ready.push((h, c)),
                Some(Err(e)) => {
                    let error = DeployError::AssumeRole {
                        environment: h.d.environment.clone(),
                        source: Arc::clone(e),
                    };
                    stopped.push(Stopped::new(h, error));
                }
                // Every role was looked up above.
                None => {
                    let id = h.d.deployment_id.clone();
                    stopped.push(Stopped::new(h, DeployError::NotFound(id)));
                }
            }
        }
        let work: Vec<(&AccountClients, &Deployment)> =
            ready.iter().map(|(h, c)| (*c, &h.d)).collect();
        let observed = self.observe_all(&work).await;
        // Every weight first, then the task sets: the weights are what an alarm waits for.
        let moved = bounded(
            ready
                .iter()
                .zip(observed)
                .map(|((h, c), observed)| self.move_back(c, &h.d, observed)),
        )
        .await;
        let traffic = bounded(
            ready
                .iter()
                .zip(moved)
                .map(|((h, c), moved)| self.scale_in_after(c, &h.d, moved)),
        )
        .await;
        let mut restored = Vec::new();
        for ((mut h, _), traffic) in ready.into_iter().zip(traffic) {
            match traffic {
                Ok(traffic) => {
                    h.d.percent = 0;
                    h.d.steps.push(AppliedStep {
                        percent: 0,
                        at_ms: request.now_ms,
                    });
                    if let Some(r) = h.d.rollback.as_mut() {
                        r.traffic_restored = true;
                    }
                    h.report.traffic = Some(traffic);
                    restored.push(h);
                }
                Err(e) => stopped.push(Stopped::new(h, e)),
            }
        }
        // Recorded with the job's answer and the email, at the end: one write of every record
        // instead of two. A crash before it leaves the traffic to be looked at again, where it
        // is found back on the previous version.
        for h in restored {
            let d = &h.d;
            info!(
                deployment_id = %d.deployment_id,
                release_id = %d.release_id,
                execution_id = %d.execution_id,
                env = %d.environment,
                step = "rollback",
                percent = 0,
                outcome = "traffic_restored",
                traffic = h.report.traffic.as_deref().unwrap_or_default(),
                "traffic back on the previous version"
            );
            done.push(h);
        }
        done
    }

    /// Puts all of `d`'s traffic back on the previous version, as `observed` shows it now: what
    /// was done, and whether the traffic is back (a carrier someone else changed is left alone).
    async fn move_back(
        &self,
        clients: &AccountClients,
        d: &Deployment,
        observed: Result<Observed, DeployError>,
    ) -> Result<(String, bool), DeployError> {
        Ok(match observed? {
            Observed::Ours { percent: 0 } => {
                ("already all on the previous version".to_owned(), true)
            }
            Observed::Ours { percent } => {
                self.shift(clients, d, 0).await?;
                (
                    format!("moved from {percent}% to 0% on the new version"),
                    true,
                )
            }
            Observed::Foreign { detail } => {
                warn!(deployment_id = %d.deployment_id, detail = %detail, "traffic carrier changed by someone else; not touched");
                (format!("not touched: {detail}"), false)
            }
        })
    }

    /// Once the traffic is back, the new version's task set (if any) scaled to 0: what was done.
    async fn scale_in_after(
        &self,
        clients: &AccountClients,
        d: &Deployment,
        moved: Result<(String, bool), DeployError>,
    ) -> Result<String, DeployError> {
        let (traffic, restored) = moved?;
        if !restored {
            return Ok(traffic);
        }
        Ok(match self.scale_in_green(clients, d).await {
            Ok(Some(done)) => format!("{traffic}; {done}"),
            Ok(None) => traffic,
            // The traffic is back, which is what matters: an idle green costs money only.
            Err(e) => {
                warn!(deployment_id = %d.deployment_id, error = %e, outcome = "green_not_scaled_in", "could not scale the new version's task set to 0; it serves no traffic");
                format!("{traffic}; the new version's task set could not be scaled to 0: {e}")
            }
        })
    }

    /// The clients of each role the deployments act as: each role assumed once (once per
    /// process while its credentials last, see [`crate::aws::sts::Sessions`]) and its clients
    /// built once, whatever the number of deployments. A role that cannot be assumed is the
    /// same error for each of its deployments.
    async fn clients_by_role<'a>(
        &self,
        deployments: impl Iterator<Item = &'a Deployment>,
    ) -> HashMap<String, Result<AccountClients, Arc<AssumeRoleError>>> {
        // Each role with the first deployment that acts as it (a new session is named after it).
        let mut roles: BTreeMap<&str, &str> = BTreeMap::new();
        for d in deployments {
            roles.entry(&d.role_arn).or_insert(&d.deployment_id);
        }
        bounded(roles.into_iter().map(|(role, subject)| async move {
            let clients = self.role_clients(role, subject).await.map_err(Arc::new);
            (role.to_owned(), clients)
        }))
        .await
        .into_iter()
        .collect()
    }

    /// What each deployment's alias or listener carries now, in the order of `work`. The
    /// aliases of one function are read by one `ListAliases`, the listeners of one account by
    /// one `DescribeListeners` (per 20); a carrier on its own, or one such a read did not
    /// answer (it failed, or left it out), is read on its own, so its error is its own.
    async fn observe_all(
        &self,
        work: &[(&AccountClients, &Deployment)],
    ) -> Vec<Result<Observed, DeployError>> {
        let mut aliases: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut listeners: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (_, d)) in work.iter().enumerate() {
            match &d.target {
                TrafficTarget::LambdaAlias { function, .. } => {
                    aliases.entry((&d.role_arn, function)).or_default().push(i);
                }
                TrafficTarget::AlbListener { .. } => {
                    listeners.entry(&d.role_arn).or_default().push(i);
                }
            }
        }
        let groups = aliases
            .into_values()
            .chain(listeners.into_values())
            .filter(|members| members.len() > 1);
        let read_together: HashMap<usize, Observed> =
            bounded(groups.map(|members| read_carriers(work, members)))
                .await
                .into_iter()
                .flatten()
                .collect();
        bounded(work.iter().enumerate().map(|(i, (clients, d))| {
            let known = read_together.get(&i).cloned();
            async move {
                match known {
                    Some(observed) => Ok(observed),
                    None => self.observe(clients, d).await,
                }
            }
        }))
        .await
    }

    /// Step 3: each recorded pipeline job failed with the reason (see [`Deployer::answer_job`]).
    async fn answer_jobs(&self, held: Vec<Held>, handling: JobHandling) -> Vec<Held> {
        bounded(held.into_iter().map(|mut h| async move {
            if let Some(r) = h.d.rollback.clone().filter(|r| !r.job_answered) {
                let job = self.answer_job(&h.d, &r, handling).await;
                h.report.job = Some(job.clone());
                h.d.rollback = Some(Rollback {
                    job_answered: true,
                    job_outcome: Some(job),
                    ..r
                });
            }
            h
        }))
        .await
    }

    /// Step 4: each team emailed once for all its deployments rolled back in one environment
    /// (the team each deployment recorded: two applications' environments of one name have
    /// their own teams).
    async fn notify_all(&self, held: Vec<Held>, stopped: &mut Vec<Stopped>) -> Vec<Held> {
        let mut done = Vec::new();
        let mut by_team: BTreeMap<(String, Vec<String>), Vec<Held>> = BTreeMap::new();
        for h in held {
            if h.pending(|r| r.team_notified) {
                let team = match &h.d.team {
                    Some(team) => team.clone(),
                    None => self.mail.team(&h.d.environment).to_vec(),
                };
                by_team
                    .entry((h.d.environment.clone(), team))
                    .or_default()
                    .push(h);
            } else {
                done.push(h);
            }
        }
        let sent: Vec<_> = bounded(by_team.into_iter().map(
            |((environment, team), group)| async move {
                let sent = self.notify(&environment, &team, &group).await;
                (environment, group, sent)
            },
        ))
        .await;
        for (environment, group, sent) in sent {
            for mut h in group {
                match &sent {
                    Ok(text) => {
                        h.report.email = Some(text.clone());
                        if let Some(r) = h.d.rollback.as_mut() {
                            r.team_notified = true;
                        }
                        done.push(h);
                    }
                    Err(e) => {
                        let error = DeployError::Notify {
                            environment: environment.clone(),
                            source: Arc::clone(e),
                        };
                        stopped.push(Stopped::new(h, error));
                    }
                }
            }
        }
        done
    }

    /// Saves what the lease holder did, for each deployment at once; a conflict means the lease
    /// was taken over.
    async fn save_held_all(&self, held: Vec<Held>, stopped: &mut Vec<Stopped>) -> Vec<Held> {
        let records: Vec<Deployment> = held.iter().map(|h| h.d.clone()).collect();
        let saved = self.store.save_deployments(&records).await;
        let mut kept = Vec::new();
        for (mut h, result) in held.into_iter().zip(saved) {
            match result {
                Ok(saved) => {
                    h.d = saved;
                    kept.push(h);
                }
                Err(SaveError::Conflict(_)) => {
                    let id = h.d.deployment_id.clone();
                    stopped.push(Stopped::new(h, DeployError::LostLease { id }));
                }
                Err(SaveError::Store(e)) => stopped.push(Stopped::new(h, e.into())),
            }
        }
        kept
    }

    /// Releases the lease of each deployment this request stopped working on, with what it did
    /// before it stopped, so the next invocation can finish.
    async fn release_all(&self, stopped: &[Stopped]) {
        if stopped.is_empty() {
            return;
        }
        let released: Vec<Deployment> = stopped
            .iter()
            .map(|s| {
                warn!(deployment_id = %s.d.deployment_id, error = %s.error, error_type = s.error.error_type(), outcome = "rollback_incomplete", "rollback stopped; the next invocation finishes it");
                Deployment {
                    lease: None,
                    ..s.d.clone()
                }
            })
            .collect();
        for (s, result) in stopped
            .iter()
            .zip(self.store.save_deployments(&released).await)
        {
            if let Err(release_error) = result {
                warn!(deployment_id = %s.d.deployment_id, error = %release_error, "could not release the lease; it expires by itself");
            }
        }
    }

    /// Fails the recorded job, or says why not. Never an error: a job that cannot be failed now
    /// is failed by the traffic action's next invocation, from the record.
    async fn answer_job(&self, d: &Deployment, r: &Rollback, handling: JobHandling) -> String {
        if handling == JobHandling::AnsweredByCaller {
            return "answered by the traffic action".to_owned();
        }
        let Some(job_id) = d.job_id.as_deref() else {
            return "no pipeline job recorded: the traffic action's next invocation fails the action"
                .to_owned();
        };
        let message = failure_message(d, r);
        match put_job_failure(
            &self.codepipeline,
            job_id,
            JobFailureKind::JobFailed,
            &message,
            None,
        )
        .await
        {
            Ok(()) => {
                info!(deployment_id = %d.deployment_id, job_id, outcome = "job_failed", "pipeline job failed");
                format!("failed job {job_id}")
            }
            Err(e)
                if e.is_code("InvalidJobStateException") || e.is_code("JobNotFoundException") =>
            {
                info!(deployment_id = %d.deployment_id, job_id, code = e.code.as_deref().unwrap_or_default(), outcome = "job_already_answered", "job answered already; the traffic action fails the action on its next invocation");
                format!(
                    "job {job_id} could not be failed ({}): it was answered already; the traffic \
                     action's next invocation fails the action",
                    e.code.as_deref().unwrap_or_default()
                )
            }
            Err(e) => {
                warn!(deployment_id = %d.deployment_id, job_id, error = %e, outcome = "job_failure_failed", "could not fail the job; the traffic action's next invocation fails the action");
                format!(
                    "job {job_id} could not be failed ({e}); the traffic action's next invocation \
                     fails the action"
                )
            }
        }
    }

    /// Emails `environment`'s team once about `group`, its deployments rolled back here (one
    /// email each would be as many emails as deployments for one alarm, and SES's sending rate
    /// is a few per second).
    async fn notify(
        &self,
        environment: &str,
        team: &[String],
        group: &[Held],
    ) -> Result<String, Arc<AwsError>> {
        let ids: Vec<&str> = group.iter().map(|h| h.d.deployment_id.as_str()).collect();
        if team.is_empty() {
            let declared = group.iter().all(|h| h.d.team.is_some());
            let whose = if declared {
                "its application declares no team address there".to_owned()
            } else {
                format!(
                    "no team address configured ({})",
                    team_variable(environment)
                )
            };
            warn!(deployment_ids = %ids.join(","), env = %environment, reason = %whose, outcome = "no_team", "nobody emailed");
            return Ok(format!("nobody emailed in {environment}: {whose}"));
        }
        let rolled_back: Vec<(&Deployment, &Rollback)> = group
            .iter()
            .filter_map(|h| h.d.rollback.as_ref().map(|r| (&h.d, r)))
            .collect();
        let email = rollback_digest(&rolled_back, &self.mail.from, team);
        let id = crate::aws::ses::send_email(&self.ses, &email)
            .await
            .map_err(Arc::new)?;
        info!(deployment_ids = %ids.join(","), env = %environment, to = %team.join(","), message_id = %id, outcome = "team_emailed", "team emailed");
        Ok(match group.len() {
            1 => format!("sent to {} ({id})", team.join(", ")),
            n => format!(
                "sent to {} ({id}), one email for the {n} deployments rolled back in {environment}",
                team.join(", ")
            ),
        })
    }
}

/// Runs `futures`, [`ROLLBACK_CONCURRENCY`] at a time; their outputs in their order. (They are
/// made before they are run: a stream mapping with a closure over borrowed deployments is not
/// `Send` for the compiler, which the Lambda runtime needs.)
async fn bounded<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<F> = futures.into_iter().collect();
    futures::stream::iter(futures)
        .buffered(ROLLBACK_CONCURRENCY)
        .collect()
        .await
}

/// Whether a request with this outcome works on the deployment (claims it).
fn carries_out(outcome: RollbackOutcome) -> bool {
    matches!(
        outcome,
        RollbackOutcome::RolledBack | RollbackOutcome::Completed
    )
}

/// The claim of a rollback on `current` (pure): rolled back by this request
/// ([`RollbackOutcome::RolledBack`]), or an earlier rollback taken over to finish its tasks
/// ([`RollbackOutcome::Completed`]), under this request's lease.
fn claim(
    current: &Deployment,
    request: &RollbackRequest<'_>,
    outcome: RollbackOutcome,
    lease_ms: i64,
) -> Deployment {
    let mut claim = current.clone();
    if outcome == RollbackOutcome::RolledBack {
        claim.state = DeploymentState::RolledBack;
        claim.next_step_at_ms = None;
        claim.rollback = None;
    }
    if claim.rollback.is_none() {
        claim.rollback = Some(Rollback {
            alarm: request.alarm.map(str::to_owned),
            reason: request.reason.to_owned(),
            by: request.by.to_owned(),
            at_ms: request.now_ms,
            percent_before: current.percent,
            traffic_restored: false,
            job_answered: false,
            job_outcome: None,
            team_notified: false,
        });
    }
    claim.lease = Some(Lease {
        owner: request.owner.to_owned(),
        until_ms: request.now_ms.saturating_add(lease_ms),
        intent: LeaseIntent::RollBack,
    });
    claim.updated_at = rfc3339(request.now_ms);
    claim
}

/// Reads the carriers of `members` (aliases of one function, or listeners of one account, as
/// one role) together: what each carries, for those the read answered. A failed read answers
/// none: each is then read on its own.
async fn read_carriers(
    work: &[(&AccountClients, &Deployment)],
    members: Vec<usize>,
) -> Vec<(usize, Observed)> {
    let Some((clients, first)) = members.first().and_then(|i| work.get(*i)) else {
        return Vec::new();
    };
    let deployments = members
        .iter()
        .filter_map(|i| work.get(*i).map(|(_, d)| (*i, *d)));
    match &first.target {
        TrafficTarget::LambdaAlias { function, .. } => {
            match crate::aws::lambda::aliases_state(&clients.lambda, function).await {
                Ok(states) => deployments
                    .filter_map(|(i, d)| match &d.target {
                        TrafficTarget::LambdaAlias {
                            alias,
                            previous_version,
                            new_version,
                            ..
                        } => states
                            .get(alias)
                            .map(|s| (i, observe_alias(s, previous_version, new_version))),
                        TrafficTarget::AlbListener { .. } => None,
                    })
                    .collect(),
                Err(e) => {
                    warn!(function = %function, error = %e, outcome = "read_one_by_one", "could not list the function's aliases; reading each on its own");
                    Vec::new()
                }
            }
        }
        TrafficTarget::AlbListener { .. } => {
            let arns: Vec<String> = deployments
                .clone()
                .filter_map(|(_, d)| match &d.target {
                    TrafficTarget::AlbListener { listener_arn, .. } => Some(listener_arn.clone()),
                    TrafficTarget::LambdaAlias { .. } => None,
                })
                .collect();
            match crate::aws::elbv2::listeners_weights(&clients.elb, &arns).await {
                Ok(weights) => deployments
                    .filter_map(|(i, d)| match &d.target {
                        TrafficTarget::AlbListener {
                            listener_arn,
                            blue_target_group,
                            green_target_group,
                            ..
                        } => weights.get(listener_arn).map(|w| {
                            (
                                i,
                                observe_listener(w, blue_target_group, green_target_group),
                            )
                        }),
                        TrafficTarget::LambdaAlias { .. } => None,
                    })
                    .collect(),
                Err(e) => {
                    warn!(listeners = arns.len(), error = %e, outcome = "read_one_by_one", "could not describe the listeners together; reading each on its own");
                    Vec::new()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::deploy::TeamMail;

    /// STS as far as `AssumeRole` goes: every role is assumed (for an hour), except `refused`;
    /// the roles asked for are recorded.
    #[derive(Debug, Clone, Default)]
    struct Sts {
        asked: Arc<Mutex<Vec<String>>>,
        refused: Option<String>,
    }

    impl HttpConnector for Sts {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
            let role = body
                .split('&')
                .find_map(|p| p.strip_prefix("RoleArn="))
                .map(|r| {
                    percent_encoding::percent_decode_str(r)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(role.clone());
            }
            let account = role.split(':').nth(4).unwrap_or_default();
            let (status, xml) = if self.refused.as_deref() == Some(role.as_str()) {
                (
                    403,
                    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                     <Message>not authorized to perform: sts:AssumeRole</Message></Error>\
                     <RequestId>r</RequestId></ErrorResponse>"
                        .to_owned(),
                )
            } else {
                (
                    200,
                    format!(
                        "<AssumeRoleResponse><AssumeRoleResult><AssumedRoleUser>\
                         <AssumedRoleId>AROA:s</AssumedRoleId>\
                         <Arn>arn:aws:sts::{account}:assumed-role/deploy/s</Arn>\
                         </AssumedRoleUser><Credentials><AccessKeyId>ASIA{account}</AccessKeyId>\
                         <SecretAccessKey>secret</SecretAccessKey>\
                         <SessionToken>token</SessionToken>\
                         <Expiration>2100-01-01T00:00:00Z</Expiration></Credentials>\
                         </AssumeRoleResult></AssumeRoleResponse>"
                    ),
                )
            };
            let response = StatusCode::try_from(status)
                .map(|status| HttpResponse::new(status, SdkBody::from(xml)));
            HttpConnectorFuture::ready(Ok(response.expect("status")))
        }
    }

    /// A deployer whose every call goes to `sts` (the SDK's defaults otherwise: its clock and
    /// sleep, which `AssumeRole` needs).
    async fn deployer(sts: &Sts) -> Deployer {
        let sts = sts.clone();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .http_client(http_client_fn(move |_, _| {
                SharedHttpConnector::new(sts.clone())
            }))
            .load()
            .await;
        Deployer::new(&sdk, "rollback", "t", TeamMail::default(), 120_000)
    }

    /// The deploy tests' deployment, as the `n`th, in `account`.
    fn deployment(n: usize, account: &str) -> Deployment {
        Deployment {
            deployment_id: format!("int-{n:016}"),
            account_id: account.into(),
            role_arn: format!("arn:aws:iam::{account}:role/shipgate-deploy"),
            ..crate::testing::deployment()
        }
    }

    const ACCOUNTS: [&str; 3] = ["222222222222", "333333333333", "444444444444"];

    #[tokio::test]
    async fn fifty_deployments_in_three_accounts_assume_each_role_once() {
        let sts = Sts::default();
        let deployer = deployer(&sts).await;
        let deployments: Vec<Deployment> =
            (0..50).map(|n| deployment(n, ACCOUNTS[n % 3])).collect();
        let clients = deployer.clients_by_role(deployments.iter()).await;
        let mut asked = sts.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            ACCOUNTS.map(|a| format!("arn:aws:iam::{a}:role/shipgate-deploy"))
        );
        assert_eq!(clients.len(), 3);
        for d in &deployments {
            assert!(
                matches!(clients.get(&d.role_arn), Some(Ok(_))),
                "{}",
                d.role_arn
            );
        }
        // The next alarm in the same process: the sessions are reused.
        deployer.clients_by_role(deployments.iter()).await;
        assert_eq!(sts.asked.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_role_refused_once_is_the_same_final_error_for_each_of_its_deployments() {
        let refused = "arn:aws:iam::555555555555:role/shipgate-deploy".to_owned();
        let sts = Sts {
            refused: Some(refused.clone()),
            ..Sts::default()
        };
        let deployer = deployer(&sts).await;
        let deployments: Vec<Deployment> = (0..20)
            .map(|n| {
                deployment(
                    n,
                    if n % 2 == 0 {
                        "555555555555"
                    } else {
                        ACCOUNTS[0]
                    },
                )
            })
            .collect();
        let clients = deployer.clients_by_role(deployments.iter()).await;
        assert_eq!(sts.asked.lock().unwrap().len(), 2);
        match clients.get(&refused) {
            Some(Err(e)) => {
                assert!(e.is_access_denied() && !e.is_retryable(), "{e}");
                assert!(e.to_string().contains("AccessDenied"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            clients.get(&format!(
                "arn:aws:iam::{}:role/shipgate-deploy",
                ACCOUNTS[0]
            )),
            Some(Ok(_))
        ));
    }
}
