//! The mailer: CodePipeline's manual approval (an SNS notification) becomes one email per
//! approver of that environment, each with its own signed link to the approval page.
//!
//! The environment, and so who is asked, comes from the stage the approval waits in
//! ([`authorise`]; the stage and action are then checked against the pipeline's state with the
//! token), never from the approval's `CustomData`: a notification whose `CustomData` names
//! another environment than its stage gates is refused, logged and counted, and nobody is
//! mailed. For each notification it checks the approval is really waiting (`GetPipelineState`, with the
//! token), opens the gate in the table (a conditional write: a duplicate notification finds the
//! gate open and mails nobody twice), signs one link per approver (bound to the execution, stage,
//! action and approver, expiring with the approval, with a fresh nonce) and sends the email with
//! the release and its change summary. CodePipeline's approval token stays in the table: it is
//! never in a link, an email or a log line.

mod config;
pub mod notification;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use serde::Serialize;
use shipgate::application::Application;
use shipgate::application::directory::{Directory, DirectoryError};
use shipgate::approval::{ApprovalView, GatedEnvironment, approval_email, gated_environment};
use shipgate::aws::codepipeline::approval_action_state;
use shipgate::aws::secrets::LinkKeyCache;
use shipgate::aws::ses::{Email, send_email};
use shipgate::error::AwsError;
use shipgate::links::{LinkClaims, nonce_key, sign_link};
use shipgate::metrics::{MetricEvent, MetricName, StageMetrics};
use shipgate::store::{Gate, GateOpening, GateState, IssuedLink, Store, StoreError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, info, warn};

pub use config::{GateConfig, MailerConfig};
pub use notification::{ApprovalNotification, parse_approval_message, read_sns_event};

