//! Each check's decision: a pure function of what the adapters returned, so every way a check
//! can pass or fail is tested here without AWS.

use std::fmt;

use serde_json::Value;

use super::policy::{self, Answer, Ask, Principal};
use shipgate::network::{Gap, Network, Reach};

use crate::aws::CallFailure;
use crate::aws::cloudformation::StackDescription;
use crate::aws::events::Rule;
use crate::aws::lambda::FunctionState;
use crate::aws::secrets::SecretState;
use crate::aws::ses::{Account, Identity};

/// One check's result: one line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed, and what to do about it.
    Failed {
        fix: String,
    },
    /// The endpoint cannot answer the question (an operation it does not implement): neither
    /// passed nor failed, and said so.
    NotChecked,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Ok,
            detail: detail.into(),
        }
    }

    pub fn failed(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Failed { fix: fix.into() },
            detail: detail.into(),
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail.replace(['\n', '\r'], " ");
        match &self.outcome {
            Outcome::Ok => write!(f, "✓ {} — {detail}", self.name),
            Outcome::Failed { fix } => write!(f, "✗ {} — {detail}. Fix: {fix}", self.name),
            Outcome::NotChecked => write!(f, "- {} — not checked: {detail}", self.name),
        }
    }
}

pub const LINK_KEY: &str = "link-signing secret";
pub const SENDER: &str = "SES sender";
pub const SANDBOX: &str = "SES sandbox";
pub const APPROVAL_PAGE: &str = "approval page";

/// The stack environment.yaml is deployed as in each environment account.
pub const ENVIRONMENT_STACK: &str = "shipgate-env";

/// The secret approval links are signed with: there, not being deleted, with a current value.
pub fn link_signing_key(id: &str, state: Result<Option<SecretState>, CallFailure>) -> Check {
    match state {
        Ok(Some(s)) if s.deleted => Check::failed(
            LINK_KEY,
            format!("{} is scheduled for deletion", s.arn),
            format!(
                "aws secretsmanager restore-secret --secret-id {}; the mailer and the approval \
                 page cannot sign or check links without it",
                s.arn
            ),
        ),
        Ok(Some(s)) if !s.has_current => Check::failed(
            LINK_KEY,
            format!("{} has no AWSCURRENT version", s.arn),
            "give it a value (aws secretsmanager put-secret-value), at least 32 random bytes",
        ),
        Ok(Some(s)) => Check::ok(LINK_KEY, format!("{} has a current value", s.arn)),
        Ok(None) => Check::failed(
            LINK_KEY,
            format!("no secret {id}"),
            "deploy template.yaml (it creates LinkSigningKey), or pass the secret's ARN with \
             --link-key-secret",
        ),
        Err(e) => Check::failed(
            LINK_KEY,
            format!("{id} could not be described: {}", e.text),
            "allow secretsmanager:DescribeSecret on it to the operator, or pass --link-key-secret",
        ),
    }
}

/// Whether an identity is verified: `VerificationStatus` `SUCCESS` (SES API v2 reference,
/// GetEmailIdentity); an answer without it falls back on `VerifiedForSendingStatus`.
pub fn verified(identity: &Identity) -> bool {
    match identity.verification_status.as_deref() {
        Some(status) => status == "SUCCESS",
        None => identity.verified_for_sending,
    }
}

/// The domain of an address (what SES verifies for every address of it).
pub fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

/// The sender (`MailFrom`): its address verified in SES, or its domain. `domain` is what SES
/// said of the domain, asked only when the address itself is not verified.
pub fn sender(
    mail_from: &str,
    address: Result<Option<Identity>, CallFailure>,
    domain: Option<Result<Option<Identity>, CallFailure>>,
) -> Check {
    let verify = format!(
        "verify it in SES in this region: aws sesv2 create-email-identity --email-identity \
         {mail_from} and follow the link SES mails there (or verify its domain)"
    );
    let address = match address {
        Ok(Some(identity)) if verified(&identity) => {
            return Check::ok(SENDER, format!("{mail_from} is verified"));
        }
        Ok(identity) => identity,
        Err(e) => {
            return Check::failed(
                SENDER,
                format!("{mail_from} could not be read: {}", e.text),
                "allow ses:GetEmailIdentity to the operator",
            );
        }
    };
    let domain_name = domain_of(mail_from).unwrap_or(mail_from);
    if let Some(Ok(Some(identity))) = &domain
        && verified(identity)
    {
        return Check::ok(
            SENDER,
            format!("{mail_from}: its domain {domain_name} is verified"),
        );
    }
    match (address, domain) {
        (Some(identity), _) => {
            let status = identity
                .verification_status
                .unwrap_or_else(|| "not verified".into());
            Check::failed(
                SENDER,
                format!("{mail_from} is {status}"),
                match status.as_str() {
                    "PENDING" => format!(
                        "follow the verification link SES mailed to {mail_from} (create the \
                         identity again for a new mail)"
                    ),
                    _ => verify,
                },
            )
        }
        (None, Some(Ok(Some(identity)))) => Check::failed(
            SENDER,
            format!(
                "{mail_from} is not an identity and its domain {domain_name} is {}",
                identity
                    .verification_status
                    .as_deref()
                    .unwrap_or("not verified")
            ),
            format!("publish the DKIM records SES gives for {domain_name}, or {verify}"),
        ),
        (None, Some(Err(e))) => Check::failed(
            SENDER,
            format!("{domain_name} could not be read: {}", e.text),
            "allow ses:GetEmailIdentity to the operator",
        ),
        (None, _) => Check::failed(
            SENDER,
            format!("neither {mail_from} nor {domain_name} is an SES identity"),
            verify,
        ),
    }
}

