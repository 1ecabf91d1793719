//! The action's `UserParameters`. Pure.

use serde::Deserialize;
use shipgate::aws::sts::RoleArn;
use shipgate::job::ParameterError;
use shipgate::job::parameters as fields;

/// `UserParameters`, as the pipeline template writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    /// The application whose pipeline this is (`application.yaml` writes it).
    #[serde(default)]
    pub application: Option<String>,
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
    /// The environment's test probe, through which the checks reach an endpoint that only the
    /// environment's network reaches (environment.yaml's internal test listener). Absent: the
    /// checks call the endpoint from this function (an endpoint reachable from the internet).
    #[serde(default)]
    pub probe: Option<ProbeParameters>,
}

/// `probe` in `UserParameters`: the function to invoke and the role to invoke it as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeParameters {
    /// environment.yaml's `shipgate-checks` role in the environment account.
    pub role_arn: String,
    /// The probe function's ARN (`arn:aws:lambda:<region>:<account>:function:shipgate-test-probe`).
    pub function: String,
}

/// The probe, its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub role_arn: RoleArn,
    pub function: String,
}

const ENDPOINT_HINT: &str = ": the checks need the new version's test endpoint (the deploy \
                             action's ShipgateTestEndpoint output, \
                             #{<DeployNamespace>.ShipgateTestEndpoint})";

/// What the action checks, its parameters checked; the endpoint is checked when there are
/// checks to run ([`ActionParameters::endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The application whose releases only this action works on, when it says.
    pub application: Option<String>,
    pub environment: String,
    pub release_id: String,
    pub execution_id: String,
    pub probe: Option<Probe>,
    pub parameters: ActionParameters,
}

impl ActionParameters {
    /// The environment, release and execution, checked.
    pub fn target(self) -> Result<Target, ParameterError> {
        Ok(Target {
            application: fields::application(self.application.as_deref())?,
            environment: fields::environment("environment", &self.environment)?.to_owned(),
            release_id: fields::id("releaseId", &self.release_id)?.to_owned(),
            execution_id: fields::id("executionId", &self.execution_id)?.to_owned(),
            probe: self
                .probe
                .as_ref()
                .map(ProbeParameters::check)
                .transpose()?,
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

impl ProbeParameters {
    fn check(&self) -> Result<Probe, ParameterError> {
        let role_arn = fields::role("probe.roleArn", &self.role_arn)?;
        let function = fields::arn("probe.function", &self.function)?;
        if !function.contains(":lambda:") || !function.contains(":function:") {
            return Err(ParameterError::invalid(
                "probe.function",
                function,
                "expected a Lambda function ARN",
            ));
        }
        Ok(Probe {
            role_arn,
            function: function.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(endpoint: &str) -> ActionParameters {
        ActionParameters {
            application: None,
            environment: "int".into(),
            release_id: "rel-1".into(),
            execution_id: "exec-1".into(),
            endpoint: endpoint.into(),
            probe: None,
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

    #[test]
    fn the_probe_names_a_role_and_a_function() {
        let with = |role: &str, function: &str| {
            let mut p = parameters("http://x");
            p.probe = Some(ProbeParameters {
                role_arn: role.into(),
                function: function.into(),
            });
            p.target()
        };
        let role = "arn:aws:iam::222222222222:role/shipgate-checks";
        let function = "arn:aws:lambda:eu-west-1:222222222222:function:shipgate-test-probe";
        let probe = with(role, function).unwrap().probe.unwrap();
        assert_eq!(probe.role_arn.account(), "222222222222");
        for (role, function, field) in [
            ("shipgate-checks", function, "probe.roleArn"),
            (role, "shipgate-test-probe", "probe.function"),
            (role, "arn:aws:iam::222222222222:role/x", "probe.function"),
        ] {
            let refused = with(role, function).unwrap_err().to_string();
            assert!(refused.contains(field), "{refused}");
        }
        let typo: Result<ActionParameters, _> = serde_json::from_str(
            r#"{"environment":"int","releaseId":"r","executionId":"e","endpoint":"http://x",
                "probe":{"role":"arn:aws:iam::222222222222:role/x","function":"f"}}"#,
        );
        assert!(typo.is_err());
    }
}