/// What became of one SNS record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Emails sent (this many now; a duplicate after a partial send completes it).
    Mailed {
        gate: String,
        environment: String,
        sent: usize,
    },
    /// Every approver of this round was already mailed.
    Duplicate { gate: String },
    /// Not an approval shipgate handles, or no longer waiting: nothing to do.
    Ignored { reason: String },
    /// An approval whose `CustomData` disagrees with the environment its stage gates, or that
    /// claims a gate its stage is not: nobody mailed, logged and counted.
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailerReport {
    pub records: Vec<RecordOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("the event is not an SNS event: {0}")]
    MalformedEvent(#[source] serde_json::Error),
    #[error("release {0} waits for approval but is not in the table")]
    UnknownRelease(String),
    #[error("the application of release {release_id} could not be looked up: {source}")]
    Application {
        release_id: String,
        #[source]
        source: Box<DirectoryError>,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MailerError {
    pub fn error_type(&self) -> &'static str {
        match self {
            MailerError::MalformedEvent(_) => "MalformedEvent",
            MailerError::UnknownRelease(_) => "UnknownRelease",
            MailerError::Application { .. } => "ApplicationDirectory",
            MailerError::Aws(_) => "AwsError",
            MailerError::Store(_) => "StoreError",
        }
    }
}

/// The mailer, with its clients built once.
pub struct Mailer {
    config: MailerConfig,
    store: Store,
    applications: Arc<Directory>,
    cp: aws_sdk_codepipeline::Client,
    ses: aws_sdk_sesv2::Client,
    keys: LinkKeyCache,
}

impl Mailer {
    pub fn new(config: MailerConfig, sdk: &SdkConfig) -> Self {
        let keys = LinkKeyCache::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            config.link_key_secret.clone(),
            Duration::from_secs(300),
        );
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            applications: Arc::new(Directory::new(aws_sdk_ssm::Client::new(sdk))),
            cp: aws_sdk_codepipeline::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            keys,
            config,
        }
    }

    /// Handles one SNS event (usually one record). An error makes Lambda retry the event; the
    /// gate's conditional write keeps a retry from mailing anyone twice.
    pub async fn handle(&self, event: serde_json::Value) -> Result<MailerReport, MailerError> {
        let notifications = read_sns_event(event).map_err(MailerError::MalformedEvent)?;
        let mut records = Vec::with_capacity(notifications.len());
        for notification in notifications {
            let outcome = match notification {
                Ok(n) => self.mail(&n).await?,
                Err(reason) => {
                    warn!(
                        outcome = "ignored",
                        reason, "SNS message is not an approval"
                    );
                    RecordOutcome::Ignored { reason }
                }
            };
            records.push(outcome);
        }
        Ok(MailerReport { records })
    }

    async fn mail(&self, n: &ApprovalNotification) -> Result<RecordOutcome, MailerError> {
        let Some(release_id) = &n.release_id else {
            let reason = format!(
                "approval {}/{}/{} names no shipgate release in its CustomData",
                n.pipeline, n.stage, n.action
            );
            warn!(outcome = "ignored", reason, "approval not mailed");
            return Ok(RecordOutcome::Ignored { reason });
        };
        let release = self
            .store
            .get_release(release_id)
            .await?
            .ok_or_else(|| MailerError::UnknownRelease(release_id.clone()))?;
        // Who is asked is the release's application's, as declared now.
        let name = release.application.clone().unwrap_or_default();
        let application = self
            .applications
            .application(&name)
            .await
            .map_err(|source| MailerError::Application {
                release_id: release_id.clone(),
                source: Box::new(source),
            })?;
        let Some(application) = application else {
            let reason = format!(
                "approval {}/{}/{}: release {release_id}'s application {name:?} is not declared",
                n.pipeline, n.stage, n.action
            );
            return Ok(refuse(n, &[], reason));
        };
        let gated = match authorise(n, &application) {
            Ok(gated) => gated,
            Err(reason) => return Ok(refuse(n, &application.chain(), reason)),
        };
        let environment = &gated.environment;
        let approvers = application
            .environment(environment)
            .map(|e| e.approvers.clone())
            .unwrap_or_default();
        let gate_config = self.config.gate(environment);
        let state = approval_action_state(&self.cp, n.approval_action()).await?;
        if !state.waiting_with_token {
            let reason = format!(
                "approval {}/{}/{} is no longer waiting with this token (status {})",
                n.pipeline,
                n.stage,
                n.action,
                state.status.as_deref().unwrap_or("unknown")
            );
            info!(
                release_id,
                execution_id = n.execution_id.as_deref(),
                env = environment,
                outcome = "ignored",
                reason,
                "late approval notification"
            );
            return Ok(RecordOutcome::Ignored { reason });
        }
        let Some(execution_id) = n.execution_id.clone().or(state.execution_id) else {
            let reason = "the waiting approval has no execution id".to_owned();
            return Ok(RecordOutcome::Ignored { reason });
        };
        // An approval to promote shows the images to copy, not a change set: the target
        // environment's change sets are made after the copy and approved at its own gate.
        let stacks = if gated.promote_from.is_some() {
            Vec::new()
        } else {
            self.store
                .list_stack_changes(release_id, environment)
                .await?
        };

        let now = now_rfc3339();
        let links = approvers
            .iter()
            .map(|approver| {
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                let claims = claims_for(&execution_id, n, approver, &nonce);
                IssuedLink {
                    approver: approver.clone(),
                    nonce_key: nonce_key(&claims),
                    nonce,
                    message_id: None,
                }
            })
            .collect();
        let proposed = Gate {
            pipeline: n.pipeline.clone(),
            execution_id: execution_id.clone(),
            stage: n.stage.clone(),
            action: n.action.clone(),
            environment: environment.clone(),
            release_id: release_id.clone(),
            promote_from: gated.promote_from.clone(),
            approval_token: n.token.clone(),
            round: n.token.round(),
            approval_expires_at: n.expires_at,
            state: GateState::Pending,
            links,
            decision: None,
            opened_at: now.clone(),
            updated_at: now,
        };
        let gate = match self.store.open_gate(&proposed).await? {
            GateOpening::Opened(gate) => gate,
            GateOpening::Existing(gate) => {
                if gate.links.iter().all(|l| l.message_id.is_some())
                    || gate.state != GateState::Pending
                {
                    info!(
                        release_id,
                        execution_id,
                        env = environment,
                        gate = gate.key(),
                        outcome = "duplicate",
                        "approval already mailed"
                    );
                    return Ok(RecordOutcome::Duplicate { gate: gate.key() });
                }
                gate
            }
        };

        let view = ApprovalView::for_gate(&release, &gate, stacks);
        let keys = self.keys.keys().await?;
        let mut sent = 0;
        for (index, link) in gate.links.iter().enumerate() {
            if link.message_id.is_some() {
                continue;
            }
            let claims = claims_for(&gate.execution_id, n, &link.approver, &link.nonce);
            let token = sign_link(&claims, &keys.current);
            let approve_url = link_url(&gate_config.link_base_url, &token, "approve");
            let reject_url = link_url(&gate_config.link_base_url, &token, "reject");
            let rendered = approval_email(&view, &link.approver, &approve_url, &reject_url);
            let message_id = send_email(
                &self.ses,
                &Email {
                    from: gate_config.mail_from.clone(),
                    to: vec![link.approver.clone()],
                    subject: rendered.subject,
                    html: rendered.html,
                    text: rendered.text,
                },
            )
            .await?;
            self.store
                .record_link_sent(&gate, index, &message_id)
                .await?;
            sent += 1;
        }
        info!(
            release_id,
            execution_id = gate.execution_id,
            env = environment,
            gate = gate.key(),
            approvers = gate.links.len(),
            sent,
            outcome = "mailed",
            "approval emails sent"
        );
        StageMetrics::new(environment, release_id, &gate.execution_id)
            .event(MetricName::ApprovalEmailsSent, sent as f64)
            .emit();
        Ok(RecordOutcome::Mailed {
            gate: gate.key(),
            environment: environment.clone(),
            sent,
        })
    }
}

