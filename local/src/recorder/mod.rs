//! The record of the AWS calls shipgate's functions make on the local stack, for the IAM
//! conformance check ([`crate::iam_conformance`]): moto checks no IAM, so only a record of what
//! each function really asked, evaluated against its role, shows what AWS would refuse.
//!
//! Each function signs with an access key of its own ([`crate::sdk::function_access_key`]).
//! Every endpoint the functions reach writes down each request with the key that signed it:
//! - moto appends one JSON line per request to the stack's call log
//!   (`local/moto-patches/call_recording.py`: the operation and its input as moto parsed them,
//!   S3's method, path and headers, the access key STS issued for each `AssumeRole`, the
//!   tasks ECS starts);
//! - the stack's own endpoints are fronted by a recording proxy ([`proxy`]): the CodePipeline
//!   stand-in (the operation and its JSON input), the Lambda endpoint (`Invoke`; its other
//!   operations go on to moto, which records them) and each account's registry (method and path
//!   of each OCI request, the caller read from the ECR token, which names it while recording).
//!
//! [`Recording::assemble`] then names each request's principal: a function (its own role), the
//! role a function assumed (by the key its `AssumeRole` was issued), or the execution role of
//! tasks a function's call started. Requests signed by anyone else (the stack itself, tests)
//! are counted and left out. A request the recorder could not read is kept as an error, so the
//! check fails rather than evaluate less than what ran.

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sdk::function_of_access_key;

/// What the ECR authorization token's password carries after the account's token, while
/// recording (call_recording.py's `CALLER_MARKER`).
pub const TOKEN_CALLER_MARKER: &str = ";caller=";

/// One request as an endpoint of the stack logged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Logged {
    /// An operation of an AWS API, its input as parsed from the request.
    Api {
        access_key: String,
        service: String,
        operation: String,
        #[serde(default)]
        params: Value,
        account: String,
        region: String,
        status: u16,
        /// For a successful `AssumeRole`: the access key of the session it issued.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issued_access_key: Option<String>,
    },
    /// An S3 request (path style: `/<bucket>/<key>`), as S3 decides what it authorizes.
    S3 {
        access_key: String,
        method: String,
        path: String,
        #[serde(default)]
        query: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        account: String,
        region: String,
        status: u16,
    },
    /// A request of the OCI distribution API to the registry of `account`.
    Registry {
        access_key: String,
        account: String,
        region: String,
        method: String,
        path: String,
        #[serde(default)]
        query: BTreeMap<String, Vec<String>>,
        status: u16,
    },
    /// Tasks ECS starts for a request (`cause`), with their task definition's execution role.
    TaskLaunch {
        cause: Cause,
        account: String,
        region: String,
        task_definition: String,
        execution_role: Option<String>,
        containers: Vec<Container>,
    },
    /// A request the recorder could not write down.
    Error { message: String },
}

/// The request that started tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub access_key: String,
    pub operation: String,
}

/// One container of a launched task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub name: Option<String>,
    pub image: Option<String>,
    pub awslogs: Option<AwsLogs>,
}

/// A container's `awslogs` log driver settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwsLogs {
    pub group: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
}

impl Logged {
    /// The access key the request was signed with (for a task launch: its cause's).
    pub fn access_key(&self) -> Option<&str> {
        match self {
            Logged::Api { access_key, .. }
            | Logged::S3 { access_key, .. }
            | Logged::Registry { access_key, .. } => Some(access_key),
            Logged::TaskLaunch { cause, .. } => Some(&cause.access_key),
            Logged::Error { .. } => None,
        }
    }
}

/// The requests the stack's own endpoints logged (moto logs to its file).
#[derive(Debug, Default)]
pub struct CallLog {
    logged: Mutex<Vec<Logged>>,
}

impl CallLog {
    pub fn push(&self, logged: Logged) {
        if let Ok(mut all) = self.logged.lock() {
            all.push(logged);
        }
    }

