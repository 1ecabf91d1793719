//! Applications: what one shipgate installation knows of each application it serves.
//!
//! An application is declared once, by the stack that creates its pipeline (`application.yaml`,
//! or `template.yaml` for the installation's own application), as an SSM parameter
//! `/shipgate/applications/<application>` holding a JSON [`Application`]: its pipeline and its
//! chain of one to [`MAX_ENVIRONMENTS`] environments in promotion order, each with its deploy
//! and stack roles, approvers, team addresses and traffic plan (docs/applications.md). The
//! functions read it at run time ([`directory::Directory`]), so that adding, changing or removing
//! an application changes no function, policy or variable of the core.
//!
//! The declaration is written by CloudFormation from a stack's parameters, whose patterns keep
//! it well formed, but it is read as untrusted text all the same: every field is checked and
//! every problem named ([`DeclarationError`]), since a declaration that is wrong must stop a
//! release with a message an operator can act on, never route it somewhere half-checked.

pub mod directory;

use serde::{Deserialize, Serialize};

use crate::approval::{GatedEnvironment, gated_environment, parse_approvers};
use crate::aws::sts::RoleArn;
use crate::plan::DeploymentPlan;

/// The declaration's `schema`: another value is refused, as release manifests refuse an unknown
/// `schema_version`.
pub const SCHEMA: &str = "shipgate.application/1";
/// The longest chain of environments (dev → int → stg → preprod → prod → dr, say): what
/// `application.yaml` has parameters for.
pub const MAX_ENVIRONMENTS: usize = 6;
/// Where declarations live in SSM Parameter Store, followed by the application's name.
pub const PARAMETER_PREFIX: &str = "/shipgate/applications/";
/// Application and environment names make stack names (`<application>-<environment>-<stack>`,
/// at most 128 characters), pipeline stage names and table keys: the manifest's label rule.
pub const MAX_LABEL_LEN: usize = 32;
/// CodePipeline keeps a pipeline's artifacts under a folder named after the first 20
/// characters of its name: two applications' pipelines within 20 characters never share one.
pub const MAX_PIPELINE_NAME_LEN: usize = 20;

/// The SSM parameter that declares `application`.
pub fn parameter_name(application: &str) -> String {
    format!("{PARAMETER_PREFIX}{application}")
}

/// Where an application stack has its pipeline's S3 source action read (its `sourceKey`): one
/// key per application, so that no application's release replaces another's.
pub fn accepted_key(application: &str) -> String {
    format!("{ACCEPTED_PREFIX}{application}/release.zip")
}

/// Every application's source key is under it: what intake may write.
pub const ACCEPTED_PREFIX: &str = "accepted/";

/// `1 to 32 lowercase letters, digits and hyphens, starting with a letter, not ending with a
/// hyphen`: application and environment names.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=MAX_LABEL_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && !s.ends_with('-')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An application, as its declaration says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    /// The CodePipeline pipeline that releases of this application start.
    pub pipeline: String,
    /// The key of the artifact bucket the pipeline's S3 source action reads: where intake puts
    /// an accepted release (under [`ACCEPTED_PREFIX`]).
    pub source_key: String,
    /// In promotion order; never empty, at most [`MAX_ENVIRONMENTS`], names distinct.
    pub environments: Vec<Environment>,
}

/// One environment of an application's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// The role shipgate assumes in the environment's account.
    pub deploy_role_arn: String,
    /// The account of [`Self::deploy_role_arn`].
    pub account: String,
    /// The role CloudFormation creates the application's resources with; `None`: the deploy
    /// role's own permissions.
    pub stack_role_arn: Option<String>,
    /// Who approves releases into this environment; never empty.
    pub approvers: Vec<String>,
    /// Who is told of a rollback here; may be empty.
    pub team_emails: Vec<String>,
    /// How traffic moves to a new version here, as the traffic action's `plan` parameter.
    pub traffic_plan: String,
}

/// The declaration as JSON, before any check: field names as the stacks write them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Declaration {
    pub schema: String,
    pub application: String,
    pub pipeline: String,
    pub source_key: String,
    pub environments: Vec<DeclaredEnvironment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredEnvironment {
    pub name: String,
    pub deploy_role_arn: String,
    #[serde(default)]
    pub stack_role_arn: String,
    pub approvers: String,
    #[serde(default)]
    pub team_email: String,
    pub traffic_plan: String,
}

