//! The action's `UserParameters` and what follows from them: which release, from which
//! environment's registry (an assumed role, or the function's own account) to which one.
//!
//! Pure: no SDK, no clock. Everything is checked because a typo in the pipeline template is
//! otherwise found only as a confusing AWS error later.

use serde::Deserialize;

/// `UserParameters`, as the pipeline template writes them:
/// `{"releaseId": "...", "executionId": "...", "from": {"environment": "int", "roleArn": "..."},
/// "to": {"environment": "stg", "roleArn": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The release (`#{variables.ReleaseId}`).
    pub release_id: String,
    /// The pipeline execution (`#{codepipeline.PipelineExecutionId}`).
    pub execution_id: String,
    /// Where the images are now.
    pub from: SideParameters,
    /// Where they go.
    pub to: SideParameters,
}

/// One side of a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SideParameters {
    pub environment: String,
    /// The role to assume in the environment's account. Absent for `from`: the function's own
    /// (tooling) account, where integrators push. Required for `to`.
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// One side, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub environment: String,
    /// `None`: the function's own credentials.
    pub role_arn: Option<String>,
    /// The account of `role_arn`, when there is one.
    pub account_id: Option<String>,
}

/// What the action promotes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub release_id: String,
    pub execution_id: String,
    pub from: Side,
    pub to: Side,
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
    #[error("`from` and `to` are both {0}: a promotion goes from one environment to another")]
    SameEnvironment(String),
}

const MAX_ID_CHARS: usize = 128;
/// STS's limit on a role session name.
const MAX_SESSION_NAME_CHARS: usize = 64;

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        let from = side("from.environment", "from.roleArn", &self.from, false)?;
        let to = side("to.environment", "to.roleArn", &self.to, true)?;
        if from.environment == to.environment {
            return Err(ParameterError::SameEnvironment(from.environment));
        }
        Ok(Target {
            release_id: id("releaseId", &self.release_id)?.to_owned(),
            execution_id: id("executionId", &self.execution_id)?.to_owned(),
            from,
            to,
        })
    }
}

fn side(
    env_field: &'static str,
    role_field: &'static str,
    p: &SideParameters,
    role_required: bool,
) -> Result<Side, ParameterError> {
    let environment = checked(env_field, &p.environment)?;
    if environment.len() > 32
        || !environment.starts_with(|c: char| c.is_ascii_lowercase())
        || !environment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ParameterError::Invalid {
            field: env_field,
            value: environment.to_owned(),
            reason: "an environment is a short lowercase name such as int, stg or prod",
        });
    }
    let role_arn = match p.role_arn.as_deref().map(str::trim) {
        Some(role) if !role.is_empty() => Some(checked(role_field, role)?.to_owned()),
        _ if role_required => return Err(ParameterError::Empty { field: role_field }),
        _ => None,
    };
    let account_id = match &role_arn {
        Some(role) => Some(
            account_of_role(role).ok_or_else(|| ParameterError::Invalid {
                field: role_field,
                value: role.clone(),
                reason: "expected an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>",
            })?,
        ),
        None => None,
    };
    Ok(Side {
        environment: environment.to_owned(),
        role_arn,
        account_id,
    })
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
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let valid = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    valid.then(|| account.to_owned())
}

/// The STS session name for the release (what CloudTrail shows in the environment account).
pub fn session_name(release_id: &str) -> String {
    let name: String = format!("shipgate-promote-{release_id}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(*c))
        .take(MAX_SESSION_NAME_CHARS)
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> Result<Target, String> {
        let p: ActionParameters = serde_json::from_value(json).map_err(|e| e.to_string())?;
        p.target().map_err(|e| e.to_string())
    }

    #[test]
    fn a_promotion_from_an_assumed_role_to_another_reads() {
        let t = params(serde_json::json!({
            "releaseId": "rel-1", "executionId": "e-1",
            "from": {"environment": "int", "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy"},
            "to": {"environment": "stg", "roleArn": "arn:aws:iam::333333333333:role/shipgate-deploy"}
        }))
        .unwrap();
        assert_eq!(t.from.account_id.as_deref(), Some("222222222222"));
        assert_eq!(t.to.account_id.as_deref(), Some("333333333333"));
        assert_eq!(t.to.environment, "stg");
    }

    #[test]
    fn without_a_source_role_the_functions_own_account_is_the_source() {
        let t = params(serde_json::json!({
            "releaseId": "rel-1", "executionId": "e-1",
            "from": {"environment": "source"},
            "to": {"environment": "int", "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy"}
        }))
        .unwrap();
        assert_eq!(t.from.role_arn, None);
        assert_eq!(t.from.account_id, None);
    }

    #[test]
    fn bad_parameters_are_refused_naming_the_field() {
        let role = "arn:aws:iam::333333333333:role/shipgate-deploy";
        for (json, field) in [
            (
                serde_json::json!({"releaseId": "r", "executionId": "e", "from": {"environment": "int"}, "to": {"environment": "stg"}}),
                "to.roleArn",
            ),
            (
                serde_json::json!({"releaseId": "#{variables.ReleaseId}", "executionId": "e", "from": {"environment": "int"}, "to": {"environment": "stg", "roleArn": role}}),
                "releaseId",
            ),
            (
                serde_json::json!({"releaseId": "r", "executionId": "e", "from": {"environment": "Int!"}, "to": {"environment": "stg", "roleArn": role}}),
                "from.environment",
            ),
            (
                serde_json::json!({"releaseId": "r", "executionId": "e", "from": {"environment": "int"}, "to": {"environment": "stg", "roleArn": "arn:aws:iam::3333:user/x"}}),
                "to.roleArn",
            ),
            (
                serde_json::json!({"releaseId": "r/../x", "executionId": "e", "from": {"environment": "int"}, "to": {"environment": "stg", "roleArn": role}}),
                "releaseId",
            ),
        ] {
            let err = params(json).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(
            params(serde_json::json!({"releaseId": "r", "executionId": "e", "from": {"environment": "stg"}, "to": {"environment": "stg", "roleArn": role}}))
                .unwrap_err()
                .contains("both stg")
        );
        assert!(
            params(serde_json::json!({"releaseId": "r", "executionId": "e", "from": {"environment": "int"}, "to": {"environment": "stg", "roleArn": role}, "extra": 1}))
                .is_err()
        );
    }

    #[test]
    fn role_arns_give_their_account() {
        assert_eq!(
            account_of_role("arn:aws:iam::444444444444:role/path/shipgate-deploy").as_deref(),
            Some("444444444444")
        );
        assert_eq!(
            account_of_role("arn:aws-cn:iam::444444444444:role/x").as_deref(),
            Some("444444444444")
        );
        for bad in [
            "",
            "arn:aws:iam::4444:role/x",
            "arn:aws:sts::444444444444:assumed-role/x",
            "arn:aws:iam::444444444444:role/",
        ] {
            assert_eq!(account_of_role(bad), None, "{bad}");
        }
        assert!(session_name(&"r".repeat(100)).len() <= 64);
    }
}
