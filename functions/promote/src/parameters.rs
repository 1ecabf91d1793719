//! The action's `UserParameters` and what follows from them: which release, from which
//! environment's registry (an assumed role, or the function's own account) to which one.
//!
//! Pure: no SDK, no clock. Everything is checked because a typo in the pipeline template is
//! otherwise found only as a confusing AWS error later.

use serde::Deserialize;
use shipgate::aws::sts::RoleArn;
use shipgate::job::ParameterError;
use shipgate::job::parameters as fields;

/// `UserParameters`, as the pipeline template writes them:
/// `{"releaseId": "...", "executionId": "...", "from": {"environment": "int", "roleArn": "..."},
/// "to": {"environment": "stg", "roleArn": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The application whose pipeline this is (`application.yaml` writes it).
    #[serde(default)]
    pub application: Option<String>,
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
    pub role_arn: Option<RoleArn>,
    /// The account of `role_arn`, when there is one.
    pub account_id: Option<String>,
}

/// What the action promotes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The application whose releases only this action works on, when it says.
    pub application: Option<String>,
    pub release_id: String,
    pub execution_id: String,
    pub from: Side,
    pub to: Side,
}

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        let from = side("from.environment", "from.roleArn", &self.from, false)?;
        let to = side("to.environment", "to.roleArn", &self.to, true)?;
        if from.environment == to.environment {
            return Err(ParameterError::Inconsistent(
                format!(
                    "`from` and `to` are both {}: a promotion goes from one environment to another",
                    from.environment
                )
                .into(),
            ));
        }
        Ok(Target {
            application: fields::application(self.application.as_deref())?,
            release_id: fields::id("releaseId", &self.release_id)?.to_owned(),
            execution_id: fields::id("executionId", &self.execution_id)?.to_owned(),
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
    let environment = fields::environment(env_field, &p.environment)?.to_owned();
    let role_arn = match fields::optional(role_field, p.role_arn.as_deref())? {
        Some(role) => Some(fields::role(role_field, role)?),
        None if role_required => {
            return Err(ParameterError::Empty {
                field: role_field,
                hint: "",
            });
        }
        None => None,
    };
    Ok(Side {
        environment,
        account_id: role_arn.as_ref().map(|r| r.account().to_owned()),
        role_arn,
    })
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
}