/// The account's sending: out of the sandbox (else SES delivers only to verified addresses,
/// and approvers' and teams' mails are refused), and not paused.
///
/// moto 5.2 does not implement SESv2 `GetAccount` (its server answers 404 with no AWS error
/// code): such an answer, which AWS never gives for this account-level call, leaves the check
/// not done rather than failed.
pub fn sandbox(account: Result<Account, CallFailure>) -> Check {
    match account {
        Ok(a) if !a.sending_enabled => Check::failed(
            SANDBOX,
            "sending is paused for this account",
            "see the SES console's account dashboard for why (reputation), and ask AWS to \
             resume it",
        ),
        Ok(a) if a.production_access => {
            Check::ok(SANDBOX, "production access: mails reach any address")
        }
        Ok(_) => Check::failed(
            SANDBOX,
            "the account is in the SES sandbox: mails reach verified addresses only",
            "request production access (SES console, Account dashboard, or aws sesv2 \
             put-account-details), or verify every approver's and team's address",
        ),
        Err(e) if e.status == Some(404) && e.code.is_none() => Check {
            name: SANDBOX.into(),
            outcome: Outcome::NotChecked,
            detail: "this endpoint does not implement SESv2 GetAccount".into(),
        },
        Err(e) => Check::failed(
            SANDBOX,
            format!("the account could not be read: {}", e.text),
            "allow ses:GetAccount to the operator",
        ),
    }
}

/// The approval page's URL, asked with no link: the page answers 400 ("Link incomplete"),
/// which shows the function URL is public (`AuthType: NONE`: approvers have no AWS identity)
/// and the function runs.
pub fn approval_page(url: &str, answer: Result<u16, String>) -> Check {
    match answer {
        Ok(400) => Check::ok(APPROVAL_PAGE, format!("{url} answers")),
        Ok(403) => Check::failed(
            APPROVAL_PAGE,
            format!("{url} answered 403"),
            "the function URL must be public (AuthType NONE, as template.yaml sets it): approvers \
             open it from an email with no AWS credentials",
        ),
        Ok(status) if status >= 500 => Check::failed(
            APPROVAL_PAGE,
            format!("{url} answered {status}"),
            "the approval page function fails: read its logs (CloudWatch Logs, \
             /aws/lambda/<stack>-ApprovalPageFunction-...)",
        ),
        Ok(status) => Check::failed(
            APPROVAL_PAGE,
            format!("{url} answered {status}, not the page's 400 for a link-less request"),
            "pass the stack's ApprovalPageUrl output (--approval-url), or deploy template.yaml",
        ),
        Err(e) => Check::failed(
            APPROVAL_PAGE,
            format!("{url} did not answer: {e}"),
            "pass the stack's ApprovalPageUrl output (--approval-url), or deploy template.yaml",
        ),
    }
}

/// An environment account, reached with the access given for it.
pub fn reached(environment: &str, access: &str, account: &Result<String, CallFailure>) -> Check {
    let name = format!("{environment}: access");
    match account {
        Ok(account) => Check::ok(name, format!("{access} acts in account {account}")),
        Err(e) => Check::failed(
            name,
            format!("{access} could not be used: {}", e.text),
            format!(
                "pass --environment {environment}=<a profile of that account, or a role ARN \
                 the tooling credentials may assume>"
            ),
        ),
    }
}

/// The deploy role: there, in the environment's account, trusting each tooling function that
/// assumes it (`assumers`: function and its role's ARN).
pub fn deploy_role(
    environment: &str,
    role_arn: &str,
    account: &str,
    trust: Result<Option<String>, CallFailure>,
    assumers: &[(&str, String)],
) -> Check {
    let name = format!("{environment}: deploy role");
    let redeploy = format!(
        "deploy environment.yaml as stack shipgate-env in account {account} with \
         ToolingAccountId and ToolingStackName of the tooling stack, and pass its DeployRoleArn \
         output as the tooling stack's {}DeployRoleArn",
        capitalised(environment)
    );
    let role_account = shipgate::iam::account_of(role_arn);
    if role_account != account {
        return Check::failed(
            name,
            format!("{role_arn} is in account {role_account}, not {account}"),
            redeploy,
        );
    }
    let document = match trust_document(&name, role_arn, trust, &redeploy) {
        Ok(document) => document,
        Err(failed) => return failed,
    };
    let refused: Vec<String> = assumers
        .iter()
        .filter_map(|(function, arn)| {
            let ask = Ask {
                principal: Principal::Aws(arn),
                action: "sts:AssumeRole",
                context: Default::default(),
            };
            match policy::decide(&document, &ask) {
                Answer::Allowed(_) => None,
                Answer::Denied(by) => Some(format!("{function} (denied by {by})")),
                Answer::NotAllowed(why) => Some(format!("{function} ({why})")),
            }
        })
        .collect();
    if refused.is_empty() {
        let functions: Vec<&str> = assumers.iter().map(|(f, _)| *f).collect();
        Check::ok(name, format!("{role_arn} trusts {}", functions.join(", ")))
    } else {
        Check::failed(
            name,
            format!("{role_arn} does not trust {}", refused.join(", ")),
            redeploy,
        )
    }
}

