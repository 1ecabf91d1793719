//! What AWS authorizes a recorded call as: the IAM action(s), the resource each is checked
//! against, and the request context keys the templates' conditions test. Sources: the Service
//! Authorization Reference, "Actions, resources, and condition keys for <service>" (its
//! "Resource types" column; `*` where it lists none; offline copy: salesforce/policy_sentry,
//! `policy_sentry/shared/data/docs/list_*.html`), and where one request is authorized as several
//! actions, the service's guide (named at each such case).
//!
//! Parts of a resource that AWS assigns and the request does not carry (a stack's id, an ECS
//! task's id, a task set's id before it exists) are `*` in the resource checked: only a policy
//! that allows every value there allows the call, as only such a policy can name them in AWS.
//!
//! A call this table does not know is an error naming it ([`Unmapped`]): the conformance check
//! fails on it rather than evaluate less than what ran.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::recorder::{Container, Logged};

/// One authorization AWS makes for a call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
    /// Request context keys beyond the principal's (`iam:PassedToService`, `kms:ViaService`).
    pub context: BTreeMap<String, Vec<String>>,
}

impl Authorization {
    fn new(action: &str, resource: impl Into<String>) -> Self {
        Self {
            action: action.to_owned(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.insert(key.to_owned(), vec![value.into()]);
        self
    }
}

/// A call this table cannot say how AWS authorizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {why}")]
pub struct Unmapped {
    /// The call (`service Operation` or the HTTP request).
    pub call: String,
    pub why: String,
}

/// A short name for a logged request: `dynamodb PutItem`, `s3 PUT /bucket/key`.
pub fn describe(request: &Logged) -> String {
    match request {
        Logged::Api {
            service, operation, ..
        } => format!("{service} {operation}"),
        Logged::S3 { method, path, .. } => format!("s3 {method} {path}"),
        Logged::Registry {
            method,
            path,
            account,
            ..
        } => format!("registry {account} {method} {path}"),
        Logged::TaskLaunch {
            cause,
            task_definition,
            ..
        } => format!("tasks of {task_definition} started by {}", cause.operation),
        Logged::Error { message } => format!("unrecorded: {message}"),
    }
}

/// How AWS authorizes `request`, made in `account` (the account of the credentials: the
/// tooling account for a function's own, the role's for an assumed role).
pub fn authorizations(request: &Logged, account: &str) -> Result<Vec<Authorization>, Unmapped> {
    let unmapped = |why: &str| Unmapped {
        call: describe(request),
        why: why.to_owned(),
    };
    match request {
        Logged::Api {
            service,
            operation,
            params,
            region,
            account: acted_in,
            ..
        } => {
            let at = At {
                region,
                account: if acted_in.is_empty() {
                    account
                } else {
                    acted_in
                },
            };
            api(service, operation, params, &at).map_err(|why| unmapped(&why))
        }
        Logged::S3 {
            method,
            path,
            query,
            headers,
            ..
        } => s3(method, path, query, headers).map_err(|why| unmapped(&why)),
        Logged::Registry {
            method,
            path,
            account: registry,
            region,
            ..
        } => registry_request(
            method,
            path,
            &At {
                region,
                account: registry,
            },
        )
        .map_err(|why| unmapped(&why)),
        Logged::TaskLaunch {
            containers,
            account: launched_in,
            region,
            ..
        } => Ok(task_launch(
            containers,
            &At {
                region,
                account: launched_in,
            },
        )),
        Logged::Error { message } => Err(unmapped(message)),
    }
}

/// Where a call acts: ARNs without an account or region of their own take these.
struct At<'a> {
    region: &'a str,
    account: &'a str,
}

impl At<'_> {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account
        )
    }
}

fn text<'a>(params: &'a Value, name: &str) -> Result<&'a str, String> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("no {name} in the request"))
}

