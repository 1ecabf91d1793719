//! Checking an action's `UserParameters`: one error type and the checks every action shares.
//!
//! The parameters come from the pipeline definition with CodePipeline's variables resolved.
//! Everything is checked before any AWS call, because a typo in a template is otherwise found
//! only as a confusing AWS error later, and a variable that was not resolved (`#{…}` left as
//! is) is named as such. Pure: no SDK, no clock.

use std::borrow::Cow;

use serde::Deserialize;

use crate::aws::sts::RoleArn;

/// A parameter that cannot be used. Shown after "the action's UserParameters cannot be used: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("`{field}` is missing or empty{hint}")]
    Empty {
        field: &'static str,
        /// Where the value should come from, when that helps (`: …`), or empty.
        hint: &'static str,
    },
    #[error(
        "`{field}` is {value:?}: a CodePipeline variable was not resolved (is it declared by the \
         pipeline, or output by the action that produces it, and set before this action runs?)"
    )]
    Unresolved { field: &'static str, value: String },
    #[error("`{field}` is {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: Cow<'static, str>,
    },
    /// Fields that are each fine but do not go together.
    #[error("{0}")]
    Inconsistent(Cow<'static, str>),
}

impl ParameterError {
    pub fn invalid(field: &'static str, value: &str, reason: impl Into<Cow<'static, str>>) -> Self {
        ParameterError::Invalid {
            field,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// An empty field whose message says where its value comes from.
    pub fn with_hint(self, hint: &'static str) -> Self {
        match self {
            ParameterError::Empty { field, .. } => ParameterError::Empty { field, hint },
            other => other,
        }
    }
}

/// Longest release, execution or deployment id accepted.
pub const MAX_ID_CHARS: usize = 128;

/// `value`, trimmed, present and with every CodePipeline variable resolved.
pub fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ParameterError::Empty { field, hint: "" });
    }
    if value.contains("#{") {
        return Err(ParameterError::Unresolved {
            field,
            value: value.to_owned(),
        });
    }
    Ok(value)
}

/// An optional field: absent, empty or blank is `None` (a pipeline writes an optional field
/// from a template parameter whose default is empty); otherwise it must be [`required`]'s.
pub fn optional<'a>(
    field: &'static str,
    value: Option<&'a str>,
) -> Result<Option<&'a str>, ParameterError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => required(field, v).map(Some),
        _ => Ok(None),
    }
}

/// A release or execution id: at most 128 letters, digits, `-`, `_` or `.`.
pub fn id<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = required(field, value)?;
    if value.chars().count() > MAX_ID_CHARS
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ParameterError::invalid(
            field,
            value,
            "an id is at most 128 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(value)
}

/// An environment name: a short lowercase name such as `int`, `stg` or `prod`.
pub fn environment<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = required(field, value)?;
    if value.len() > 32
        || !value.starts_with(|c: char| c.is_ascii_lowercase())
        || !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ParameterError::invalid(
            field,
            value,
            "an environment is a short lowercase name such as int, stg or prod",
        ));
    }
    Ok(value)
}

/// An IAM role ARN.
pub fn role(field: &'static str, value: &str) -> Result<RoleArn, ParameterError> {
    let value = required(field, value)?;
    RoleArn::parse(value).map_err(|e| ParameterError::invalid(field, value, e.to_string()))
}

/// Any ARN (`arn:…`, at most 2,048 characters).
pub fn arn<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ParameterError> {
    let value = required(field, value)?;
    if !value.starts_with("arn:") || value.len() > 2048 {
        return Err(ParameterError::invalid(field, value, "expected an ARN"));
    }
    Ok(value)
}

/// What most actions work on: a release, in one pipeline execution, in one environment whose
/// account they reach through a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The application whose pipeline the action is in, when the pipeline says
    /// (`application.yaml`'s do): its releases only are worked on.
    pub application: Option<String>,
    pub environment: String,
    pub role_arn: RoleArn,
    /// The account of `role_arn`: where the work happens.
    pub account_id: String,
    pub release_id: String,
    pub execution_id: String,
}