/// The role CloudFormation acts with on the environment's stacks: it trusts
/// cloudformation.amazonaws.com, whether or not CloudFormation sets `aws:SourceAccount`
/// (its service-role page documents no such key). `None`: no stack role configured, and
/// CloudFormation acts with the deploy role's own permissions.
/// The trust policy of `role_arn` as IAM returned it, or the failed check: no such role
/// (`missing` says how to make it) or a role the operator may not read.
fn trust_document(
    name: &str,
    role_arn: &str,
    trust: Result<Option<String>, CallFailure>,
    missing: &str,
) -> Result<String, Check> {
    match trust {
        Ok(Some(document)) => Ok(document),
        Ok(None) => Err(Check::failed(name, format!("no role {role_arn}"), missing)),
        Err(e) => Err(Check::failed(
            name,
            format!("{role_arn} could not be read: {}", e.text),
            "allow iam:GetRole on it to the operator's access",
        )),
    }
}

pub fn stack_role(
    environment: &str,
    role_arn: Option<&str>,
    account: &str,
    trust: Result<Option<String>, CallFailure>,
) -> Check {
    let name = format!("{environment}: stack role");
    let Some(role_arn) = role_arn else {
        return Check::ok(
            name,
            "none configured: CloudFormation acts with the deploy role's permissions",
        );
    };
    let fix = format!(
        "deploy environment.yaml as stack shipgate-env in account {account}, and pass its \
         StackRoleArn output as the tooling stack's {}StackRoleArn",
        capitalised(environment)
    );
    let document = match trust_document(&name, role_arn, trust, &fix) {
        Ok(document) => document,
        Err(failed) => return failed,
    };
    let cloudformation = "cloudformation.amazonaws.com";
    let mut ask = Ask {
        principal: Principal::Service(cloudformation),
        action: "sts:AssumeRole",
        context: Default::default(),
    };
    let without = policy::decide(&document, &ask);
    ask.context
        .insert("aws:SourceAccount".into(), account.to_owned());
    let with = policy::decide(&document, &ask);
    match (&without, &with) {
        (Answer::Allowed(_), Answer::Allowed(_)) => {
            Check::ok(name, format!("{role_arn} trusts {cloudformation}"))
        }
        _ => {
            let failed = if with.is_allowed() { &without } else { &with };
            Check::failed(
                name,
                format!(
                    "{role_arn} does not trust {cloudformation}{}: {failed}",
                    if with.is_allowed() {
                        " when it sets no aws:SourceAccount"
                    } else {
                        ""
                    }
                ),
                fix,
            )
        }
    }
}

/// The environment's registry: a token from ECR and the registry answering with it.
pub fn registry(environment: &str, answer: Result<String, String>) -> Check {
    let name = format!("{environment}: registry");
    match answer {
        Ok(host) => Check::ok(name, format!("{host} answers with an ECR token")),
        Err(e) => Check::failed(
            name,
            e,
            "allow ecr:GetAuthorizationToken to the access given, and check the registry is \
             reachable (SourceRegistryEndpoints / --registry-endpoints where it is overridden)",
        ),
    }
}

/// How to make what environment.yaml makes in `account`.
fn deploy_environment(account: &str, what: &str) -> String {
    format!(
        "deploy environment.yaml as stack {ENVIRONMENT_STACK} in account {account} ({what}; \
         docs/deploy.md)"
    )
}

/// The environment stack's `PrivateSubnets` output (the subnets the services and the test
/// probe run in), or the failed check `name` saying why it is not known.
pub fn private_subnets(
    name: &str,
    account: &str,
    stack: &Result<StackDescription, CallFailure>,
) -> Result<Vec<String>, Check> {
    let fix = deploy_environment(account, "its PrivateSubnets output names the subnets");
    let description = match stack {
        Ok(description) => description,
        Err(e) if e.is("ValidationError") => {
            return Err(Check::failed(
                name,
                format!(
                    "no stack {ENVIRONMENT_STACK} in account {account}: {}",
                    e.text
                ),
                fix,
            ));
        }
        Err(e) => {
            return Err(Check::failed(
                name,
                format!("stack {ENVIRONMENT_STACK} could not be read: {}", e.text),
                "allow cloudformation:DescribeStacks on it to the access given",
            ));
        }
    };
    let subnets: Vec<String> = description
        .outputs
        .get("PrivateSubnets")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if subnets.is_empty() {
        return Err(Check::failed(
            name,
            format!("stack {ENVIRONMENT_STACK} has no PrivateSubnets output"),
            fix,
        ));
    }
    Ok(subnets)
}

