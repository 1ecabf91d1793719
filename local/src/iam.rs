//! IAM policy evaluation, as AWS documents it, for the policies `template.yaml` and
//! `environment.yaml` declare: moto checks no IAM, so a call a role does not allow works
//! locally and fails in AWS with AccessDenied. [`Roles`] reads every role the templates make
//! (each SAM function's execution role, with what SAM adds to it, and each `AWS::IAM::Role`,
//! trust policy included) and the buckets' policies, intrinsics resolved like the rest of the
//! local stack; [`Roles::authorize`] decides a call the way AWS does.
//!
//! Sources (IAM User Guide): "Policy evaluation logic" and its "Cross-account policy evaluation
//! logic" (an explicit Deny anywhere wins; in one account an Allow in the identity policy or the
//! resource policy is enough; across accounts both must allow), "IAM JSON policy elements:
//! Action / NotAction / Resource / NotResource / Condition", "Condition operators" (a key the
//! request does not carry makes a condition false, `...IfExists` true), and "ArnLike" (each of
//! the six colon-separated parts of an ARN matched on its own, `*` and `?` wildcards).
//!
//! What this reader cannot decide it says, rather than guessing: an operator it does not know, a
//! negated operator on a key the request does not carry, a policy variable, a managed policy it
//! has no copy of. Such a statement fails closed: an Allow it would give is not given, and the
//! decision names the statement and why.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::codepipeline::{Resolver, TemplateEvaluator};

use shipgate::iam::principal_matches;
pub use shipgate::iam::{account_of, arn_like, glob};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action` or `NotAction`, `Resource` or `NotResource`, `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    negated: bool,
    patterns: Vec<String>,
}

impl Matcher {
    fn matches(&self, value: &str, one: impl Fn(&str, &str) -> bool) -> bool {
        self.patterns.iter().any(|p| one(p, value)) != self.negated
    }
}

/// One condition: `operator` on `key` against `values` (any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

/// What one condition says of a request.
enum Outcome {
    Holds,
    Fails,
    Unknown(String),
}

impl Condition {
    fn evaluate(&self, context: &BTreeMap<String, Vec<String>>) -> Outcome {
        let (operator, if_exists) = match self.operator.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (self.operator.as_str(), false),
        };
        if operator.contains(':') {
            // ForAnyValue:/ForAllValues: over multivalued keys: none of shipgate's policies
            // need them, so they are not read.
            return Outcome::Unknown(format!("operator {} is not evaluated here", self.operator));
        }
        let negated = matches!(
            operator,
            "StringNotEquals"
                | "StringNotEqualsIgnoreCase"
                | "StringNotLike"
                | "ArnNotEquals"
                | "ArnNotLike"
        );
        let test: fn(&str, &str) -> bool = match operator {
            "StringEquals" | "StringNotEquals" => |p, v| p == v,
            "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
                |p, v| p.eq_ignore_ascii_case(v)
            }
            "StringLike" | "StringNotLike" => |p, v| glob(p, v, false),
            "ArnEquals" | "ArnLike" | "ArnNotEquals" | "ArnNotLike" => arn_like,
            "Bool" => |p, v| p.eq_ignore_ascii_case(v),
            other => {
                return Outcome::Unknown(format!("operator {other} is not evaluated here"));
            }
        };
        let Some(actual) = context.get(&self.key) else {
            return if if_exists {
                Outcome::Holds
            } else if negated {
                Outcome::Unknown(format!(
                    "{} on {}, which the request does not carry",
                    self.operator, self.key
                ))
            } else {
                Outcome::Fails
            };
        };
        let any = actual
            .iter()
            .any(|v| self.values.iter().any(|p| test(p, v)));
        if any != negated {
            Outcome::Holds
        } else {
            Outcome::Fails
        }
    }
}

/// One policy statement, intrinsics resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Where it comes from: `<resource>.<policy>[<i>]` and its `Sid` when it has one.
    pub name: String,
    pub effect: Effect,
    action: Matcher,
    resource: Option<Matcher>,
    principal: Option<Matcher>,
    conditions: Vec<Condition>,
}