impl Stage {
    /// Checks the four fields as `environment`, `roleArn`, `releaseId` and `executionId`.
    pub fn check(
        environment: &str,
        role_arn: &str,
        release_id: &str,
        execution_id: &str,
    ) -> Result<Self, ParameterError> {
        let environment = self::environment("environment", environment)?.to_owned();
        let role_arn = role("roleArn", role_arn)?;
        Ok(Self {
            application: None,
            environment,
            account_id: role_arn.account().to_owned(),
            role_arn,
            release_id: id("releaseId", release_id)?.to_owned(),
            execution_id: id("executionId", execution_id)?.to_owned(),
        })
    }

    pub fn scope(&self) -> super::Scope<'_> {
        super::Scope {
            release_id: &self.release_id,
            execution_id: &self.execution_id,
            environment: &self.environment,
        }
    }
}

/// [`Stage`]'s fields as the pipeline template writes them: an action's `UserParameters` take
/// them with `#[serde(flatten)]` (and may deny unknown fields themselves).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageParameters {
    /// The application whose pipeline this is (`application.yaml` writes it).
    #[serde(default)]
    pub application: Option<String>,
    /// The environment the action works in (`int`).
    pub environment: String,
    /// The deploy role in the environment's account.
    pub role_arn: String,
    /// The release (`#{variables.ReleaseId}`).
    pub release_id: String,
    /// The pipeline execution (`#{codepipeline.PipelineExecutionId}`).
    pub execution_id: String,
}

impl StageParameters {
    /// The fields checked ([`Stage::check`], and the application's name).
    pub fn check(&self) -> Result<Stage, ParameterError> {
        let mut stage = Stage::check(
            &self.environment,
            &self.role_arn,
            &self.release_id,
            &self.execution_id,
        )?;
        stage.application = application(self.application.as_deref())?;
        Ok(stage)
    }
}

/// The optional `application` parameter: an application's name (the label rule).
pub fn application(value: Option<&str>) -> Result<Option<String>, ParameterError> {
    let Some(value) = optional("application", value)? else {
        return Ok(None);
    };
    if !crate::application::is_label(value) {
        return Err(ParameterError::invalid(
            "application",
            value,
            "an application is 1 to 32 lowercase letters, digits and hyphens",
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_unresolved_and_malformed_values_are_named() {
        assert_eq!(
            required("roleArn", "  ").unwrap_err().to_string(),
            "`roleArn` is missing or empty"
        );
        let unresolved = required("releaseId", "#{variables.ReleaseId}").unwrap_err();
        assert!(matches!(
            unresolved,
            ParameterError::Unresolved {
                field: "releaseId",
                ..
            }
        ));
        assert_eq!(id("releaseId", " rel-1 ").unwrap(), "rel-1");
        assert!(id("releaseId", "rel/1").is_err());
        assert!(id("releaseId", &"a".repeat(129)).is_err());
        assert_eq!(environment("environment", "stg-2").unwrap(), "stg-2");
        for bad in ["Prod", "2nd", "a b", &"a".repeat(33)] {
            assert!(environment("environment", bad).is_err(), "{bad}");
        }
        let role = role("roleArn", "arn:aws:iam::222222222222:role/shipgate-deploy").unwrap();
        assert_eq!(role.account(), "222222222222");
        let not_a_role = super::role("roleArn", "arn:aws:iam::2:role/x").unwrap_err();
        assert!(
            not_a_role.to_string().contains("expected an IAM role ARN"),
            "{not_a_role}"
        );
        assert_eq!(optional("registry", Some("  ")).unwrap(), None);
        assert_eq!(application(None).unwrap(), None);
        assert_eq!(application(Some(" ")).unwrap(), None);
        assert_eq!(
            application(Some("orders")).unwrap().as_deref(),
            Some("orders")
        );
        assert!(application(Some("Orders")).is_err());
        assert!(application(Some("#{variables.Application}")).is_err());
        assert!(optional("registry", Some("#{x.Y}")).is_err());
        let stage = Stage::check(
            "int",
            "arn:aws:iam::222222222222:role/shipgate-deploy",
            "rel-1",
            "exec-1",
        )
        .unwrap();
        assert_eq!(stage.account_id, "222222222222");
        assert_eq!(
            Stage::check("int", " ", "rel-1", "exec-1"),
            Err(ParameterError::Empty {
                field: "roleArn",
                hint: ""
            })
        );
        assert_eq!(
            required("endpoint", "")
                .unwrap_err()
                .with_hint(": the deploy action's output")
                .to_string(),
            "`endpoint` is missing or empty: the deploy action's output"
        );
    }
}
