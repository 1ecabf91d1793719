//! EventBridge: the rules of an account's default bus and their targets, and a bus's policy.

use aws_sdk_eventbridge::Client;

use super::{CallFailure, sent};

/// A rule of the default bus, with its targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub name: String,
    pub enabled: bool,
    /// The event pattern (JSON), if the rule matches events (rather than a schedule).
    pub event_pattern: Option<String>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub arn: String,
    /// The role EventBridge sends with (required to put events on another account's bus).
    pub role_arn: Option<String>,
}

/// Every rule of the default bus with its targets (all pages of `ListRules` and
/// `ListTargetsByRule`).
pub async fn default_bus_rules(client: &Client) -> Result<Vec<Rule>, CallFailure> {
    let mut rules = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = sent(client.list_rules().set_next_token(token.take()).send()).await?;
        for rule in page.rules() {
            let name = rule.name().unwrap_or_default().to_owned();
            let targets = targets(client, &name).await?;
            rules.push(Rule {
                enabled: rule.state().map(|s| s.as_str()) == Some("ENABLED"),
                event_pattern: rule.event_pattern().map(str::to_owned),
                name,
                targets,
            });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(rules),
        }
    }
}

async fn targets(client: &Client, rule: &str) -> Result<Vec<Target>, CallFailure> {
    let mut targets = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = sent(
            client
                .list_targets_by_rule()
                .rule(rule)
                .set_next_token(token.take())
                .send(),
        )
        .await?;
        targets.extend(page.targets().iter().map(|t| Target {
            arn: t.arn().to_owned(),
            role_arn: t.role_arn().map(str::to_owned),
        }));
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(targets),
        }
    }
}

/// The default bus's resource policy (JSON), `None` when it has none.
pub async fn default_bus_policy(client: &Client) -> Result<Option<String>, CallFailure> {
    let out = sent(client.describe_event_bus().name("default").send()).await?;
    Ok(out.policy().filter(|p| !p.is_empty()).map(str::to_owned))
}
