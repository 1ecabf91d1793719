//! Provisioning in moto what `template.yaml` declares, read from the template itself.
//!
//! The local stack creates the template's buckets, tables and topics with the properties the
//! template gives them, subscribes intake to the bucket's drops (through an SQS queue: moto cannot
//! invoke Lambda code), verifies the SES sender, and resolves each function's environment from
//! `Globals` and the function's own `Environment`, with CloudFormation's intrinsic functions
//! evaluated against the local resource names. Nothing about the resources is written twice.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use serde_yaml::Value;

use crate::accounts;
use crate::codepipeline::{Resolver, TemplateEvaluator};
use crate::sdk::sdk_error;

/// What provisioning created and resolved.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Logical id → physical name (what `!Ref` gives) for the template's parameters and resources.
    pub refs: BTreeMap<String, String>,
    /// The resolver the pipeline definition is read with.
    pub resolver: Resolver,
    /// Every function's environment, merged (the local functions share one process).
    pub function_env: BTreeMap<String, String>,
    /// Per function logical id, its resolved environment.
    pub env_by_function: BTreeMap<String, BTreeMap<String, String>>,
    /// The queue S3 drops are notified to, if a function subscribes to a bucket.
    pub s3_event_queue: Option<String>,
    /// Function logical id → the URL of its dead-letter queue (SAM's `DeadLetterQueue`, its own
    /// or from `Globals`), where Lambda sends its failed asynchronous invocations.
    pub dead_letter_queues: BTreeMap<String, String>,
    pub artifact_bucket: Option<String>,
    pub table: Option<String>,
    /// The template's `AWS::Lambda::Permission` resources: who else may invoke its functions.
    pub lambda_permissions: Vec<LambdaPermission>,
}

/// One statement of a function's resource-based policy, as an `AWS::Lambda::Permission` makes
/// it (<https://docs.aws.amazon.com/lambda/latest/dg/access-control-resource-based.html>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaPermission {
    /// The function's name (from its name or ARN).
    pub function: String,
    pub action: String,
    /// A service principal (`lambda.alarms.cloudwatch.amazonaws.com`) or an account.
    pub principal: String,
    /// `aws:SourceAccount` must equal it, when given.
    pub source_account: Option<String>,
    /// `aws:SourceArn` must match it (`ArnLike`: `*` and `?` wildcards), when given.
    pub source_arn: Option<String>,
}

impl LambdaPermission {
    /// Whether this statement lets `principal`, acting for `source_arn` in `source_account`,
    /// invoke `function` (a name or an ARN).
    pub fn allows_invoke(
        &self,
        principal: &str,
        function: &str,
        source_account: &str,
        source_arn: &str,
    ) -> bool {
        let name = crate::alarms::lambda_function_name(function).unwrap_or(function);
        self.function == name
            && matches!(
                self.action.as_str(),
                "lambda:InvokeFunction" | "lambda:*" | "*"
            )
            && self.principal == principal
            && self
                .source_account
                .as_deref()
                .is_none_or(|a| a == source_account)
            && self
                .source_arn
                .as_deref()
                .is_none_or(|pattern| crate::iam::arn_like(pattern, source_arn))
    }
}

impl Provisioned {
    /// Physical function name → logical id, for the template's functions (what a Lambda ARN
    /// or a `FunctionName` carries → what the local functions answer to).
    pub fn function_logical_ids(&self) -> BTreeMap<String, String> {
        self.env_by_function
            .keys()
            .filter_map(|id| Some((self.refs.get(id)?.clone(), id.clone())))
            .collect()
    }
}

