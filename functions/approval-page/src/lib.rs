//! The approval page, served by a Lambda function URL.
//!
//! `GET` with a link token checks the link and shows the release, its change summary and two
//! buttons; it changes nothing, so a mail scanner or link preview fetching the link decides
//! nothing. Only a `POST` of the page's own form decides: it carries the link token and a form
//! token derived from it, and browsers' `Sec-Fetch-Site`/`Origin` must say it comes from this
//! page. Every check runs again on the POST, then one conditional write claims the gate
//! (`pending` → `deciding`; a link decides once, and the other approvers' links stop working),
//! `PutApprovalResult` tells CodePipeline, and the gate records who decided, when, from which
//! link, with which comment. CodePipeline's approval token is read from the gate for that call
//! only: never in the link, the page or the logs.
//!
//! Refusals are pages that say why, with the HTTP status that fits: 400 malformed, 403 forged or
//! cross-site, 404 unknown, 405 wrong method, 409 already decided or superseded, 410 expired or
//! no longer waiting, 413 too large, 415 not a form, 503 try again.

mod form;
mod request;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use shipgate::application::Application;
use shipgate::application::directory::{Directory, DirectoryError};
use shipgate::approval::{
    ApprovalView, Notice, PageForm, approval_page, content_security_policy, decided_page,
    format_utc, notice_page,
};
use shipgate::aws::codepipeline::{
    ApprovalDecision, approval_action_state, put_approval_result, recent_executions, superseded_by,
};
use shipgate::aws::secrets::{LinkKeyCache, LinkKeys};
use shipgate::config::{ConfigError, Env};
use shipgate::error::AwsError;
use shipgate::links::{
    LinkClaims, LinkError, check_link_shape, form_token, nonce_key, verify_form_token,
    verify_link_with_keys,
};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::store::{
    Decision, DecisionClaim, Gate, GateState, IssuedLink, ReleaseRecord, Store, StoreError, Verdict,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, warn};

/// A log event about a gate (any value with its `release_id`, `execution_id` and `environment`),
/// carrying those first as every event here does:
/// `gate_event!(info, gate, outcome = "shown", "approval page shown")`.
macro_rules! gate_event {
    ($level:ident, $gate:expr, $($fields:tt)+) => {
        tracing::$level!(
            release_id = $gate.release_id,
            execution_id = $gate.execution_id,
            env = $gate.environment,
            $($fields)+
        )
    };
}

pub use form::{MAX_BODY_BYTES, MAX_COMMENT_CHARS, cross_site, read_form};
pub use request::{RequestError, read_function_url_event};

/// The page's configuration, read once from the environment.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// `SHIPGATE_TABLE`.
    pub table: String,
    /// `SHIPGATE_LINK_KEY_SECRET`: the secret links are signed with.
    pub link_key_secret: String,
    /// `SHIPGATE_SUPERSEDE_LOOKBACK` (default 25): how many recent executions are read to find
    /// a newer release that replaced the one waiting.
    pub supersede_lookback: i32,
}

impl PageConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            link_key_secret: env.required("SHIPGATE_LINK_KEY_SECRET")?,
            supersede_lookback: env.parsed_or("SHIPGATE_SUPERSEDE_LOOKBACK", 25)?,
        })
    }
}

/// Whether `approver` may decide `gate` now, by the gate's place in its application's
/// pipeline, as the application is declared now: the gate must be on the application's
/// pipeline, its stage must gate the environment recorded on it, and `approver` must be one of
/// that environment's approvers. So a link of one application's gate decides nothing of
/// another's, whoever it names. The reason when not.
pub fn approver_authority(
    gate: &Gate,
    approver: &str,
    application: &Application,
) -> Result<(), String> {
    if gate.pipeline != application.pipeline {
        return Err(format!(
            "the gate is on pipeline {}, but application {} releases through {}",
            gate.pipeline, application.name, application.pipeline
        ));
    }
    let gated = application.gated(&gate.stage).ok_or_else(|| {
        format!(
            "stage {} gates no environment of application {}",
            gate.stage, application.name
        )
    })?;
    if gated.environment != gate.environment {
        return Err(format!(
            "the gate is recorded for {} but its stage {} gates {}",
            gate.environment, gate.stage, gated.environment
        ));
    }
    let approvers = application
        .environment(&gated.environment)
        .map(|e| e.approvers.as_slice())
        .unwrap_or_default();
    if !approvers.iter().any(|a| a.eq_ignore_ascii_case(approver)) {
        return Err(format!(
            "the link's approver is not an approver of {} for application {}",
            gated.environment, application.name
        ));
    }
    Ok(())
}