/// The environment's network: every private subnet reaches ECR, S3 (image layers) and
/// CloudWatch Logs over HTTPS, by a NAT (or internet) gateway or by VPC endpoints, as
/// [`shipgate::network`] decides.
pub fn network(
    environment: &str,
    account: &str,
    subnets: &[String],
    facts: Result<Network, CallFailure>,
) -> Check {
    let name = format!("{environment}: network");
    let network = match facts {
        Ok(network) => network,
        Err(e) if e.is("InvalidSubnetID.NotFound") => {
            return Check::failed(
                name,
                format!(
                    "the subnets {} are not all there: {}",
                    subnets.join(", "),
                    e.text
                ),
                deploy_environment(account, "update it: its PrivateSubnets output is stale"),
            );
        }
        Err(e) => {
            return Check::failed(
                name,
                format!("the network could not be described: {}", e.text),
                "allow ec2:DescribeSubnets, DescribeVpcAttribute, DescribeRouteTables, \
                 DescribeVpcEndpoints and DescribeSecurityGroups to the access given",
            );
        }
    };
    let mut reached = Vec::new();
    let mut vpc_gaps: Vec<String> = Vec::new();
    let mut subnet_gaps = Vec::new();
    for subnet in subnets {
        match network.reach(subnet) {
            Ok(Reach::DefaultRoute { table, via }) => {
                reached.push(format!("{subnet} through {table}'s default route to {via}"));
            }
            Ok(Reach::Endpoints { table }) => {
                reached.push(format!(
                    "{subnet} through the VPC endpoints (route table {table})"
                ));
            }
            Err(gaps) => {
                let mut own = Vec::new();
                for gap in gaps {
                    match gap {
                        Gap::VpcDns { .. } => {
                            let text = gap.to_string();
                            if !vpc_gaps.contains(&text) {
                                vpc_gaps.push(text);
                            }
                        }
                        other => own.push(other.to_string()),
                    }
                }
                if !own.is_empty() {
                    subnet_gaps.push(format!("{subnet}: {}", own.join(", ")));
                }
            }
        }
    }
    if vpc_gaps.is_empty() && subnet_gaps.is_empty() {
        return Check::ok(
            name,
            format!(
                "ECR, S3 and CloudWatch Logs reached from {}",
                reached.join("; ")
            ),
        );
    }
    let mut found = vpc_gaps;
    found.extend(subnet_gaps);
    Check::failed(
        name,
        format!(
            "Fargate tasks in the private subnets cannot pull images or send logs: {}",
            found.join("; ")
        ),
        format!(
            "give the subnets' route table a default route to a NAT gateway, or add what is \
             missing: the ecr.api, ecr.dkr and logs interface endpoints (private DNS on, in each \
             subnet's availability zone, a security group admitting TCP 443 from the subnets), \
             the S3 gateway endpoint on the subnets' route table, and the VPC's DNS support and \
             DNS hostnames; {}",
            deploy_environment(account, "it makes all of them")
        ),
    )
}

/// The role the checks function assumes to invoke the test probe: there, and trusting the
/// tooling account's checks function (`checks_function`: its role's ARN).
pub fn checks_role(
    environment: &str,
    account: &str,
    trust: Result<Option<String>, CallFailure>,
    checks_function: &str,
) -> Check {
    let name = format!("{environment}: checks role");
    let role_arn = format!("arn:aws:iam::{account}:role/{}", shipgate::probe::ROLE_NAME);
    let fix = deploy_environment(
        account,
        "its ChecksRole, with ToolingAccountId and ToolingStackName of the tooling stack",
    );
    let document = match trust_document(&name, &role_arn, trust, &fix) {
        Ok(document) => document,
        Err(failed) => return failed,
    };
    let ask = Ask {
        principal: Principal::Aws(checks_function),
        action: "sts:AssumeRole",
        context: Default::default(),
    };
    match policy::decide(&document, &ask) {
        Answer::Allowed(_) => Check::ok(name, format!("{role_arn} trusts {checks_function}")),
        refused => Check::failed(
            name,
            format!("{role_arn} does not trust {checks_function}: {refused}"),
            fix,
        ),
    }
}

/// The test probe the checks function invokes: there, in the environment's private subnets
/// (where the internal test listener is reached), and `Active` (Lambda Developer Guide, "Lambda
/// function states": a `Pending` function cannot be invoked yet, an `Inactive` one fails its
/// next invocation while Lambda recreates its network interfaces, a `Failed` one never runs).
pub fn test_probe(
    environment: &str,
    account: &str,
    subnets: &[String],
    function: Result<Option<FunctionState>, CallFailure>,
) -> Check {
    let name = format!("{environment}: test probe");
    let probe = shipgate::probe::FUNCTION_NAME;
    let function = match function {
        Ok(Some(function)) => function,
        Ok(None) => {
            return Check::failed(
                name,
                format!("no function {probe} in account {account}"),
                deploy_environment(
                    account,
                    "its TestProbe, with ProbeCodeBucket holding probe.zip of `make package`",
                ),
            );
        }
        Err(e) => {
            return Check::failed(
                name,
                format!("{probe} could not be read: {}", e.text),
                "allow lambda:GetFunction on it to the access given",
            );
        }
    };
    let arn = &function.arn;
    let outside: Vec<&String> = function
        .subnets
        .iter()
        .filter(|s| !subnets.contains(s))
        .collect();
    if function.subnets.is_empty() || !outside.is_empty() {
        let found = if function.subnets.is_empty() {
            "runs in no VPC".to_owned()
        } else {
            format!(
                "runs in {}, not only the private subnets {}",
                function.subnets.join(", "),
                subnets.join(", ")
            )
        };
        return Check::failed(
            name,
            format!("{arn} {found}: it cannot reach the internal test listener"),
            deploy_environment(account, "its TestProbe runs in the PrivateSubnets"),
        );
    }
    let reason = function
        .state_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let fix = match function.state.as_str() {
        "Active" => {
            return Check::ok(
                name,
                format!("{arn} is Active in {}", function.subnets.join(", ")),
            );
        }
        "Pending" => "wait a few minutes while Lambda creates its network interfaces, and run \
                      shipgate doctor again"
            .to_owned(),
        "Inactive" => format!(
            "invoke it once (aws lambda invoke --function-name {probe} /dev/null) so Lambda \
             recreates its network interfaces, and run shipgate doctor again once it is Active"
        ),
        _ => deploy_environment(
            account,
            "update it; the reason above says why Lambda could not set the probe up",
        ),
    };
    Check::failed(name, format!("{arn} is {}{reason}", function.state), fix)
}

/// A CloudWatch alarm's state change to ALARM, as EventBridge sees it (the fields a rule's
/// pattern can name).
fn alarm_event() -> Value {
    serde_json::json!({
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {"state": {"value": "ALARM"}}
    })
}