/// What `Ref` gives for `template`'s parameters (the given values, else their defaults) and
/// resources (the resource's own name property when it has one, else `shipgate-<LogicalId>`),
/// in `account`, before anything is created: what the functions' environments, the pipeline
/// definitions and the IAM policies are resolved with.
pub fn resolver(
    template: &Value,
    evaluator: &TemplateEvaluator,
    account: &str,
    parameter_values: &BTreeMap<String, String>,
    registry_endpoints: &str,
) -> Result<Resolver> {
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| anyhow!("the template has no Resources"))?;
    let mut resolver = Resolver::new(BTreeMap::new(), accounts::REGION, account);
    // Parameters: given values, else defaults.
    if let Some(params) = template.get("Parameters").and_then(Value::as_mapping) {
        for (name, spec) in params {
            let Some(name) = name.as_str() else { continue };
            let value = match (name, parameter_values.get(name)) {
                ("SourceRegistryEndpoints", None) => Some(registry_endpoints.to_owned()),
                (_, Some(v)) => Some(v.clone()),
                (_, None) => spec.get("Default").and_then(scalar),
            };
            let value = value
                .ok_or_else(|| anyhow!("template parameter {name} has no value and no default"))?;
            resolver.refs.insert(name.to_owned(), value);
        }
    }
    // Physical names: the resource's own name property when it has one, else a local name.
    for (id, res) in resources {
        let (Some(id), Some(ty)) = (id.as_str(), res.get("Type").and_then(Value::as_str)) else {
            continue;
        };
        let name_of = |key: &str| -> Result<Option<String>> {
            match res.get("Properties").and_then(|p| p.get(key)) {
                Some(v) => Ok(evaluator.string(
                    &resolver,
                    v,
                    &format!("Resources.{id}.Properties.{key}"),
                )?),
                None => Ok(None),
            }
        };
        let name = match ty {
            "AWS::S3::Bucket" => name_of("BucketName")?,
            "AWS::DynamoDB::Table" => name_of("TableName")?,
            "AWS::SNS::Topic" => {
                let topic = name_of("TopicName")?.unwrap_or_else(|| format!("shipgate-{id}"));
                Some(format!(
                    "arn:aws:sns:{}:{account}:{topic}",
                    accounts::REGION
                ))
            }
            "AWS::CodePipeline::Pipeline" => name_of("Name")?,
            "AWS::IAM::Role" => name_of("RoleName")?,
            "AWS::Lambda::Function" | "AWS::Serverless::Function" => name_of("FunctionName")?,
            "AWS::SQS::Queue" => name_of("QueueName")?,
            // `Ref` of a parameter is its name.
            "AWS::SSM::Parameter" => name_of("Name")?,
            _ => None,
        };
        resolver.refs.insert(
            id.to_owned(),
            name.unwrap_or_else(|| format!("shipgate-{id}")),
        );
    }

    Ok(resolver)
}

/// An `AWS::SSM::Parameter` (an application's declaration): its value with the template's
/// intrinsics evaluated, as CloudFormation writes it.
async fn put_parameter(
    sdk: &SdkConfig,
    evaluator: &TemplateEvaluator,
    resolver: &Resolver,
    id: &str,
    name: &str,
    props: &Value,
) -> Result<()> {
    let property = |key: &str| -> Result<Option<String>> {
        match props.get(key) {
            Some(v) => {
                Ok(evaluator.string(resolver, v, &format!("Resources.{id}.Properties.{key}"))?)
            }
            None => Ok(None),
        }
    };
    let value = property("Value")?.ok_or_else(|| anyhow!("parameter {id} has no Value"))?;
    let kind = property("Type")?.unwrap_or_else(|| "String".to_owned());
    let mut request = aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::from(kind.as_str()))
        .overwrite(true);
    if let Some(tier) = property("Tier")? {
        request = request.tier(aws_sdk_ssm::types::ParameterTier::from(tier.as_str()));
    }
    if let Some(description) = property("Description")? {
        request = request.description(description);
    }
    request.send().await.map_err(sdk_error)?;
    Ok(())
}

