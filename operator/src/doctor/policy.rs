//! Whether a resource-side policy (a role's trust policy, an event bus's policy) lets one
//! principal make one call, decided from the policy alone as the IAM User Guide's "Policy
//! evaluation logic" does for the resource side: an applicable `Deny` wins, else an applicable
//! `Allow` allows, else nothing does. A condition this reader does not evaluate makes its
//! statement unknown: an `Allow` it would give is not given, a `Deny` it might give is honoured,
//! and the answer names it.

use std::collections::BTreeMap;

use serde_json::Value;
use shipgate::iam::{account_of, glob, principal_matches};

/// Who asks: an AWS principal (a role ARN) or an AWS service (`cloudformation.amazonaws.com`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    Aws(&'a str),
    Service(&'a str),
}

/// One call to decide: who, which action, and the request's condition keys beyond those the
/// principal implies (`aws:PrincipalArn`, `aws:PrincipalAccount` for an AWS principal).
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub principal: Principal<'a>,
    pub action: &'a str,
    pub context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Allowed by the statement named (its `Sid`, else its index).
    Allowed(String),
    Denied(String),
    /// No statement allows it; the text lists the statements that could not be evaluated.
    NotAllowed(String),
}

impl Answer {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Answer::Allowed(_))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Allowed(by) => write!(f, "allowed by {by}"),
            Answer::Denied(by) => write!(f, "denied by {by}"),
            Answer::NotAllowed(why) => f.write_str(why),
        }
    }
}

enum Applies {
    Yes,
    No,
    Unknown(String),
}

/// Decides `ask` against the policy `document` (JSON text).
pub fn decide(document: &str, ask: &Ask<'_>) -> Answer {
    let policy: Value = match serde_json::from_str(document) {
        Ok(policy) => policy,
        Err(e) => return Answer::NotAllowed(format!("the policy is not JSON: {e}")),
    };
    let statements = match policy.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let mut allow = None;
    let mut unknown = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let name = statement
            .get("Sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("statement {i}"), str::to_owned);
        let deny = statement.get("Effect").and_then(Value::as_str) == Some("Deny");
        match (applies(statement, ask), deny) {
            (Applies::Yes, true) => return Answer::Denied(name),
            (Applies::Unknown(why), true) => {
                return Answer::Denied(format!("{name} (cannot be evaluated: {why})"));
            }
            (Applies::Yes, false) => {
                allow.get_or_insert(name);
            }
            (Applies::Unknown(why), false) => unknown.push(format!("{name}: {why}")),
            (Applies::No, _) => {}
        }
    }
    match allow {
        Some(name) => Answer::Allowed(name),
        None if unknown.is_empty() => Answer::NotAllowed("no statement allows it".into()),
        None => Answer::NotAllowed(format!(
            "no statement allows it; not evaluated: {}",
            unknown.join("; ")
        )),
    }
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn applies(statement: &Value, ask: &Ask<'_>) -> Applies {
    let actions = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), None) => strings(Some(a)).iter().any(|p| glob(p, ask.action, true)),
        (None, Some(a)) => !strings(Some(a)).iter().any(|p| glob(p, ask.action, true)),
        _ => return Applies::Unknown("no Action (or both Action and NotAction)".into()),
    };
    if !actions {
        return Applies::No;
    }
    let principal = match statement.get("Principal") {
        Some(Value::String(star)) if star == "*" => true,
        Some(Value::Object(kinds)) => match ask.principal {
            Principal::Aws(arn) => strings(kinds.get("AWS"))
                .iter()
                .any(|p| principal_matches(p, arn)),
            Principal::Service(service) => strings(kinds.get("Service")).contains(&service),
        },
        Some(_) => false,
        None if statement.get("NotPrincipal").is_some() => {
            return Applies::Unknown("NotPrincipal is not evaluated here".into());
        }
        None => false,
    };
    if !principal {
        return Applies::No;
    }
    let mut context = ask.context.clone();
    if let Principal::Aws(arn) = ask.principal {
        context.insert("aws:principalarn".into(), arn.to_owned());
        context.insert("aws:principalaccount".into(), account_of(arn).to_owned());
    }
    // Condition keys are not case-sensitive (IAM User Guide, "IAM JSON policy elements:
    // Condition").
    let context: BTreeMap<String, String> = context
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let conditions = statement.get("Condition").and_then(Value::as_object);
    for (operator, keys) in conditions.into_iter().flatten() {
        for (key, values) in keys.as_object().into_iter().flatten() {
            match holds(operator, &context, key, strings(Some(values))) {
                Applies::Yes => {}
                other => return other,
            }
        }
    }
    Applies::Yes
}