/// Why a declaration cannot be used: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the declaration of application {application:?} ({parameter}) cannot be used: {}", .problems.join("; "))]
pub struct DeclarationError {
    pub application: String,
    pub parameter: String,
    pub problems: Vec<String>,
}

/// Why a release's `environments` do not fit its application's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChainMismatch {
    pub message: String,
}

impl Application {
    /// Reads the declaration of `application` (the text of its parameter), checking every
    /// field; the name it declares must be the one it is filed under.
    pub fn from_declaration(application: &str, text: &str) -> Result<Self, DeclarationError> {
        let fail = |problems: Vec<String>| DeclarationError {
            application: application.to_owned(),
            parameter: parameter_name(application),
            problems,
        };
        let declaration: Declaration = serde_json::from_str(text)
            .map_err(|e| fail(vec![format!("it is not a declaration's JSON: {e}")]))?;
        let mut problems = Vec::new();
        if declaration.schema != SCHEMA {
            problems.push(format!(
                "`schema` is {:?}; this shipgate reads {SCHEMA:?}",
                declaration.schema
            ));
        }
        if declaration.application != application {
            problems.push(format!(
                "`application` is {:?}, but the parameter is {}",
                declaration.application,
                parameter_name(application)
            ));
        }
        if !is_label(&declaration.application) {
            problems.push(format!(
                "`application` {:?} is not 1 to {MAX_LABEL_LEN} lowercase letters, digits and \
                 hyphens, starting with a letter and not ending with a hyphen",
                declaration.application
            ));
        }
        if !is_pipeline_name(&declaration.pipeline) {
            problems.push(format!(
                "`pipeline` {:?} is not a pipeline name of 1 to {MAX_PIPELINE_NAME_LEN} letters, \
                 digits and . @ _ - (CodePipeline files artifacts under the name's first 20 \
                 characters)",
                declaration.pipeline
            ));
        }
        if !is_source_key(&declaration.source_key) {
            problems.push(format!(
                "`sourceKey` {:?} is not a key under {ACCEPTED_PREFIX} ending in .zip (at most \
                 1024 bytes, no empty or `..` segment)",
                declaration.source_key
            ));
        }
        let count = declaration.environments.len();
        if !(1..=MAX_ENVIRONMENTS).contains(&count) {
            problems.push(format!(
                "`environments` has {count}; a chain has 1 to {MAX_ENVIRONMENTS}"
            ));
        }
        let mut environments = Vec::with_capacity(count);
        for (i, declared) in declaration.environments.iter().enumerate() {
            let at = format!("environments[{i}]");
            if declaration.environments[..i]
                .iter()
                .any(|e| e.name == declared.name)
            {
                problems.push(format!("{at}: {:?} is in the chain twice", declared.name));
            }
            match Environment::check(declared) {
                Ok(environment) => environments.push(environment),
                Err(found) => problems.extend(found.into_iter().map(|p| format!("{at}.{p}"))),
            }
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Self {
            name: declaration.application,
            pipeline: declaration.pipeline,
            source_key: declaration.source_key,
            environments,
        })
    }

    /// The declaration this application reads back from (what a stack writes).
    pub fn declaration(&self) -> Declaration {
        Declaration {
            schema: SCHEMA.to_owned(),
            application: self.name.clone(),
            pipeline: self.pipeline.clone(),
            source_key: self.source_key.clone(),
            environments: self
                .environments
                .iter()
                .map(|e| DeclaredEnvironment {
                    name: e.name.clone(),
                    deploy_role_arn: e.deploy_role_arn.clone(),
                    stack_role_arn: e.stack_role_arn.clone().unwrap_or_default(),
                    approvers: e.approvers.join(","),
                    team_email: e.team_emails.join(","),
                    traffic_plan: e.traffic_plan.clone(),
                })
                .collect(),
        }
    }