/// Creates the template's resources in moto and resolves the functions' environments.
pub async fn provision(
    sdk: &SdkConfig,
    template_text: &str,
    parameter_values: &BTreeMap<String, String>,
    registry_endpoints: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<Provisioned> {
    let template: Value =
        serde_yaml::from_str(template_text).context("template.yaml is not YAML")?;
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| anyhow!("the template has no Resources"))?;

    let evaluator = TemplateEvaluator::new(template_text).context("reading the template")?;
    let mut resolver = resolver(
        &template,
        &evaluator,
        accounts::TOOLING,
        parameter_values,
        registry_endpoints,
    )?;
    // What only the running stack knows (function URLs).
    resolver.attributes.extend(attributes.clone());

    let s3 = shipgate::aws::s3_client(sdk, true);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // Queue ARN → URL, to find a dead-letter queue from its `TargetArn`.
    let mut queue_urls = BTreeMap::new();
    let mut artifact_bucket = None;
    let mut table = None;
    for (id, res) in resources {
        let (Some(id), Some(ty)) = (id.as_str(), res.get("Type").and_then(Value::as_str)) else {
            continue;
        };
        let props = res.get("Properties").cloned().unwrap_or(Value::Null);
        let name = resolver.refs.get(id).cloned().unwrap_or_default();
        match ty {
            "AWS::S3::Bucket" => {
                create_bucket(&s3, &name, &props)
                    .await
                    .with_context(|| format!("creating bucket {id}"))?;
                artifact_bucket.get_or_insert(name);
            }
            "AWS::DynamoDB::Table" => {
                create_table(&ddb, &name, &props)
                    .await
                    .with_context(|| format!("creating table {id}"))?;
                table.get_or_insert(name);
            }
            "AWS::SNS::Topic" => {
                let topic = name.rsplit(':').next().unwrap_or(&name).to_owned();
                sns.create_topic()
                    .name(topic)
                    .send()
                    .await
                    .map_err(sdk_error)
                    .with_context(|| format!("creating topic {id}"))?;
            }
            "AWS::SQS::Queue" => {
                let url = create_queue(&sqs, &name, &props)
                    .await
                    .with_context(|| format!("creating queue {id}"))?;
                let arn = format!(
                    "arn:aws:sqs:{}:{}:{name}",
                    accounts::REGION,
                    accounts::TOOLING
                );
                // `Ref` of a queue is its URL; `GetAtt` gives its ARN and name.
                resolver.refs.insert(id.to_owned(), url.clone());
                resolver.attributes.insert(format!("{id}.Arn"), arn.clone());
                resolver.attributes.insert(format!("{id}.QueueName"), name);
                resolver
                    .attributes
                    .insert(format!("{id}.QueueUrl"), url.clone());
                queue_urls.insert(arn, url);
            }
            "AWS::SSM::Parameter" => {
                put_parameter(sdk, &evaluator, &resolver, id, &name, &props)
                    .await
                    .with_context(|| format!("creating parameter {id}"))?;
            }
            "AWS::SecretsManager::Secret" => {
                // `Ref` of a secret is its ARN, which only the service knows.
                let arn = create_secret(sdk, &name, &props)
                    .await
                    .with_context(|| format!("creating secret {id}"))?;
                resolver.refs.insert(id.to_owned(), arn);
            }
            _ => {}
        }
    }

    // Functions: environments, and S3 subscriptions (delivered through one SQS queue).
    let globals = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .cloned();
    let global_dead_letter = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("DeadLetterQueue"));
    let mut env_by_function = BTreeMap::new();
    let mut dead_letter_queues = BTreeMap::new();
    let mut s3_event_queue = None;
    for (id, res) in resources {
        let (Some(id), Some("AWS::Serverless::Function")) =
            (id.as_str(), res.get("Type").and_then(Value::as_str))
        else {
            continue;
        };
        let mut env = BTreeMap::new();
        let own = res
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"));
        for vars in [globals.as_ref(), own].into_iter().flatten() {
            if let Some(map) = vars.as_mapping() {
                for (k, v) in map {
                    let Some(k) = k.as_str() else { continue };
                    let path = format!("Resources.{id}.Environment.Variables.{k}");
                    if let Some(v) = evaluator.string(&resolver, v, &path)? {
                        env.insert(k.to_owned(), v);
                    }
                }
            }
        }
        let dead_letter = res
            .get("Properties")
            .and_then(|p| p.get("DeadLetterQueue"))
            .or(global_dead_letter);
        if let Some(dead_letter) = dead_letter {
            let path = format!("Resources.{id}.DeadLetterQueue");
            let kind = dead_letter.get("Type").and_then(Value::as_str);
            let target = dead_letter
                .get("TargetArn")
                .map(|t| evaluator.string(&resolver, t, &path))
                .transpose()?
                .flatten();
            match (kind, target) {
                (Some("SQS"), Some(arn)) => {
                    let url = queue_urls.get(&arn).ok_or_else(|| {
                        anyhow!(
                            "{path}: {arn} is not a queue of this template (the local stack \
                             provisions only the template's own)"
                        )
                    })?;
                    dead_letter_queues.insert(id.to_owned(), url.clone());
                }
                // An SNS topic as dead-letter target is not modelled: say so, drop nothing silently.
                (kind, target) => tracing::warn!(
                    function = id,
                    ?kind,
                    ?target,
                    "dead-letter target not modelled locally (SQS only); failed events are logged"
                ),
            }
        }
        // S3 on a bare host:port needs path-style addressing (a setting, as for any S3-compatible endpoint).
        env.insert("SHIPGATE_S3_FORCE_PATH_STYLE".into(), "true".into());
        let events = res
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping);
        for (_, event) in events.into_iter().flatten() {
            if event.get("Type").and_then(Value::as_str) != Some("S3") {
                continue;
            }
            let props = event.get("Properties").cloned().unwrap_or(Value::Null);
            let bucket = props
                .get("Bucket")
                .map(|b| evaluator.string(&resolver, b, &format!("Resources.{id}.Events.Bucket")))
                .transpose()?
                .flatten()
                .ok_or_else(|| anyhow!("function {id}: S3 event names no bucket"))?;
            let queue = subscribe_bucket(sdk, &bucket, &props)
                .await
                .with_context(|| format!("subscribing {id} to s3://{bucket}"))?;
            s3_event_queue = Some(queue);
        }
        env_by_function.insert(id.to_owned(), env);
    }

    if let Some(from) = resolver.refs.get("MailFrom") {
        aws_sdk_sesv2::Client::new(sdk)
            .create_email_identity()
            .email_identity(from)
            .send()
            .await
            .map_err(sdk_error)
            .context("verifying the SES sender")?;
    }

    let lambda_permissions = lambda_permissions(resources, &evaluator, &mut resolver)?;
    let function_env = env_by_function.values().flat_map(|e| e.clone()).collect();
    Ok(Provisioned {
        refs: resolver.refs.clone(),
        resolver,
        function_env,
        env_by_function,
        s3_event_queue,
        dead_letter_queues,
        artifact_bucket,
        table,
        lambda_permissions,
    })
}

