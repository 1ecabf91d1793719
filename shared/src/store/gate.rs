//! Approval gates: one item per pending CodePipeline manual approval that shipgate mailed
//! (`pk = GATE#<execution>#<stage>#<action>`, `sk = GATE`), listed per release through `gsi1`
//! (`gsi1pk = RELEASE#<id>#GATES`).
//!
//! The gate holds what the approval page needs and the link never carries: CodePipeline's
//! approval token. It lists the links the mailer issued (one per approver, each with its own
//! nonce), and it is decided by one conditional write (`pending` → `deciding`), so a link
//! decides once, and once one approver has decided, every other link of the gate stops working.
//! A manual approval retried by CodePipeline gets a new token: a new *round* of the same gate,
//! whose links are new too; links of an earlier round no longer match.

use std::fmt;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Keys, Store, StoreError, condition_held, from_item, to_item};
use crate::aws::codepipeline::ApprovalAction;
use crate::error::aws_err;

/// CodePipeline's approval token: stored, used for `PutApprovalResult`, never shown or logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApprovalToken(String);

impl ApprovalToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// For the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, one-way name for the approval round this token opened.
    pub fn round(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..12])
    }
}

impl fmt::Debug for ApprovalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApprovalToken([redacted])")
    }
}

/// Where a gate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    /// Waiting for an approver.
    Pending,
    /// A decision was claimed and is being sent to CodePipeline.
    Deciding,
    Approved,
    Rejected,
    /// CodePipeline refused the decision (the approval expired, was decided elsewhere, or its
    /// execution stopped): nothing more can be decided here.
    Closed,
}

impl GateState {
    pub fn as_str(self) -> &'static str {
        match self {
            GateState::Pending => "pending",
            GateState::Deciding => "deciding",
            GateState::Approved => "approved",
            GateState::Rejected => "rejected",
            GateState::Closed => "closed",
        }
    }
}

/// What an approver decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// A link the mailer issued for this gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedLink {
    pub approver: String,
    /// The nonce signed into the link (random; not a secret without the signing key).
    pub nonce: String,
    /// `links::nonce_key` of the link: what decisions record as "which link".
    pub nonce_key: String,
    /// SES's message id, once the email was sent.
    pub message_id: Option<String>,
}

/// A decision, as recorded on the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub approver: String,
    /// The deciding link's `nonce_key`.
    pub link: String,
    pub comment: Option<String>,
    /// RFC 3339.
    pub decided_at: String,
    /// Why the gate closed without this decision taking effect, if it did.
    pub refused: Option<String>,
}

/// A manual approval that shipgate mailed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub environment: String,
    pub release_id: String,
    /// For an approval to promote: the environment the release passed; once approved, its
    /// images go from that environment's registry to `environment`'s. `None`: the approval of
    /// `environment`'s change sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_from: Option<String>,
    pub approval_token: ApprovalToken,
    /// [`ApprovalToken::round`] of `approval_token`.
    pub round: String,
    /// When CodePipeline expires the approval (epoch seconds); links expire with it.
    pub approval_expires_at: i64,
    pub state: GateState,
    pub links: Vec<IssuedLink>,
    pub decision: Option<Decision>,
    /// RFC 3339.
    pub opened_at: String,
    pub updated_at: String,
}

/// How long a gate is kept after its approval expired (then TTL removes it).
const GATE_RETENTION_SECONDS: i64 = 90 * 24 * 3600;

/// The outcome of opening a gate for an approval notification.
#[derive(Debug, Clone, PartialEq)]
pub enum GateOpening {
    /// New round: its links are to be mailed.
    Opened(Gate),
    /// This round is already open (a duplicate notification): here it is.
    Existing(Gate),
}

/// A decision that could not be claimed: the gate as it stands now.
#[derive(Debug)]
pub enum DecisionClaim {
    Claimed(Box<Gate>),
    Conflict(Box<Gate>),
}

fn gate_pk(execution_id: &str, stage: &str, action: &str) -> String {
    format!("GATE#{execution_id}#{stage}#{action}")
}
const GATE_SK: &str = "GATE";

impl Gate {
    /// The approval action the gate stands for, with the token that decides it.
    pub fn approval_action(&self) -> ApprovalAction<'_> {
        ApprovalAction {
            pipeline: &self.pipeline,
            stage: &self.stage,
            action: &self.action,
            token: self.approval_token.expose(),
        }
    }

    pub fn key(&self) -> String {
        gate_pk(&self.execution_id, &self.stage, &self.action)
    }

    /// The issued link with this nonce key, if it belongs to this round.
    pub fn issued_link(&self, nonce_key: &str) -> Option<&IssuedLink> {
        self.links.iter().find(|l| l.nonce_key == nonce_key)
    }
}

impl Store {
    /// Opens `gate` (state `pending`) unless this round is already open. A gate of an earlier
    /// round (CodePipeline retried the approval) is replaced, so its links stop working.
    pub async fn open_gate(&self, gate: &Gate) -> Result<GateOpening, StoreError> {
        let put = self
            .put(to_item(gate_keys(gate), gate)?)
            .condition_expression("attribute_not_exists(pk) OR round <> :round")
            .expression_attribute_values(":round", AttributeValue::S(gate.round.clone()))
            .send()
            .await;
        Ok(match condition_held("PutItem", put)? {
            Some(_) => GateOpening::Opened(gate.clone()),
            None => GateOpening::Existing(self.current_gate(gate).await?),
        })
    }

