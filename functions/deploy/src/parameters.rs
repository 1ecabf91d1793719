//! The action's `UserParameters`: the environment, the deploy role there, the release and the
//! pipeline execution. Pure: checked here because a typo in the pipeline template is otherwise
//! found only as a confusing AWS error later.

use serde::Deserialize;
use shipgate::job::ParameterError;
use shipgate::job::parameters::{Stage, StageParameters};

/// `UserParameters`, as the pipeline template writes them: the stage's four fields alone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionParameters {
    #[serde(flatten)]
    pub stage: StageParameters,
}

/// Where and what the action deploys.
pub type Target = Stage;

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        self.stage.check()
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
        shipgate::testing::assert_stage_fields_refused_by_name::<ActionParameters>();

        // INT with one field changed, checked.
        let target_with = |edit: fn(&mut ActionParameters)| {
            let mut p: ActionParameters = serde_json::from_str(INT).expect("parses");
            edit(&mut p);
            p.target()
        };
        assert!(matches!(
            target_with(|p| p.stage.execution_id = "#{codepipeline.PipelineExecutionId}".into()),
            Err(ParameterError::Unresolved {
                field: "executionId",
                ..
            })
        ));
        assert!(matches!(
            target_with(|p| p.stage.role_arn = "arn:aws:iam::222222222222:user/alice".into()),
            Err(ParameterError::Invalid {
                field: "roleArn",
                ..
            })
        ));
        assert_eq!(
            target_with(|p| p.stage.role_arn = " ".into()),
            Err(ParameterError::Empty {
                field: "roleArn",
                hint: ""
            })
        );
    }
}