/// What one statement says of a request.
enum Applies {
    Yes,
    No,
    Unknown(String),
}

impl Statement {
    /// Whether the statement applies to `request`, whose condition keys (its own and the
    /// derived ones) are `context`.
    fn applies(
        &self,
        request: &Request<'_>,
        context: &BTreeMap<String, Vec<String>>,
        principal: Option<&str>,
    ) -> Applies {
        if !self.action.matches(request.action, |p, v| glob(p, v, true)) {
            return Applies::No;
        }
        if let Some(resource) = &self.resource
            && !resource.matches(request.resource, arn_like)
        {
            return Applies::No;
        }
        if let (Some(matcher), Some(principal)) = (&self.principal, principal)
            && !matcher.matches(principal, principal_matches)
        {
            return Applies::No;
        }
        for condition in &self.conditions {
            match condition.evaluate(context) {
                Outcome::Holds => {}
                Outcome::Fails => return Applies::No,
                Outcome::Unknown(why) => return Applies::Unknown(why),
            }
        }
        Applies::Yes
    }
}

/// A call to authorize: who makes it, what IAM action, on what resource, with which request
/// context keys (beyond `aws:PrincipalArn` and `aws:PrincipalAccount`, which are derived).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request<'_> {
    fn context(&self) -> BTreeMap<String, Vec<String>> {
        let mut context = self.context.clone();
        context.insert("aws:PrincipalArn".into(), vec![self.principal.to_owned()]);
        context.insert(
            "aws:PrincipalAccount".into(),
            vec![account_of(self.principal).to_owned()],
        );
        context
    }
}

/// AWS's answer to a request, with the statements behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, by these statements (the identity one, then the resource one across accounts).
    Allowed(Vec<String>),
    /// An explicit Deny.
    Denied(String),
    /// No statement allows it (what AWS reports as AccessDenied); `why` says which side lacks
    /// an Allow and which statements could not be evaluated.
    NotAllowed(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed(by) => write!(f, "allowed by {}", by.join(" and ")),
            Decision::Denied(by) => write!(f, "denied by {by}"),
            Decision::NotAllowed(why) => write!(f, "not allowed: {why}"),
        }
    }
}

/// What one set of statements says of a request.
struct Verdict {
    allow: Option<String>,
    deny: Option<String>,
    unknown: Vec<String>,
}

fn verdict(statements: &[Statement], request: &Request<'_>, principal: Option<&str>) -> Verdict {
    let mut v = Verdict {
        allow: None,
        deny: None,
        unknown: Vec::new(),
    };
    let context = request.context();
    for s in statements {
        match (s.applies(request, &context, principal), s.effect) {
            (Applies::Yes, Effect::Allow) => {
                v.allow.get_or_insert_with(|| s.name.clone());
            }
            (Applies::Yes, Effect::Deny) => {
                v.deny.get_or_insert_with(|| s.name.clone());
            }
            (Applies::No, _) => {}
            // A Deny that might apply is honoured: failing closed both ways.
            (Applies::Unknown(why), Effect::Deny) => {
                v.deny
                    .get_or_insert_with(|| format!("{} (cannot evaluate: {why})", s.name));
            }
            (Applies::Unknown(why), Effect::Allow) => v
                .unknown
                .push(format!("{} cannot be evaluated: {why}", s.name)),
        }
    }
    v
}

/// A role the templates make: its ARN, its permissions and its trust policy.
#[derive(Debug, Clone, Default)]
pub struct Role {
    pub arn: String,
    /// A SAM function's execution role (rather than an `AWS::IAM::Role`).
    pub of_function: bool,
    pub permissions: Vec<Statement>,
    pub trust: Vec<Statement>,
    /// Managed policies attached that this reader has no copy of (their ARNs).
    pub unread_managed_policies: Vec<String>,
}