/// The environment `n`'s approval gates, by its stage in its application's chain
/// ([`gated_environment`]), or why it is refused: it comes from another pipeline than the
/// application's, its stage gates no environment of the chain, or its `CustomData` names another
/// environment (or promotion source) than the stage's. `CustomData` never chooses who is asked;
/// it can only disagree.
pub fn authorise(
    n: &ApprovalNotification,
    application: &Application,
) -> Result<GatedEnvironment, String> {
    let place = format!("{}/{}/{}", n.pipeline, n.stage, n.action);
    if n.pipeline != application.pipeline {
        return Err(format!(
            "approval {place}: application {} releases through pipeline {}, not {}",
            application.name, application.pipeline, n.pipeline
        ));
    }
    let environments = application.chain();
    let gated = gated_environment(&n.stage, &environments).ok_or_else(|| {
        format!(
            "approval {place}: stage {} gates no environment of {} ({})",
            n.stage,
            application.name,
            environments.join(",")
        )
    })?;
    if let Some(claimed) = n.environment.as_deref()
        && claimed != gated.environment
    {
        return Err(format!(
            "approval {place}: its CustomData says environment={claimed}, but stage {} gates {}",
            n.stage, gated.environment
        ));
    }
    if let Some(claimed) = n.promote_from.as_deref()
        && gated.promote_from.as_deref() != Some(claimed)
    {
        return Err(format!(
            "approval {place}: its CustomData says from={claimed}, but stage {} {}",
            n.stage,
            match &gated.promote_from {
                Some(from) => format!("promotes from {from}"),
                None => "is no promotion".to_owned(),
            }
        ));
    }
    Ok(gated)
}