fn texts(params: &Value, name: &str) -> Vec<String> {
    params
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The last `/`-separated part of a name that may be an ARN (`cluster/name` → `name`).
fn name_of(value: &str) -> &str {
    if value.starts_with("arn:") {
        value.rsplit('/').next().unwrap_or(value)
    } else {
        value
    }
}

fn api(
    service: &str,
    operation: &str,
    params: &Value,
    at: &At<'_>,
) -> Result<Vec<Authorization>, String> {
    let one = |action: &str, resource: String| Ok(vec![Authorization::new(action, resource)]);
    let action = |prefix: &str| format!("{prefix}:{operation}");
    match (service, operation) {
        // CodePipeline: the pipeline resource type, `arn:...:<pipeline>`; approvals on the
        // action, `<pipeline>/<stage>/<action>`; job results take none.
        ("codepipeline", "ListPipelines") => one("codepipeline:ListPipelines", "*".into()),
        ("codepipeline", "StartPipelineExecution" | "GetPipelineState" | "GetPipeline") => one(
            &action("codepipeline"),
            at.arn("codepipeline", text(params, "name")?),
        ),
        (
            "codepipeline",
            "GetPipelineExecution" | "ListPipelineExecutions" | "StopPipelineExecution",
        ) => one(
            &action("codepipeline"),
            at.arn("codepipeline", text(params, "pipelineName")?),
        ),
        ("codepipeline", "PutApprovalResult") => one(
            &action("codepipeline"),
            at.arn(
                "codepipeline",
                &format!(
                    "{}/{}/{}",
                    text(params, "pipelineName")?,
                    text(params, "stageName")?,
                    text(params, "actionName")?
                ),
            ),
        ),
        (
            "codepipeline",
            "PutJobSuccessResult" | "PutJobFailureResult" | "GetJobDetails" | "AcknowledgeJob",
        ) => one(&action("codepipeline"), "*".into()),

        // DynamoDB: the table (a Query or Scan of an index: the index); batches per table;
        // a transaction per item, as the action its item does (DynamoDB developer guide,
        // "Using IAM with DynamoDB transactions").
        ("dynamodb", "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "DescribeTable") => one(
            &action("dynamodb"),
            table_arn(text(params, "TableName")?, at),
        ),
        ("dynamodb", "Query" | "Scan") => {
            let table = table_arn(text(params, "TableName")?, at);
            let resource = match params.get("IndexName").and_then(Value::as_str) {
                Some(index) => format!("{table}/index/{index}"),
                None => table,
            };
            one(&action("dynamodb"), resource)
        }
        ("dynamodb", "BatchGetItem" | "BatchWriteItem") => {
            let tables = params
                .get("RequestItems")
                .and_then(Value::as_object)
                .ok_or("no RequestItems in the request")?;
            Ok(tables
                .keys()
                .map(|t| Authorization::new(&action("dynamodb"), table_arn(t, at)))
                .collect())
        }
        ("dynamodb", "TransactWriteItems" | "TransactGetItems") => {
            let items = params
                .get("TransactItems")
                .and_then(Value::as_array)
                .ok_or("no TransactItems in the request")?;
            items
                .iter()
                .map(|item| {
                    let (kind, detail) = item
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .ok_or("an empty transaction item")?;
                    let item_action = match kind.as_str() {
                        "Put" => "dynamodb:PutItem",
                        "Update" => "dynamodb:UpdateItem",
                        "Delete" => "dynamodb:DeleteItem",
                        "ConditionCheck" => "dynamodb:ConditionCheckItem",
                        "Get" => "dynamodb:GetItem",
                        other => return Err(format!("a transaction item {other}")),
                    };
                    Ok(Authorization::new(
                        item_action,
                        table_arn(text(detail, "TableName")?, at),
                    ))
                })
                .collect()
        }

        // SESv2 SendEmail: the identity that authorizes the From address (its own, when the
        // address is verified), the configuration set when one is named.
        ("sesv2", "SendEmail") => {
            let identity = match params
                .get("FromEmailAddressIdentityArn")
                .and_then(Value::as_str)
            {
                Some(arn) => arn.to_owned(),
                None => at.arn(
                    "ses",
                    &format!("identity/{}", address(text(params, "FromEmailAddress")?)),
                ),
            };
            let mut all = vec![Authorization::new("ses:SendEmail", identity)];
            if let Some(set) = params.get("ConfigurationSetName").and_then(Value::as_str) {
                all.push(Authorization::new(
                    "ses:SendEmail",
                    at.arn("ses", &format!("configuration-set/{set}")),
                ));
            }
            Ok(all)
        }

        // STS: the role; GetCallerIdentity needs no permission (STS API reference).
        ("sts", "AssumeRole") => one("sts:AssumeRole", text(params, "RoleArn")?.to_owned()),
        ("sts", "GetCallerIdentity") => Ok(Vec::new()),

        // Systems Manager Parameter Store: the parameter, by its name (a hierarchical name
        // starts with `/`, which the ARN's `parameter` keeps once: `parameter/shipgate/...`;
        // Service Authorization Reference, AWS Systems Manager, resource type `parameter`).
        ("ssm", "GetParameter" | "GetParameters" | "PutParameter") => {
            let names: Vec<String> = match params.get("Names").and_then(Value::as_array) {
                Some(names) => names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                None => vec![text(params, "Name")?.to_owned()],
            };
            Ok(names
                .iter()
                .map(|name| {
                    let resource = if name.starts_with("arn:") {
                        name.clone()
                    } else {
                        at.arn(
                            "ssm",
                            &format!("parameter/{}", name.trim_start_matches('/')),
                        )
                    };
                    Authorization::new(&action("ssm"), resource)
                })
                .collect())
        }

        // Secrets Manager: the secret, by its ARN.
        ("secretsmanager", "GetSecretValue" | "DescribeSecret") => {
            let id = text(params, "SecretId")?;
            if !id.starts_with("arn:") {
                return Err(format!(
                    "the secret is named {id:?}, not by its ARN: the ARN IAM checks ends with a \
                     suffix only Secrets Manager knows"
                ));
            }
            one(&action("secretsmanager"), id.to_owned())
        }

        // CloudFormation: the stack; CreateChangeSet also passes its RoleARN to CloudFormation
        // (iam:PassRole), has CloudFormation read a TemplateURL with the caller's credentials
        // (s3:GetObject: API reference, CreateChangeSet, TemplateURL), and is authorized on
        // each transform the template names (transform/<name>, the AWS-owned resource).
        (
            "cloudformation",
            "DescribeStacks"
            | "DescribeStackEvents"
            | "DescribeStackResources"
            | "ListStackResources"
            | "GetTemplate"
            | "DescribeChangeSet"
            | "ExecuteChangeSet"
            | "DeleteChangeSet",
        ) => match params.get("StackName").and_then(Value::as_str) {
            Some(stack) => one(&action("cloudformation"), stack_arn(stack, at)),
            None if operation == "DescribeStacks" => one(&action("cloudformation"), "*".into()),
            None => Err("no StackName: the stack a change set belongs to is not known".into()),
        },
        ("cloudformation", "CreateChangeSet") => {
            let mut all = vec![Authorization::new(
                "cloudformation:CreateChangeSet",
                stack_arn(text(params, "StackName")?, at),
            )];
            if let Some(role) = params.get("RoleARN").and_then(Value::as_str) {
                all.push(
                    Authorization::new("iam:PassRole", role)
                        .with("iam:PassedToService", "cloudformation.amazonaws.com"),
                );
            }
            if let Some(url) = params.get("TemplateURL").and_then(Value::as_str) {
                all.push(Authorization::new("s3:GetObject", template_object(url)?));
            }
            if let Some(body) = params.get("TemplateBody").and_then(Value::as_str) {
                for transform in transforms(body)? {
                    all.push(Authorization::new(
                        "cloudformation:CreateChangeSet",
                        format!(
                            "arn:aws:cloudformation:{}:aws:transform/{transform}",
                            at.region
                        ),
                    ));
                }
            }
            Ok(all)
        }
        ("cloudformation", "ValidateTemplate") => {
            one("cloudformation:ValidateTemplate", "*".into())
        }

        // Elastic Load Balancing: Describe* take no resource; changes, the listener or rule.
        ("elasticloadbalancing" | "elbv2", op) if op.starts_with("Describe") => {
            one(&action("elasticloadbalancing"), "*".into())
        }
        ("elasticloadbalancing" | "elbv2", "ModifyListener") => one(
            "elasticloadbalancing:ModifyListener",
            text(params, "ListenerArn")?.to_owned(),
        ),
        ("elasticloadbalancing" | "elbv2", "ModifyRule") => one(
            "elasticloadbalancing:ModifyRule",
            text(params, "RuleArn")?.to_owned(),
        ),

        // ECS task sets: the task set (task-set/<cluster>/<service>/<id>), one not created yet
        // or not named `*`; the primary task set: the service.
        ("ecs", "CreateTaskSet") => one("ecs:CreateTaskSet", task_set_arn(params, None, at)?),
        ("ecs", "DescribeTaskSets") => {
            let named = texts(params, "taskSets");
            if named.is_empty() {
                return one("ecs:DescribeTaskSets", task_set_arn(params, None, at)?);
            }
            named
                .iter()
                .map(|t| {
                    Ok(Authorization::new(
                        "ecs:DescribeTaskSets",
                        task_set_arn(params, Some(t), at)?,
                    ))
                })
                .collect()
        }
        ("ecs", "UpdateTaskSet" | "DeleteTaskSet") => one(
            &action("ecs"),
            task_set_arn(params, Some(text(params, "taskSet")?), at)?,
        ),
        ("ecs", "UpdateServicePrimaryTaskSet") => one(
            "ecs:UpdateServicePrimaryTaskSet",
            service_arn(params, text(params, "service")?, at),
        ),
        ("ecs", "DescribeServices") => Ok(texts(params, "services")
            .iter()
            .map(|s| Authorization::new("ecs:DescribeServices", service_arn(params, s, at)))
            .collect()),

        // Lambda: alias and version operations on the (unqualified) function; Invoke on the
        // function or, with a qualifier, on the version or alias it names.
        (
            "lambda",
            "GetAlias"
            | "UpdateAlias"
            | "ListAliases"
            | "GetFunction"
            | "GetFunctionConfiguration"
            | "ListVersionsByFunction",
        ) => one(
            &action("lambda"),
            function_arn(text(params, "FunctionName")?, at).0,
        ),
        ("lambda", "Invoke") => {
            let (function, carried) = function_arn(text(params, "FunctionName")?, at);
            let resource = match params.get("Qualifier").and_then(Value::as_str).or(carried) {
                Some(qualifier) => format!("{function}:{qualifier}"),
                None => function,
            };
            one("lambda:InvokeFunction", resource)
        }

        // CloudWatch DescribeAlarms: each alarm named; every alarm when none is.
        ("cloudwatch" | "monitoring", "DescribeAlarms") => {
            let names = texts(params, "AlarmNames");
            if names.is_empty() {
                return one("cloudwatch:DescribeAlarms", at.arn("cloudwatch", "alarm:*"));
            }
            Ok(names
                .iter()
                .map(|n| {
                    Authorization::new(
                        "cloudwatch:DescribeAlarms",
                        at.arn("cloudwatch", &format!("alarm:{n}")),
                    )
                })
                .collect())
        }

        // ECR's control API: the repository (in registryId's account when given); the token
        // takes none. CreateRepository with tags also checks ecr:TagResource; with KMS
        // encryption ECR acts on the key with the caller's permissions (ECR user guide,
        // "Encryption at rest": DescribeKey, CreateGrant).
        ("ecr", "GetAuthorizationToken") => one("ecr:GetAuthorizationToken", "*".into()),
        (
            "ecr",
            "DescribeRepositories"
            | "DescribeImages"
            | "BatchGetImage"
            | "ListImages"
            | "BatchCheckLayerAvailability",
        ) => {
            let registry = params
                .get("registryId")
                .and_then(Value::as_str)
                .unwrap_or(at.account);
            let names = match params.get("repositoryName").and_then(Value::as_str) {
                Some(name) => vec![name.to_owned()],
                None => texts(params, "repositoryNames"),
            };
            if names.is_empty() {
                return one(&action("ecr"), repository_arn(registry, "*", at.region));
            }
            Ok(names
                .iter()
                .map(|n| Authorization::new(&action("ecr"), repository_arn(registry, n, at.region)))
                .collect())
        }
        ("ecr", "CreateRepository") => {
            let repository = repository_arn(
                params
                    .get("registryId")
                    .and_then(Value::as_str)
                    .unwrap_or(at.account),
                text(params, "repositoryName")?,
                at.region,
            );
            let mut all = vec![Authorization::new("ecr:CreateRepository", &repository)];
            if params
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty())
            {
                all.push(Authorization::new("ecr:TagResource", &repository));
            }
            let encryption = params.get("encryptionConfiguration");
            let kind = encryption
                .and_then(|e| e.get("encryptionType"))
                .and_then(Value::as_str)
                .unwrap_or("AES256");
            if kind != "AES256" {
                let key = encryption
                    .and_then(|e| e.get("kmsKey"))
                    .and_then(Value::as_str)
                    .filter(|k| k.starts_with("arn:"))
                    .ok_or(
                        "CreateRepository with KMS encryption and no key ARN: the AWS managed \
                         key's id is known only to AWS",
                    )?;
                let via = format!("ecr.{}.amazonaws.com", at.region);
                for kms_action in ["kms:DescribeKey", "kms:CreateGrant"] {
                    all.push(Authorization::new(kms_action, key).with("kms:ViaService", &via));
                }
            }
            Ok(all)
        }

        _ => Err(
            "not in the table of calls the IAM check knows (local/src/authorization.rs)".to_owned(),
        ),
    }
}

