//! Who may decide an approval: the environment it gates, from its place in the pipeline, and
//! that environment's approvers (pure).
//!
//! CodePipeline's approval notification names the stage and action that wait, and the token
//! that decides them; the mailer checks those against the pipeline's state before it mails. Its
//! `CustomData` is free text, resolved from the action's configuration, and never decides who
//! is asked: the environment comes from the stage by one rule, [`gated_environment`]. The
//! pipeline's stages follow it (template.yaml): a stage named like an environment (`Int`,
//! `Stg`, `Prod`) holds that environment's change-set approval; `PromoteTo<Env>` holds the
//! approval to promote into `<Env>`, from the environment before it in the configured order.
//! A stage that fits neither gates nothing shipgate mails for.

use crate::config::{ConfigError, Env};

/// The environment an approval gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedEnvironment {
    pub environment: String,
    /// For an approval to promote: the environment the release comes from.
    pub promote_from: Option<String>,
}

/// The environments in their pipeline order (`SHIPGATE_ENVIRONMENTS`, default `int,stg,prod`).
pub fn environments_from_env(env: &Env) -> Vec<String> {
    env.or("SHIPGATE_ENVIRONMENTS", "int,stg,prod")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The environment the approval in `stage` gates, by the pipeline's stage names; `None` for a
/// stage that is no gate of a configured environment.
pub fn gated_environment(stage: &str, environments: &[String]) -> Option<GatedEnvironment> {
    let named = |name: &str| {
        environments
            .iter()
            .position(|e| !e.is_empty() && e.eq_ignore_ascii_case(name))
    };
    if let Some(i) = named(stage) {
        return Some(GatedEnvironment {
            environment: environments[i].clone(),
            promote_from: None,
        });
    }
    let target = stage.strip_prefix("PromoteTo")?;
    let i = named(target)?;
    // The first environment is promoted into from the tooling registry, with no approval.
    let from = i.checked_sub(1).map(|p| environments[p].clone())?;
    Some(GatedEnvironment {
        environment: environments[i].clone(),
        promote_from: Some(from),
    })
}

/// The variable suffix of an environment: `int` → `INT`, `eu-prod` → `EU_PROD`.
pub fn environment_suffix(environment: &str) -> String {
    environment.to_ascii_uppercase().replace('-', "_")
}

/// `SHIPGATE_APPROVERS_<ENV>`: the environment's approvers (none when unset).
pub fn approvers_from_env(env: &Env, environment: &str) -> Result<Vec<String>, ConfigError> {
    let name = format!("SHIPGATE_APPROVERS_{}", environment_suffix(environment));
    let raw = env.optional(&name).unwrap_or("");
    parse_approvers(raw).map_err(|reason| ConfigError::Invalid {
        name,
        value: raw.to_owned(),
        reason,
    })
}

/// `a@x.com, b@y.org` → addresses, each checked for the shape of an address, without
/// duplicates (compared without case).
pub fn parse_approvers(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for address in raw.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let valid = address.len() <= 254
            && address
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !address
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>');
        if !valid {
            return Err(format!("{address:?} is not an email address"));
        }
        if !out.iter().any(|a| a.eq_ignore_ascii_case(address)) {
            out.push(address.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        ["int", "stg", "prod"].map(String::from).to_vec()
    }

    fn gated(environment: &str, from: Option<&str>) -> Option<GatedEnvironment> {
        Some(GatedEnvironment {
            environment: environment.into(),
            promote_from: from.map(String::from),
        })
    }

    #[test]
    fn the_pipelines_stages_gate_their_environments() {
        // The stages of template.yaml's pipeline that hold approvals.
        assert_eq!(gated_environment("Int", &order()), gated("int", None));
        assert_eq!(gated_environment("Stg", &order()), gated("stg", None));
        assert_eq!(gated_environment("Prod", &order()), gated("prod", None));
        assert_eq!(
            gated_environment("PromoteToStg", &order()),
            gated("stg", Some("int"))
        );
        assert_eq!(
            gated_environment("PromoteToProd", &order()),
            gated("prod", Some("stg"))
        );
    }

    #[test]
    fn other_stages_gate_nothing() {
        for stage in [
            "Source",
            "PromoteToInt",
            "PromoteTo",
            "Qa",
            "",
            "IntStg",
            "promote-stg",
        ] {
            assert_eq!(gated_environment(stage, &order()), None, "{stage}");
        }
        let custom = ["dev", "eu-prod"].map(String::from).to_vec();
        assert_eq!(
            gated_environment("PromoteToEU-PROD", &custom),
            gated("eu-prod", Some("dev"))
        );
    }

    #[test]
    fn approvers_are_addresses_named_by_the_environments_variable() {
        let env = Env::from_pairs([
            (
                "SHIPGATE_APPROVERS_EU_PROD".to_owned(),
                "a@example.com, A@example.com,b@example.org".to_owned(),
            ),
            ("SHIPGATE_APPROVERS_STG".to_owned(), "nobody".to_owned()),
        ]);
        assert_eq!(
            approvers_from_env(&env, "eu-prod").unwrap(),
            ["a@example.com", "b@example.org"]
        );
        assert!(approvers_from_env(&env, "int").unwrap().is_empty());
        let err = approvers_from_env(&env, "stg").unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_APPROVERS_STG"), "{err}");
    }
}