/// The page, with its clients built once.
pub struct ApprovalPage {
    config: PageConfig,
    store: Store,
    applications: Arc<Directory>,
    cp: aws_sdk_codepipeline::Client,
    keys: LinkKeyCache,
    csp: String,
}

/// An answer: status and page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub html: String,
}

/// Something went wrong on shipgate's side (not the link's fault).
#[derive(Debug, thiserror::Error)]
enum Internal {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Application(#[from] DirectoryError),
}

/// A link that passed every check.
struct Checked {
    claims: LinkClaims,
    gate: Gate,
    /// The gate's release, read once for the check and the page.
    release: ReleaseRecord,
    link: IssuedLink,
    keys: LinkKeys,
    token: String,
}

impl ApprovalPage {
    pub fn new(config: PageConfig, sdk: &SdkConfig) -> Self {
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            applications: Arc::new(Directory::new(aws_sdk_ssm::Client::new(sdk))),
            cp: aws_sdk_codepipeline::Client::new(sdk),
            keys: LinkKeyCache::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                config.link_key_secret.clone(),
                Duration::from_secs(300),
            ),
            csp: content_security_policy(),
            config,
        }
    }

    /// One request: the page's answer to it, with the headers every answer carries.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let head = request.method() == Method::HEAD;
        let answer = self.answer(&request).await;
        self.respond(answer, head)
    }

    /// A function URL event (payload format 2.0), as Lambda delivers it, in; the function URL
    /// response JSON out. Whatever the event holds, the answer is one of the page's own pages:
    /// an event that is no request the page can read gets a 400 page.
    pub async fn handle_event(&self, event: serde_json::Value) -> serde_json::Value {
        let response = match request::read_function_url_event(&event) {
            Ok(request) => self.handle(request).await,
            Err(e) => {
                warn!(error = %e, outcome = "refused", "request not readable");
                self.respond(
                    refusal(
                        400,
                        "Request not readable",
                        "This request could not be read as a visit to the approval page. Open \
                         the link from your approval email. Nothing was decided.",
                    ),
                    false,
                )
            }
        };
        function_url_response(response)
    }

    async fn answer(&self, request: &Request) -> Answer {
        let query = request.query_string_parameters();
        match request.method().as_str() {
            "GET" | "HEAD" => {
                let token = query.first("t").map(str::to_owned);
                let intent = match query.first("i") {
                    Some("approve") => Some(Verdict::Approve),
                    Some("reject") => Some(Verdict::Reject),
                    _ => None,
                };
                self.show(token.as_deref(), intent).await
            }
            "POST" => self.decide(request).await,
            _ => refusal(
                405,
                "Not here",
                "This page only shows approvals and takes decisions from its own buttons.",
            ),
        }
    }

    /// An answer as a response: its page (none for `HEAD`) and the security headers.
    fn respond(&self, answer: Answer, head: bool) -> Response<Body> {
        let body = if head {
            Body::Empty
        } else {
            Body::Text(answer.html)
        };
        let mut builder = Response::builder().status(answer.status);
        for (name, value) in form::security_headers(&self.csp) {
            builder = builder.header(name, value);
        }
        if answer.status == 405 {
            builder = builder.header("allow", "GET, HEAD, POST");
        }
        builder.body(body).unwrap_or_else(|_| {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }

    async fn show(&self, token: Option<&str>, intent: Option<Verdict>) -> Answer {
        let checked = match self.check(token).await {
            Ok(Ok(checked)) => checked,
            Ok(Err(answer)) => return answer,
            Err(e) => return unavailable(&e),
        };
        let view = match self.view(&checked.release, &checked.gate).await {
            Ok(view) => view,
            Err(e) => return unavailable(&e),
        };
        gate_event!(
            info,
            checked.gate,
            approver = checked.claims.approver,
            outcome = "shown",
            "approval page shown"
        );
        Answer {
            status: 200,
            html: approval_page(
                &view,
                &PageForm {
                    approver: checked.claims.approver.clone(),
                    link_token: checked.token.clone(),
                    form_token: form_token(&checked.claims, &checked.keys.current),
                    intent,
                },
            ),
        }
    }

    async fn decide(&self, request: &Request) -> Answer {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return refusal(
                415,
                "Not a form",
                "Decisions are taken with the buttons of the approval page.",
            );
        }
        if let Some(why) = cross_site(
            header("origin").as_deref(),
            header("sec-fetch-site").as_deref(),
            header("host").as_deref(),
        ) {
            warn!(
                outcome = "refused",
                reason = why,
                "cross-site decision refused"
            );
            return refusal(
                403,
                "Refused",
                &format!(
                    "This decision did not come from the approval page ({why}). Nothing was \
                     decided: open the link from your email and use the page's buttons."
                ),
            );
        }
        let fields = match read_form(request.body().as_ref()) {
            Ok(fields) => fields,
            Err(form::FormError::TooLarge) => {
                return refusal(413, "Too large", "The form sent is larger than the page's.");
            }
            Err(e) => {
                return refusal(
                    400,
                    "Form not readable",
                    &format!("{e}: nothing was decided."),
                );
            }
        };
        let verdict = match fields.get("decision").map(String::as_str) {
            Some("approve") => Verdict::Approve,
            Some("reject") => Verdict::Reject,
            _ => {
                return refusal(
                    400,
                    "No decision",
                    "The form did not say approve or reject: nothing was decided.",
                );
            }
        };
        let comment = fields
            .get("comment")
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
        {
            return refusal(
                400,
                "Comment too long",
                &format!(
                    "Comments are limited to {MAX_COMMENT_CHARS} characters: nothing was decided."
                ),
            );
        }

        let checked = match self.check(fields.get("t").map(String::as_str)).await {
            Ok(Ok(checked)) => checked,
            Ok(Err(answer)) => return answer,
            Err(e) => return unavailable(&e),
        };
        let form_ok = fields
            .get("f")
            .is_some_and(|f| verify_form_token(f, &checked.claims, &checked.keys.verifying()));
        if !form_ok {
            gate_event!(
                warn,
                checked.gate,
                approver = checked.claims.approver,
                outcome = "refused",
                "decision without the page's form token"
            );
            return refusal(
                403,
                "Decide on the page",
                "This decision was not sent by the approval page's form. Nothing was decided: \
                 open the link from your email and use the page's buttons.",
            );
        }
        match self.record(&checked, verdict, comment).await {
            Ok(answer) => answer,
            Err(e) => unavailable(&e),
        }
    }

    /// Claims the gate, tells CodePipeline, settles the gate.
    async fn record(
        &self,
        checked: &Checked,
        verdict: Verdict,
        comment: Option<String>,
    ) -> Result<Answer, Internal> {
        let gate = &checked.gate;
        let now = now_rfc3339();
        let decision = Decision {
            verdict,
            approver: checked.claims.approver.clone(),
            link: checked.link.nonce_key.clone(),
            comment: comment.clone(),
            decided_at: now.clone(),
            refused: None,
        };
        let claimed = match self.store.claim_decision(gate, &decision, &now).await? {
            DecisionClaim::Claimed(gate) => gate,
            DecisionClaim::Conflict(current) => {
                gate_event!(
                    info,
                    gate,
                    approver = checked.claims.approver,
                    outcome = "already_decided",
                    "decision refused: the gate was decided first"
                );
                return Ok(gate_closed(&current));
            }
        };
        let status = match verdict {
            Verdict::Approve => ApprovalDecision::Approved,
            Verdict::Reject => ApprovalDecision::Rejected,
        };
        let summary = approval_summary(
            verdict,
            &checked.claims.approver,
            &decision.link,
            comment.as_deref(),
        );
        let put = put_approval_result(&self.cp, claimed.approval_action(), status, &summary).await;
        let now = now_rfc3339();
        match put {
            Ok(()) => {
                let settled = match verdict {
                    Verdict::Approve => GateState::Approved,
                    Verdict::Reject => GateState::Rejected,
                };
                self.store
                    .settle_decision(&claimed, &decision.link, settled, None, &now)
                    .await?;
                gate_event!(
                    info,
                    claimed,
                    gate = claimed.key(),
                    approver = decision.approver,
                    link = decision.link,
                    verdict = verdict.as_str(),
                    outcome = "decided",
                    "approval decided"
                );
                let decided = match verdict {
                    Verdict::Approve => MetricName::ApprovalsApproved,
                    Verdict::Reject => MetricName::ApprovalsRejected,
                };
                StageMetrics::new(
                    &claimed.environment,
                    &claimed.release_id,
                    &claimed.execution_id,
                )
                .count(decided);
                let view = self.view(&checked.release, &claimed).await?;
                Ok(Answer {
                    status: 200,
                    html: decided_page(
                        &view,
                        verdict,
                        &decision.approver,
                        comment.as_deref(),
                        &decision.decided_at,
                    ),
                })
            }
            Err(e) if e.retryable => {
                gate_event!(warn, claimed, error = %e, outcome = "retry", "CodePipeline did not take the decision; gate reopened");
                self.store
                    .release_decision(&claimed, &decision.link, &now)
                    .await?;
                Err(e.into())
            }
            Err(e) => {
                let reason = format!(
                    "CodePipeline refused the decision ({}): the approval is no longer waiting",
                    e.code.as_deref().unwrap_or("error")
                );
                gate_event!(warn, claimed, error = %e, outcome = "closed", "decision refused by CodePipeline");
                self.store
                    .settle_decision(
                        &claimed,
                        &decision.link,
                        GateState::Closed,
                        Some(&reason),
                        &now,
                    )
                    .await?;
                Ok(Answer {
                    status: 410,
                    html: notice_page(&Notice {
                        title: "No longer waiting".into(),
                        message: format!("{reason}. Nothing was decided."),
                        details: vec![("Execution".into(), claimed.execution_id.clone())],
                    }),
                })
            }
        }
    }

    /// Every check a link passes before its page is shown or its decision taken. `Ok(Err(_))`
    /// is a refusal page; `Err` is shipgate failing to check.
    async fn check(&self, token: Option<&str>) -> Result<Result<Checked, Answer>, Internal> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Err(refusal(
                400,
                "Link incomplete",
                "This page opens from the link in an approval email, and the link you followed \
                 has no token. Copy the whole link from the email. Nothing was decided.",
            )));
        };
        if let Err(e) = check_link_shape(token) {
            warn!(outcome = "refused", reason = %e, "approval link refused");
            return Ok(Err(link_refusal(&e)));
        }
        let keys = self.keys.keys().await?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = match verify_link_with_keys(token, &keys.verifying(), now) {
            Ok(claims) => claims,
            Err(e) => {
                warn!(outcome = "refused", reason = %e, "approval link refused");
                return Ok(Err(link_refusal(&e)));
            }
        };
        let Some(gate) = self
            .store
            .get_gate(&claims.execution_id, &claims.stage, &claims.action)
            .await?
        else {
            return Ok(Err(refusal(
                404,
                "No such approval",
                "shipgate has no approval for this link. Nothing was decided.",
            )));
        };
        let key = nonce_key(&claims);
        let link = match gate.issued_link(&key) {
            Some(link) if link.approver == claims.approver => link.clone(),
            _ if !gate.links.iter().any(|l| l.approver == claims.approver) => {
                gate_event!(
                    warn,
                    gate,
                    outcome = "refused",
                    "signed link for someone who is not an approver of this gate"
                );
                return Ok(Err(refusal(
                    403,
                    "Link not valid",
                    "This link was not issued for this approval. Nothing was decided.",
                )));
            }
            _ => {
                return Ok(Err(refusal(
                    410,
                    "Link replaced",
                    "This approval was requested again since this link was sent: the link \
                     belongs to an earlier request. Use the newest approval email. Nothing was \
                     decided.",
                )));
            }
        };
        let release = self
            .store
            .get_release(&gate.release_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(gate.release_id.clone()))?;
        let application = match self.application_of(&gate, &release).await? {
            Ok(application) => application,
            Err(answer) => return Ok(Err(answer)),
        };
        if let Err(reason) = approver_authority(&gate, &claims.approver, &application) {
            gate_event!(
                warn,
                gate,
                stage = gate.stage,
                outcome = "refused",
                reason,
                "link of someone who may not decide this gate"
            );
            return Ok(Err(refusal(
                403,
                "Not an approver here",
                "This link's approver may not decide this approval: every link is checked \
                 against the approvers of the environment the approval gates. Nothing was \
                 decided.",
            )));
        }
        if gate.state != GateState::Pending {
            return Ok(Err(gate_closed(&gate)));
        }
        if now > gate.approval_expires_at {
            return Ok(Err(refusal(
                410,
                "Approval expired",
                &format!(
                    "This approval expired at {}. Nothing was decided.",
                    format_utc(gate.approval_expires_at)
                ),
            )));
        }
        let state = approval_action_state(&self.cp, gate.approval_action()).await?;
        if !state.waiting_with_token {
            return Ok(Err(refusal(
                410,
                "No longer waiting",
                &format!(
                    "CodePipeline no longer waits for this approval (its status is {}): it was \
                     decided elsewhere, it expired, or the execution stopped. Nothing was decided.",
                    state.status.as_deref().unwrap_or("unknown")
                ),
            )));
        }
        let executions =
            recent_executions(&self.cp, &gate.pipeline, self.config.supersede_lookback).await?;
        if let Some(newer) = superseded_by(&executions, &gate.execution_id) {
            gate_event!(
                info,
                gate,
                newer_execution = newer.execution_id,
                outcome = "superseded",
                "approval page for a superseded release"
            );
            return Ok(Err(Answer {
                status: 409,
                html: notice_page(&Notice {
                    title: "Superseded by a newer release".into(),
                    message: "A newer release has entered the pipeline since this one asked for \
                              approval. Approving this one would ship an outdated version, so \
                              nothing was decided. The newer release asks for its own approval \
                              when it reaches this gate."
                        .into(),
                    details: vec![
                        ("This execution".into(), gate.execution_id.clone()),
                        ("Newer execution".into(), newer.execution_id.clone()),
                        ("Its status".into(), newer.status.clone()),
                    ],
                }),
            }));
        }
        Ok(Ok(Checked {
            claims,
            gate,
            release,
            link,
            keys,
            token: token.to_owned(),
        }))
    }

    /// The application whose release the gate waits for, as declared now; a refusal when the
    /// release names none, or one no longer declared.
    async fn application_of(
        &self,
        gate: &Gate,
        release: &ReleaseRecord,
    ) -> Result<Result<Application, Answer>, Internal> {
        let name = release.application.clone().unwrap_or_default();
        match self.applications.application(&name).await? {
            Some(application) => Ok(Ok(application)),
            None => {
                gate_event!(
                    warn,
                    gate,
                    application = name,
                    outcome = "refused",
                    "the gate's application is not declared"
                );
                Ok(Err(refusal(
                    403,
                    "Application not served",
                    "The application of this approval is no longer one this shipgate serves, so \
                     nobody may decide it here. Nothing was decided.",
                )))
            }
        }
    }

    async fn view(&self, release: &ReleaseRecord, gate: &Gate) -> Result<ApprovalView, Internal> {
        // An approval to promote shows the images to copy, not a change set (as the email).
        let stacks = if gate.promote_from.is_some() {
            Vec::new()
        } else {
            self.store
                .list_stack_changes(&gate.release_id, &gate.environment)
                .await?
        };
        Ok(ApprovalView::for_gate(release, gate, stacks))
    }
}

