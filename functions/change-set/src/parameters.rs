//! The action's `UserParameters` and what follows from them: the account and role the change
//! sets are created with, the service role CloudFormation acts with, the registry image URIs
//! point to, and the change set's name.
//!
//! Pure: no SDK, no clock. The parameters come from the pipeline definition with CodePipeline's
//! variables resolved; everything here is checked because a typo in a template is otherwise
//! found only as a confusing AWS error later.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use shipgate::job::ParameterError;
use shipgate::job::parameters::{self as fields, Stage, StageParameters};

/// `UserParameters`, as the pipeline template writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The environment the change sets are for (`int`), the deploy role there, the release and
    /// the pipeline execution.
    #[serde(flatten)]
    pub stage: StageParameters,
    /// The registry host image URIs name; default: the target account's ECR.
    #[serde(default)]
    pub registry: Option<String>,
    /// The CloudFormation service role in the environment's account (`RoleARN`), which
    /// creates the stacks' resources; absent or empty: none (CloudFormation acts with `roleArn`'s
    /// permissions, or with the role a stack already has). Empty is allowed so that a pipeline
    /// can always write the field from a template parameter whose default is empty.
    #[serde(default)]
    pub stack_role_arn: Option<String>,
}

/// Where and for what the change sets are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The environment, its account (where the stacks live) and role, the release and execution.
    pub stage: Stage,
    /// The service role CloudFormation acts with on the stacks, in the stage's account.
    pub stack_role_arn: Option<String>,
    /// Registry host for `${image.<name>.uri}`.
    pub registry: String,
    /// The change set's name, the same for every stack of the release in this execution.
    pub change_set_name: String,
}

/// Longest change set name CloudFormation takes.
pub const MAX_CHANGE_SET_NAME_CHARS: usize = 128;

impl ActionParameters {
    /// Checks the parameters; `region` (the function's own) names the default registry.
    pub fn target(&self, region: Option<&str>) -> Result<Target, ParameterError> {
        let stage = self.stage.check()?;
        let stack_role_arn = fields::optional("stackRoleArn", self.stack_role_arn.as_deref())?
            .map(|arn| stack_role(arn, &stage.account_id))
            .transpose()?;
        let registry = match fields::optional("registry", self.registry.as_deref())? {
            Some(host) if !is_registry_host(host) => {
                return Err(ParameterError::invalid(
                    "registry",
                    host,
                    "expected a registry host (and port), without scheme or path",
                ));
            }
            Some(host) => host.to_owned(),
            None => default_registry(
                &stage.account_id,
                region.ok_or(ParameterError::Inconsistent(
                    "no AWS region is configured to name the target account's registry: set \
                     `registry` in the UserParameters, or AWS_REGION"
                        .into(),
                ))?,
            ),
        };
        Ok(Target {
            change_set_name: change_set_name(&stage.release_id, &stage.execution_id),
            stage,
            stack_role_arn,
            registry,
        })
    }
}

/// A service role CloudFormation can use: an IAM role of the stacks' account (IAM passes no
/// role to another account's service).
fn stack_role(arn: &str, stacks_account: &str) -> Result<String, ParameterError> {
    let role = fields::role("stackRoleArn", arn)?;
    if role.account() != stacks_account {
        return Err(ParameterError::invalid(
            "stackRoleArn",
            arn,
            "the service role must be in roleArn's account, where the stacks are (CloudFormation \
             cannot use another account's role)",
        ));
    }
    Ok(role.to_string())
}

/// The ECR registry host of `account` in `region` (China regions have their own domain).
pub fn default_registry(account: &str, region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{domain}")
}