/// The roles and resource policies of a set of templates.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Keyed `<stack>:<logical id>`, the id of the function (a SAM function's own role) or of
    /// the `AWS::IAM::Role`.
    pub roles: BTreeMap<String, Role>,
    /// Resource ARN prefix (a bucket's ARN) → its policy's statements.
    pub resource_policies: BTreeMap<String, Vec<Statement>>,
    /// A bucket's ARN → the account that owns it (S3 ARNs name no account).
    pub bucket_owners: BTreeMap<String, String>,
}

/// AWS managed policies SAM attaches, as AWS publishes them (IAM → AWS managed policies).
fn managed_policy(arn: &str) -> Option<Vec<Statement>> {
    let name = arn.rsplit('/').next().unwrap_or_default();
    let allow = |actions: &[&str]| Statement {
        name: format!("{name} (AWS managed)"),
        effect: Effect::Allow,
        action: Matcher {
            negated: false,
            patterns: actions.iter().map(|a| (*a).to_owned()).collect(),
        },
        resource: Some(Matcher {
            negated: false,
            patterns: vec!["*".into()],
        }),
        principal: None,
        conditions: Vec::new(),
    };
    match name {
        "AWSLambdaBasicExecutionRole" => Some(vec![allow(&[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ])]),
        "AWSLambdaSQSQueueExecutionRole" => Some(vec![allow(&[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ])]),
        "AmazonECSTaskExecutionRolePolicy" => Some(vec![allow(&[
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ])]),
        _ => None,
    }
}

fn strings(value: Option<&Json>) -> Vec<String> {
    match value {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn matcher(statement: &Json, key: &str, not_key: &str, path: &str) -> Result<Option<Matcher>> {
    match (statement.get(key), statement.get(not_key)) {
        (Some(v), None) => Ok(Some(Matcher {
            negated: false,
            patterns: principals_or_strings(v),
        })),
        (None, Some(v)) => Ok(Some(Matcher {
            negated: true,
            patterns: principals_or_strings(v),
        })),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => bail!("{path}: both {key} and {not_key}"),
    }
}

/// A `Principal` is `"*"` or `{AWS: ..., Service: ...}`; other elements are a string or a list.
fn principals_or_strings(value: &Json) -> Vec<String> {
    match value {
        Json::Object(map) => map.values().flat_map(|v| strings(Some(v))).collect(),
        other => strings(Some(other)),
    }
}

/// Reads a policy document (intrinsics resolved) into statements named `<path>[i] <Sid>`.
pub fn statements(document: &Json, path: &str) -> Result<Vec<Statement>> {
    let list = match document.get("Statement") {
        Some(Json::Array(items)) => items.clone(),
        Some(one @ Json::Object(_)) => vec![one.clone()],
        _ => bail!("{path}: no Statement"),
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let here = format!("{path}.Statement[{i}]");
            let name = match s.get("Sid").and_then(Json::as_str) {
                Some(sid) => format!("{here} {sid}"),
                None => here.clone(),
            };
            let effect = match s.get("Effect").and_then(Json::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                other => bail!("{here}: Effect {other:?}"),
            };
            let action = matcher(s, "Action", "NotAction", &here)?
                .ok_or_else(|| anyhow!("{here}: no Action"))?;
            let resource = matcher(s, "Resource", "NotResource", &here)?;
            let principal = matcher(s, "Principal", "NotPrincipal", &here)?;
            let mut conditions = Vec::new();
            if let Some(block) = s.get("Condition").and_then(Json::as_object) {
                for (operator, keys) in block {
                    let keys = keys
                        .as_object()
                        .ok_or_else(|| anyhow!("{here}: Condition {operator} is not a map"))?;
                    for (key, values) in keys {
                        conditions.push(Condition {
                            operator: operator.clone(),
                            key: key.clone(),
                            values: strings(Some(values)),
                        });
                    }
                }
            }
            let text = serde_json::to_string(s).unwrap_or_default();
            if text.contains("${") {
                // A policy variable (`${aws:username}`) or an unresolved substitution: what it
                // matches depends on the request, which this reader does not model.
                conditions.push(Condition {
                    operator: "PolicyVariable".into(),
                    key: String::new(),
                    values: Vec::new(),
                });
            }
            Ok(Statement {
                name,
                effect,
                action,
                resource,
                principal,
                conditions,
            })
        })
        .collect()
}

/// A resource's `Policies`, each evaluated: its index, its path and its value.
fn policies(
    props: &Yaml,
    eval: &impl Fn(&Yaml, &str) -> Result<Json>,
    path: &str,
) -> Result<Vec<(usize, String, Json)>> {
    let list = props.get("Policies").and_then(Yaml::as_sequence);
    list.into_iter()
        .flatten()
        .enumerate()
        .map(|(i, policy)| {
            let p = format!("{path}.Policies[{i}]");
            let value = eval(policy, &p)?;
            Ok((i, p, value))
        })
        .collect()
}

/// One template, read for its roles in `account`.
pub struct TemplateRoles<'a> {
    pub template: &'a str,
    pub resolver: &'a Resolver,
    /// The stack's name (SAM names a function's role `<stack>-<Function>Role-<suffix>`).
    pub stack_name: &'a str,
}