/// The template's `AWS::Lambda::Permission` resources, resolved (a function's `Fn::GetAtt
/// <Function>.Arn` is its local ARN).
fn lambda_permissions(
    resources: &serde_yaml::Mapping,
    evaluator: &TemplateEvaluator,
    resolver: &mut Resolver,
) -> Result<Vec<LambdaPermission>> {
    for (id, res) in resources {
        if let (Some(id), Some("AWS::Serverless::Function")) =
            (id.as_str(), res.get("Type").and_then(Value::as_str))
            && let Some(name) = resolver.refs.get(id).cloned()
        {
            let arn = format!(
                "arn:aws:lambda:{}:{}:function:{name}",
                accounts::REGION,
                accounts::TOOLING
            );
            resolver.attributes.insert(format!("{id}.Arn"), arn);
        }
    }
    let mut permissions = Vec::new();
    for (id, res) in resources {
        let (Some(id), Some("AWS::Lambda::Permission")) =
            (id.as_str(), res.get("Type").and_then(Value::as_str))
        else {
            continue;
        };
        let property = |key: &str| -> Result<Option<String>> {
            res.get("Properties")
                .and_then(|p| p.get(key))
                .map(|v| evaluator.string(resolver, v, &format!("Resources.{id}.Properties.{key}")))
                .transpose()
                .map(Option::flatten)
                .map_err(Into::into)
        };
        let required = |key: &str| -> Result<String> {
            property(key)?.ok_or_else(|| anyhow!("Resources.{id}: no {key}"))
        };
        let function = required("FunctionName")?;
        permissions.push(LambdaPermission {
            function: crate::alarms::lambda_function_name(&function)
                .unwrap_or(&function)
                .to_owned(),
            action: required("Action")?,
            principal: required("Principal")?,
            source_account: property("SourceAccount")?,
            source_arn: property("SourceArn")?,
        });
    }
    Ok(permissions)
}