fn table_arn(table: &str, at: &At<'_>) -> String {
    if table.starts_with("arn:") {
        table.to_owned()
    } else {
        at.arn("dynamodb", &format!("table/{table}"))
    }
}

fn stack_arn(stack: &str, at: &At<'_>) -> String {
    if stack.starts_with("arn:") {
        stack.to_owned()
    } else {
        at.arn("cloudformation", &format!("stack/{stack}/*"))
    }
}

fn repository_arn(registry: &str, repository: &str, region: &str) -> String {
    format!("arn:aws:ecr:{region}:{registry}:repository/{repository}")
}

/// The cluster a request names (ECS's default cluster when it names none).
fn cluster(params: &Value) -> &str {
    params
        .get("cluster")
        .and_then(Value::as_str)
        .map(name_of)
        .unwrap_or("default")
}

fn service_arn(params: &Value, service: &str, at: &At<'_>) -> String {
    if service.starts_with("arn:") && service.matches('/').count() == 2 {
        return service.to_owned();
    }
    at.arn(
        "ecs",
        &format!("service/{}/{}", cluster(params), name_of(service)),
    )
}

/// A task set's ARN from a request's cluster and service; `task_set` (an id or an ARN) or `*`.
fn task_set_arn(params: &Value, task_set: Option<&str>, at: &At<'_>) -> Result<String, String> {
    if let Some(arn) = task_set.filter(|t| t.starts_with("arn:")) {
        return Ok(arn.to_owned());
    }
    Ok(at.arn(
        "ecs",
        &format!(
            "task-set/{}/{}/{}",
            cluster(params),
            name_of(text(params, "service")?),
            task_set.unwrap_or("*")
        ),
    ))
}

