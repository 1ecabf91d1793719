//! The action's `UserParameters`. Pure.

use serde::Deserialize;
use shipgate::job::ParameterError;
use shipgate::job::parameters as fields;

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

const ENDPOINT_HINT: &str = ": the checks need the new version's test endpoint (the deploy \
                             action's ShipgateTestEndpoint output, \
                             #{<DeployNamespace>.ShipgateTestEndpoint})";

/// What the action checks, its parameters checked; the endpoint is checked when there are
/// checks to run ([`ActionParameters::endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub environment: String,
    pub release_id: String,
    pub execution_id: String,
    pub parameters: ActionParameters,
}

impl ActionParameters {
    /// The environment, release and execution, checked.
    pub fn target(self) -> Result<Target, ParameterError> {
        Ok(Target {
            environment: fields::environment("environment", &self.environment)?.to_owned(),
            release_id: fields::id("releaseId", &self.release_id)?.to_owned(),
            execution_id: fields::id("executionId", &self.execution_id)?.to_owned(),
            parameters: self,
        })
    }

    /// The test endpoint's base URL: `http` or `https`, a host, no query, fragment or
    /// credentials. Returned without a trailing `/` (check paths start with one).
    pub fn endpoint(&self) -> Result<String, ParameterError> {
        let value =
            fields::required("endpoint", &self.endpoint).map_err(|e| e.with_hint(ENDPOINT_HINT))?;
        let invalid = |reason: &'static str| ParameterError::invalid("endpoint", value, reason);
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
    }

    #[test]
    fn ids_are_checked() {
        assert!(parameters("http://x").target().is_ok());
        let mut p = parameters("http://x");
        p.release_id = "#{variables.ReleaseId}".into();
        assert!(matches!(
            p.clone().target(),
            Err(ParameterError::Unresolved { .. })
        ));
        p.release_id = "a b".into();
        assert!(matches!(p.target(), Err(ParameterError::Invalid { .. })));
    }
}