/// A refused notification: logged with both sides of the disagreement, counted, nobody mailed.
fn refuse(n: &ApprovalNotification, environments: &[String], reason: String) -> RecordOutcome {
    let stage_environment = gated_environment(&n.stage, environments).map(|g| g.environment);
    error!(
        release_id = n.release_id.as_deref(),
        execution_id = n.execution_id.as_deref(),
        pipeline = n.pipeline,
        stage = n.stage,
        action = n.action,
        stage_environment = stage_environment.as_deref(),
        custom_data_environment = n.environment.as_deref(),
        custom_data_from = n.promote_from.as_deref(),
        outcome = "refused",
        reason,
        "approval notification refused: nobody mailed"
    );
    let mut metric = MetricEvent::count(MetricName::ApprovalNotificationsRefused)
        .with_total()
        .property("stage", n.stage.as_str())
        .property("action", n.action.as_str());
    if let Some(environment) = &stage_environment {
        metric = metric.environment(environment);
    }
    if let Some(release_id) = &n.release_id {
        metric = metric.property("release_id", release_id.as_str());
    }
    metric.emit();
    RecordOutcome::Refused { reason }
}

fn claims_for(
    execution_id: &str,
    n: &ApprovalNotification,
    approver: &str,
    nonce: &str,
) -> LinkClaims {
    LinkClaims {
        execution_id: execution_id.to_owned(),
        stage: n.stage.clone(),
        action: n.action.clone(),
        approver: approver.to_owned(),
        expires_at: n.expires_at,
        nonce: nonce.to_owned(),
    }
}