/// The page for a gate that is no longer pending.
fn gate_closed(gate: &Gate) -> Answer {
    let (title, message, status) = match (&gate.state, &gate.decision) {
        (GateState::Approved | GateState::Rejected, Some(d)) => (
            "Already decided",
            format!(
                "This approval was already {} by {} at {}. Nothing was changed.",
                match d.verdict {
                    Verdict::Approve => "approved",
                    Verdict::Reject => "rejected",
                },
                d.approver,
                shown_time(&d.decided_at)
            ),
            409,
        ),
        (GateState::Deciding, Some(d)) => (
            "Being decided",
            format!(
                "{} is deciding this approval right now. Nothing was changed by this request.",
                d.approver
            ),
            409,
        ),
        (GateState::Closed, d) => (
            "No longer waiting",
            format!(
                "This approval is closed{}. Nothing was decided.",
                d.as_ref()
                    .and_then(|d| d.refused.as_deref())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            410,
        ),
        _ => (
            "Already decided",
            "This approval was already decided. Nothing was changed.".to_owned(),
            409,
        ),
    };
    let mut details = vec![("Execution".to_owned(), gate.execution_id.clone())];
    if let Some(comment) = gate.decision.as_ref().and_then(|d| d.comment.clone()) {
        details.push(("Comment".to_owned(), comment));
    }
    Answer {
        status,
        html: notice_page(&Notice {
            title: title.to_owned(),
            message,
            details,
        }),
    }
}

fn link_refusal(e: &LinkError) -> Answer {
    let (title, message) = match e {
        LinkError::Malformed => (
            "Link damaged",
            "This link is not a complete approval link (mail clients sometimes cut long links). \
             Copy the whole link from the email. Nothing was decided."
                .to_owned(),
        ),
        LinkError::BadSignature => (
            "Link not valid",
            "This link was not issued by shipgate, or it was changed on the way. Nothing was \
             decided. Use the link exactly as the email sent it."
                .to_owned(),
        ),
        LinkError::Expired { expired_at } => (
            "Link expired",
            format!(
                "This link expired at {}, with its approval. Nothing was decided.",
                format_utc(*expired_at)
            ),
        ),
    };
    refusal(e.http_status(), title, &message)
}

fn refusal(status: u16, title: &str, message: &str) -> Answer {
    Answer {
        status,
        html: notice_page(&Notice {
            title: title.to_owned(),
            message: message.to_owned(),
            details: Vec::new(),
        }),
    }
}

fn unavailable(e: &Internal) -> Answer {
    error!(error = %e, outcome = "unavailable", "the approval could not be checked");
    refusal(
        503,
        "Try again in a minute",
        "shipgate could not check this approval right now. Nothing was decided; the link still \
         works.",
    )
}

/// What CodePipeline records with the decision (at most 512 characters).
pub fn approval_summary(
    verdict: Verdict,
    approver: &str,
    link: &str,
    comment: Option<&str>,
) -> String {
    let what = match verdict {
        Verdict::Approve => "Approved",
        Verdict::Reject => "Rejected",
    };
    let link = link.strip_prefix("LINK#").unwrap_or(link);
    let short: String = link.chars().take(12).collect();
    let mut summary = format!("{what} by {approver} via shipgate link {short}");
    if let Some(comment) = comment {
        summary.push_str(": ");
        summary.push_str(comment);
    }
    if summary.chars().count() > 512 {
        summary = summary.chars().take(511).collect::<String>() + "…";
    }
    summary
}

fn shown_time(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .map(|t| format_utc(t.unix_timestamp()))
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A response as a function URL returns it (`statusCode`, `headers`, `body`).
pub fn function_url_response(response: Response<Body>) -> serde_json::Value {
    let (parts, body) = response.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), value.into());
        }
    }
    let (body, base64) = match body {
        Body::Empty => (String::new(), false),
        Body::Text(text) => (text, false),
        Body::Binary(bytes) => {
            use base64::Engine as _;
            (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                true,
            )
        }
        _ => (String::new(), false),
    };
    serde_json::json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64,
    })
}

