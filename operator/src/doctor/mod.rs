//! `shipgate doctor`: a preflight of a real installation before its first release.
//!
//! It checks, with the operator's own access, what the functions will rely on and AWS does not
//! tell until a release fails: in the tooling account the link-signing secret, the SES sender
//! and the account's sandbox status, and the approval page's URL; in each environment account
//! given with `--environment`, the deploy role and whom it trusts, the stack role's trust, the
//! registry, the forwarding of alarm state changes to the tooling account's bus, the checks
//! role and the test probe the checks reach the test listener through, and the network's reach
//! of ECR and CloudWatch Logs (a NAT route or VPC endpoints on the private subnets, decided by
//! [`shipgate::network`], the rule environment.yaml's own test applies). One line per check,
//! `✓` or `✗` with the fix; any `✗` makes the command fail.
//!
//! What no flag gives is read from the tooling stack (`--stack`): its parameters (`MailFrom`,
//! `<Env>DeployRoleArn`, `<Env>StackRoleArn`, `SourceRegistryEndpoints`), its resources
//! (`LinkSigningKey`, the functions' roles) and its outputs (`ApprovalPageUrl`); what the
//! environments hold, from their `shipgate-env` stacks (`PrivateSubnets`). Each decision is a
//! function of what the adapters returned ([`checks`]).

pub mod checks;
pub mod policy;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use clap::Args;

use crate::aws::cloudformation::describe_stack;
use crate::aws::{CallFailure, ec2, events, iam, lambda, secrets, ses, sts};
use crate::error::report;
use crate::stack::StackResources;
use crate::{Clients, OperatorError};
use checks::Check;

/// How long the approval page and a registry may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The tooling functions that assume an environment's deploy role (environment.yaml's
/// DeployRole trust names the same five).
pub const DEPLOY_ROLE_ASSUMERS: [&str; 5] = [
    "ChangeSetFunction",
    "DeployFunction",
    "TrafficFunction",
    "RollbackFunction",
    "PromoteFunction",
];

/// environment.yaml's role names, for an environment the tooling stack does not describe.
const DEPLOY_ROLE_NAME: &str = "shipgate-deploy";
const STACK_ROLE_NAME: &str = "shipgate-cloudformation";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// An environment account to check and how to reach it: NAME=PROFILE (a profile of the AWS
    /// configuration) or NAME=ROLE_ARN (a role the tooling credentials may assume). Repeatable:
    /// one per environment (int, stg, prod).
    #[arg(
        long = "environment",
        value_name = "NAME=PROFILE|ROLE_ARN",
        value_parser = parse_environment
    )]
    pub environments: Vec<EnvironmentAccess>,
    /// The sender of shipgate's mails [default: the stack's MailFrom parameter].
    #[arg(long, env = "SHIPGATE_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// The link-signing secret's name or ARN [default: the stack's LinkSigningKey].
    #[arg(long, env = "SHIPGATE_LINK_KEY_SECRET")]
    pub link_key_secret: Option<String>,
    /// The approval page's URL [default: the stack's ApprovalPageUrl output].
    #[arg(long, env = "SHIPGATE_APPROVAL_URL")]
    pub approval_url: Option<String>,
    /// Registry host overrides, host=url,... [default: the stack's SourceRegistryEndpoints
    /// parameter; empty in AWS].
    #[arg(long, env = "SHIPGATE_REGISTRY_ENDPOINTS")]
    pub registry_endpoints: Option<String>,
}

/// An environment and how the operator reaches its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentAccess {
    pub name: String,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Profile(String),
    Role(String),
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Profile(p) => write!(f, "profile {p}"),
            Access::Role(r) => write!(f, "role {r}"),
        }
    }
}

fn parse_environment(value: &str) -> Result<EnvironmentAccess, String> {
    let (name, access) = value
        .split_once('=')
        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
        .ok_or("expected NAME=PROFILE or NAME=ROLE_ARN")?;
    let access = if access.starts_with("arn:") {
        shipgate::aws::sts::RoleArn::parse(access).map_err(|e| e.to_string())?;
        Access::Role(access.to_owned())
    } else {
        Access::Profile(access.to_owned())
    };
    Ok(EnvironmentAccess {
        name: name.to_owned(),
        access,
    })
}

