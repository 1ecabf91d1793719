//! The action's `UserParameters`: the environment, the deploy role there, the release and the
//! pipeline execution. Pure: checked here because a typo in the pipeline template is otherwise
//! found only as a confusing AWS error later.

use serde::Deserialize;

/// `UserParameters`, as the pipeline template writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The environment deployed to (`int`).
    pub environment: String,
    /// The deploy role in the environment's account.
    pub role_arn: String,
    /// The release (`#{variables.ReleaseId}`).
    pub release_id: String,
    /// The pipeline execution (`#{codepipeline.PipelineExecutionId}`).
    pub execution_id: String,
}

/// Where and what the action deploys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub environment: String,
    pub role_arn: String,
    /// The account of `role_arn`: where the stacks live.
    pub account_id: String,
    pub release_id: String,
    pub execution_id: String,
}

/// A parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("`{field}` is missing or empty")]
    Empty { field: &'static str },
    #[error(
        "`{field}` is {value:?}: a CodePipeline variable was not resolved (is it declared by the \
         pipeline and set when the execution starts?)"
    )]
    Unresolved { field: &'static str, value: String },
    #[error("`{field}` is {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

const MAX_ID_CHARS: usize = 128;
const MAX_SESSION_NAME_CHARS: usize = 64;

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        let environment = checked("environment", &self.environment)?;
        if environment.len() > 32
            || !environment.starts_with(|c: char| c.is_ascii_lowercase())
            || !environment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ParameterError::Invalid {
                field: "environment",
                value: environment.to_owned(),
                reason: "an environment is a short lowercase name such as int, stg or prod",
            });
        }
        let role_arn = checked("roleArn", &self.role_arn)?;
        let account_id = account_of_role(role_arn).ok_or_else(|| ParameterError::Invalid {
            field: "roleArn",
            value: role_arn.to_owned(),
            reason: "expected an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>",
        })?;
        Ok(Target {
            environment: environment.to_owned(),
            role_arn: role_arn.to_owned(),
            account_id,
            release_id: id("releaseId", &self.release_id)?.to_owned(),
            execution_id: id("executionId", &self.execution_id)?.to_owned(),
        })
    }
}

fn checked<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ParameterError::Empty { field });
    }
    if value.contains("#{") {
        return Err(ParameterError::Unresolved {
            field,
            value: value.to_owned(),
        });
    }
    Ok(value)
}

fn id<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = checked(field, value)?;
    if value.chars().count() > MAX_ID_CHARS
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ParameterError::Invalid {
            field,
            value: value.to_owned(),
            reason: "an id is at most 128 letters, digits, '-', '_' or '.'",
        });
    }
    Ok(value)
}

/// The account of an IAM role ARN (`arn:<partition>:iam::<account>:role/<path/name>`).
pub fn account_of_role(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource
                    .strip_prefix("role/")
                    .is_some_and(|n| !n.is_empty()) =>
        {
            Some((*account).to_owned())
        }
        _ => None,
    }
}

/// The role session name, which CloudTrail shows in the target account: it names the release.
pub fn session_name(release_id: &str) -> String {
    format!("shipgate-deploy-{release_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INT: &str = r#"{"environment": "int",
        "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
        "releaseId": "rel-0123456789abcdef0123", "executionId": "exec-1"}"#;

    #[test]
    fn the_pipelines_parameters_name_the_account() {
        let target = serde_json::from_str::<ActionParameters>(INT)
            .expect("parses")
            .target()
            .expect("valid");
        assert_eq!(target.account_id, "222222222222");
        assert_eq!(target.environment, "int");
        assert_eq!(
            session_name(&target.release_id),
            "shipgate-deploy-rel-0123456789abcdef0123"
        );
        assert!(session_name(&"r".repeat(200)).len() <= 64);
    }

    #[test]
    fn unknown_missing_unresolved_and_malformed_parameters_are_refused_by_name() {
        let typo = serde_json::from_str::<ActionParameters>(
            r#"{"environment": "int", "role": "x", "roleArn": "x", "releaseId": "r",
                "executionId": "e"}"#,
        );
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `role`")
        );

        let mut p: ActionParameters = serde_json::from_str(INT).expect("parses");
        p.execution_id = "#{codepipeline.PipelineExecutionId}".into();
        assert!(matches!(
            p.target(),
            Err(ParameterError::Unresolved {
                field: "executionId",
                ..
            })
        ));
        let mut p: ActionParameters = serde_json::from_str(INT).expect("parses");
        p.role_arn = "arn:aws:iam::222222222222:user/alice".into();
        assert!(matches!(
            p.target(),
            Err(ParameterError::Invalid {
                field: "roleArn",
                ..
            })
        ));
        p.role_arn = " ".into();
        assert_eq!(p.target(), Err(ParameterError::Empty { field: "roleArn" }));
    }
}