/// A secret with the template's `SecretString`, or a value generated the way
/// `GenerateSecretString` describes it (length, punctuation excluded or not).
async fn create_secret(sdk: &SdkConfig, name: &str, props: &Value) -> Result<String> {
    let value = match props.get("SecretString").and_then(Value::as_str) {
        Some(value) => value.to_owned(),
        None => {
            let generate = props.get("GenerateSecretString");
            let length = generate
                .and_then(|g| g.get("PasswordLength"))
                .and_then(Value::as_u64)
                .unwrap_or(32) as usize;
            let no_punctuation = generate
                .and_then(|g| g.get("ExcludePunctuation"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            generate_secret(length, no_punctuation)
        }
    };
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map_err(sdk_error)?;
    out.arn()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("CreateSecret returned no ARN"))
}

fn generate_secret(length: usize, no_punctuation: bool) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const PUNCT: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_{|}~";
    let alphabet: Vec<u8> = if no_punctuation {
        ALNUM.to_vec()
    } else {
        [ALNUM, PUNCT].concat()
    };
    let mut out = String::with_capacity(length);
    while out.len() < length {
        // Bytes 6 and 8 of a v4 UUID carry the version and variant bits: not random.
        let bytes = uuid::Uuid::new_v4().into_bytes();
        for (_, &byte) in bytes.iter().enumerate().filter(|(i, _)| *i != 6 && *i != 8) {
            if out.len() < length && (byte as usize) < 256 - 256 % alphabet.len() {
                out.push(alphabet[byte as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// The items of a template list; none when it is absent.
fn items(list: Option<&Value>) -> impl Iterator<Item = &Value> {
    list.and_then(Value::as_sequence).into_iter().flatten()
}

/// A text property of a template mapping, or `default` when it is absent.
fn text_or<'a>(mapping: &'a Value, key: &str, default: &'a str) -> &'a str {
    mapping.get(key).and_then(Value::as_str).unwrap_or(default)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `CreateBucket` in the local stack's region (outside us-east-1 the location constraint is
/// required).
pub async fn create_regional_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<()> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    s3.create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(accounts::REGION))
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("creating bucket {name}"))?;
    Ok(())
}

async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, props: &Value) -> Result<()> {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    create_regional_bucket(s3, name).await?;
    let versioned = props
        .get("VersioningConfiguration")
        .and_then(|v| v.get("Status"))
        .and_then(Value::as_str)
        == Some("Enabled");
    if versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error)?;
    }
    Ok(())
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str, props: &Value) -> Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let keys = |v: Option<&Value>| -> Result<Vec<KeySchemaElement>> {
        v.and_then(Value::as_sequence)
            .ok_or_else(|| anyhow!("KeySchema missing"))?
            .iter()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(text_or(k, "AttributeName", ""))
                    .key_type(KeyType::from(text_or(k, "KeyType", "HASH")))
                    .build()?)
            })
            .collect()
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in items(props.get("AttributeDefinitions")) {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text_or(a, "AttributeName", ""))
                .attribute_type(ScalarAttributeType::from(text_or(a, "AttributeType", "S")))
                .build()?,
        );
    }
    req = req.set_key_schema(Some(keys(props.get("KeySchema"))?));
    for g in items(props.get("GlobalSecondaryIndexes")) {
        let projection = g
            .get("Projection")
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text_or(g, "IndexName", ""))
                .set_key_schema(Some(keys(g.get("KeySchema"))?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .build(),
                )
                .build()?,
        );
    }
    req.send().await.map_err(sdk_error)?;
    Ok(())
}