pub async fn run(
    args: DoctorArgs,
    clients: &Clients,
    stack: &StackResources,
    out: &mut dyn Write,
) -> Result<(), OperatorError> {
    let mut total = 0;
    let mut failed = 0;
    let mut emit = |check: Check, out: &mut dyn Write| -> Result<(), OperatorError> {
        total += 1;
        failed += usize::from(check.is_failed());
        writeln!(out, "{check}")?;
        Ok(())
    };
    let doctor = Doctor {
        clients,
        stack,
        args: &args,
    };
    emit(doctor.link_signing_key().await, out)?;
    emit(doctor.sender().await, out)?;
    emit(
        checks::sandbox(ses::account(&aws_sdk_sesv2::Client::new(&clients.sdk)).await),
        out,
    )?;
    emit(doctor.approval_page().await, out)?;
    let tooling_account = sts::account(&aws_sdk_sts::Client::new(&clients.sdk)).await;
    match &tooling_account {
        Ok(tooling) if !args.environments.is_empty() => {
            for environment in &args.environments {
                for check in doctor.environment(environment, tooling).await {
                    emit(check, out)?;
                }
            }
        }
        Ok(_) => emit(
            Check::failed(
                "environments",
                "none checked",
                "pass --environment <name>=<profile or role ARN> for each of int, stg and prod",
            ),
            out,
        )?,
        Err(e) => emit(
            Check::failed(
                "tooling account",
                format!("the operator's credentials could not be used: {}", e.text),
                "set AWS_PROFILE (or credentials) for the tooling account",
            ),
            out,
        )?,
    }
    if failed > 0 {
        return Err(OperatorError::ChecksFailed { failed, total });
    }
    Ok(())
}

struct Doctor<'a> {
    clients: &'a Clients,
    stack: &'a StackResources,
    args: &'a DoctorArgs,
}

/// A value the checks need that neither a flag nor the stack gave, as a failed check.
fn unknown(name: &str, what: &str, flag: &str, why: &str) -> Check {
    Check::failed(
        name,
        format!("{what} is not known: {why}"),
        format!("pass {flag}, or point --stack at the shipgate stack"),
    )
}

