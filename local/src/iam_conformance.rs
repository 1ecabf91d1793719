//! IAM conformance: every AWS call a shipgate function makes, evaluated against the policies
//! `template.yaml` and `environment.yaml` declare, the way AWS evaluates them ([`crate::iam`]).
//! moto checks no IAM: without this, a call its role does not allow works on the local stack and
//! fails with AccessDenied in AWS.
//!
//! The calls come from two places:
//! - what the end-to-end stories did, as the local stack recorded it ([`crate::recorder`]),
//!   each call turned into the authorizations AWS makes for it ([`crate::authorization`]), the
//!   templates read with the names that stack gave their resources;
//! - `local/iam/calls.yaml`, by hand: the calls no story makes (error and repair paths, what
//!   Lambda does with the execution role, calls that depend on the account's settings), each
//!   with a note saying why it is needed, the templates read with local placeholders.
//!
//! What it finds ([`Findings`]): the calls AWS would refuse, each naming the function, the
//! call, where it comes from and why; the Allow statements no call needs (each granted action
//! is taken away in turn, and some call must then be refused naming it); hand-listed calls a
//! recording already shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use serde_yaml::Value;

use crate::accounts;
use crate::authorization::{Authorization, authorizations, describe};
use crate::codepipeline::{Resolver, TemplateEvaluator};
use crate::iam::{Decision, Request, Roles, TemplateRoles, account_of, glob};
use crate::provision;
use crate::recorder::{Principal, Recording, ResolvedNames};

/// The tooling stack's name, and the environment stack's (the roles of the stg and prod
/// accounts' are keyed `shipgate-env-<environment>`).
pub const TOOLING_STACK: &str = "shipgate";
pub const ENVIRONMENT_STACK: &str = "shipgate-env";

/// One hand-listed call (`local/iam/calls.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedCall {
    pub function: String,
    #[serde(rename = "as")]
    pub principal: ListedPrincipal,
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    pub source: String,
    #[serde(default)]
    pub cross_account: bool,
    /// Why the call is needed, and why no story shows it.
    #[serde(default)]
    pub note: Option<String>,
    /// The race that makes a story show the call in some runs only: such an entry is not
    /// redundant when a recording shows it.
    #[serde(default)]
    pub sometimes_recorded: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListedPrincipal {
    /// The function's own execution role (template.yaml).
    Function,
    /// environment.yaml's DeployRole in the environment account, assumed by the function.
    Environment,
    /// environment.yaml's ChecksRole (`shipgate-checks`), assumed by the checks function.
    #[serde(rename = "checks-role")]
    ChecksRole,
}

/// `local/iam/calls.yaml`'s calls.
pub fn listed_calls(path: &Path) -> Result<Vec<ListedCall>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("{} is a list of calls", path.display()))
}

/// A template, its evaluator and what its references resolve to in one account.
pub struct TemplateStack {
    text: String,
    evaluator: TemplateEvaluator,
    resolver: Resolver,
}

impl TemplateStack {
    /// `file` (relative to the project) as deployed in `account` with `parameters`; `refs`
    /// and `attributes` override what the local placeholders would resolve to.
    fn new(
        file: &str,
        account: &str,
        parameters: &[(&str, String)],
        refs: &BTreeMap<String, String>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let path = crate::process::project_root().join(file);
        let text = std::fs::read_to_string(&path).with_context(|| file.to_owned())?;
        let doc: Value = serde_yaml::from_str(&text).with_context(|| file.to_owned())?;
        let evaluator = TemplateEvaluator::new(&text).with_context(|| file.to_owned())?;
        let parameters = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut resolver = provision::resolver(&doc, &evaluator, account, &parameters, "")
            .with_context(|| file.to_owned())?;
        resolver
            .refs
            .extend(refs.iter().map(|(k, v)| (k.clone(), v.clone())));
        resolver
            .attributes
            .extend(attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        // An attribute only the created load balancer knows, in the form AWS gives it (the tail
        // of its ARN when the stack made one).
        let full_name = resolver
            .refs
            .get("LoadBalancer")
            .and_then(|arn| arn.split_once(":loadbalancer/"))
            .map_or(
                "app/shipgate-LoadBalancer/50dc6c495c0c9188".to_owned(),
                |(_, n)| n.to_owned(),
            );
        resolver
            .attributes
            .entry("LoadBalancer.LoadBalancerFullName".into())
            .or_insert(full_name);
        resolver.stack_name = if file == "template.yaml" {
            TOOLING_STACK.into()
        } else {
            ENVIRONMENT_STACK.into()
        };
        Ok(Self {
            text,
            evaluator,
            resolver,
        })
    }

    /// `text` with `${...}` substituted as `!Sub` would in this stack, `${Tooling}` and
    /// `${Env}` being the tooling and environment accounts.
    fn sub(&self, text: &str) -> Result<String> {
        let resolver = self
            .resolver
            .clone()
            .with_ref("Tooling", accounts::TOOLING)
            .with_ref("Env", accounts::INT);
        let node = Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new("Sub"),
            value: Value::String(text.to_owned()),
        }));
        Ok(self
            .evaluator
            .string(&resolver, &node, text)
            .map_err(|e| anyhow!("{text}: {e}"))?
            .unwrap_or_default())
    }
}