    pub fn snapshot(&self) -> Vec<Logged> {
        self.logged.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Reads moto's call log (one [`Logged`] per line); a line it cannot read is an error entry.
pub fn read_moto_log(path: &Path) -> Result<Vec<Logged>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| Logged::Error {
                message: format!("an unreadable line of {}: {e}", path.display()),
            })
        })
        .collect())
}

/// The access key id SigV4 signed a request with (`Credential=<key>/<date>/...`).
pub fn signing_access_key(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let key = credential.split('/').next()?.trim();
    (!key.is_empty()).then_some(key)
}

/// The caller an ECR registry request's `Authorization: Basic` names, read from the token's
/// password ([`TOKEN_CALLER_MARKER`]).
pub fn registry_caller(authorization: &str) -> Option<String> {
    let encoded = authorization.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, password) = decoded.split_once(':')?;
    let (_, key) = password.rsplit_once(TOKEN_CALLER_MARKER)?;
    (!key.is_empty()).then(|| key.to_owned())
}

/// Who made a recorded call, as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// The function (template logical id) with its execution role, or with `assumed`, a role
    /// it assumed.
    Function {
        function: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assumed: Option<String>,
    },
    /// Tasks started by `function`'s call, acting with their execution role `role`.
    Tasks { function: String, role: String },
}

impl Principal {
    /// The function the call is owed to.
    pub fn function(&self) -> &str {
        match self {
            Principal::Function { function, .. } | Principal::Tasks { function, .. } => function,
        }
    }
}

/// One call, with who made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    pub principal: Principal,
    pub request: Logged,
}

/// What the templates' references resolved to in the stack that made the calls, so that the
/// policies are read with the names the calls used (a secret's ARN, a listener's ARN).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvedNames {
    /// `template.yaml`: what `Ref` gave (logical id → value) and `Fn::GetAtt` (`Id.Attribute`).
    pub tooling_refs: BTreeMap<String, String>,
    pub tooling_attributes: BTreeMap<String, String>,
    /// `environment.yaml` per environment account: what `Ref` gave (each parameter's value,
    /// each resource's physical id, as CloudFormation reports them).
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
}

/// Every call the functions made on one stack, with who made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub names: ResolvedNames,
    /// Each distinct call once.
    pub calls: Vec<RecordedCall>,
    /// What the recorder could not read.
    pub errors: Vec<String>,
    /// Requests signed by no function (the stack itself, tests): not evaluated.
    pub others: usize,
}

impl Recording {
    /// Names each request's principal ([`Principal`]) and keeps each distinct call once.
    pub fn assemble(logged: Vec<Logged>, names: ResolvedNames) -> Self {
        // Who each issued session key belongs to: (the key that asked for it, the role).
        let issued: BTreeMap<&str, (&str, &str)> = logged
            .iter()
            .filter_map(|l| match l {
                Logged::Api {
                    access_key,
                    operation,
                    params,
                    issued_access_key: Some(issued),
                    ..
                } if operation == "AssumeRole" => Some((
                    issued.as_str(),
                    (
                        access_key.as_str(),
                        params.get("RoleArn").and_then(Value::as_str).unwrap_or(""),
                    ),
                )),
                _ => None,
            })
            .collect();
        let principal_of = |key: &str| principal(key, &issued);
        let mut recording = Recording {
            names,
            ..Recording::default()
        };
        let mut seen = BTreeSet::new();
        for request in &logged {
            if let Logged::Error { message } = request {
                recording.errors.push(message.clone());
                continue;
            }
            let Some(caller) = request.access_key().and_then(principal_of) else {
                recording.others += 1;
                continue;
            };
            let principal = match request {
                Logged::TaskLaunch {
                    execution_role: Some(role),
                    ..
                } => Principal::Tasks {
                    function: caller.function().to_owned(),
                    role: role.clone(),
                },
                Logged::TaskLaunch {
                    execution_role: None,
                    task_definition,
                    containers,
                    ..
                } => {
                    // ECS pulls a private image and writes awslogs with the execution role:
                    // without one the tasks cannot start in AWS.
                    if containers
                        .iter()
                        .any(|c| c.image.is_some() || c.awslogs.is_some())
                    {
                        recording.errors.push(format!(
                            "the tasks of {task_definition} that {} started have no execution \
                             role to pull their image and write their logs with",
                            caller.function()
                        ));
                    }
                    continue;
                }
                _ => caller,
            };
            let call = RecordedCall {
                principal,
                request: request.clone(),
            };
            let key = serde_json::to_string(&call).unwrap_or_default();
            if seen.insert(key) {
                recording.calls.push(call);
            }
        }
        recording
    }