impl Doctor<'_> {
    /// A parameter of the stack, `Err` saying why it is not known.
    async fn parameter(&self, name: &str) -> Result<String, String> {
        let description = self.stack.description().await.map_err(|e| report(&e))?;
        description
            .parameters
            .get(name)
            .cloned()
            .ok_or_else(|| format!("stack {:?} has no parameter {name}", self.stack.name()))
    }

    async fn link_signing_key(&self) -> Check {
        let id = match &self.args.link_key_secret {
            Some(id) => id.clone(),
            None => match self.stack.physical_id("LinkSigningKey").await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    let why = format!("stack {:?} has no LinkSigningKey", self.stack.name());
                    return unknown(checks::LINK_KEY, "the secret", "--link-key-secret", &why);
                }
                Err(e) => {
                    let why = report(&e);
                    return unknown(checks::LINK_KEY, "the secret", "--link-key-secret", &why);
                }
            },
        };
        let client = aws_sdk_secretsmanager::Client::new(&self.clients.sdk);
        checks::link_signing_key(&id, secrets::describe(&client, &id).await)
    }

    async fn sender(&self) -> Check {
        let mail_from = match &self.args.mail_from {
            Some(m) => m.clone(),
            None => match self.parameter("MailFrom").await {
                Ok(m) => m,
                Err(why) => return unknown(checks::SENDER, "the sender", "--mail-from", &why),
            },
        };
        let client = aws_sdk_sesv2::Client::new(&self.clients.sdk);
        let address = ses::identity(&client, &mail_from).await;
        let verified = matches!(&address, Ok(Some(identity)) if checks::verified(identity));
        let domain = match checks::domain_of(&mail_from) {
            Some(domain) if !verified => Some(ses::identity(&client, domain).await),
            _ => None,
        };
        checks::sender(&mail_from, address, domain)
    }

    async fn approval_page(&self) -> Check {
        let url = match &self.args.approval_url {
            Some(url) => url.clone(),
            None => {
                let description = self.stack.description().await;
                match description.map(|d| d.outputs.get("ApprovalPageUrl").cloned()) {
                    Ok(Some(url)) => url,
                    Ok(None) => {
                        let why = format!(
                            "stack {:?} has no output ApprovalPageUrl",
                            self.stack.name()
                        );
                        return unknown(checks::APPROVAL_PAGE, "the URL", "--approval-url", &why);
                    }
                    Err(e) => {
                        return unknown(
                            checks::APPROVAL_PAGE,
                            "the URL",
                            "--approval-url",
                            &report(&e),
                        );
                    }
                }
            }
        };
        let answer = async {
            let client = reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|e| report(&e))?;
            let response = client.get(&url).send().await.map_err(|e| report(&e))?;
            Ok(response.status().as_u16())
        }
        .await;
        checks::approval_page(&url, answer)
    }

    /// The SDK configuration of an environment's access.
    async fn environment_sdk(&self, access: &Access) -> SdkConfig {
        match access {
            Access::Role(arn) => {
                shipgate::aws::assume_role(&self.clients.sdk, arn, "shipgate-doctor").await
            }
            Access::Profile(profile) => {
                aws_config::defaults(BehaviorVersion::latest())
                    .profile_name(profile)
                    .http_client(shipgate::aws::https_client())
                    .load()
                    .await
            }
        }
    }

    /// An environment's checks: reached, deploy role, stack role, registry, alarm forwarding,
    /// checks role, network, test probe.
    async fn environment(&self, environment: &EnvironmentAccess, tooling: &str) -> Vec<Check> {
        let name = environment.name.as_str();
        let sdk = self.environment_sdk(&environment.access).await;
        let account = sts::account(&aws_sdk_sts::Client::new(&sdk)).await;
        let reached = checks::reached(name, &environment.access.to_string(), &account);
        let Ok(account) = account else {
            return vec![reached];
        };
        let prefix = checks::capitalised(name);
        let iam = aws_sdk_iam::Client::new(&sdk);
        let deploy_role = self
            .parameter(&format!("{prefix}DeployRoleArn"))
            .await
            .unwrap_or_else(|_| format!("arn:aws:iam::{account}:role/{DEPLOY_ROLE_NAME}"));
        let assumers = self.assumers(tooling).await;
        let assumers: Vec<(&str, String)> = assumers
            .iter()
            .map(|(f, arn)| (f.as_str(), arn.clone()))
            .collect();
        let deploy = checks::deploy_role(
            name,
            &deploy_role,
            &account,
            iam::trust_policy(&iam, role_name(&deploy_role)).await,
            &assumers,
        );
        let stack_role = match self.parameter(&format!("{prefix}StackRoleArn")).await {
            Ok(arn) if arn.is_empty() => None,
            Ok(arn) => Some(arn),
            Err(_) => Some(format!("arn:aws:iam::{account}:role/{STACK_ROLE_NAME}")),
        };
        let stack_trust = match &stack_role {
            Some(arn) => iam::trust_policy(&iam, role_name(arn)).await,
            None => Ok(None),
        };
        let stack = checks::stack_role(name, stack_role.as_deref(), &account, stack_trust);
        let registry = checks::registry(name, self.registry(&sdk).await);
        let region = sdk
            .region()
            .or(self.clients.sdk.region())
            .map(|r| r.to_string())
            .unwrap_or_default();
        let tooling_bus = format!("arn:aws:events:{region}:{tooling}:event-bus/default");
        let alarms = checks::alarm_forwarding(
            name,
            &account,
            &tooling_bus,
            events::default_bus_rules(&aws_sdk_eventbridge::Client::new(&sdk)).await,
            events::default_bus_policy(&aws_sdk_eventbridge::Client::new(&self.clients.sdk)).await,
        );
        let checks_function = self.function_role(tooling, "ChecksFunction").await;
        let checks_role = checks::checks_role(
            name,
            &account,
            iam::trust_policy(&iam, shipgate::probe::ROLE_NAME).await,
            &checks_function,
        );
        let mut checks = vec![reached, deploy, stack, registry, alarms, checks_role];
        checks.extend(self.network_and_probe(name, &account, &sdk).await);
        checks
    }

    /// The environment's network and test probe, both in the environment stack's private
    /// subnets.
    async fn network_and_probe(&self, name: &str, account: &str, sdk: &SdkConfig) -> [Check; 2] {
        let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
        let stack = describe_stack(&cloudformation, checks::ENVIRONMENT_STACK)
            .await
            .map_err(|e| CallFailure::new(&e));
        let network_name = format!("{name}: network");
        let probe_name = format!("{name}: test probe");
        let subnets = match checks::private_subnets(&network_name, account, &stack) {
            Ok(subnets) => subnets,
            Err(failed) => {
                let probe = Check {
                    name: probe_name,
                    ..failed.clone()
                };
                return [failed, probe];
            }
        };
        let facts = ec2::network(&aws_sdk_ec2::Client::new(sdk), &subnets).await;
        let function = lambda::function(
            &aws_sdk_lambda::Client::new(sdk),
            shipgate::probe::FUNCTION_NAME,
        )
        .await;
        [
            checks::network(name, account, &subnets, facts),
            checks::test_probe(name, account, &subnets, function),
        ]
    }

    /// The ARN of the role of tooling function `function`: from the stack's resources (SAM's
    /// `<Function>Role`), else as SAM names it (`<stack>-<Function>Role-<suffix>`, with a
    /// made-up suffix).
    async fn function_role(&self, tooling: &str, function: &str) -> String {
        let logical = format!("{function}Role");
        let role = match self.stack.physical_id(&logical).await {
            Ok(Some(name)) => name,
            _ => format!("{}-{logical}-DOCTOR1234", self.stack.name()),
        };
        format!("arn:aws:iam::{tooling}:role/{role}")
    }

    /// Each function that assumes a deploy role, with its role's ARN.
    async fn assumers(&self, tooling: &str) -> Vec<(String, String)> {
        let mut assumers = Vec::new();
        for function in DEPLOY_ROLE_ASSUMERS {
            let role = self.function_role(tooling, function).await;
            assumers.push((function.to_owned(), role));
        }
        assumers
    }

    /// A token from the environment's ECR, and its registry answering with it: `Ok(host)`.
    async fn registry(&self, sdk: &SdkConfig) -> Result<String, String> {
        let overrides = match &self.args.registry_endpoints {
            Some(given) => given.clone(),
            None => self
                .parameter("SourceRegistryEndpoints")
                .await
                .unwrap_or_default(),
        };
        let overrides: BTreeMap<String, String> = overrides
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| report(&e))?;
        let registry =
            shipgate::registry::ecr_registry(&aws_sdk_ecr::Client::new(sdk), http, &overrides)
                .await
                .map_err(|e| report(&e))?;
        registry
            .ping()
            .await
            .map_err(|e| format!("{} does not answer: {}", registry.host(), report(&e)))?;
        Ok(registry.host().to_owned())
    }
}