/// Whether an event pattern matches `event`: every field it names matches one of its values
/// (exact strings, or `{"prefix": ...}`); other matchers are not read, and do not match.
fn pattern_matches(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, expected)| {
        let Some(actual) = event.get(key) else {
            return false;
        };
        match expected {
            Value::Object(_) => pattern_matches(expected, actual),
            Value::Array(values) => values.iter().any(|v| match (v, actual.as_str()) {
                (Value::String(s), Some(a)) => s == a,
                (Value::Object(m), Some(a)) => m
                    .get("prefix")
                    .and_then(Value::as_str)
                    .is_some_and(|p| a.starts_with(p)),
                _ => false,
            }),
            _ => false,
        }
    })
}

/// Alarm state changes in the environment reach the tooling account's default bus: an enabled
/// rule of its default bus matches them and targets that bus with a role, and the bus's policy
/// lets the environment's account put events.
pub fn alarm_forwarding(
    environment: &str,
    account: &str,
    tooling_bus: &str,
    rules: Result<Vec<Rule>, CallFailure>,
    bus_policy: Result<Option<String>, CallFailure>,
) -> Check {
    let name = format!("{environment}: alarm forwarding");
    let redeploy = format!(
        "deploy environment.yaml as stack shipgate-env in account {account} (its \
         AlarmForwardingRule)"
    );
    let rules = match rules {
        Ok(rules) => rules,
        Err(e) => {
            return Check::failed(
                name,
                format!(
                    "the rules of account {account} could not be read: {}",
                    e.text
                ),
                "allow events:ListRules and events:ListTargetsByRule to the access given",
            );
        }
    };
    let event = alarm_event();
    let matching: Vec<&Rule> = rules
        .iter()
        .filter(|r| {
            r.event_pattern
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .is_some_and(|p| pattern_matches(&p, &event))
        })
        .collect();
    let forwarding = matching.iter().find(|r| {
        r.enabled
            && r.targets
                .iter()
                .any(|t| t.arn == tooling_bus && t.role_arn.is_some())
    });
    let Some(rule) = forwarding else {
        let detail = match matching.first() {
            Some(r) if !r.enabled => format!("rule {} is disabled", r.name),
            Some(r) => format!("rule {} does not target {tooling_bus} with a role", r.name),
            None => {
                format!("no rule of account {account}'s default bus matches alarm state changes")
            }
        };
        return Check::failed(name, detail, redeploy);
    };
    let bus_fix = "deploy template.yaml with this environment's <Env>DeployRoleArn (its \
                   AlarmEventBusPolicy lets each environment account put events on the bus)";
    let document = match bus_policy {
        Ok(Some(document)) => document,
        Ok(None) => {
            return Check::failed(
                name,
                format!(
                    "rule {} forwards, but {tooling_bus} has no policy",
                    rule.name
                ),
                bus_fix,
            );
        }
        Err(e) => {
            return Check::failed(
                name,
                format!("{tooling_bus} could not be described: {}", e.text),
                "allow events:DescribeEventBus to the operator",
            );
        }
    };
    let root = format!("arn:aws:iam::{account}:root");
    let ask = Ask {
        principal: Principal::Aws(&root),
        action: "events:PutEvents",
        context: Default::default(),
    };
    match policy::decide(&document, &ask) {
        Answer::Allowed(_) => Check::ok(
            name,
            format!(
                "rule {} forwards to {tooling_bus}, which admits account {account}",
                rule.name
            ),
        ),
        refused => Check::failed(
            name,
            format!(
                "rule {} forwards, but {tooling_bus}'s policy does not admit account {account}: \
                 {refused}",
                rule.name
            ),
            bus_fix,
        ),
    }
}