impl Roles {
    /// Adds the roles and bucket policies of one template.
    pub fn read(&mut self, t: &TemplateRoles<'_>) -> Result<()> {
        let doc: Yaml = serde_yaml::from_str(t.template).context("the template is not YAML")?;
        let evaluator = TemplateEvaluator::new(t.template)?;
        let eval = |value: &Yaml, path: &str| -> Result<Json> {
            Ok(evaluator
                .value(t.resolver, value, path)?
                .unwrap_or(Json::Null))
        };
        let resources = doc
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or_else(|| anyhow!("the template has no Resources"))?;
        let account = &t.resolver.account_id;
        // What `Ref` of a resource gives.
        let physical = |id: &str| {
            t.resolver
                .refs
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.into())
        };
        for (id, resource) in resources {
            let (Some(id), Some(kind)) = (id.as_str(), resource.get("Type").and_then(Yaml::as_str))
            else {
                continue;
            };
            let props = resource.get("Properties").cloned().unwrap_or(Yaml::Null);
            let path = format!("Resources.{id}.Properties");
            match kind {
                "AWS::Serverless::Function" => {
                    let role = self.function_role(t, id, &props, &eval, &path)?;
                    self.roles.insert(format!("{}:{id}", t.stack_name), role);
                }
                "AWS::IAM::Role" => {
                    let mut role = Role {
                        arn: format!("arn:aws:iam::{account}:role/{}", physical(id)),
                        ..Role::default()
                    };
                    if let Some(trust) = props.get("AssumeRolePolicyDocument") {
                        let p = format!("{path}.AssumeRolePolicyDocument");
                        role.trust = statements(&eval(trust, &p)?, &format!("{id} trust"))?;
                    }
                    for (i, p, policy) in policies(&props, &eval, &path)? {
                        let document = policy
                            .get("PolicyDocument")
                            .ok_or_else(|| anyhow!("{p}: no PolicyDocument"))?;
                        role.permissions
                            .extend(statements(document, &format!("{id}.Policies[{i}]"))?);
                    }
                    if let Some(arns) = props.get("ManagedPolicyArns") {
                        let p = format!("{path}.ManagedPolicyArns");
                        for arn in strings(Some(&eval(arns, &p)?)) {
                            match managed_policy(&arn) {
                                Some(s) => role.permissions.extend(s),
                                None => role.unread_managed_policies.push(arn),
                            }
                        }
                    }
                    self.roles.insert(format!("{}:{id}", t.stack_name), role);
                }
                "AWS::S3::Bucket" => {
                    self.bucket_owners
                        .insert(format!("arn:aws:s3:::{}", physical(id)), account.clone());
                }
                "AWS::S3::BucketPolicy" => {
                    let bucket = eval(props.get("Bucket").unwrap_or(&Yaml::Null), &path)?;
                    let bucket = bucket.as_str().unwrap_or_default().to_owned();
                    let document = props
                        .get("PolicyDocument")
                        .ok_or_else(|| anyhow!("{path}: no PolicyDocument"))?;
                    let document = eval(document, &format!("{path}.PolicyDocument"))?;
                    self.resource_policies
                        .entry(format!("arn:aws:s3:::{bucket}"))
                        .or_default()
                        .extend(statements(&document, id)?);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A SAM function's execution role: its `Policies` (inline documents and AWS managed
    /// policy names; SAM policy templates are not read) and what SAM adds itself
    /// (AWSLambdaBasicExecutionRole always; `sqs:SendMessage` to its SQS `DeadLetterQueue`;
    /// AWSLambdaSQSQueueExecutionRole for an SQS event source). Source: AWS SAM Developer
    /// Guide, AWS::Serverless::Function (Role, Policies, DeadLetterQueue, Events SQS).
    fn function_role(
        &self,
        t: &TemplateRoles<'_>,
        id: &str,
        props: &Yaml,
        eval: &impl Fn(&Yaml, &str) -> Result<Json>,
        path: &str,
    ) -> Result<Role> {
        let account = &t.resolver.account_id;
        let mut role = Role {
            arn: format!(
                "arn:aws:iam::{account}:role/{}-{id}Role-LOCAL1234",
                t.stack_name
            ),
            of_function: true,
            ..Role::default()
        };
        if props.get("Role").is_some() {
            bail!("{path}.Role: a function with a role of its own is not read here");
        }
        role.permissions
            .extend(managed_policy("AWSLambdaBasicExecutionRole").unwrap_or_default());
        for (i, p, policy) in policies(props, eval, path)? {
            match &policy {
                Json::String(name) => match managed_policy(name) {
                    Some(s) => role.permissions.extend(s),
                    None => role.unread_managed_policies.push(name.clone()),
                },
                Json::Object(map) if map.contains_key("Statement") => {
                    role.permissions
                        .extend(statements(&policy, &format!("{id}.Policies[{i}]"))?);
                }
                other => bail!("{p}: a SAM policy template ({other}) is not read here"),
            }
        }
        let dead_letter = props.get("DeadLetterQueue").cloned().or_else(|| {
            // Globals.Function.DeadLetterQueue applies to every function without its own.
            serde_yaml::from_str::<Yaml>(t.template)
                .ok()?
                .get("Globals")?
                .get("Function")?
                .get("DeadLetterQueue")
                .cloned()
        });
        if let Some(dlq) = dead_letter {
            let dlq = eval(&dlq, &format!("{path}.DeadLetterQueue"))?;
            if dlq.get("Type").and_then(Json::as_str) == Some("SQS") {
                let target = dlq.get("TargetArn").and_then(Json::as_str).unwrap_or("?");
                role.permissions.push(Statement {
                    name: format!("{id} DeadLetterQueue (added by SAM)"),
                    effect: Effect::Allow,
                    action: Matcher {
                        negated: false,
                        patterns: vec!["sqs:SendMessage".into()],
                    },
                    resource: Some(Matcher {
                        negated: false,
                        patterns: vec![target.to_owned()],
                    }),
                    principal: None,
                    conditions: Vec::new(),
                });
            }
        }
        let has_sqs_event = props
            .get("Events")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .any(|(_, e)| e.get("Type").and_then(Yaml::as_str) == Some("SQS"));
        if has_sqs_event {
            role.permissions
                .extend(managed_policy("AWSLambdaSQSQueueExecutionRole").unwrap_or_default());
        }
        Ok(role)
    }

    /// Every action an Allow statement of the role `key` names (not `NotAction`), with the
    /// statement's name.
    pub fn allowed_actions(&self, key: &str) -> Vec<(String, String)> {
        self.roles
            .get(key)
            .into_iter()
            .flat_map(|r| &r.permissions)
            .filter(|s| s.effect == Effect::Allow && !s.action.negated)
            .flat_map(|s| {
                s.action
                    .patterns
                    .iter()
                    .map(|a| (s.name.clone(), a.clone()))
            })
            .collect()
    }

    /// A copy with `action` taken out of the statement `statement` of the role `key`: what
    /// the role would be had its template not granted it.
    pub fn without_action(&self, key: &str, statement: &str, action: &str) -> Roles {
        let mut copy = self.clone();
        if let Some(role) = copy.roles.get_mut(key) {
            for s in role.permissions.iter_mut().filter(|s| s.name == statement) {
                s.action.patterns.retain(|a| a != action);
            }
        }
        copy
    }

    /// Whether an AWS service (`cloudformation.amazonaws.com`) may assume the role `role_arn`,
    /// with the request context it sets: the role's trust policy alone decides (a service
    /// principal has no identity policy).
    pub fn service_may_assume(
        &self,
        role_arn: &str,
        service: &str,
        context: BTreeMap<String, Vec<String>>,
    ) -> Decision {
        let Some(role) = self.roles.values().find(|r| r.arn == role_arn) else {
            return Decision::NotAllowed(format!("no role {role_arn} in the templates"));
        };
        let request = Request {
            principal: service,
            action: "sts:AssumeRole",
            resource: role_arn,
            context,
        };
        let v = verdict(&role.trust, &request, Some(service));
        match (v.deny, v.allow) {
            (Some(deny), _) => Decision::Denied(deny),
            (None, Some(allow)) => Decision::Allowed(vec![allow]),
            (None, None) => Decision::NotAllowed(format!(
                "the trust policy of {role_arn} does not allow {service}{}",
                if v.unknown.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.unknown.join("; "))
                }
            )),
        }
    }

    /// The account that owns `resource`: the one its ARN names, or for S3 the one whose
    /// template declares the bucket; empty when neither says.
    pub fn resource_account(&self, resource: &str) -> String {
        let named = account_of(resource);
        if !named.is_empty() {
            return named.to_owned();
        }
        self.bucket_owners
            .iter()
            .find(|(bucket, _)| {
                resource == bucket.as_str() || resource.starts_with(&format!("{bucket}/"))
            })
            .map(|(_, account)| account.clone())
            .unwrap_or_default()
    }

    /// Whether `principal` (a role ARN) may make `request`, as AWS decides it: its identity
    /// policy, the resource's policy when the templates give one (a bucket's), and for
    /// `sts:AssumeRole` the target role's trust policy, which must allow it too.
    pub fn authorize(&self, identity: &Role, request: &Request<'_>) -> Decision {
        let own = verdict(&identity.permissions, request, None);
        let resource_statements = self
            .resource_policies
            .iter()
            .filter(|(prefix, _)| {
                request.resource == prefix.as_str()
                    || request.resource.starts_with(&format!("{prefix}/"))
            })
            .flat_map(|(_, s)| s.iter().cloned())
            .collect::<Vec<_>>();
        let trust = if request.action.eq_ignore_ascii_case("sts:AssumeRole") {
            self.roles
                .values()
                .find(|r| r.arn == request.resource)
                .map(|r| r.trust.clone())
        } else {
            None
        };
        let other = verdict(
            trust.as_deref().unwrap_or(&resource_statements),
            request,
            Some(request.principal),
        );
        if let Some(deny) = own.deny.or(other.deny) {
            return Decision::Denied(deny);
        }
        let mut unknown = own.unknown;
        unknown.extend(other.unknown);
        let unknown = if unknown.is_empty() {
            String::new()
        } else {
            format!(" ({})", unknown.join("; "))
        };
        let resource_account = self.resource_account(request.resource);
        // An account id: AWS-owned resources (a CloudFormation transform's `aws`) take no
        // resource policy.
        let is_account =
            resource_account.len() == 12 && resource_account.bytes().all(|b| b.is_ascii_digit());
        let cross_account = is_account && resource_account != account_of(request.principal);
        let resource_side_required = trust.is_some() || cross_account;
        match (own.allow, other.allow) {
            (Some(a), Some(b)) => Decision::Allowed(vec![a, b]),
            (Some(a), None) if !resource_side_required => Decision::Allowed(vec![a]),
            (None, Some(b)) if !resource_side_required => Decision::Allowed(vec![b]),
            (Some(_), None) if trust.is_some() => Decision::NotAllowed(format!(
                "the trust policy of {} does not allow {}{unknown}",
                request.resource, request.principal
            )),
            (Some(_), None) => Decision::NotAllowed(format!(
                "the role allows it, but {} is in account {resource_account} and no policy of \
                 the resource allows {}{unknown}",
                request.resource, request.principal
            )),
            (None, _) => Decision::NotAllowed(format!(
                "no statement of {} allows {} on {}{unknown}",
                identity.arn, request.action, request.resource
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(action: &'a str, resource: &'a str) -> Request<'a> {
        Request {
            principal: "arn:aws:iam::111111111111:role/shipgate-DeployFunctionRole-X",
            action,
            resource,
            context: BTreeMap::new(),
        }
    }

    fn role(document: Json) -> Role {
        Role {
            arn: "arn:aws:iam::111111111111:role/shipgate-DeployFunctionRole-X".into(),
            permissions: statements(&document, "test").unwrap(),
            ..Role::default()
        }
    }

    #[test]
    fn arn_like_takes_stars_and_question_marks() {
        assert!(arn_like(
            "arn:aws:cloudwatch:eu-west-1:2:alarm:*",
            "arn:aws:cloudwatch:eu-west-1:2:alarm:web-5xx"
        ));
        assert!(arn_like("a?c*", "abcdef"));
        assert!(arn_like("*", ""));
        assert!(!arn_like(
            "arn:aws:cloudwatch:eu-west-1:2:alarm:*",
            "arn:aws:cloudwatch:eu-west-1:3:alarm:x"
        ));
        assert!(!arn_like("a?c", "ac"));
    }

    #[test]
    fn arns_match_part_by_part_with_wildcards() {
        assert!(arn_like("*", "arn:aws:s3:::b/k"));
        assert!(arn_like(
            "arn:aws:ecs:eu-west-1:2:task-set/c/*",
            "arn:aws:ecs:eu-west-1:2:task-set/c/orders/ecs-svc-1"
        ));
        assert!(!arn_like(
            "arn:aws:ecs:eu-west-1:2:service/c/*",
            "arn:aws:ecs:eu-west-1:2:task-set/c/orders/ecs-svc-1"
        ));
        // A star stays in its part: it does not stand for the region and the account.
        assert!(!arn_like(
            "arn:aws:ecs:*",
            "arn:aws:ecs:eu-west-1:2:service/c/s"
        ));
        assert!(arn_like(
            "arn:aws:ecs:*:*:*",
            "arn:aws:ecs:eu-west-1:2:service/c/s"
        ));
        assert!(arn_like(
            "arn:aws:iam::1:role/a-?",
            "arn:aws:iam::1:role/a-b"
        ));
        assert!(!arn_like("arn:aws:iam::1:role/A", "arn:aws:iam::1:role/a"));
    }

    #[test]
    fn actions_match_without_case_and_with_wildcards_and_not_action() {
        let r = role(json!({"Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:get*"], "Resource": "*"},
            {"Effect": "Allow", "NotAction": ["s3:*"], "Resource": "arn:aws:sqs:*:*:q"}
        ]}));
        let roles = Roles::default();
        assert!(
            roles
                .authorize(
                    &r,
                    &request(
                        "dynamodb:GetItem",
                        "arn:aws:dynamodb:eu-west-1:111111111111:table/t"
                    )
                )
                .is_allowed()
        );
        assert!(
            !roles
                .authorize(
                    &r,
                    &request(
                        "dynamodb:PutItem",
                        "arn:aws:dynamodb:eu-west-1:111111111111:table/t"
                    )
                )
                .is_allowed()
        );
        assert!(
            roles
                .authorize(
                    &r,
                    &request("sqs:SendMessage", "arn:aws:sqs:eu-west-1:111111111111:q")
                )
                .is_allowed()
        );
        assert!(
            !roles
                .authorize(
                    &r,
                    &request("s3:GetObject", "arn:aws:sqs:eu-west-1:111111111111:q")
                )
                .is_allowed()
        );
    }

    #[test]
    fn an_explicit_deny_wins_and_is_named() {
        let r = role(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
        ]}));
        let d = Roles::default().authorize(&r, &request("s3:DeleteObject", "arn:aws:s3:::b/k"));
        assert_eq!(d, Decision::Denied("test.Statement[1] NoDelete".into()));
    }

    #[test]
    fn conditions_need_their_keys_and_unknown_operators_fail_closed() {
        let r = role(json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
            {"Effect": "Allow", "Action": "ecs:TagResource", "Resource": "*",
             "Condition": {"NumericLessThan": {"x:n": "3"}}}
        ]}));
        let roles = Roles::default();
        let mut pass = request("iam:PassRole", "arn:aws:iam::111111111111:role/r");
        assert!(!roles.authorize(&r, &pass).is_allowed(), "no key, no match");
        pass.context.insert(
            "iam:PassedToService".into(),
            vec!["ecs-tasks.amazonaws.com".into()],
        );
        assert!(roles.authorize(&r, &pass).is_allowed());
        pass.context.insert(
            "iam:PassedToService".into(),
            vec!["lambda.amazonaws.com".into()],
        );
        assert!(!roles.authorize(&r, &pass).is_allowed());
        let tag = roles.authorize(
            &r,
            &request(
                "ecs:TagResource",
                "arn:aws:ecs:eu-west-1:111111111111:service/c/s",
            ),
        );
        assert!(tag.to_string().contains("NumericLessThan"), "{tag}");
        assert!(!tag.is_allowed());
    }

    #[test]
    fn across_accounts_the_resource_policy_must_allow_too() {
        let env = Role {
            arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
            permissions: statements(
                &json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::artifacts/templates/*"}}),
                "env",
            )
            .unwrap(),
            ..Role::default()
        };
        let get = Request {
            principal: "arn:aws:iam::222222222222:role/shipgate-deploy",
            action: "s3:GetObject",
            // S3 object ARNs carry no account: the bucket's owner is the tooling account.
            resource: "arn:aws:s3:::artifacts/templates/r/t.template",
            context: BTreeMap::new(),
        };
        let mut roles = Roles::default();
        roles
            .bucket_owners
            .insert("arn:aws:s3:::artifacts".into(), "111111111111".into());
        let d = roles.authorize(&env, &get);
        assert!(d.to_string().contains("account 111111111111"), "{d}");
        roles.resource_policies.insert(
            "arn:aws:s3:::artifacts".into(),
            statements(
                &json!({"Statement": {"Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::222222222222:role/shipgate-deploy"},
                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::artifacts/templates/*"}}),
                "bucket",
            )
            .unwrap(),
        );
        assert!(roles.authorize(&env, &get).is_allowed());
        let stranger = Role {
            arn: "arn:aws:iam::333333333333:role/other".into(),
            ..env.clone()
        };
        let get = Request {
            principal: "arn:aws:iam::333333333333:role/other",
            ..get
        };
        assert!(!roles.authorize(&stranger, &get).is_allowed());
    }

    #[test]
    fn assume_role_needs_the_trust_policy_too() {
        let caller = role(
            json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Resource": "arn:aws:iam::222222222222:role/shipgate-deploy"}}),
        );
        let mut roles = Roles::default();
        roles.roles.insert(
            "DeployRole".into(),
            Role {
                arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
                trust: statements(
                    &json!({"Statement": {"Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"ArnLike": {"aws:PrincipalArn":
                            "arn:aws:iam::111111111111:role/shipgate-ChangeSetFunctionRole-*"}}}}),
                    "trust",
                )
                .unwrap(),
                ..Role::default()
            },
        );
        let assume = request(
            "sts:AssumeRole",
            "arn:aws:iam::222222222222:role/shipgate-deploy",
        );
        let d = roles.authorize(&caller, &assume);
        assert!(d.to_string().contains("trust policy"), "{d}");
        let change_set = Request {
            principal: "arn:aws:iam::111111111111:role/shipgate-ChangeSetFunctionRole-X",
            ..assume
        };
        assert!(roles.authorize(&caller, &change_set).is_allowed());
    }
}
