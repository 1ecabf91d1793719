//! The action's `UserParameters`. Pure.

use serde::Deserialize;

/// `UserParameters`, as the pipeline template writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The environment checked (`int`), for messages.
    pub environment: String,
    /// The release (`#{variables.ReleaseId}`).
    pub release_id: String,
    /// The pipeline execution (`#{codepipeline.PipelineExecutionId}`).
    pub execution_id: String,
    /// The base URL of the new version's test endpoint, usually
    /// `#{IntDeploy.ShipgateTestEndpoint}` (the deploy action's output variable).
    #[serde(default)]
    pub endpoint: String,
}

/// A parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("`{field}` is missing or empty{hint}")]
    Empty {
        field: &'static str,
        hint: &'static str,
    },
    #[error(
        "`{field}` is {value:?}: a CodePipeline variable was not resolved (does the deploy \
         action's stack output it? a stack output named ShipgateTestEndpoint becomes \
         #{{<DeployNamespace>.ShipgateTestEndpoint}})"
    )]
    Unresolved { field: &'static str, value: String },
    #[error("`{field}` is {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

const ENDPOINT_HINT: &str = ": the checks need the new version's test endpoint (the deploy \
                             action's ShipgateTestEndpoint output)";

impl ActionParameters {
    /// The environment, release and execution, checked.
    pub fn checked(&self) -> Result<(), ParameterError> {
        for (field, value) in [
            ("environment", &self.environment),
            ("releaseId", &self.release_id),
            ("executionId", &self.execution_id),
        ] {
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
            if value.len() > 128
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ParameterError::Invalid {
                    field,
                    value: value.to_owned(),
                    reason: "at most 128 letters, digits, '-', '_' or '.'",
                });
            }
        }
        Ok(())
    }

    /// The test endpoint's base URL: `http` or `https`, a host, no query, fragment or
    /// credentials. Returned without a trailing `/` (check paths start with one).
    pub fn endpoint(&self) -> Result<String, ParameterError> {
        let value = self.endpoint.trim();
        if value.is_empty() {
            return Err(ParameterError::Empty {
                field: "endpoint",
                hint: ENDPOINT_HINT,
            });
        }
        if value.contains("#{") {
            return Err(ParameterError::Unresolved {
                field: "endpoint",
                value: value.to_owned(),
            });
        }
        let invalid = |reason| ParameterError::Invalid {
            field: "endpoint",
            value: value.to_owned(),
            reason,
        };
        let url = reqwest::Url::parse(value)
            .map_err(|_| invalid("expected an absolute URL such as http://alb.example:9000"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("expected an http or https URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("the endpoint is a base URL: no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("the endpoint may not carry credentials"));
        }
        Ok(url.as_str().trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(endpoint: &str) -> ActionParameters {
        ActionParameters {
            environment: "int".into(),
            release_id: "rel-1".into(),
            execution_id: "exec-1".into(),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn the_endpoint_is_a_base_url() {
        assert_eq!(
            parameters("http://alb.example:9000/").endpoint(),
            Ok("http://alb.example:9000".to_owned())
        );
        assert_eq!(
            parameters(" https://abc.lambda-url.eu-west-1.on.aws/v2 ").endpoint(),
            Ok("https://abc.lambda-url.eu-west-1.on.aws/v2".to_owned())
        );
        for bad in [
            "alb.example:9000",
            "ftp://alb.example",
            "http://alb.example/?x=1",
            "http://user:pw@alb.example",
        ] {
            assert!(
                matches!(
                    parameters(bad).endpoint(),
                    Err(ParameterError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_or_unresolved_endpoint_says_where_it_comes_from() {
        let empty = parameters("").endpoint().unwrap_err().to_string();
        assert!(empty.contains("ShipgateTestEndpoint"), "{empty}");
        let unresolved = parameters("#{IntDeploy.ShipgateTestEndpoint}")
            .endpoint()
            .unwrap_err()
            .to_string();
        assert!(unresolved.contains("was not resolved"), "{unresolved}");
        assert!(
            unresolved.contains("#{<DeployNamespace>.ShipgateTestEndpoint}"),
            "{unresolved}"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(parameters("http://x").checked().is_ok());
        let mut p = parameters("http://x");
        p.release_id = "#{variables.ReleaseId}".into();
        assert!(matches!(
            p.checked(),
            Err(ParameterError::Unresolved { .. })
        ));
        p.release_id = "a b".into();
        assert!(matches!(p.checked(), Err(ParameterError::Invalid { .. })));
    }
}