/// `int` → `Int`: the template's parameter prefix for an environment.
pub fn capitalised(environment: &str) -> String {
    let mut chars = environment.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::events::Target;

    fn failure(code: Option<&str>, status: u16) -> CallFailure {
        CallFailure {
            code: code.map(str::to_owned),
            status: Some(status),
            text: format!("service error: {}", code.unwrap_or("?")),
        }
    }

    fn fix(check: &Check) -> &str {
        match &check.outcome {
            Outcome::Failed { fix } => fix,
            other => panic!("{check}: {other:?}"),
        }
    }

    #[test]
    fn a_line_says_the_check_what_was_found_and_the_fix() {
        let ok = Check::ok("SES sender", "a@b.c is verified");
        assert_eq!(ok.to_string(), "✓ SES sender — a@b.c is verified");
        let failed = Check::failed("int: registry", "no token\nat all", "allow it");
        assert_eq!(
            failed.to_string(),
            "✗ int: registry — no token at all. Fix: allow it"
        );
        assert!(failed.is_failed() && !ok.is_failed());
    }

    #[test]
    fn the_link_key_must_exist_not_be_deleted_and_have_a_current_value() {
        let state = |deleted, has_current| {
            Ok(Some(SecretState {
                arn: "arn:s".into(),
                deleted,
                has_current,
            }))
        };
        assert!(!link_signing_key("k", state(false, true)).is_failed());
        assert!(fix(&link_signing_key("k", state(true, true))).contains("restore-secret"));
        assert!(fix(&link_signing_key("k", state(false, false))).contains("put-secret-value"));
        let missing = link_signing_key("k", Ok(None));
        assert!(
            missing
                .to_string()
                .starts_with("✗ link-signing secret — no secret k. Fix: deploy template.yaml")
        );
        let denied = link_signing_key("k", Err(failure(Some("AccessDeniedException"), 400)));
        assert!(fix(&denied).contains("secretsmanager:DescribeSecret"));
    }

    fn identity(status: Option<&str>, for_sending: bool) -> Identity {
        Identity {
            verification_status: status.map(str::to_owned),
            verified_for_sending: for_sending,
        }
    }

    #[test]
    fn the_sender_or_its_domain_must_be_verified() {
        let ok = |i: Identity| Ok(Some(i));
        assert!(!sender("a@b.c", ok(identity(Some("SUCCESS"), false)), None).is_failed());
        assert!(!sender("a@b.c", ok(identity(None, true)), None).is_failed());
        let by_domain = sender("a@b.c", Ok(None), Some(ok(identity(Some("SUCCESS"), true))));
        assert_eq!(
            by_domain.to_string(),
            "✓ SES sender — a@b.c: its domain b.c is verified"
        );
        let pending = sender(
            "a@b.c",
            ok(identity(Some("PENDING"), false)),
            Some(Ok(None)),
        );
        assert!(
            fix(&pending).contains("follow the verification link"),
            "{pending}"
        );
        let nothing = sender("a@b.c", Ok(None), Some(Ok(None)));
        assert!(
            nothing.detail.contains("neither a@b.c nor b.c"),
            "{nothing}"
        );
        assert!(fix(&nothing).contains("create-email-identity --email-identity a@b.c"));
        let domain_pending = sender(
            "a@b.c",
            Ok(None),
            Some(ok(identity(Some("PENDING"), false))),
        );
        assert!(fix(&domain_pending).contains("DKIM"), "{domain_pending}");
        assert!(sender("a@b.c", Err(failure(None, 500)), None).is_failed());
    }

    #[test]
    fn the_sandbox_fails_and_an_endpoint_without_get_account_is_said_not_checked() {
        let account = |production_access, sending_enabled| {
            Ok(Account {
                production_access,
                sending_enabled,
            })
        };
        assert!(!sandbox(account(true, true)).is_failed());
        assert!(fix(&sandbox(account(false, true))).contains("production access"));
        assert!(fix(&sandbox(account(true, false))).contains("resume"));
        let moto = sandbox(Err(failure(None, 404)));
        assert_eq!(moto.outcome, Outcome::NotChecked);
        assert!(moto.to_string().starts_with("- SES sandbox — not checked"));
        assert!(sandbox(Err(failure(Some("AccessDeniedException"), 403))).is_failed());
    }

    #[test]
    fn the_approval_page_answers_its_own_400_to_a_linkless_request() {
        assert!(!approval_page("u", Ok(400)).is_failed());
        assert!(fix(&approval_page("u", Ok(403))).contains("AuthType NONE"));
        assert!(fix(&approval_page("u", Ok(502))).contains("logs"));
        assert!(approval_page("u", Ok(200)).is_failed());
        let refused = approval_page("u", Err("connection refused".into()));
        assert!(
            refused
                .detail
                .contains("did not answer: connection refused")
        );
    }

    const TOOLING: &str = "111111111111";

    fn assumers() -> Vec<(&'static str, String)> {
        ["ChangeSetFunction", "PromoteFunction"]
            .into_iter()
            .map(|f| {
                (
                    f,
                    format!("arn:aws:iam::{TOOLING}:role/shipgate-{f}Role-X1"),
                )
            })
            .collect()
    }

    fn trust(patterns: &[&str]) -> Result<Option<String>, CallFailure> {
        Ok(Some(
            serde_json::json!({"Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{TOOLING}:root")},
                "Action": "sts:AssumeRole",
                "Condition": {"ArnLike": {"aws:PrincipalArn": patterns}}
            }]})
            .to_string(),
        ))
    }

    #[test]
    fn the_deploy_role_trusts_every_function_that_assumes_it() {
        let role = "arn:aws:iam::222222222222:role/shipgate-deploy";
        let both = trust(&[
            "arn:aws:iam::111111111111:role/shipgate-ChangeSetFunctionRole-*",
            "arn:aws:iam::111111111111:role/shipgate-PromoteFunctionRole-*",
        ]);
        let check = deploy_role("int", role, "222222222222", both, &assumers());
        assert_eq!(
            check.to_string(),
            format!("✓ int: deploy role — {role} trusts ChangeSetFunction, PromoteFunction")
        );
        let one = trust(&["arn:aws:iam::111111111111:role/shipgate-ChangeSetFunctionRole-*"]);
        let check = deploy_role("int", role, "222222222222", one, &assumers());
        assert!(
            check.detail.contains("does not trust PromoteFunction"),
            "{check}"
        );
        assert!(fix(&check).contains("IntDeployRoleArn"), "{check}");
        let missing = deploy_role("int", role, "222222222222", Ok(None), &assumers());
        assert!(missing.detail.starts_with("no role"));
        let elsewhere = deploy_role("int", role, "333333333333", Ok(None), &assumers());
        assert!(elsewhere.detail.contains("not 333333333333"), "{elsewhere}");
    }

    #[test]
    fn the_stack_role_trusts_cloudformation_with_or_without_a_source_account() {
        let role = "arn:aws:iam::222222222222:role/shipgate-cloudformation";
        let document = |condition: &str| {
            Ok(Some(
                serde_json::json!({"Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudformation.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {condition: {"aws:SourceAccount": "222222222222"}}
                }]})
                .to_string(),
            ))
        };
        let check = |trust| stack_role("int", Some(role), "222222222222", trust);
        assert!(!check(document("StringEqualsIfExists")).is_failed());
        let strict = check(document("StringEquals"));
        assert!(
            strict.detail.contains("when it sets no aws:SourceAccount"),
            "{strict}"
        );
        assert!(fix(&strict).contains("IntStackRoleArn"));
        let lambda = Ok(Some(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}}"#.to_owned(),
        ));
        assert!(check(lambda).is_failed());
        assert!(check(Ok(None)).detail.starts_with("no role"));
        assert!(!stack_role("int", None, "222222222222", Ok(None)).is_failed());
    }

    fn forwarding_rule(pattern: &str, enabled: bool, target: &str) -> Rule {
        Rule {
            name: "AlarmForwardingRule".into(),
            enabled,
            event_pattern: Some(pattern.into()),
            targets: vec![Target {
                arn: target.into(),
                role_arn: Some("arn:aws:iam::222222222222:role/forward".into()),
            }],
        }
    }

    #[test]
    fn alarms_are_forwarded_by_an_enabled_rule_to_a_bus_that_admits_the_account() {
        let bus = "arn:aws:events:eu-west-1:111111111111:event-bus/default";
        let pattern = r#"{"source":["aws.cloudwatch"],"detail-type":["CloudWatch Alarm State Change"],"detail":{"state":{"value":["ALARM"]}}}"#;
        let policy = |account: &str| {
            Ok(Some(
                serde_json::json!({"Statement": {"Effect": "Allow",
                    "Principal": {"AWS": [format!("arn:aws:iam::{account}:root")]},
                    "Action": "events:PutEvents", "Resource": bus}})
                .to_string(),
            ))
        };
        let check = |rules: Vec<Rule>, policy| {
            alarm_forwarding("int", "222222222222", bus, Ok(rules), policy)
        };
        assert!(
            !check(
                vec![forwarding_rule(pattern, true, bus)],
                policy("222222222222")
            )
            .is_failed()
        );
        let other_account = check(
            vec![forwarding_rule(pattern, true, bus)],
            policy("333333333333"),
        );
        assert!(
            fix(&other_account).contains("AlarmEventBusPolicy"),
            "{other_account}"
        );
        let no_policy = check(vec![forwarding_rule(pattern, true, bus)], Ok(None));
        assert!(no_policy.detail.contains("has no policy"));
        let disabled = check(
            vec![forwarding_rule(pattern, false, bus)],
            policy("222222222222"),
        );
        assert!(disabled.detail.contains("is disabled"));
        let elsewhere = check(
            vec![forwarding_rule(
                pattern,
                true,
                "arn:aws:events:eu-west-1:999999999999:event-bus/default",
            )],
            policy("222222222222"),
        );
        assert!(elsewhere.detail.contains("does not target"), "{elsewhere}");
        let ok_only = pattern.replace("ALARM", "OK");
        let none = check(
            vec![forwarding_rule(&ok_only, true, bus)],
            policy("222222222222"),
        );
        assert!(none.detail.contains("no rule"), "{none}");
        assert!(fix(&none).contains("AlarmForwardingRule"));
        let prefix = r#"{"source":[{"prefix":"aws."}]}"#;
        assert!(
            !check(
                vec![forwarding_rule(prefix, true, bus)],
                policy("222222222222")
            )
            .is_failed()
        );
    }

    fn stack_with_subnets(outputs: &[(&str, &str)]) -> Result<StackDescription, CallFailure> {
        Ok(StackDescription {
            parameters: Default::default(),
            outputs: outputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    #[test]
    fn the_private_subnets_come_from_the_environment_stack() {
        let subnets = private_subnets(
            "int: network",
            "222222222222",
            &stack_with_subnets(&[("PrivateSubnets", "subnet-a,subnet-b")]),
        );
        assert_eq!(subnets, Ok(vec!["subnet-a".into(), "subnet-b".into()]));
        let none =
            private_subnets("int: network", "222222222222", &stack_with_subnets(&[])).unwrap_err();
        assert!(none.detail.contains("no PrivateSubnets output"), "{none}");
        let missing = private_subnets(
            "int: network",
            "222222222222",
            &Err(failure(Some("ValidationError"), 400)),
        )
        .unwrap_err();
        assert!(
            missing.detail.starts_with("no stack shipgate-env"),
            "{missing}"
        );
        assert!(
            fix(&missing).contains("deploy environment.yaml"),
            "{missing}"
        );
        let denied = private_subnets(
            "int: network",
            "222222222222",
            &Err(failure(Some("AccessDenied"), 403)),
        )
        .unwrap_err();
        assert!(fix(&denied).contains("cloudformation:DescribeStacks"));
    }

    /// A network where subnet-a reaches through endpoints and subnet-b through a NAT.
    fn live_network() -> Network {
        use shipgate::network::*;
        let endpoints = shipgate::testing::reaching_endpoints(&["subnet-a"], "sg-1", "rtb-a");
        Network {
            vpc: Vpc {
                id: "vpc-1".into(),
                dns_support: true,
                dns_hostnames: true,
            },
            subnets: vec![
                Subnet {
                    id: "subnet-a".into(),
                    availability_zone: "eu-west-1a".into(),
                    cidr: "10.40.0.0/24".into(),
                },
                Subnet {
                    id: "subnet-b".into(),
                    availability_zone: "eu-west-1b".into(),
                    cidr: "10.40.1.0/24".into(),
                },
            ],
            route_tables: vec![
                RouteTable {
                    id: "rtb-a".into(),
                    main: false,
                    subnets: vec!["subnet-a".into()],
                    routes: vec![],
                },
                RouteTable {
                    id: "rtb-main".into(),
                    main: true,
                    subnets: vec![],
                    routes: vec![Route {
                        destination: Some("0.0.0.0/0".into()),
                        target: RouteTarget::NatGateway("nat-1".into()),
                        active: true,
                    }],
                },
            ],
            endpoints,
            security_groups: vec![SecurityGroup {
                id: "sg-1".into(),
                ingress: vec![Ingress {
                    protocol: "tcp".into(),
                    from_port: Some(443),
                    to_port: Some(443),
                    cidrs: vec!["10.40.0.0/16".into()],
                }],
            }],
        }
    }

    #[test]
    fn the_network_line_says_how_each_subnet_reaches_or_what_it_lacks() {
        let subnets = ["subnet-a".to_owned(), "subnet-b".to_owned()];
        let check = network("int", "222222222222", &subnets, Ok(live_network()));
        assert_eq!(
            check.to_string(),
            "✓ int: network — ECR, S3 and CloudWatch Logs reached from subnet-a through the VPC \
             endpoints (route table rtb-a); subnet-b through rtb-main's default route to nat-1"
        );
        // DNS hostnames off: said once for the VPC, though only subnet-a needs it.
        let mut broken = live_network();
        broken.vpc.dns_hostnames = false;
        broken.endpoints.retain(|e| !e.serves("logs"));
        broken.route_tables[1].routes.clear();
        let check = network("int", "222222222222", &subnets, Ok(broken));
        assert_eq!(
            check.detail,
            "Fargate tasks in the private subnets cannot pull images or send logs: vpc-1 has \
             enableDnsHostnames off, which the endpoints' private DNS needs; subnet-a: no logs \
             interface endpoint; subnet-b: no S3 gateway endpoint on its route table rtb-main \
             (ECR's image layers), the ecr.api endpoint vpce-ecr.api has no network interface \
             in eu-west-1b (the subnet's availability zone), the ecr.dkr endpoint vpce-ecr.dkr \
             has no network interface in eu-west-1b (the subnet's availability zone), no logs \
             interface endpoint"
        );
        assert!(fix(&check).contains("NAT gateway"), "{check}");
        assert!(fix(&check).contains("stack shipgate-env in account 222222222222"));
        let gone = network(
            "int",
            "222222222222",
            &subnets,
            Err(failure(Some("InvalidSubnetID.NotFound"), 400)),
        );
        assert!(
            fix(&gone).contains("PrivateSubnets output is stale"),
            "{gone}"
        );
        let denied = network(
            "int",
            "222222222222",
            &subnets,
            Err(failure(Some("UnauthorizedOperation"), 403)),
        );
        assert!(fix(&denied).contains("DescribeVpcEndpoints"), "{denied}");
    }

    #[test]
    fn the_checks_role_trusts_the_checks_function() {
        let function = format!("arn:aws:iam::{TOOLING}:role/shipgate-ChecksFunctionRole-X1");
        let trusting = trust(&["arn:aws:iam::111111111111:role/shipgate-ChecksFunctionRole-*"]);
        let check = checks_role("int", "222222222222", trusting, &function);
        assert_eq!(
            check.to_string(),
            format!(
                "✓ int: checks role — arn:aws:iam::222222222222:role/shipgate-checks trusts \
                 {function}"
            )
        );
        let other = trust(&["arn:aws:iam::111111111111:role/other-ChecksFunctionRole-*"]);
        let check = checks_role("int", "222222222222", other, &function);
        assert!(check.detail.contains("does not trust"), "{check}");
        assert!(fix(&check).contains("ToolingStackName"), "{check}");
        let missing = checks_role("int", "222222222222", Ok(None), &function);
        assert!(missing.detail.starts_with("no role"), "{missing}");
    }

    #[test]
    fn the_test_probe_is_active_in_the_private_subnets() {
        let subnets = ["subnet-a".to_owned(), "subnet-b".to_owned()];
        let probe = |state: &str, subnets: &[&str]| {
            Ok(Some(FunctionState {
                arn: "arn:probe".into(),
                state: state.into(),
                state_reason: None,
                subnets: subnets.iter().map(|s| (*s).to_owned()).collect(),
            }))
        };
        let check = |function| test_probe("int", "222222222222", &subnets, function);
        assert_eq!(
            check(probe("Active", &["subnet-a", "subnet-b"])).to_string(),
            "✓ int: test probe — arn:probe is Active in subnet-a, subnet-b"
        );
        assert!(!check(probe("Active", &["subnet-b"])).is_failed());
        let outside = check(probe("Active", &["subnet-a", "subnet-public"]));
        assert!(
            outside.detail.contains("not only the private subnets"),
            "{outside}"
        );
        let no_vpc = check(probe("Active", &[]));
        assert!(no_vpc.detail.contains("runs in no VPC"), "{no_vpc}");
        assert!(fix(&check(probe("Pending", &["subnet-a"]))).contains("wait"));
        assert!(fix(&check(probe("Inactive", &["subnet-a"]))).contains("aws lambda invoke"));
        assert!(check(probe("Failed", &["subnet-a"])).is_failed());
        let missing = check(Ok(None));
        assert!(
            missing
                .detail
                .starts_with("no function shipgate-test-probe"),
            "{missing}"
        );
        assert!(fix(&missing).contains("ProbeCodeBucket"));
        assert!(
            fix(&check(Err(failure(Some("AccessDeniedException"), 403))))
                .contains("lambda:GetFunction")
        );
    }
}