/// A standard queue with the template's attributes that SQS names as its properties; returns its URL.
async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, props: &Value) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut request = sqs.create_queue().queue_name(name);
    for attribute in [
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "SqsManagedSseEnabled",
    ] {
        if let Some(value) = props.get(attribute).and_then(scalar) {
            request = request.attributes(QueueAttributeName::from(attribute), value);
        }
    }
    let out = request.send().await.map_err(sdk_error)?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("CreateQueue returned no URL"))
}

/// Bucket notifications for `s3:ObjectCreated:*` under the event's prefix, to a queue.
async fn subscribe_bucket(sdk: &SdkConfig, bucket: &str, props: &Value) -> Result<String> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = sqs
        .create_queue()
        .queue_name(format!("shipgate-local-{bucket}-events"))
        .send()
        .await
        .map_err(sdk_error)?;
    let url = queue
        .queue_url()
        .ok_or_else(|| anyhow!("no queue url"))?
        .to_owned();
    let arn = format!(
        "arn:aws:sqs:{}:{}:shipgate-local-{bucket}-events",
        accounts::REGION,
        accounts::TOOLING
    );
    let events: Vec<Event> = match props.get("Events") {
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(Value::as_str)
            .map(Event::from)
            .collect(),
        Some(Value::String(s)) => vec![Event::from(s.as_str())],
        _ => vec![Event::from("s3:ObjectCreated:*")],
    };
    let mut rules = Vec::new();
    let rule_list = props
        .get("Filter")
        .and_then(|f| f.get("S3Key"))
        .and_then(|k| k.get("Rules"))
        .and_then(Value::as_sequence);
    for r in rule_list.into_iter().flatten() {
        let name = text_or(r, "Name", "prefix");
        rules.push(
            FilterRule::builder()
                .name(FilterRuleName::from(name))
                .value(text_or(r, "Value", ""))
                .build(),
        );
    }
    let mut qc = QueueConfiguration::builder()
        .queue_arn(arn)
        .set_events(Some(events));
    if !rules.is_empty() {
        qc = qc.filter(
            NotificationConfigurationFilter::builder()
                .key(S3KeyFilter::builder().set_filter_rules(Some(rules)).build())
                .build(),
        );
    }
    let s3 = shipgate::aws::s3_client(sdk, true);
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(qc.build()?)
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmRoutes;

    #[test]
    fn the_templates_alarm_actions_may_invoke_rollback_from_each_environment_only() {
        let text = include_str!("../../template.yaml");
        let template: Value = serde_yaml::from_str(text).expect("template.yaml is YAML");
        let resources = template["Resources"].as_mapping().expect("Resources");
        let evaluator = TemplateEvaluator::new(text).expect("the template reads");
        let mut resolver = Resolver::new(BTreeMap::new(), accounts::REGION, accounts::TOOLING);
        for (name, account) in [
            ("IntDeployRoleArn", accounts::INT),
            ("StgDeployRoleArn", accounts::STG),
            ("ProdDeployRoleArn", accounts::PROD),
        ] {
            resolver
                .refs
                .insert(name.into(), accounts::deploy_role_arn(account));
        }
        resolver
            .refs
            .insert("RollbackFunction".into(), "shipgate-rollback".into());
        let routes = AlarmRoutes {
            subscribers: vec![],
            permissions: lambda_permissions(resources, &evaluator, &mut resolver)
                .expect("permissions resolve"),
        };
        let alarm = |account: &str| format!("arn:aws:cloudwatch:eu-west-1:{account}:alarm:web-5xx");
        for account in [accounts::INT, accounts::STG, accounts::PROD] {
            assert!(
                routes.may_invoke("shipgate-rollback", account, &alarm(account)),
                "{account}: {:?}",
                routes.permissions
            );
            // An alarm ARN of another account, claimed from this one, is not enough.
            assert!(!routes.may_invoke("shipgate-rollback", account, &alarm("999999999999")));
        }
        assert!(!routes.may_invoke("shipgate-rollback", "999999999999", &alarm("999999999999")));
        assert!(!routes.may_invoke("shipgate-intake", accounts::INT, &alarm(accounts::INT)));
    }
}