/// The roles of the tooling stack and of each environment's, as one set of names resolves
/// them.
pub struct Templates {
    tooling: TemplateStack,
    /// int's: the hand-listed environment calls are int's.
    environment: TemplateStack,
    pub roles: Roles,
}

impl Templates {
    /// With the local placeholders (the hand list's).
    pub fn local() -> Result<Self> {
        Self::read(&ResolvedNames::default())
    }

    /// As the stack that recorded `recording` resolved them.
    pub fn as_recorded(recording: &Recording) -> Result<Self> {
        Self::read(&recording.names)
    }

    fn read(names: &ResolvedNames) -> Result<Self> {
        let tooling = TemplateStack::new(
            "template.yaml",
            accounts::TOOLING,
            &tooling_parameters(),
            &names.tooling_refs,
            &names.tooling_attributes,
        )?;
        let none = BTreeMap::new();
        let environment_in = |environment: &str, account: &str| {
            TemplateStack::new(
                "environment.yaml",
                account,
                &[
                    ("Environment", environment.to_owned()),
                    ("ToolingAccountId", accounts::TOOLING.to_owned()),
                    ("ProbeCodeBucket", "shipgate-code-bucket".to_owned()),
                ],
                names.environments.get(account).unwrap_or(&none),
                &none,
            )
        };
        let environments = accounts::ENVIRONMENTS
            .iter()
            .map(|(name, account)| Ok((*name, environment_in(name, account)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut roles = Roles::default();
        roles
            .read(&TemplateRoles {
                template: &tooling.text,
                resolver: &tooling.resolver,
                stack_name: TOOLING_STACK,
            })
            .context("template.yaml")?;
        for (name, stack) in &environments {
            let stack_name = environment_stack_name(name);
            roles
                .read(&TemplateRoles {
                    template: &stack.text,
                    resolver: &stack.resolver,
                    stack_name: &stack_name,
                })
                .with_context(|| format!("environment.yaml in {name}"))?;
        }
        let environment = environments
            .into_iter()
            .find(|(name, _)| *name == "int")
            .map(|(_, stack)| stack)
            .context("no int environment")?;
        Ok(Self {
            tooling,
            environment,
            roles,
        })
    }

    /// The key of the role whose ARN is `arn`.
    fn role_key(&self, arn: &str) -> Option<String> {
        self.roles
            .roles
            .iter()
            .find(|(_, role)| role.arn == arn)
            .map(|(key, _)| key.clone())
    }

    /// The template's functions (logical ids).
    pub fn functions(&self) -> BTreeSet<String> {
        self.roles
            .roles
            .iter()
            .filter(|(_, role)| role.of_function)
            .filter_map(|(k, _)| k.strip_prefix(&format!("{TOOLING_STACK}:")))
            .map(str::to_owned)
            .collect()
    }
}

/// The environment stack's role key prefix: `shipgate-env` in int, `shipgate-env-<name>`.
fn environment_stack_name(environment: &str) -> String {
    if environment == "int" {
        ENVIRONMENT_STACK.to_owned()
    } else {
        format!("{ENVIRONMENT_STACK}-{environment}")
    }
}

/// The template parameters of the tooling stack as the hand list reads them (the recorded
/// stacks' own values override them).
fn tooling_parameters() -> Vec<(&'static str, String)> {
    vec![
        ("IntDeployRoleArn", accounts::deploy_role_arn(accounts::INT)),
        ("StgDeployRoleArn", accounts::deploy_role_arn(accounts::STG)),
        (
            "ProdDeployRoleArn",
            accounts::deploy_role_arn(accounts::PROD),
        ),
        ("MailFrom", "shipgate@example.com".to_owned()),
        ("ApplicationName", "orders".to_owned()),
        ("IntApprovers", "int-approver@example.com".to_owned()),
        ("StgApprovers", "stg-approver@example.com".to_owned()),
        ("ProdApprovers", "prod-approver@example.com".to_owned()),
    ]
}

/// Where a call to evaluate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Recorded in the named story.
    Recorded(String),
    /// `local/iam/calls.yaml`'s entry at this index.
    Listed(usize),
}

/// One authorization to decide: who, what, on what, and where it comes from.
#[derive(Debug, Clone)]
pub struct Check {
    pub function: String,
    /// The role's key in [`Roles`].
    pub role: String,
    /// How the function acts: "its role", "environment DeployRole (arn)", ...
    pub acting_as: String,
    /// Made by tasks a function started, with their execution role (not a role the function
    /// acts as).
    pub by_tasks: bool,
    pub authorization: Authorization,
    /// The call: its operation and story, or the hand list's source.
    pub call: String,
    pub note: Option<String>,
    pub origin: Origin,
    pub cross_account: bool,
    /// A hand-listed call a story makes in some runs only.
    pub sometimes_recorded: bool,
}

/// Calls and the templates they are decided against.
pub struct CallSet {
    pub name: String,
    pub templates: Templates,
    pub checks: Vec<Check>,
}

impl CallSet {
    /// The hand-listed calls, against the templates read with the local placeholders.
    pub fn listed(calls: &[ListedCall]) -> Result<Self> {
        let templates = Templates::local()?;
        let mut checks = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            let (role, stack, acting_as) = match call.principal {
                ListedPrincipal::Function => (
                    format!("{TOOLING_STACK}:{}", call.function),
                    &templates.tooling,
                    "its role".to_owned(),
                ),
                ListedPrincipal::Environment => (
                    format!("{ENVIRONMENT_STACK}:DeployRole"),
                    &templates.environment,
                    "environment DeployRole".to_owned(),
                ),
                ListedPrincipal::ChecksRole => (
                    format!("{ENVIRONMENT_STACK}:ChecksRole"),
                    &templates.environment,
                    "environment ChecksRole".to_owned(),
                ),
            };
            if !templates.roles.roles.contains_key(&role) {
                anyhow::bail!("{}: no role {role} in the templates", call.function);
            }
            let context = call
                .context
                .iter()
                .map(|(k, v)| Ok((k.clone(), vec![stack.sub(v)?])))
                .collect::<Result<_>>()?;
            checks.push(Check {
                function: call.function.clone(),
                role,
                acting_as,
                by_tasks: false,
                authorization: Authorization {
                    action: call.action.clone(),
                    resource: stack.sub(&call.resource)?,
                    context,
                },
                call: call.source.clone(),
                note: call.note.clone(),
                origin: Origin::Listed(index),
                cross_account: call.cross_account,
                sometimes_recorded: call.sometimes_recorded.is_some(),
            });
        }
        Ok(Self {
            name: "local/iam/calls.yaml".to_owned(),
            templates,
            checks,
        })
    }

    /// A story's recorded calls, against the templates read as its stack resolved them. The
    /// calls the table of authorizations does not know, and what the recorder could not read,
    /// are errors: all of them, one line each.
    pub fn recorded(story: &str, recording: &Recording) -> Result<Self, Vec<String>> {
        let templates = Templates::as_recorded(recording).map_err(|e| vec![format!("{e:#}")])?;
        let mut checks = Vec::new();
        let mut errors: Vec<String> = recording
            .errors
            .iter()
            .map(|e| format!("{story}: a call was not recorded: {e}"))
            .collect();
        for call in &recording.calls {
            let (role, acting_as, account) = match &call.principal {
                Principal::Function {
                    function,
                    assumed: None,
                } => (
                    format!("{TOOLING_STACK}:{function}"),
                    "its role".to_owned(),
                    accounts::TOOLING.to_owned(),
                ),
                Principal::Function {
                    assumed: Some(arn), ..
                } => match templates.role_key(arn) {
                    Some(key) => (key, format!("assumed {arn}"), account_of(arn).to_owned()),
                    None => {
                        errors.push(format!(
                            "{story}: {} assumed {arn}, which no template makes",
                            call.principal.function()
                        ));
                        continue;
                    }
                },
                Principal::Tasks { role: arn, .. } => match templates.role_key(arn) {
                    Some(key) => (
                        key,
                        format!("its tasks' execution role {arn}"),
                        account_of(arn).to_owned(),
                    ),
                    None => {
                        errors.push(format!(
                            "{story}: tasks started by {} run as {arn}, which no template makes",
                            call.principal.function()
                        ));
                        continue;
                    }
                },
            };
            match authorizations(&call.request, &account) {
                Ok(found) => checks.extend(found.into_iter().map(|authorization| Check {
                    function: call.principal.function().to_owned(),
                    role: role.clone(),
                    acting_as: acting_as.clone(),
                    by_tasks: matches!(call.principal, Principal::Tasks { .. }),
                    authorization,
                    call: format!("{} (story {story})", describe(&call.request)),
                    note: None,
                    origin: Origin::Recorded(story.to_owned()),
                    cross_account: false,
                    sometimes_recorded: false,
                })),
                Err(unmapped) => errors.push(format!(
                    "{story}: {} made a call the IAM check cannot evaluate: {unmapped}",
                    call.principal.function()
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Each distinct authorization once: many calls of a story are the same to IAM.
        let mut seen = BTreeSet::new();
        checks
            .retain(|c| seen.insert((c.function.clone(), c.role.clone(), c.authorization.clone())));
        Ok(Self {
            name: format!("story {story}"),
            templates,
            checks,
        })
    }
}

/// One call AWS would refuse.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub function: String,
    pub action: String,
    /// The whole line: function, role, action, resource, call, decision, note.
    pub line: String,
}

/// What the evaluation of some call sets found.
#[derive(Debug, Default)]
pub struct Findings {
    pub refused: Vec<Refusal>,
    /// The statements that allowed the others.
    pub used: BTreeSet<String>,
    /// Per check that was allowed: its set, its index, the statements that allowed it.
    allowed_by: Vec<(usize, usize, Vec<String>)>,
}

/// Decides every check of `sets` as AWS would.
pub fn evaluate(sets: &[CallSet]) -> Findings {
    evaluate_with(sets, |_| true, |roles| roles.clone())
}

/// Decides the checks `which` selects, against the roles `roles_of` makes of each set's.
fn evaluate_with(
    sets: &[CallSet],
    which: impl Fn(&Check) -> bool,
    roles_of: impl Fn(&Roles) -> Roles,
) -> Findings {
    let mut findings = Findings::default();
    for (s, set) in sets.iter().enumerate() {
        if !set.checks.iter().any(&which) {
            continue;
        }
        let roles = roles_of(&set.templates.roles);
        for (c, check) in set.checks.iter().enumerate().filter(|(_, c)| which(c)) {
            let Some(role) = roles.roles.get(&check.role) else {
                findings.refused.push(Refusal {
                    function: check.function.clone(),
                    action: check.authorization.action.clone(),
                    line: format!(
                        "{}: no role {} in the templates",
                        check.function, check.role
                    ),
                });
                continue;
            };
            let request = Request {
                principal: &role.arn,
                action: &check.authorization.action,
                resource: &check.authorization.resource,
                context: check.authorization.context.clone(),
            };
            if check.cross_account
                && roles.resource_account(&check.authorization.resource) == account_of(&role.arn)
            {
                findings.refused.push(Refusal {
                    function: check.function.clone(),
                    action: check.authorization.action.clone(),
                    line: format!(
                        "{}: {} on {} is listed as cross_account but is not",
                        check.function, check.authorization.action, check.authorization.resource
                    ),
                });
                continue;
            }
            match roles.authorize(role, &request) {
                Decision::Allowed(by) => {
                    findings.used.extend(by.iter().cloned());
                    findings.allowed_by.push((s, c, by));
                }
                refusal => findings.refused.push(Refusal {
                    function: check.function.clone(),
                    action: check.authorization.action.clone(),
                    line: format!(
                        "{} ({}) {} on {} [{}]: {refusal}{}",
                        check.function,
                        check.acting_as,
                        check.authorization.action,
                        check.authorization.resource,
                        check.call,
                        check
                            .note
                            .as_deref()
                            .map(|n| format!(" (note: {n})"))
                            .unwrap_or_default()
                    ),
                }),
            }
        }
    }
    findings
}

/// The roles the functions act as (their own, and those they assume), grouped by the
/// template resource that makes them: an environment role is one resource of
/// environment.yaml, made in each environment account.
fn function_role_groups(sets: &[CallSet]) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for set in sets {
        for check in &set.checks {
            if check.by_tasks {
                continue;
            }
            let (stack, id) = check.role.split_once(':').unwrap_or(("", &check.role));
            let template = if stack.starts_with(ENVIRONMENT_STACK) {
                "environment.yaml"
            } else {
                "template.yaml"
            };
            groups
                .entry(format!("{template} {id}"))
                .or_default()
                .insert(check.role.clone());
        }
    }
    groups
}

/// Every action an Allow of a role the functions act as grants, taken away in turn (from that
/// statement in every account the template makes the role in): the ones no call then misses,
/// as `<statement>: <action>`. A call must be refused, and name the action (or, for a
/// wildcard grant, an action it covers).
pub fn unneeded_actions(sets: &[CallSet]) -> (usize, Vec<String>) {
    let Some(first) = sets.first() else {
        return (0, Vec::new());
    };
    let mut unneeded = Vec::new();
    let mut mutations = 0;
    for keys in function_role_groups(sets).values() {
        let Some(key) = keys.iter().next() else {
            continue;
        };
        let roles = sets
            .iter()
            .map(|s| &s.templates.roles)
            .find(|r| r.roles.contains_key(key))
            .unwrap_or(&first.templates.roles);
        let granted: BTreeSet<(String, String)> = roles.allowed_actions(key).into_iter().collect();
        for (statement, action) in granted {
            mutations += 1;
            // Only a call of these roles whose action the grant covers can lose its Allow.
            let found = evaluate_with(
                sets,
                |check| {
                    keys.contains(&check.role) && glob(&action, &check.authorization.action, true)
                },
                |roles| {
                    keys.iter().fold(roles.clone(), |r, k| {
                        r.without_action(k, &statement, &action)
                    })
                },
            );
            let named = found.refused.iter().any(|r| glob(&action, &r.action, true));
            if !named {
                unneeded.push(format!("{statement}: {action}"));
            }
        }
    }
    (mutations, unneeded)
}

/// The hand-listed calls a recording already shows: a recorded call of the same function, as
/// the same role, of the same action, allowed by the same statements (but for the calls a
/// story makes in some runs only). Each as
/// `entry <n>: <function> <action> on <resource>` (`n` counts the list's entries from 1).
pub fn redundant_listed(sets: &[CallSet], findings: &Findings) -> Vec<String> {
    let group = |role: &str| {
        let (stack, id) = role.split_once(':').unwrap_or(("", role));
        let template = if stack.starts_with(ENVIRONMENT_STACK) {
            "environment.yaml"
        } else {
            "template.yaml"
        };
        format!("{template} {id}")
    };
    let shown: BTreeSet<(String, String, String, Vec<String>)> = findings
        .allowed_by
        .iter()
        .filter_map(|(s, c, by)| {
            let check = &sets[*s].checks[*c];
            matches!(check.origin, Origin::Recorded(_)).then(|| {
                (
                    check.function.clone(),
                    group(&check.role),
                    check.authorization.action.to_ascii_lowercase(),
                    by.clone(),
                )
            })
        })
        .collect();
    findings
        .allowed_by
        .iter()
        .filter_map(|(s, c, by)| {
            let check = &sets[*s].checks[*c];
            let Origin::Listed(index) = check.origin else {
                return None;
            };
            if check.sometimes_recorded {
                return None;
            }
            let key = (
                check.function.clone(),
                group(&check.role),
                check.authorization.action.to_ascii_lowercase(),
                by.clone(),
            );
            shown.contains(&key).then(|| {
                format!(
                    "entry {}: {} {} on {}",
                    index + 1,
                    check.function,
                    check.authorization.action,
                    check.authorization.resource
                )
            })
        })
        .collect()
}