/// A function's unqualified ARN, from a name, a partial ARN or an ARN, and the qualifier
/// the name carries (`name:live`, `...:function:name:7`), if any.
fn function_arn<'a>(function: &'a str, at: &At<'_>) -> (String, Option<&'a str>) {
    let parts: Vec<&str> = function.split(':').collect();
    let (account, name, carried) = match parts.as_slice() {
        ["arn", _, "lambda", _, account, "function", name, rest @ ..] => {
            (*account, *name, rest.first().copied())
        }
        [account, "function", name, rest @ ..] => (*account, *name, rest.first().copied()),
        [name, rest @ ..] => (at.account, *name, rest.first().copied()),
        [] => (at.account, function, None),
    };
    (
        format!("arn:aws:lambda:{}:{account}:function:{name}", at.region),
        carried,
    )
}

/// The address of a From header value (`Name <a@b>` or `a@b`).
fn address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(start), Some(end)) if start < end => &from[start + 1..end],
        _ => from.trim(),
    }
}

/// The S3 object a `TemplateURL` names (virtual-hosted or path style).
fn template_object(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("TemplateURL {url}: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let path = percent_encoding::percent_decode_str(parsed.path().trim_start_matches('/'))
        .decode_utf8_lossy()
        .into_owned();
    let object = match host.split_once(".s3") {
        Some((bucket, _)) if !bucket.is_empty() => format!("{bucket}/{path}"),
        _ => path,
    };
    Ok(format!("arn:aws:s3:::{object}"))
}

/// The transforms a template names at its top (`Transform: X` or a list).
fn transforms(body: &str) -> Result<Vec<String>, String> {
    let doc: serde_yaml::Value = match serde_yaml::from_str(body) {
        Ok(doc) => doc,
        // CloudFormation's short forms (`!Ref`) are YAML tags serde_yaml keeps; a body that is
        // not YAML at all is refused by CloudFormation before any authorization of transforms.
        Err(e) => return Err(format!("the TemplateBody does not read as YAML: {e}")),
    };
    Ok(match doc.get("Transform") {
        Some(serde_yaml::Value::String(t)) => vec![t.clone()],
        Some(serde_yaml::Value::Sequence(list)) => list
            .iter()
            .filter_map(|t| match t {
                serde_yaml::Value::String(s) => Some(s.clone()),
                other => other
                    .get("Name")
                    .and_then(serde_yaml::Value::as_str)
                    .map(str::to_owned),
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// S3, from the request's method, path (`/<bucket>/<key>`), query and headers (Amazon S3 user
/// guide, "Required permissions for Amazon S3 API operations").
fn s3(
    method: &str,
    path: &str,
    query: &BTreeMap<String, Vec<String>>,
    headers: &BTreeMap<String, String>,
) -> Result<Vec<Authorization>, String> {
    let decoded = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
        .decode_utf8_lossy()
        .into_owned();
    let (bucket, key) = match decoded.split_once('/') {
        Some((bucket, key)) if !key.is_empty() => (bucket.to_owned(), Some(key.to_owned())),
        _ => (decoded.trim_end_matches('/').to_owned(), None),
    };
    if bucket.is_empty() {
        return Err("no bucket in the path".into());
    }
    // `x-id` names the operation for routing (the SDKs send it); it changes no authorization.
    let query: BTreeMap<&str, &Vec<String>> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "x-id")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let has = |name: &str| query.contains_key(name);
    let versioned = |base: &str, with_version: &str| {
        if has("versionId") {
            with_version.to_owned()
        } else {
            base.to_owned()
        }
    };
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let Some(key) = key else {
        let action = match method {
            "HEAD" => "s3:ListBucket",
            "GET" if has("versions") => "s3:ListBucketVersions",
            "GET" if has("location") => "s3:GetBucketLocation",
            "GET" if query.keys().all(|k| LIST_PARAMETERS.contains(k)) => "s3:ListBucket",
            _ => return Err("a bucket operation the IAM check does not know".into()),
        };
        return Ok(vec![Authorization::new(action, bucket_arn)]);
    };
    let object = format!("{bucket_arn}/{key}");
    let object_action = |action: String| Authorization::new(&action, &object);
    Ok(match method {
        "HEAD" | "GET" if has("tagging") => vec![object_action(versioned(
            "s3:GetObjectTagging",
            "s3:GetObjectVersionTagging",
        ))],
        "HEAD" | "GET" if query.keys().all(|k| GET_PARAMETERS.contains(k)) => {
            vec![object_action(versioned(
                "s3:GetObject",
                "s3:GetObjectVersion",
            ))]
        }
        "PUT" if has("tagging") => vec![object_action(versioned(
            "s3:PutObjectTagging",
            "s3:PutObjectVersionTagging",
        ))],
        "PUT" if has("partNumber") && has("uploadId") => {
            vec![object_action("s3:PutObject".into())]
        }
        "PUT" if query.is_empty() => {
            let mut all = vec![object_action("s3:PutObject".into())];
            // CopyObject: the source is read (a version when one is named); tags given with
            // the request are written (s3:PutObjectTagging). Copying the source's own tags
            // (the default directive) needs their read and write too, when it has some: the
            // request cannot tell, the hand-listed calls say it.
            if let Some(source) = headers.get("x-amz-copy-source") {
                let source = percent_encoding::percent_decode_str(source.trim_start_matches('/'))
                    .decode_utf8_lossy()
                    .into_owned();
                let (source, read) = match source.split_once("?versionId=") {
                    Some((object, _)) => (object.to_owned(), "s3:GetObjectVersion"),
                    None => (source, "s3:GetObject"),
                };
                all.push(Authorization::new(read, format!("arn:aws:s3:::{source}")));
                if headers
                    .get("x-amz-tagging-directive")
                    .is_some_and(|d| d.eq_ignore_ascii_case("REPLACE"))
                    && headers.contains_key("x-amz-tagging")
                {
                    all.push(object_action("s3:PutObjectTagging".into()));
                }
            } else if headers.contains_key("x-amz-tagging") {
                all.push(object_action("s3:PutObjectTagging".into()));
            }
            all
        }
        "POST" if has("uploads") || has("uploadId") => {
            vec![object_action("s3:PutObject".into())]
        }
        "DELETE" if has("uploadId") => vec![object_action("s3:AbortMultipartUpload".into())],
        "DELETE" if query.keys().all(|k| *k == "versionId") => vec![object_action(versioned(
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        ))],
        _ => return Err("an object operation the IAM check does not know".into()),
    })
}

/// Query parameters of a plain object GET (none changes what is authorized).
const GET_PARAMETERS: [&str; 8] = [
    "versionId",
    "partNumber",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
];

/// Query parameters of a bucket listing.
const LIST_PARAMETERS: [&str; 9] = [
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "continuation-token",
    "start-after",
    "encoding-type",
    "fetch-owner",
    "marker",
];

/// The OCI distribution API on ECR (ECR user guide, "Amazon ECR repository policies" and
/// "Pushing an image": a pull is BatchGetImage for manifests and GetDownloadUrlForLayer for
/// blobs; a push checks each blob with BatchCheckLayerAvailability, uploads it with
/// InitiateLayerUpload, UploadLayerPart and CompleteLayerUpload, and puts the manifest with
/// PutImage). `GET /v2/` only checks the token, which GetAuthorizationToken gave.
fn registry_request(method: &str, path: &str, at: &At<'_>) -> Result<Vec<Authorization>, String> {
    if path == "/v2/" || path == "/v2" {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix("/v2/")
        .ok_or("not a request of the distribution API")?;
    if rest == "_catalog" {
        return Ok(vec![Authorization::new(
            "ecr:DescribeRepositories",
            repository_arn(at.account, "*", at.region),
        )]);
    }
    let (repository, actions): (&str, &[&str]) =
        if let Some((repository, _)) = rest.split_once("/manifests/") {
            match method {
                "GET" | "HEAD" => (repository, &["ecr:BatchGetImage"]),
                "PUT" => (repository, &["ecr:PutImage"]),
                "DELETE" => (repository, &["ecr:BatchDeleteImage"]),
                _ => return Err("a manifest request the IAM check does not know".into()),
            }
        } else if let Some((repository, upload)) = rest.split_once("/blobs/uploads") {
            match (method, upload.trim_start_matches('/').is_empty()) {
                ("POST", true) => (repository, &["ecr:InitiateLayerUpload"]),
                ("PATCH", false) => (repository, &["ecr:UploadLayerPart"]),
                ("PUT", false) => (repository, &["ecr:CompleteLayerUpload"]),
                _ => return Err("an upload request the IAM check does not know".into()),
            }
        } else if let Some((repository, _)) = rest.split_once("/blobs/") {
            match method {
                "GET" => (repository, &["ecr:GetDownloadUrlForLayer"]),
                "HEAD" => (repository, &["ecr:BatchCheckLayerAvailability"]),
                _ => return Err("a blob request the IAM check does not know".into()),
            }
        } else if let Some(repository) = rest.strip_suffix("/tags/list") {
            (repository, &["ecr:ListImages"])
        } else {
            return Err("a registry request the IAM check does not know".into());
        };
    let arn = repository_arn(at.account, repository, at.region);
    Ok(actions
        .iter()
        .map(|action| Authorization::new(action, &arn))
        .collect())
}

/// What a task's start costs its execution role (ECS developer guide, "Amazon ECS task
/// execution IAM role"): an ECR image is pulled with it (a token, its manifest, its layers, from
/// the image's own account), and `awslogs` writes each container's stream
/// (`<prefix>/<container>/<task id>`) with it.
fn task_launch(containers: &[Container], at: &At<'_>) -> Vec<Authorization> {
    let mut all = Vec::new();
    for container in containers {
        if let Some((account, region, repository)) = container.image.as_deref().and_then(ecr_image)
        {
            let arn = repository_arn(account, repository, region);
            all.push(Authorization::new("ecr:GetAuthorizationToken", "*"));
            all.push(Authorization::new("ecr:BatchGetImage", &arn));
            all.push(Authorization::new("ecr:GetDownloadUrlForLayer", &arn));
        }
        if let Some(logs) = &container.awslogs
            && let Some(group) = &logs.group
        {
            let region = logs.region.as_deref().unwrap_or(at.region);
            let stream = match (&logs.prefix, &container.name) {
                (Some(prefix), Some(name)) => format!("{prefix}/{name}/*"),
                _ => "*".to_owned(),
            };
            let arn = format!(
                "arn:aws:logs:{region}:{}:log-group:{group}:log-stream:{stream}",
                at.account
            );
            all.push(Authorization::new("logs:CreateLogStream", &arn));
            all.push(Authorization::new("logs:PutLogEvents", &arn));
        }
    }
    all
}

/// The account, region and repository of an ECR image reference
/// (`<account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag][@digest]`).
fn ecr_image(image: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = image.split_once('/')?;
    let mut labels = host.split('.');
    let (account, dkr, ecr, region) = (
        labels.next()?,
        labels.next()?,
        labels.next()?,
        labels.next()?,
    );
    if dkr != "dkr" || ecr != "ecr" {
        return None;
    }
    let repository = rest.split('@').next()?;
    // A tag follows the last `:` of the last path part.
    let repository = match repository.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => repository,
    };
    Some((account, region, repository))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOOLING: &str = "123456789012";

    fn call(service: &str, operation: &str, params: Value) -> Logged {
        Logged::Api {
            access_key: "k".into(),
            service: service.into(),
            operation: operation.into(),
            params,
            account: String::new(),
            region: "eu-west-1".into(),
            status: 200,
            issued_access_key: None,
        }
    }

    fn actions(request: &Logged) -> Vec<(String, String)> {
        authorizations(request, TOOLING)
            .unwrap()
            .into_iter()
            .map(|a| (a.action, a.resource))
            .collect()
    }

    fn pair(action: &str, resource: &str) -> (String, String) {
        (action.to_owned(), resource.to_owned())
    }

    #[test]
    fn a_transaction_is_authorized_per_item_as_its_action() {
        let request = call(
            "dynamodb",
            "TransactWriteItems",
            json!({"TransactItems": [
                {"Put": {"TableName": "shipgate", "Item": {}}},
                {"Update": {"TableName": "other", "Key": {}}},
                {"ConditionCheck": {"TableName": "shipgate", "Key": {}}}
            ]}),
        );
        let table = |t: &str| format!("arn:aws:dynamodb:eu-west-1:{TOOLING}:table/{t}");
        assert_eq!(
            actions(&request),
            [
                pair("dynamodb:PutItem", &table("shipgate")),
                pair("dynamodb:UpdateItem", &table("other")),
                pair("dynamodb:ConditionCheckItem", &table("shipgate")),
            ]
        );
        let query = call(
            "dynamodb",
            "Query",
            json!({"TableName": "shipgate", "IndexName": "gsi1"}),
        );
        assert_eq!(
            actions(&query),
            [pair(
                "dynamodb:Query",
                &format!("{}/index/gsi1", table("shipgate"))
            )]
        );
    }

    #[test]
    fn a_parameter_is_named_by_its_path_once_in_its_arn() {
        let read = call(
            "ssm",
            "GetParameter",
            json!({"Name": "/shipgate/applications/orders"}),
        );
        assert_eq!(
            actions(&read),
            [pair(
                "ssm:GetParameter",
                &format!("arn:aws:ssm:eu-west-1:{TOOLING}:parameter/shipgate/applications/orders")
            )]
        );
        let plain = call("ssm", "GetParameters", json!({"Names": ["a", "/b/c"]}));
        assert_eq!(
            actions(&plain),
            [
                pair(
                    "ssm:GetParameters",
                    &format!("arn:aws:ssm:eu-west-1:{TOOLING}:parameter/a")
                ),
                pair(
                    "ssm:GetParameters",
                    &format!("arn:aws:ssm:eu-west-1:{TOOLING}:parameter/b/c")
                ),
            ]
        );
    }

    #[test]
    fn an_object_read_with_a_version_is_get_object_version() {
        let query = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect::<BTreeMap<_, _>>()
        };
        let head = |q: BTreeMap<String, Vec<String>>| Logged::S3 {
            access_key: "k".into(),
            method: "HEAD".into(),
            path: "/artifacts/incoming/orders%201.zip".into(),
            query: q,
            headers: BTreeMap::new(),
            account: TOOLING.into(),
            region: "eu-west-1".into(),
            status: 200,
        };
        assert_eq!(
            actions(&head(query(&[("versionId", "v1")]))),
            [pair(
                "s3:GetObjectVersion",
                "arn:aws:s3:::artifacts/incoming/orders 1.zip"
            )]
        );
        assert_eq!(
            actions(&head(query(&[]))),
            [pair(
                "s3:GetObject",
                "arn:aws:s3:::artifacts/incoming/orders 1.zip"
            )]
        );
        // An operation the table does not know is an error naming it, never skipped.
        let error = authorizations(&head(query(&[("acl", "")])), TOOLING).unwrap_err();
        assert!(
            error.to_string().starts_with("s3 HEAD /artifacts/"),
            "{error}"
        );
    }

    #[test]
    fn a_copy_reads_its_source_version_and_writes_its_destination() {
        let copy = Logged::S3 {
            access_key: "k".into(),
            method: "PUT".into(),
            path: "/artifacts/accepted/release.zip".into(),
            query: BTreeMap::from([("x-id".into(), vec!["CopyObject".into()])]),
            headers: BTreeMap::from([(
                "x-amz-copy-source".into(),
                "artifacts/incoming/a.zip?versionId=v1".into(),
            )]),
            account: TOOLING.into(),
            region: "eu-west-1".into(),
            status: 200,
        };
        assert_eq!(
            actions(&copy),
            [
                pair(
                    "s3:PutObject",
                    "arn:aws:s3:::artifacts/accepted/release.zip"
                ),
                pair(
                    "s3:GetObjectVersion",
                    "arn:aws:s3:::artifacts/incoming/a.zip"
                ),
            ]
        );
    }

    #[test]
    fn a_change_set_passes_its_role_and_reads_its_template_url_and_transforms() {
        let request = call(
            "cloudformation",
            "CreateChangeSet",
            json!({
                "StackName": "orders-int-service",
                "ChangeSetName": "c",
                "RoleARN": "arn:aws:iam::222222222222:role/shipgate-cloudformation",
                "TemplateURL": "https://artifacts.s3.eu-west-1.amazonaws.com/templates/r/t.template",
            }),
        );
        let found = authorizations(&request, "222222222222").unwrap();
        assert_eq!(
            found
                .iter()
                .map(|a| (a.action.as_str(), a.resource.as_str()))
                .collect::<Vec<_>>(),
            [
                (
                    "cloudformation:CreateChangeSet",
                    "arn:aws:cloudformation:eu-west-1:222222222222:stack/orders-int-service/*"
                ),
                (
                    "iam:PassRole",
                    "arn:aws:iam::222222222222:role/shipgate-cloudformation"
                ),
                (
                    "s3:GetObject",
                    "arn:aws:s3:::artifacts/templates/r/t.template"
                ),
            ]
        );
        assert_eq!(
            found[1].context["iam:PassedToService"],
            ["cloudformation.amazonaws.com"]
        );
        let sam = call(
            "cloudformation",
            "CreateChangeSet",
            json!({"StackName": "s", "TemplateBody": "Transform: AWS::Serverless-2016-10-31\nResources: {}\n"}),
        );
        assert_eq!(
            actions(&sam)[1],
            pair(
                "cloudformation:CreateChangeSet",
                "arn:aws:cloudformation:eu-west-1:aws:transform/AWS::Serverless-2016-10-31"
            )
        );
    }

    #[test]
    fn task_sets_are_named_by_cluster_service_and_id() {
        let update = call(
            "ecs",
            "UpdateTaskSet",
            json!({"cluster": "arn:aws:ecs:eu-west-1:222222222222:cluster/shipgate-int",
                   "service": "orders", "taskSet": "ecs-svc/123"}),
        );
        assert_eq!(
            actions(&update),
            [pair(
                "ecs:UpdateTaskSet",
                &format!(
                    "arn:aws:ecs:eu-west-1:{TOOLING}:task-set/shipgate-int/orders/ecs-svc/123"
                )
            )]
        );
        let create = call(
            "ecs",
            "CreateTaskSet",
            json!({"cluster": "c", "service": "s"}),
        );
        assert_eq!(
            actions(&create)[0].1,
            format!("arn:aws:ecs:eu-west-1:{TOOLING}:task-set/c/s/*")
        );
        let primary = call(
            "ecs",
            "UpdateServicePrimaryTaskSet",
            json!({"cluster": "c", "service": "s", "primaryTaskSet": "t"}),
        );
        assert_eq!(
            actions(&primary)[0].1,
            format!("arn:aws:ecs:eu-west-1:{TOOLING}:service/c/s")
        );
    }

    #[test]
    fn registry_requests_are_the_ecr_actions_of_a_pull_and_a_push() {
        let at = At {
            region: "eu-west-1",
            account: "333333333333",
        };
        let arn = "arn:aws:ecr:eu-west-1:333333333333:repository/orders/web";
        for (method, path, action) in [
            (
                "HEAD",
                "/v2/orders/web/manifests/sha256:ab",
                "ecr:BatchGetImage",
            ),
            ("GET", "/v2/orders/web/manifests/1.4.0", "ecr:BatchGetImage"),
            ("PUT", "/v2/orders/web/manifests/1.4.0", "ecr:PutImage"),
            (
                "GET",
                "/v2/orders/web/blobs/sha256:ab",
                "ecr:GetDownloadUrlForLayer",
            ),
            (
                "HEAD",
                "/v2/orders/web/blobs/sha256:ab",
                "ecr:BatchCheckLayerAvailability",
            ),
            (
                "POST",
                "/v2/orders/web/blobs/uploads/",
                "ecr:InitiateLayerUpload",
            ),
            (
                "PATCH",
                "/v2/orders/web/blobs/uploads/u-1",
                "ecr:UploadLayerPart",
            ),
            (
                "PUT",
                "/v2/orders/web/blobs/uploads/u-1",
                "ecr:CompleteLayerUpload",
            ),
        ] {
            assert_eq!(
                registry_request(method, path, &at).unwrap(),
                [Authorization::new(action, arn)],
                "{method} {path}"
            );
        }
        assert!(registry_request("GET", "/v2/", &at).unwrap().is_empty());
        assert!(registry_request("DELETE", "/v2/orders/web/blobs/uploads/u-1", &at).is_err());
    }

    #[test]
    fn tasks_pull_their_image_from_its_own_account_and_write_their_logs() {
        let containers = [Container {
            name: Some("web".into()),
            image: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/orders/web@sha256:ab".into()),
            awslogs: Some(crate::recorder::AwsLogs {
                group: Some("orders-int".into()),
                region: None,
                prefix: Some("web".into()),
            }),
        }];
        let at = At {
            region: "eu-west-1",
            account: "222222222222",
        };
        let found: Vec<_> = task_launch(&containers, &at)
            .into_iter()
            .map(|a| (a.action, a.resource))
            .collect();
        let repository = "arn:aws:ecr:eu-west-1:123456789012:repository/orders/web";
        let stream =
            "arn:aws:logs:eu-west-1:222222222222:log-group:orders-int:log-stream:web/web/*";
        assert_eq!(
            found,
            [
                pair("ecr:GetAuthorizationToken", "*"),
                pair("ecr:BatchGetImage", repository),
                pair("ecr:GetDownloadUrlForLayer", repository),
                pair("logs:CreateLogStream", stream),
                pair("logs:PutLogEvents", stream),
            ]
        );
        assert_eq!(
            ecr_image("222222222222.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"),
            Some(("222222222222", "eu-west-1", "team/app"))
        );
        assert_eq!(ecr_image("docker.io/library/nginx:1"), None);
    }

    #[test]
    fn alias_operations_name_the_function_and_an_invoke_its_qualifier() {
        let base = "arn:aws:lambda:eu-west-1:222222222222:function:orders-int-notifier";
        let in_int = |operation: &str, params: Value| {
            authorizations(&call("lambda", operation, params), "222222222222")
                .unwrap()
                .into_iter()
                .map(|a| (a.action, a.resource))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            in_int(
                "UpdateAlias",
                json!({"FunctionName": format!("{base}:live"), "Name": "live"})
            ),
            [pair("lambda:UpdateAlias", base)]
        );
        assert_eq!(
            in_int(
                "Invoke",
                json!({"FunctionName": "orders-int-notifier", "Qualifier": "7"})
            ),
            [pair("lambda:InvokeFunction", &format!("{base}:7"))]
        );
        assert_eq!(
            in_int(
                "Invoke",
                json!({"FunctionName": "orders-int-notifier:live"})
            ),
            [pair("lambda:InvokeFunction", &format!("{base}:live"))]
        );
        assert_eq!(
            in_int("Invoke", json!({"FunctionName": "444444444444:function:x"})),
            [pair(
                "lambda:InvokeFunction",
                "arn:aws:lambda:eu-west-1:444444444444:function:x"
            )]
        );
    }

    #[test]
    fn an_operation_the_table_does_not_know_fails_loudly() {
        let error =
            authorizations(&call("dynamodb", "DeleteTable", json!({})), TOOLING).unwrap_err();
        assert_eq!(error.call, "dynamodb DeleteTable");
        assert!(error.why.contains("not in the table"), "{error}");
        let missing = authorizations(&call("sts", "AssumeRole", json!({})), TOOLING).unwrap_err();
        assert!(missing.why.contains("RoleArn"), "{missing}");
    }
}
