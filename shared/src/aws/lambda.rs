//! Lambda: the weighted alias that carries a function's traffic (`live`).
//!
//! An alias points at one version and may send a share of its traffic to one other version
//! (`RoutingConfig.AdditionalVersionWeights`; at most two versions). shipgate keeps the alias on
//! the previous version with the new one as the additional version while shifting, and at 100%
//! points it at the new version with no routing (AWS's own CodeDeploy does the same).

use std::collections::HashMap;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::types::AliasRoutingConfiguration;

use crate::error::{AwsError, aws_err};

/// Where an alias sends traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasState {
    /// The version the alias points at.
    pub version: String,
    /// The additional version and its weight (0.0–1.0), if any.
    pub additional: Option<(String, f64)>,
}

impl AliasState {
    /// The share (0–100) of traffic on `new_version`, rounded to the percent.
    pub fn percent_on(&self, new_version: &str) -> u8 {
        if self.version == new_version {
            return 100;
        }
        match &self.additional {
            Some((version, weight)) if version == new_version => {
                (weight * 100.0).round().clamp(0.0, 100.0) as u8
            }
            _ => 0,
        }
    }
}

/// `GetAlias`.
pub async fn alias_state(
    lambda: &Client,
    function: &str,
    alias: &str,
) -> Result<AliasState, AwsError> {
    let out = lambda
        .get_alias()
        .function_name(function)
        .name(alias)
        .send()
        .await
        .map_err(aws_err("Lambda", "GetAlias"))?;
    Ok(AliasState {
        version: out.function_version().unwrap_or_default().to_owned(),
        additional: additional(out.routing_config()),
    })
}

/// Where each alias of `function` sends traffic, by alias name (`ListAliases`, every page): one
/// call for the aliases of a function instead of a `GetAlias` each.
pub async fn aliases_state(
    lambda: &Client,
    function: &str,
) -> Result<HashMap<String, AliasState>, AwsError> {
    let mut states = HashMap::new();
    let mut marker = None;
    loop {
        let out = lambda
            .list_aliases()
            .function_name(function)
            .set_marker(marker)
            .send()
            .await
            .map_err(aws_err("Lambda", "ListAliases"))?;
        for alias in out.aliases() {
            if let Some(name) = alias.name() {
                states.insert(
                    name.to_owned(),
                    AliasState {
                        version: alias.function_version().unwrap_or_default().to_owned(),
                        additional: additional(alias.routing_config()),
                    },
                );
            }
        }
        match out.next_marker {
            Some(next) if !next.is_empty() => marker = Some(next),
            _ => return Ok(states),
        }
    }
}

/// The additional version of a routing configuration and its weight, if any.
fn additional(routing: Option<&AliasRoutingConfiguration>) -> Option<(String, f64)> {
    routing
        .and_then(|r| r.additional_version_weights())
        .and_then(|w| w.iter().next().map(|(v, w)| (v.clone(), *w)))
}

/// Puts `percent` of the alias's traffic on `new_version`, the rest on `previous_version`:
/// 0 → previous only, 100 → new only (no routing config), else previous + weighted new.
pub async fn shift_alias(
    lambda: &Client,
    function: &str,
    alias: &str,
    previous_version: &str,
    new_version: &str,
    percent: u8,
) -> Result<(), AwsError> {
    let (version, routing) = match percent {
        0 => (previous_version, HashMap::new()),
        100.. => (new_version, HashMap::new()),
        p => (
            previous_version,
            HashMap::from([(new_version.to_owned(), crate::plan::alias_weight(p))]),
        ),
    };
    lambda
        .update_alias()
        .function_name(function)
        .name(alias)
        .function_version(version)
        .routing_config(
            AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(routing))
                .build(),
        )
        .send()
        .await
        .map_err(aws_err("Lambda", "UpdateAlias"))?;
    Ok(())
}