    /// The chain's names, in promotion order.
    pub fn chain(&self) -> Vec<String> {
        self.environments.iter().map(|e| e.name.clone()).collect()
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Where a release that lists `requested` goes: the whole chain when it lists nothing, else
    /// exactly what it lists, which must be the chain's first environments in order. A release
    /// starts at the chain's first environment and is promoted from each environment to the
    /// next (its images are copied from the one before), so it can stop early but skip none.
    pub fn route(&self, requested: &[String]) -> Result<Vec<String>, ChainMismatch> {
        let chain = self.chain();
        if requested.is_empty() {
            return Ok(chain);
        }
        if requested.len() <= chain.len() && chain[..requested.len()] == *requested {
            return Ok(requested.to_vec());
        }
        let prefixes: Vec<String> = (1..=chain.len())
            .map(|n| format!("{:?}", chain[..n].to_vec()))
            .collect();
        let unknown: Vec<&String> = requested.iter().filter(|r| !chain.contains(r)).collect();
        let why = if unknown.is_empty() {
            "a release starts in the first environment and is promoted from each to the next, \
             so it may stop early but skip none"
                .to_owned()
        } else {
            format!(
                "{} {} not in its chain",
                unknown
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if unknown.len() == 1 { "is" } else { "are" }
            )
        };
        Err(ChainMismatch {
            message: format!(
                "`environments` is {requested:?}, but application {} goes {}: {why}; list one of \
                 {}, or leave `environments` out for the whole chain",
                self.name,
                chain.join(" → "),
                prefixes.join(", ")
            ),
        })
    }

    /// The environment an approval in pipeline stage `stage` gates, by this chain.
    pub fn gated(&self, stage: &str) -> Option<GatedEnvironment> {
        gated_environment(stage, &self.chain())
    }
}

impl Environment {
    fn check(declared: &DeclaredEnvironment) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if !is_label(&declared.name) {
            problems.push(format!(
                "name: {:?} is not 1 to {MAX_LABEL_LEN} lowercase letters, digits and hyphens, \
                 starting with a letter and not ending with a hyphen",
                declared.name
            ));
        }
        let account = role_account(&declared.deploy_role_arn);
        if account.is_none() {
            problems.push(format!(
                "deployRoleArn: {:?} is not an IAM role ARN",
                declared.deploy_role_arn
            ));
        }
        let stack_role_arn = match declared.stack_role_arn.trim() {
            "" => None,
            arn => {
                if role_account(arn).is_none() {
                    problems.push(format!("stackRoleArn: {arn:?} is not an IAM role ARN"));
                }
                Some(arn.to_owned())
            }
        };
        let approvers = match parse_approvers(&declared.approvers) {
            Ok(a) if a.is_empty() => {
                problems.push("approvers: nobody is named; list who approves releases here".into());
                a
            }
            Ok(a) => a,
            Err(reason) => {
                problems.push(format!("approvers: {reason}"));
                Vec::new()
            }
        };
        let team_emails = parse_approvers(&declared.team_email).unwrap_or_else(|reason| {
            problems.push(format!("teamEmail: {reason}"));
            Vec::new()
        });
        if let Err(e) = declared.traffic_plan.parse::<DeploymentPlan>() {
            problems.push(format!(
                "trafficPlan: {:?} is not a traffic plan: {e}",
                declared.traffic_plan
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: declared.name.clone(),
            deploy_role_arn: declared.deploy_role_arn.clone(),
            account: account.unwrap_or_default(),
            stack_role_arn,
            approvers,
            team_emails,
            traffic_plan: declared.traffic_plan.clone(),
        })
    }
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>` → the account: a role ARN as the
/// actions read it ([`RoleArn`], from their parameters, which the same stacks write), in an AWS
/// partition, with no whitespace in its name.
fn role_account(arn: &str) -> Option<String> {
    let role = RoleArn::parse(arn).ok()?;
    let in_aws = arn.split(':').nth(1).is_some_and(|p| p.starts_with("aws"));
    (in_aws && !arn.chars().any(char::is_whitespace)).then(|| role.account().to_owned())
}

fn is_source_key(key: &str) -> bool {
    key.len() <= 1024
        && key.ends_with(".zip")
        && key.strip_prefix(ACCEPTED_PREFIX).is_some_and(|rest| {
            rest.split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        })
        && !key.chars().any(char::is_control)
}

fn is_pipeline_name(name: &str) -> bool {
    (1..=MAX_PIPELINE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

#[cfg(test)]
mod tests;
