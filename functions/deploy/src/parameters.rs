//! The action's `UserParameters`: the environment, the deploy role there, the release and the
//! pipeline execution. Pure: checked here because a typo in the pipeline template is otherwise
//! found only as a confusing AWS error later.

use serde::Deserialize;
use shipgate::job::ParameterError;
use shipgate::job::parameters::Stage;

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
pub type Target = Stage;

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        Stage::check(
            &self.environment,
            &self.role_arn,
            &self.release_id,
            &self.execution_id,
        )
    }
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

        // INT with one field changed, checked.
        let target_with = |edit: fn(&mut ActionParameters)| {
            let mut p: ActionParameters = serde_json::from_str(INT).expect("parses");
            edit(&mut p);
            p.target()
        };
        assert!(matches!(
            target_with(|p| p.execution_id = "#{codepipeline.PipelineExecutionId}".into()),
            Err(ParameterError::Unresolved {
                field: "executionId",
                ..
            })
        ));
        assert!(matches!(
            target_with(|p| p.role_arn = "arn:aws:iam::222222222222:user/alice".into()),
            Err(ParameterError::Invalid {
                field: "roleArn",
                ..
            })
        ));
        assert_eq!(
            target_with(|p| p.role_arn = " ".into()),
            Err(ParameterError::Empty {
                field: "roleArn",
                hint: ""
            })
        );
    }
}