/// The page URL for a link token; `intent` only preselects a button on the page.
pub fn link_url(base: &str, token: &str, intent: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    // Tokens are base64url and '.', safe in a query as they are.
    format!("{base}{separator}t={token}&i={intent}")
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

shipgate::event_function!(
    Mailer,
    MailerConfig,
    MailerReport,
    MailerError,
    |mailer, event, _request_id| mailer.handle(event)
);

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate::config::Env;

    /// CodePipeline's documented approval JSON (CodePipeline user guide, "JSON data format for
    /// manual approval notifications") for `stage`/`action` with `custom_data`, inside AWS's
    /// sample SNS event, as the mailer receives it.
    fn sns_approval(stage: &str, action: &str, custom_data: &str) -> serde_json::Value {
        let mut approval: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/approval-notification.json"))
                .unwrap();
        approval["approval"]["pipelineName"] = "shipgate".into();
        approval["approval"]["stageName"] = stage.into();
        approval["approval"]["actionName"] = action.into();
        approval["approval"]["customData"] = custom_data.into();
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/sns-event.json")).unwrap();
        event["Records"][0]["Sns"]["Message"] = approval.to_string().into();
        event
    }

    fn custom_data(environment: &str) -> String {
        format!(
            "orders 1.4.0 waits for approval in {environment}. release=rel-0123abcd \
             execution=9f1e-22 environment={environment}"
        )
    }

    fn config() -> MailerConfig {
        MailerConfig::from_env(&Env::from_pairs([
            ("SHIPGATE_TABLE", "shipgate"),
            ("SHIPGATE_LINK_KEY_SECRET", "link-key"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVAL_URL", "https://approve.example.com/"),
        ]))
        .unwrap()
    }

    fn orders() -> Application {
        shipgate::testing::application(
            "orders",
            "shipgate",
            &[
                ("int", "int-lead@example.com"),
                ("stg", "stg-lead@example.com,stg-ops@example.com"),
                ("prod", "cab@example.com"),
            ],
        )
    }

    fn notification(event: serde_json::Value) -> ApprovalNotification {
        read_sns_event(event).unwrap().remove(0).unwrap()
    }

    #[test]
    fn a_stg_approval_is_decided_by_stgs_approvers() {
        let orders = orders();
        let n = notification(sns_approval("Stg", "ApproveStg", &custom_data("stg")));
        let gated = authorise(&n, &orders).unwrap();
        assert_eq!(gated.environment, "stg");
        assert_eq!(gated.promote_from, None);
        assert_eq!(
            orders.environment(&gated.environment).unwrap().approvers,
            ["stg-lead@example.com", "stg-ops@example.com"]
        );
        // A promotion into stg is stg's approvers' too, from int, by its stage.
        let n = notification(sns_approval(
            "PromoteToStg",
            "ApprovePromotion",
            "orders 1.4.0 passed int. release=rel-1 execution=e-1 environment=stg from=int",
        ));
        let gated = authorise(&n, &orders).unwrap();
        assert_eq!(gated.environment, "stg");
        assert_eq!(gated.promote_from.as_deref(), Some("int"));
    }

    #[test]
    fn custom_data_that_disagrees_with_the_stage_is_refused() {
        let orders = orders();
        let n = notification(sns_approval("Stg", "ApproveStg", &custom_data("int")));
        let reason = authorise(&n, &orders).unwrap_err();
        assert!(reason.contains("environment=int"), "{reason}");
        assert!(reason.contains("gates stg"), "{reason}");
        let n = notification(sns_approval(
            "PromoteToProd",
            "ApprovePromotion",
            "release=rel-1 execution=e-1 environment=prod from=int",
        ));
        let reason = authorise(&n, &orders).unwrap_err();
        assert!(reason.contains("from=int"), "{reason}");
        // A stage that gates nothing cannot be made a gate by its CustomData.
        let n = notification(sns_approval("Source", "Check", &custom_data("prod")));
        let reason = authorise(&n, &orders).unwrap_err();
        assert!(reason.contains("gates no environment"), "{reason}");
    }

    #[test]
    fn an_approval_from_another_pipeline_than_the_application_s_is_refused() {
        // A release of billing (dev → int, its own pipeline) whose approval comes from orders'
        // pipeline ("shipgate" in the fixture): billing's approvers are not asked.
        let billing = shipgate::testing::application(
            "billing",
            "billing",
            &[
                ("dev", "dev-lead@example.com"),
                ("int", "int-lead@example.com"),
            ],
        );
        let n = notification(sns_approval("Int", "ApproveInt", &custom_data("int")));
        let reason = authorise(&n, &billing).unwrap_err();
        assert!(
            reason.contains("application billing releases through pipeline billing, not shipgate"),
            "{reason}"
        );
        // The chain is the application's: billing's int is promoted into from dev.
        let mut n = notification(sns_approval(
            "PromoteToInt",
            "ApprovePromotion",
            "release=rel-1 execution=e-1 environment=int from=dev",
        ));
        n.pipeline = "billing".into();
        let gated = authorise(&n, &billing).unwrap();
        assert_eq!(gated.promote_from.as_deref(), Some("dev"));
    }

    // Every AWS call of the mailer here fails at once (`offline_sdk_config`): a report means
    // the notification was answered without reading the table, asking CodePipeline or mailing.
    #[tokio::test]
    async fn a_notification_that_names_no_release_mails_nobody_and_calls_nothing() {
        let mailer = Mailer::new(config(), &shipgate::testing::offline_sdk_config());
        let report = mailer
            .handle(sns_approval("Stg", "ApproveStg", "approve the thing"))
            .await
            .expect("ignored without any AWS call");
        assert!(
            matches!(&report.records[..], [RecordOutcome::Ignored { reason }]
                if reason.contains("names no shipgate release")),
            "{report:?}"
        );
        // With a release named, its record is read first (and the read fails here, offline).
        let error = mailer
            .handle(sns_approval("Stg", "ApproveStg", &custom_data("stg")))
            .await
            .expect_err("the release is read from the table");
        assert!(matches!(error, MailerError::Store(_)), "{error}");
    }

    #[test]
    fn link_urls_carry_the_token_and_the_intent() {
        assert_eq!(
            link_url("https://abc.lambda-url.eu-west-1.on.aws/", "p.q", "approve"),
            "https://abc.lambda-url.eu-west-1.on.aws/?t=p.q&i=approve"
        );
        assert_eq!(
            link_url("https://x.example/approve?tenant=a", "p.q", "reject"),
            "https://x.example/approve?tenant=a&t=p.q&i=reject"
        );
    }
}