    /// Records that the link at `index` was mailed, as SES's `message_id`.
    pub async fn record_link_sent(
        &self,
        gate: &Gate,
        index: usize,
        message_id: &str,
    ) -> Result<(), StoreError> {
        self.update(gate.key(), GATE_SK)
            .update_expression(format!("SET links[{index}].message_id = :m"))
            .condition_expression("round = :round")
            .expression_attribute_values(":m", AttributeValue::S(message_id.to_owned()))
            .expression_attribute_values(":round", AttributeValue::S(gate.round.clone()))
            .send()
            .await
            .map_err(aws_err("DynamoDB", "UpdateItem"))?;
        Ok(())
    }

    /// A gate by its approval's coordinates (strongly consistent).
    pub async fn get_gate(
        &self,
        execution_id: &str,
        stage: &str,
        action: &str,
    ) -> Result<Option<Gate>, StoreError> {
        self.get_record(gate_pk(execution_id, stage, action), GATE_SK)
            .await
    }

    /// `gate` as it stands now, after a conditional write found it changed.
    async fn current_gate(&self, gate: &Gate) -> Result<Gate, StoreError> {
        self.get_gate(&gate.execution_id, &gate.stage, &gate.action)
            .await?
            .ok_or_else(|| StoreError::NotFound(gate.key()))
    }

    /// Claims the gate for `decision`: `pending` → `deciding`, only in this round. Exactly one
    /// of any number of concurrent clicks, on any approver's link, gets `Claimed`.
    pub async fn claim_decision(
        &self,
        gate: &Gate,
        decision: &Decision,
        now_rfc3339: &str,
    ) -> Result<DecisionClaim, StoreError> {
        let value =
            serde_dynamo::to_attribute_value(decision).map_err(|source| StoreError::Shape {
                pk: gate.key(),
                sk: GATE_SK.into(),
                source,
            })?;
        let out = self
            .update(gate.key(), GATE_SK)
            .update_expression("SET #state = :deciding, decision = :d, updated_at = :now")
            .condition_expression("#state = :pending AND round = :round")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":deciding", state_value(GateState::Deciding))
            .expression_attribute_values(":pending", state_value(GateState::Pending))
            .expression_attribute_values(":round", AttributeValue::S(gate.round.clone()))
            .expression_attribute_values(":d", value)
            .expression_attribute_values(":now", AttributeValue::S(now_rfc3339.to_owned()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match condition_held("UpdateItem", out)? {
            Some(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| StoreError::NotFound(gate.key()))?;
                Ok(DecisionClaim::Claimed(Box::new(from_item(item)?)))
            }
            None => Ok(DecisionClaim::Conflict(Box::new(
                self.current_gate(gate).await?,
            ))),
        }
    }

    /// Ends a claimed decision: `deciding` → `state` (approved, rejected, or closed with
    /// `refused` saying why), only for the claim made through `link`.
    pub async fn settle_decision(
        &self,
        gate: &Gate,
        link: &str,
        state: GateState,
        refused: Option<&str>,
        now_rfc3339: &str,
    ) -> Result<(), StoreError> {
        let mut update = self
            .update(gate.key(), GATE_SK)
            .condition_expression("#state = :deciding AND decision.link = :link")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":deciding", state_value(GateState::Deciding))
            .expression_attribute_values(":link", AttributeValue::S(link.to_owned()))
            .expression_attribute_values(":to", state_value(state))
            .expression_attribute_values(":now", AttributeValue::S(now_rfc3339.to_owned()));
        update = match refused {
            Some(reason) => update
                .update_expression("SET #state = :to, updated_at = :now, decision.refused = :r")
                .expression_attribute_values(":r", AttributeValue::S(reason.to_owned())),
            None => update.update_expression("SET #state = :to, updated_at = :now"),
        };
        update
            .send()
            .await
            .map_err(aws_err("DynamoDB", "UpdateItem"))?;
        Ok(())
    }

    /// Gives a claimed decision back (`deciding` → `pending`) when CodePipeline could not be
    /// told and the approver may try again.
    pub async fn release_decision(
        &self,
        gate: &Gate,
        link: &str,
        now_rfc3339: &str,
    ) -> Result<(), StoreError> {
        self.update(gate.key(), GATE_SK)
            .update_expression("SET #state = :pending, updated_at = :now REMOVE decision")
            .condition_expression("#state = :deciding AND decision.link = :link")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":deciding", state_value(GateState::Deciding))
            .expression_attribute_values(":pending", state_value(GateState::Pending))
            .expression_attribute_values(":link", AttributeValue::S(link.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now_rfc3339.to_owned()))
            .send()
            .await
            .map_err(aws_err("DynamoDB", "UpdateItem"))?;
        Ok(())
    }

    /// Every gate of a release, oldest first: where it waited and who decided what.
    pub async fn list_release_gates(&self, release_id: &str) -> Result<Vec<Gate>, StoreError> {
        self.list_records(&gates_list(release_id), false, None)
            .await
    }
}

fn gates_list(release_id: &str) -> String {
    format!("RELEASE#{release_id}#GATES")
}

fn state_value(state: GateState) -> AttributeValue {
    AttributeValue::S(state.as_str().to_owned())
}

/// Where a gate is stored: under its approval's coordinates, listed with its release by
/// opening time, kept a while after its approval expired.
fn gate_keys(gate: &Gate) -> Keys {
    Keys::new(gate.key(), GATE_SK)
        .listed(
            gates_list(&gate.release_id),
            format!("{}#{}", gate.opened_at, gate.key()),
        )
        .expiring(gate.approval_expires_at + GATE_RETENTION_SECONDS)
}