    /// How many distinct calls each function made (its own and through the roles it assumed).
    pub fn calls_per_function(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in &self.calls {
            *counts
                .entry(call.principal.function().to_owned())
                .or_default() += 1;
        }
        counts
    }
}

/// The principal behind an access key: a function's own, or a session issued (through any
/// chain of `AssumeRole`) to one.
fn principal(key: &str, issued: &BTreeMap<&str, (&str, &str)>) -> Option<Principal> {
    if let Some(function) = function_of_access_key(key) {
        return Some(Principal::Function {
            function: function.to_owned(),
            assumed: None,
        });
    }
    let mut current = key;
    let role = issued.get(key)?.1;
    // A chain is as long as there are sessions: a loop would be a corrupt log.
    for _ in 0..=issued.len() {
        let (caller, _) = issued.get(current)?;
        if let Some(function) = function_of_access_key(caller) {
            return Some(Principal::Function {
                function: function.to_owned(),
                assumed: Some(role.to_owned()),
            });
        }
        current = caller;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::function_access_key;
    use serde_json::json;

    fn api(key: &str, operation: &str, params: Value) -> Logged {
        Logged::Api {
            access_key: key.to_owned(),
            service: "sts".to_owned(),
            operation: operation.to_owned(),
            params,
            account: "123456789012".to_owned(),
            region: "eu-west-1".to_owned(),
            status: 200,
            issued_access_key: None,
        }
    }

    fn assume(key: &str, role: &str, issued: &str) -> Logged {
        let mut logged = api(key, "AssumeRole", json!({"RoleArn": role}));
        if let Logged::Api {
            issued_access_key, ..
        } = &mut logged
        {
            *issued_access_key = Some(issued.to_owned());
        }
        logged
    }

    #[test]
    fn calls_are_owed_to_the_function_whose_key_or_session_signed_them() {
        let deploy = function_access_key("DeployFunction");
        let role = "arn:aws:iam::222222222222:role/shipgate-deploy";
        let logged = vec![
            assume(&deploy, role, "ASIAFIRST"),
            api("ASIAFIRST", "DescribeStacks", json!({"StackName": "a"})),
            // A session of a session is still the function's, in the last role assumed.
            assume(
                "ASIAFIRST",
                "arn:aws:iam::333333333333:role/x",
                "ASIASECOND",
            ),
            api("ASIASECOND", "GetCallerIdentity", json!({})),
            // The stack's own and a test's calls are not a function's.
            api(crate::sdk::ACCESS_KEY_ID, "GetCallerIdentity", json!({})),
            assume(crate::sdk::ACCESS_KEY_ID, role, "ASIATEST"),
            api("ASIATEST", "DescribeStacks", json!({"StackName": "a"})),
            Logged::Error {
                message: "unreadable".into(),
            },
            // The same call twice is one.
            api("ASIAFIRST", "DescribeStacks", json!({"StackName": "a"})),
        ];
        let recording = Recording::assemble(logged, ResolvedNames::default());
        let principals: Vec<_> = recording.calls.iter().map(|c| &c.principal).collect();
        let own = Principal::Function {
            function: "DeployFunction".into(),
            assumed: None,
        };
        let assumed = Principal::Function {
            function: "DeployFunction".into(),
            assumed: Some(role.into()),
        };
        let chained = Principal::Function {
            function: "DeployFunction".into(),
            assumed: Some("arn:aws:iam::333333333333:role/x".into()),
        };
        assert_eq!(principals, [&own, &assumed, &assumed, &chained]);
        assert_eq!(recording.others, 3);
        assert_eq!(recording.errors, ["unreadable"]);
        assert_eq!(recording.calls_per_function()["DeployFunction"], 4);
    }

    #[test]
    fn tasks_a_function_started_act_with_their_execution_role() {
        let launch = Logged::TaskLaunch {
            cause: Cause {
                access_key: "ASIAENV".into(),
                operation: "CreateTaskSet".into(),
            },
            account: "222222222222".into(),
            region: "eu-west-1".into(),
            task_definition: "arn:aws:ecs:eu-west-1:222222222222:task-definition/web:1".into(),
            execution_role: Some("arn:aws:iam::222222222222:role/exec".into()),
            containers: vec![],
        };
        let logged = vec![
            assume(
                &function_access_key("DeployFunction"),
                "arn:aws:iam::222222222222:role/shipgate-deploy",
                "ASIAENV",
            ),
            launch,
        ];
        let mut without_role = logged[1].clone();
        if let Logged::TaskLaunch {
            execution_role,
            containers,
            ..
        } = &mut without_role
        {
            *execution_role = None;
            containers.push(Container {
                name: Some("web".into()),
                image: Some("222222222222.dkr.ecr.eu-west-1.amazonaws.com/web@sha256:ab".into()),
                awslogs: None,
            });
        }
        let recording = Recording::assemble(
            vec![logged[0].clone(), without_role],
            ResolvedNames::default(),
        );
        assert_eq!(recording.calls.len(), 1);
        assert!(
            recording.errors[0].contains("no execution role"),
            "{:?}",
            recording.errors
        );
        let recording = Recording::assemble(logged, ResolvedNames::default());
        assert_eq!(
            recording.calls[1].principal,
            Principal::Tasks {
                function: "DeployFunction".into(),
                role: "arn:aws:iam::222222222222:role/exec".into()
            }
        );
    }

    #[test]
    fn sigv4_and_registry_credentials_name_their_caller() {
        assert_eq!(
            signing_access_key(
                "AWS4-HMAC-SHA256 Credential=shipgate_local_IntakeFunction/20261126/eu-west-1/s3/\
                 aws4_request, SignedHeaders=host, Signature=abc"
            ),
            Some("shipgate_local_IntakeFunction")
        );
        assert_eq!(signing_access_key("Basic abc"), None);
        let basic = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        assert_eq!(
            registry_caller(&basic("AWS:222222222222-auth-token;caller=ASIAX")),
            Some("ASIAX".to_owned())
        );
        // A token that names no caller (moto not recording) names nobody.
        assert_eq!(registry_caller(&basic("AWS:222222222222-auth-token")), None);
        assert_eq!(registry_caller("Bearer x"), None);
    }

    #[test]
    fn moto_log_lines_read_as_logged_requests_and_unreadable_ones_as_errors() {
        let dir = std::env::temp_dir().join(format!("recorder-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"kind":"s3","access_key":"k","service":"s3","method":"HEAD","path":"/b/k","query":{},"headers":{},"account":"1","region":"r","status":200}"#,
                "\n",
                "not json\n",
            ),
        )
        .unwrap();
        let read = read_moto_log(&path).unwrap();
        assert!(matches!(&read[0], Logged::S3 { method, .. } if method == "HEAD"));
        assert!(matches!(&read[1], Logged::Error { .. }));
        assert!(read_moto_log(&dir.join("none")).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