shipgate::function!(ApprovalPage, PageConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate::store::ApprovalToken;

    fn orders() -> Application {
        shipgate::testing::application(
            "orders",
            "shipgate",
            &[
                ("int", "int-lead@example.com"),
                ("stg", "stg-lead@example.com, STG-ops@example.com"),
                ("prod", "prod-lead@example.com"),
            ],
        )
    }

    fn gate(stage: &str, action: &str, environment: &str) -> Gate {
        let token = ApprovalToken::new("token");
        Gate {
            pipeline: "shipgate".into(),
            execution_id: "exec-1".into(),
            stage: stage.into(),
            action: action.into(),
            environment: environment.into(),
            release_id: "rel-1".into(),
            promote_from: None,
            round: token.round(),
            approval_token: token,
            approval_expires_at: 1_900_000_000,
            state: GateState::Pending,
            links: Vec::new(),
            decision: None,
            opened_at: "2026-12-07T10:00:00Z".into(),
            updated_at: "2026-12-07T10:00:00Z".into(),
        }
    }

    #[test]
    fn only_the_approvers_of_the_environment_its_stage_gates_may_decide() {
        let orders = orders();
        let stg = gate("stg", "ApproveStg", "stg");
        assert_eq!(
            approver_authority(&stg, "stg-lead@example.com", &orders),
            Ok(())
        );
        assert_eq!(
            approver_authority(&stg, "stg-ops@example.com", &orders),
            Ok(())
        );
        let refused = approver_authority(&stg, "int-lead@example.com", &orders).unwrap_err();
        assert!(refused.contains("not an approver of stg"), "{refused}");
        // A promotion into stg is stg's approvers' to decide.
        let promotion = gate("PromoteTostg", "ApprovePromotion", "stg");
        assert_eq!(
            approver_authority(&promotion, "stg-lead@example.com", &orders),
            Ok(())
        );
        // A gate recorded for int at stg's stage is decided by nobody: int's approvers hold no
        // authority over stg's gate, whatever the record says.
        let mislabelled = gate("stg", "ApproveStg", "int");
        let refused =
            approver_authority(&mislabelled, "int-lead@example.com", &orders).unwrap_err();
        assert!(refused.contains("its stage stg gates stg"), "{refused}");
        let nowhere = gate("Source", "Release", "int");
        assert!(approver_authority(&nowhere, "int-lead@example.com", &orders).is_err());
    }

    #[test]
    fn one_application_s_approvers_decide_nothing_of_another_s_gates() {
        // billing: its own chain, its own pipeline, and an approver who is also orders' int lead.
        let billing = shipgate::testing::application(
            "billing",
            "billing",
            &[
                ("dev", "dev-lead@example.com"),
                ("int", "billing-int@example.com, int-lead@example.com"),
            ],
        );
        let orders_gate = gate("int", "ApproveInt", "int");
        // orders' gate read against billing's declaration (a release record naming billing on
        // orders' pipeline): refused, even for someone who approves int for both.
        let refused =
            approver_authority(&orders_gate, "int-lead@example.com", &billing).unwrap_err();
        assert!(
            refused
                .contains("on pipeline shipgate, but application billing releases through billing"),
            "{refused}"
        );
        let mut billing_gate = gate("int", "ApproveInt", "int");
        billing_gate.pipeline = "billing".into();
        assert_eq!(
            approver_authority(&billing_gate, "billing-int@example.com", &billing),
            Ok(())
        );
        // orders' approvers are not billing's.
        assert!(approver_authority(&billing_gate, "stg-lead@example.com", &billing).is_err());
        // billing's chain has no stg: its stage gates nothing there.
        let mut stg = gate("stg", "ApproveStg", "stg");
        stg.pipeline = "billing".into();
        let refused = approver_authority(&stg, "billing-int@example.com", &billing).unwrap_err();
        assert!(
            refused.contains("gates no environment of application billing"),
            "{refused}"
        );
    }

    #[test]
    fn the_pipeline_summary_names_approver_link_and_comment() {
        let s = approval_summary(
            Verdict::Reject,
            "ops@example.com",
            "LINK#0123456789abcdef",
            Some("the migration is missing"),
        );
        assert_eq!(
            s,
            "Rejected by ops@example.com via shipgate link 0123456789ab: the migration is missing"
        );
        let long = approval_summary(Verdict::Approve, "a@b.c", "LINK#x", Some(&"é".repeat(900)));
        assert_eq!(long.chars().count(), 512);
    }
}