/// A role's name from its ARN (the part after the last `/`, as IAM's GetRole takes it).
fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn environments_are_reached_by_profile_or_role() {
        let cli = Cli::try_parse_from([
            "shipgate",
            "doctor",
            "--environment",
            "int=int-admin",
            "--environment",
            "prod=arn:aws:iam::444444444444:role/Admin",
        ])
        .unwrap();
        let Command::Doctor(args) = cli.command else {
            panic!("not doctor");
        };
        assert_eq!(
            args.environments,
            [
                EnvironmentAccess {
                    name: "int".into(),
                    access: Access::Profile("int-admin".into())
                },
                EnvironmentAccess {
                    name: "prod".into(),
                    access: Access::Role("arn:aws:iam::444444444444:role/Admin".into())
                },
            ]
        );
        for bad in ["int", "=p", "int=", "int=arn:aws:iam::1:role/x"] {
            assert!(
                Cli::try_parse_from(["shipgate", "doctor", "--environment", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_functions_that_assume_the_deploy_role_are_the_templates() {
        let text = include_str!("../../../environment.yaml");
        for function in DEPLOY_ROLE_ASSUMERS {
            assert!(text.contains(&format!("-{function}Role-*")), "{function}");
        }
        assert!(text.contains(&format!("RoleName: {DEPLOY_ROLE_NAME}")));
        assert!(text.contains(&format!("RoleName: {STACK_ROLE_NAME}")));
        // The checks role, its trust and the probe, where the network and the probe are read.
        assert!(text.contains(&format!("RoleName: {}", shipgate::probe::ROLE_NAME)));
        assert!(text.contains("-ChecksFunctionRole-*"));
        assert!(text.contains(&format!("FunctionName: {}", shipgate::probe::FUNCTION_NAME)));
        assert!(text.contains("  PrivateSubnets:\n"));
        assert!(text.contains(&format!("as stack \"{}\"", checks::ENVIRONMENT_STACK)));
        let template = include_str!("../../../template.yaml");
        for name in [
            "MailFrom:",
            "LinkSigningKey:",
            "ApprovalPageUrl:",
            "SourceRegistryEndpoints:",
            "ChecksFunction:",
        ] {
            assert!(template.contains(name), "{name}");
        }
    }
}