fn is_registry_host(host: &str) -> bool {
    host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && host.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// The change set's name for a release in one pipeline execution: the same on every invocation
/// (a retried or duplicated one finds the change set an earlier one created), different for
/// another execution. CloudFormation allows letters, digits and hyphens, starting with a letter,
/// at most 128 characters; ids that do not fit are shortened and made unique by a digest.
pub fn change_set_name(release_id: &str, execution_id: &str) -> String {
    let plain = format!("shipgate-{release_id}-{execution_id}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if plain.len() <= MAX_CHANGE_SET_NAME_CHARS && plain.chars().all(allowed) {
        return plain;
    }
    let mut digest = Sha256::new();
    digest.update(release_id.as_bytes());
    digest.update([0]);
    digest.update(execution_id.as_bytes());
    let digest = hex::encode(digest.finalize());
    let suffix = &digest[..16];
    let prefix: String = plain
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_CHANGE_SET_NAME_CHARS - suffix.len() - 1)
        .collect();
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(json: &str) -> ActionParameters {
        serde_json::from_str(json).expect("parameters parse")
    }

    const INT: &str = r#"{"environment": "int",
        "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
        "releaseId": "rel-0123456789abcdef0123",
        "executionId": "6c1a4f8e-52d1-4a8e-9c3b-1f0b5e4a7d21"}"#;

    #[test]
    fn the_pipelines_parameters_name_account_registry_and_change_set() {
        let target = parameters(INT).target(Some("eu-west-1")).expect("valid");

        assert_eq!(target.stage.environment, "int");
        assert_eq!(target.stage.account_id, "222222222222");
        assert_eq!(
            target.registry,
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            target.change_set_name,
            "shipgate-rel-0123456789abcdef0123-6c1a4f8e-52d1-4a8e-9c3b-1f0b5e4a7d21"
        );
        assert_eq!(target.stack_role_arn, None, "no service role unless named");
    }

    #[test]
    fn a_stack_role_of_the_environments_account_is_passed_on() {
        let mut p = parameters(INT);
        p.stack_role_arn = Some(" arn:aws:iam::222222222222:role/shipgate-cloudformation ".into());
        assert_eq!(
            p.target(Some("eu-west-1"))
                .expect("valid")
                .stack_role_arn
                .as_deref(),
            Some("arn:aws:iam::222222222222:role/shipgate-cloudformation")
        );

        // An empty template parameter: no service role.
        p.stack_role_arn = Some("".into());
        assert_eq!(
            p.target(Some("eu-west-1")).expect("valid").stack_role_arn,
            None
        );
    }

    #[test]
    fn a_stack_role_is_checked_like_the_deploy_role() {
        let mut p = parameters(INT);
        for (value, expected) in [
            ("#{variables.StackRole}", "was not resolved"),
            ("shipgate-cloudformation", "expected an IAM role ARN"),
            (
                "arn:aws:iam::333333333333:role/shipgate-cloudformation",
                "must be in roleArn's account",
            ),
        ] {
            p.stack_role_arn = Some(value.into());
            let err = p.target(Some("eu-west-1")).expect_err(value);
            assert!(err.to_string().contains("`stackRoleArn`"), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }

        let with_field = serde_json::from_str::<ActionParameters>(
            r#"{"environment": "int", "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
                "stackRoleArn": "arn:aws:iam::222222222222:role/shipgate-cloudformation",
                "releaseId": "r", "executionId": "e"}"#,
        )
        .expect("stackRoleArn is a known field");
        assert!(with_field.stack_role_arn.is_some());
    }

    #[test]
    fn a_registry_given_by_the_pipeline_wins_over_the_default() {
        let mut p = parameters(INT);
        p.registry = Some("registry.example:5000".into());
        assert_eq!(
            p.target(None).expect("no region needed").registry,
            "registry.example:5000"
        );

        p.registry = Some("https://registry.example/v2".into());
        assert!(matches!(
            p.target(None),
            Err(ParameterError::Invalid {
                field: "registry",
                ..
            })
        ));

        p.registry = Some(" ".into());
        assert!(
            p.target(None)
                .unwrap_err()
                .to_string()
                .contains("no AWS region is configured")
        );
        assert_eq!(
            p.target(Some("cn-north-1")).expect("valid").registry,
            "222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn unknown_missing_and_unresolved_parameters_are_refused_by_name() {
        shipgate::testing::assert_stage_fields_refused_by_name::<ActionParameters>();

        let mut p = parameters(INT);
        p.stage.release_id = "#{variables.ReleaseId}".into();
        let err = p.target(Some("eu-west-1")).unwrap_err();
        assert_eq!(
            err,
            ParameterError::Unresolved {
                field: "releaseId",
                value: "#{variables.ReleaseId}".into()
            }
        );
        assert!(err.to_string().contains("was not resolved"));

        let mut p = parameters(INT);
        p.stage.environment = "".into();
        assert_eq!(
            p.target(Some("eu-west-1")),
            Err(ParameterError::Empty {
                field: "environment",
                hint: ""
            })
        );
        p.stage.environment = "Prod env".into();
        assert!(p.target(Some("eu-west-1")).is_err());
    }

    #[test]
    fn change_set_names_are_stable_valid_and_distinct() {
        let a = change_set_name("rel-1", "exec-1");
        assert_eq!(a, change_set_name("rel-1", "exec-1"), "deterministic");
        assert_ne!(a, change_set_name("rel-1", "exec-2"));
        assert_ne!(a, change_set_name("rel-2", "exec-1"));

        let long = "x".repeat(128);
        let odd = [
            change_set_name(&long, "exec-1"),
            change_set_name(&long, "exec-2"),
            change_set_name("rel_1.2", "exec"),
            change_set_name("rel-1.2", "exec"),
        ];
        for name in &odd {
            assert!(name.len() <= MAX_CHANGE_SET_NAME_CHARS, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{name}"
            );
        }
        assert_ne!(odd[0], odd[1], "shortened names stay distinct");
        assert_ne!(odd[2], odd[3], "replaced characters do not collide");
    }
}