/// One condition: `operator` on `key` against any of `values`. A key the request does not
/// carry makes it false, or true with `...IfExists` (IAM User Guide, "Condition operators").
fn holds(
    operator: &str,
    context: &BTreeMap<String, String>,
    key: &str,
    values: Vec<&str>,
) -> Applies {
    let (base, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let test: fn(&str, &str) -> bool = match base {
        "StringEquals" | "ArnEquals" => |p, v| p == v,
        "StringEqualsIgnoreCase" => |p, v| p.eq_ignore_ascii_case(v),
        "StringLike" => |p, v| glob(p, v, false),
        "ArnLike" => shipgate::iam::arn_like,
        _ => return Applies::Unknown(format!("condition operator {operator}")),
    };
    match context.get(&key.to_ascii_lowercase()) {
        None if if_exists => Applies::Yes,
        None => Applies::No,
        Some(actual) if values.iter().any(|p| test(p, actual)) => Applies::Yes,
        Some(_) => Applies::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTION_ROLE: &str = "arn:aws:iam::111111111111:role/shipgate-DeployFunctionRole-AB12";

    fn assume(principal: Principal<'_>) -> Ask<'_> {
        Ask {
            principal,
            action: "sts:AssumeRole",
            context: BTreeMap::new(),
        }
    }

    /// environment.yaml's DeployRole trust, for tooling account 111111111111.
    fn deploy_trust(patterns: &[&str]) -> String {
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"ArnLike": {"aws:PrincipalArn": patterns}}
            }]
        })
        .to_string()
    }

    #[test]
    fn an_account_principal_narrowed_by_principal_arn_admits_only_the_named_roles() {
        let trust = deploy_trust(&[
            "arn:aws:iam::111111111111:role/shipgate-ChangeSetFunctionRole-*",
            "arn:aws:iam::111111111111:role/shipgate-DeployFunctionRole-*",
        ]);
        assert!(decide(&trust, &assume(Principal::Aws(FUNCTION_ROLE))).is_allowed());
        let other = "arn:aws:iam::111111111111:role/shipgate-MailerFunctionRole-AB12";
        assert_eq!(
            decide(&trust, &assume(Principal::Aws(other))),
            Answer::NotAllowed("no statement allows it".into())
        );
        let elsewhere = "arn:aws:iam::999999999999:role/shipgate-DeployFunctionRole-AB12";
        assert!(!decide(&trust, &assume(Principal::Aws(elsewhere))).is_allowed());
        // Another action is not allowed by an sts:AssumeRole statement.
        let mut tag = assume(Principal::Aws(FUNCTION_ROLE));
        tag.action = "sts:TagSession";
        assert!(!decide(&trust, &tag).is_allowed());
    }

    #[test]
    fn a_service_principal_with_a_source_account_if_it_exists() {
        let trust = serde_json::json!({
            "Statement": {
                "Sid": "CloudFormation",
                "Effect": "Allow",
                "Principal": {"Service": "cloudformation.amazonaws.com"},
                "Action": ["sts:AssumeRole"],
                "Condition": {"StringEqualsIfExists": {"aws:SourceAccount": "222222222222"}}
            }
        })
        .to_string();
        let cloudformation = Principal::Service("cloudformation.amazonaws.com");
        assert_eq!(
            decide(&trust, &assume(cloudformation)),
            Answer::Allowed("CloudFormation".into())
        );
        let mut ask = assume(cloudformation);
        ask.context
            .insert("aws:SourceAccount".into(), "222222222222".into());
        assert!(decide(&trust, &ask).is_allowed());
        ask.context
            .insert("aws:SourceAccount".into(), "333333333333".into());
        assert!(!decide(&trust, &ask).is_allowed());
        assert!(!decide(&trust, &assume(Principal::Service("lambda.amazonaws.com"))).is_allowed());
        // Without IfExists an absent key fails the condition.
        let strict = trust.replace("StringEqualsIfExists", "StringEquals");
        assert!(!decide(&strict, &assume(cloudformation)).is_allowed());
    }

    #[test]
    fn a_deny_wins_and_what_cannot_be_evaluated_is_named() {
        let policy = serde_json::json!({
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "events:PutEvents"},
                {"Sid": "NoStg", "Effect": "Deny", "Principal": {"AWS": "333333333333"},
                 "Action": "events:*"}
            ]
        })
        .to_string();
        let put = |arn| Ask {
            principal: Principal::Aws(arn),
            action: "events:PutEvents",
            context: BTreeMap::new(),
        };
        assert!(decide(&policy, &put("arn:aws:iam::222222222222:root")).is_allowed());
        assert_eq!(
            decide(&policy, &put("arn:aws:iam::333333333333:root")),
            Answer::Denied("NoStg".into())
        );
        let org = serde_json::json!({
            "Statement": {"Sid": "Org", "Effect": "Allow", "Principal": "*",
                "Action": "events:PutEvents",
                "Condition": {"ForAnyValue:StringEquals": {"aws:PrincipalOrgPaths": "o-1/*"}}}
        })
        .to_string();
        let answer = decide(&org, &put("arn:aws:iam::222222222222:root"));
        assert!(!answer.is_allowed());
        assert!(
            format!("{answer:?}").contains("ForAnyValue:StringEquals"),
            "{answer:?}"
        );
        assert!(!decide("not json", &put("arn:aws:iam::222222222222:root")).is_allowed());
    }
}
