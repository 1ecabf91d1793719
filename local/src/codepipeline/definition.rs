//! Pipeline definitions read from the SAM/CloudFormation template, never from a second copy.
//!
//! [`pipelines_from_template`] finds every `AWS::CodePipeline::Pipeline` resource and evaluates
//! the CloudFormation intrinsics in the parts of it the stand-in uses (`Ref`, `Fn::Sub`,
//! `Fn::GetAtt`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::ImportValue`,
//! `Fn::If` with the template's `Conditions`), in short form (`!Ref`) or long form (`Ref:`). An
//! item of a list (a stage of `Stages`) that evaluates to `AWS::NoValue` is left out, as
//! CloudFormation leaves it out. Physical values come from a caller-supplied [`Resolver`]: the
//! local stack knows what it created in moto, so it says what `!Ref ArtifactBucket` is, and what
//! the core stack exports to an application stack (application.yaml). A reference the resolver
//! cannot answer is an error naming the property, never a guess, except where the stand-in
//! dispatches by logical id (a Lambda action's `FunctionName`, an approval's `NotificationArn`),
//! which keep that id: the referenced resource's, or for an import of the core's export
//! `<core stack>-<LogicalId>`, the core's logical id.
//!
//! [`sns_subscribers`] answers "which functions receive what is published on this topic", from
//! SAM `Events` of `Type: SNS`, `AWS::SNS::Subscription` resources and inline topic
//! subscriptions.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

/// Why a template could not be turned into pipeline definitions.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("the template has no Resources mapping")]
    NoResources,
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "{path}: Ref {target} is neither a supplied reference, a pseudo parameter nor a parameter with a default"
    )]
    UnresolvedRef { path: String, target: String },
    #[error("{path}: Fn::GetAtt {target}.{attribute} was not supplied and cannot be synthesised")]
    UnresolvedAttribute {
        path: String,
        target: String,
        attribute: String,
    },
    #[error("{path}: Fn::ImportValue {name} names no supplied export")]
    UnresolvedImport { path: String, name: String },
    #[error("{path}: {function} is not supported by the local pipeline definition reader")]
    UnsupportedIntrinsic { path: String, function: String },
}

impl DefinitionError {
    fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Physical values for the template's references, as the deployed stack (or the local stack)
/// would give them.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// `Ref` answers by logical id: parameters and resources (`ArtifactBucket` → bucket name).
    pub refs: BTreeMap<String, String>,
    /// `Fn::GetAtt` answers keyed `LogicalId.Attribute`; `Arn` is synthesised when absent.
    pub attributes: BTreeMap<String, String>,
    /// `Fn::ImportValue` answers by export name: what other stacks of the account and region
    /// export (`shipgate-ArtifactBucket` → the core's bucket name).
    pub exports: BTreeMap<String, String>,
    pub region: String,
    pub account_id: String,
    pub stack_name: String,
}

impl Resolver {
    /// `refs` answers `Ref`s by logical id; it may also override pseudo parameters
    /// (`AWS::StackName`).
    pub fn new(
        refs: BTreeMap<String, String>,
        region: impl Into<String>,
        account_id: impl Into<String>,
    ) -> Self {
        Self {
            refs,
            region: region.into(),
            account_id: account_id.into(),
            stack_name: "shipgate".to_owned(),
            ..Self::default()
        }
    }

    pub fn with_ref(mut self, logical_id: impl Into<String>, value: impl Into<String>) -> Self {
        self.refs.insert(logical_id.into(), value.into());
        self
    }

    /// `key` is `LogicalId.Attribute`, as written in `!GetAtt LogicalId.Attribute`.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// `name` is the export's name, as `Fn::ImportValue` gives it (`shipgate-ChangeSetFunction`).
    pub fn with_export(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.exports.insert(name.into(), value.into());
        self
    }

    pub fn with_stack_name(mut self, stack_name: impl Into<String>) -> Self {
        self.stack_name = stack_name.into();
        self
    }
}

/// How a V2 pipeline handles several executions at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMode {
    Queued,
    Superseded,
    Parallel,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Superseded => "SUPERSEDED",
            Self::Parallel => "PARALLEL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineType {
    V1,
    V2,
}

impl PipelineType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "V1",
            Self::V2 => "V2",
        }
    }
}

/// One `AWS::CodePipeline::Pipeline` of the template, with its references resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineDefinition {
    pub logical_id: String,
    pub name: String,
    pub pipeline_type: PipelineType,
    pub execution_mode: ExecutionMode,
    pub role_arn: Option<String>,
    /// The artifact store bucket (`ArtifactStore.Location`, or the entry of `ArtifactStores`
    /// for the resolver's region).
    pub artifact_bucket: String,
    pub variables: Vec<VariableDeclaration>,
    pub stages: Vec<StageDefinition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariableDeclaration {
    pub name: String,
    pub default_value: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageDefinition {
    pub name: String,
    pub actions: Vec<ActionDefinition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionDefinition {
    pub name: String,
    pub action_type: ActionTypeId,
    /// Actions of a stage with the same run order run together; the next run order starts
    /// when all of them succeeded.
    pub run_order: u32,
    /// Resolved to strings as CloudFormation passes them to CodePipeline. Pipeline variables
    /// (`#{variables.X}`, `#{Namespace.X}`) are still unresolved here: that happens per run.
    pub configuration: BTreeMap<String, String>,
    pub input_artifacts: Vec<String>,
    pub output_artifacts: Vec<String>,
    pub namespace: Option<String>,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub timeout_in_minutes: Option<u32>,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTypeId {
    pub category: String,
    pub owner: String,
    pub provider: String,
    pub version: String,
}

/// What the stand-in does when it runs an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// `Source / AWS / S3`: copy an object version into the artifact store.
    S3Source {
        bucket: String,
        object_key: String,
        allow_object_key_override: bool,
    },
    /// `Invoke / AWS / Lambda`: deliver a `CodePipeline.job` event to this function.
    LambdaInvoke { function_logical_id: String },
    /// `Approval / AWS / Manual`: publish the approval notification to this topic's subscribers.
    ManualApproval {
        notification_topic_logical_id: Option<String>,
        custom_data: Option<String>,
        external_entity_link: Option<String>,
    },
    /// Any other provider: declared (and returned by `GetPipeline`), but fails when run.
    Unsupported,
}

/// Every `AWS::CodePipeline::Pipeline` in the template, ordered by logical id.
pub fn pipelines_from_template(
    template_yaml: &str,
    resolver: &Resolver,
) -> Result<Vec<PipelineDefinition>, DefinitionError> {
    let template = Template::parse(template_yaml)?;
    let ctx = Context {
        template: &template,
        resolver,
    };
    template
        .resources_of_type("AWS::CodePipeline::Pipeline")
        .map(|(logical_id, resource)| ctx.pipeline(logical_id, resource))
        .collect()
}

/// Evaluates CloudFormation intrinsics in values of one template, its `Conditions` included:
/// what the local stack resolves resource names and function environments with, so the
/// template is read by one evaluator only.
pub struct TemplateEvaluator {
    template: Template,
}

impl TemplateEvaluator {
    pub fn new(template_yaml: &str) -> Result<Self, DefinitionError> {
        Ok(Self {
            template: Template::parse(template_yaml)?,
        })
    }

    /// `value` (a YAML node of the template) as a string; `Ok(None)` when it evaluates to
    /// `AWS::NoValue` or to something that is not a scalar. `path` names it in errors.
    pub fn string(
        &self,
        resolver: &Resolver,
        value: &serde_yaml::Value,
        path: &str,
    ) -> Result<Option<String>, DefinitionError> {
        Ok(self
            .value(resolver, value, path)?
            .as_ref()
            .and_then(scalar_string))
    }

    /// `value` with every intrinsic in it evaluated, as JSON (a policy document, a list of
    /// ARNs); `Ok(None)` when it evaluates to `AWS::NoValue`.
    pub fn value(
        &self,
        resolver: &Resolver,
        value: &serde_yaml::Value,
        path: &str,
    ) -> Result<Option<Json>, DefinitionError> {
        let ctx = Context {
            template: &self.template,
            resolver,
        };
        ctx.eval(&yaml_to_json(value.clone()), path)
    }
}

/// Topic logical id → logical ids of the functions subscribed to it, in template order of
/// their logical ids.
pub fn sns_subscribers(
    template_yaml: &str,
) -> Result<BTreeMap<String, Vec<String>>, DefinitionError> {
    let template = Template::parse(template_yaml)?;
    let mut subscribers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |topic: String, function: String| {
        let list = subscribers.entry(topic).or_default();
        if !list.contains(&function) {
            list.push(function);
        }
    };
    for (function, resource) in template.resources_of_type("AWS::Serverless::Function") {
        let events = resource
            .pointer("/Properties/Events")
            .and_then(Json::as_object);
        for event in events.into_iter().flat_map(|events| events.values()) {
            if event.get("Type").and_then(Json::as_str) != Some("SNS") {
                continue;
            }
            if let Some(topic) = event.pointer("/Properties/Topic").and_then(referenced_id) {
                add(topic, function.to_owned());
            }
        }
    }
    for (_, resource) in template.resources_of_type("AWS::SNS::Subscription") {
        let props = resource.get("Properties");
        let lambda = props.and_then(|p| p.get("Protocol")).and_then(Json::as_str) == Some("lambda");
        let topic = props
            .and_then(|p| p.get("TopicArn"))
            .and_then(referenced_id);
        let function = props
            .and_then(|p| p.get("Endpoint"))
            .and_then(referenced_id);
        if let (true, Some(topic), Some(function)) = (lambda, topic, function) {
            add(topic, function);
        }
    }
    for (topic, resource) in template.resources_of_type("AWS::SNS::Topic") {
        let inline = resource
            .pointer("/Properties/Subscription")
            .and_then(Json::as_array);
        for subscription in inline.into_iter().flatten() {
            if subscription.get("Protocol").and_then(Json::as_str) != Some("lambda") {
                continue;
            }
            if let Some(function) = subscription.get("Endpoint").and_then(referenced_id) {
                add(topic.to_owned(), function);
            }
        }
    }
    Ok(subscribers)
}

/// The logical id behind `!Ref X`, `!GetAtt X.Arn` or `!Sub ${X}` / `${X.Arn}`.
fn referenced_id(value: &Json) -> Option<String> {
    let (function, argument) = single_key(value)?;
    match function {
        "Ref" => argument.as_str().map(str::to_owned),
        "Fn::GetAtt" => argument
            .as_array()
            .and_then(|parts| parts.first())
            .and_then(Json::as_str)
            .map(str::to_owned),
        "Fn::Sub" => {
            let text = argument.as_str()?;
            let inner = text.strip_prefix("${")?.strip_suffix('}')?;
            let id = inner.split('.').next()?;
            (!id.is_empty() && !id.contains("${")).then(|| id.to_owned())
        }
        _ => None,
    }
}

/// The export name expression of the first `Fn::ImportValue` in `value`, however deep.
fn imported_export(value: &Json) -> Option<&Json> {
    match value {
        Json::Object(object) => object
            .get("Fn::ImportValue")
            .or_else(|| object.values().find_map(imported_export)),
        Json::Array(items) => items.iter().find_map(imported_export),
        _ => None,
    }
}

/// The exporting stack's logical id in an export named `<stack name>-<LogicalId>` (template.yaml's
/// Outputs): logical ids are alphanumeric, so it is what follows the last hyphen.
fn exported_logical_id(export: &str) -> &str {
    export.rsplit('-').next().unwrap_or(export)
}

fn single_key(value: &Json) -> Option<(&str, &Json)> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// The template as JSON, short-form tags rewritten to their long form.
struct Template {
    root: Json,
}

impl Template {
    fn parse(text: &str) -> Result<Self, DefinitionError> {
        let yaml: Yaml = serde_yaml::from_str(text)?;
        let root = yaml_to_json(yaml);
        if !root.get("Resources").is_some_and(Json::is_object) {
            return Err(DefinitionError::NoResources);
        }
        Ok(Self { root })
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.root
            .get("Resources")
            .and_then(Json::as_object)
            .into_iter()
            .flat_map(|r| r.iter().map(|(k, v)| (k.as_str(), v)))
    }

    fn resources_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Json)> {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Json::as_str) == Some(kind))
    }

    fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.root
            .pointer(&format!("/Resources/{}", escape_pointer(logical_id)))
            .and_then(|r| r.get("Type"))
            .and_then(Json::as_str)
    }

    fn section(&self, name: &str) -> Option<&Map<String, Json>> {
        self.root.get(name).and_then(Json::as_object)
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// YAML → JSON, `!Ref X` → `{"Ref": X}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`,
/// `!Sub …` → `{"Fn::Sub": …}` and so on for every other `!Tag`.
fn yaml_to_json(value: Yaml) -> Json {
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(s) => Json::String(s),
        Yaml::Sequence(items) => Json::Array(items.into_iter().map(yaml_to_json).collect()),
        Yaml::Mapping(mapping) => Json::Object(
            mapping
                .into_iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            let (function, argument) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                "GetAtt" => {
                    let argument = match inner {
                        Json::String(s) => match s.split_once('.') {
                            Some((id, attribute)) => Json::Array(vec![id.into(), attribute.into()]),
                            None => Json::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), argument)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut object = Map::new();
            object.insert(function, argument);
            Json::Object(object)
        }
    }
}

fn yaml_key(key: Yaml) -> String {
    match key {
        Yaml::String(s) => s,
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => "null".to_owned(),
        other => serde_yaml::to_string(&other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// Evaluates intrinsics against the template and the resolver.
struct Context<'a> {
    template: &'a Template,
    resolver: &'a Resolver,
}

impl Context<'_> {
    fn pipeline(
        &self,
        logical_id: &str,
        resource: &Json,
    ) -> Result<PipelineDefinition, DefinitionError> {
        let base = format!("Resources.{logical_id}.Properties");
        let props = resource
            .get("Properties")
            .and_then(Json::as_object)
            .ok_or_else(|| DefinitionError::invalid(&base, "a pipeline needs Properties"))?;
        let name = match props.get("Name") {
            Some(v) => self.string(v, &format!("{base}.Name"))?,
            // CloudFormation generates a name; `Ref` of the pipeline returns it.
            None => self
                .resolver
                .refs
                .get(logical_id)
                .cloned()
                .unwrap_or_else(|| logical_id.to_owned()),
        };
        let pipeline_type = match self
            .optional_string(props.get("PipelineType"), &format!("{base}.PipelineType"))?
        {
            None => PipelineType::V1,
            Some(t) => match t.as_str() {
                "V1" => PipelineType::V1,
                "V2" => PipelineType::V2,
                other => {
                    return Err(DefinitionError::invalid(
                        &format!("{base}.PipelineType"),
                        format!("unknown pipeline type {other}"),
                    ));
                }
            },
        };
        let mode_path = format!("{base}.ExecutionMode");
        let execution_mode = match self.optional_string(props.get("ExecutionMode"), &mode_path)? {
            None => ExecutionMode::Superseded,
            Some(m) => match m.as_str() {
                "SUPERSEDED" => ExecutionMode::Superseded,
                "QUEUED" => ExecutionMode::Queued,
                "PARALLEL" => ExecutionMode::Parallel,
                other => {
                    return Err(DefinitionError::invalid(
                        &mode_path,
                        format!("unknown execution mode {other}"),
                    ));
                }
            },
        };
        if execution_mode != ExecutionMode::Superseded && pipeline_type != PipelineType::V2 {
            return Err(DefinitionError::invalid(
                &mode_path,
                format!("{} requires PipelineType V2", execution_mode.as_str()),
            ));
        }
        let role_arn = self.optional_string(props.get("RoleArn"), &format!("{base}.RoleArn"))?;
        let artifact_bucket = self.artifact_bucket(props, &base)?;
        let variables = self.variables(props.get("Variables"), &format!("{base}.Variables"))?;
        let stages_path = format!("{base}.Stages");
        let stages = match props
            .get("Stages")
            .map(|v| self.eval(v, &stages_path))
            .transpose()?
            .flatten()
        {
            Some(Json::Array(stages)) if !stages.is_empty() => stages,
            _ => {
                return Err(DefinitionError::invalid(
                    &stages_path,
                    "a pipeline needs a list of Stages",
                ));
            }
        };
        let stages = self.each(&stages, &stages_path, Self::stage)?;
        if let Some(name) = first_repeated(stages.iter().map(|s| s.name.as_str())) {
            return Err(DefinitionError::invalid(
                &stages_path,
                format!("stage name {name} is used twice"),
            ));
        }
        Ok(PipelineDefinition {
            logical_id: logical_id.to_owned(),
            name,
            pipeline_type,
            execution_mode,
            role_arn,
            artifact_bucket,
            variables,
            stages,
        })
    }

    /// Reads each item of a list with `read`, naming it `path[i]` in errors.
    fn each<T>(
        &self,
        items: &[Json],
        path: &str,
        read: fn(&Self, &Json, &str) -> Result<T, DefinitionError>,
    ) -> Result<Vec<T>, DefinitionError> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| read(self, item, &format!("{path}[{i}]")))
            .collect()
    }

    fn artifact_bucket(
        &self,
        props: &Map<String, Json>,
        base: &str,
    ) -> Result<String, DefinitionError> {
        if let Some(store) = props.get("ArtifactStore") {
            let path = format!("{base}.ArtifactStore");
            let store = self.eval(store, &path)?.unwrap_or(Json::Null);
            return plain_string(store.get("Location"), &format!("{path}.Location"));
        }
        let path = format!("{base}.ArtifactStores");
        let stores = props
            .get("ArtifactStores")
            .map(|v| self.eval(v, &path))
            .transpose()?
            .flatten()
            .unwrap_or(Json::Null);
        let regional = stores
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| {
                entry.get("Region").and_then(Json::as_str) == Some(self.resolver.region.as_str())
            })
            .ok_or_else(|| {
                DefinitionError::invalid(
                    base,
                    format!(
                        "no ArtifactStore (nor ArtifactStores entry for {})",
                        self.resolver.region
                    ),
                )
            })?;
        plain_string(
            regional.pointer("/ArtifactStore/Location"),
            &format!("{path}.ArtifactStore.Location"),
        )
    }

    fn variables(
        &self,
        value: Option<&Json>,
        path: &str,
    ) -> Result<Vec<VariableDeclaration>, DefinitionError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let Some(Json::Array(items)) = self.eval(value, path)? else {
            return Err(DefinitionError::invalid(path, "Variables must be a list"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = format!("{path}[{i}]");
                Ok(VariableDeclaration {
                    name: plain_string(item.get("Name"), &format!("{item_path}.Name"))?,
                    default_value: optional_plain_string(item.get("DefaultValue")),
                    description: optional_plain_string(item.get("Description")),
                })
            })
            .collect()
    }

    fn stage(&self, stage: &Json, path: &str) -> Result<StageDefinition, DefinitionError> {
        let name = plain_string(stage.get("Name"), &format!("{path}.Name"))?;
        let actions_path = format!("{path}.Actions");
        let actions = match stage.get("Actions") {
            Some(Json::Array(actions)) if !actions.is_empty() => actions,
            _ => {
                return Err(DefinitionError::invalid(
                    &actions_path,
                    "a stage needs a list of Actions",
                ));
            }
        };
        let actions = self.each(actions, &actions_path, Self::action)?;
        if let Some(twice) = first_repeated(actions.iter().map(|a| a.name.as_str())) {
            return Err(DefinitionError::invalid(
                &actions_path,
                format!("action name {twice} is used twice in stage {name}"),
            ));
        }
        Ok(StageDefinition { name, actions })
    }

    /// `action` has already been evaluated, except that the configuration values that dispatch
    /// by logical id were evaluated leniently (see [`Context::eval`]).
    fn action(&self, action: &Json, path: &str) -> Result<ActionDefinition, DefinitionError> {
        let name = plain_string(action.get("Name"), &format!("{path}.Name"))?;
        let type_path = format!("{path}.ActionTypeId");
        let type_id = action
            .get("ActionTypeId")
            .ok_or_else(|| DefinitionError::invalid(&type_path, "missing"))?;
        let action_type = ActionTypeId {
            category: plain_string(type_id.get("Category"), &format!("{type_path}.Category"))?,
            owner: plain_string(type_id.get("Owner"), &format!("{type_path}.Owner"))?,
            provider: plain_string(type_id.get("Provider"), &format!("{type_path}.Provider"))?,
            version: plain_string(type_id.get("Version"), &format!("{type_path}.Version"))?,
        };
        let run_order = match action.get("RunOrder") {
            None => 1,
            Some(v) => scalar_string(v)
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| (1..=999).contains(n))
                .ok_or_else(|| {
                    DefinitionError::invalid(
                        &format!("{path}.RunOrder"),
                        "must be a number from 1 to 999",
                    )
                })?,
        };
        let config_path = format!("{path}.Configuration");
        let mut configuration = BTreeMap::new();
        for (key, value) in action
            .get("Configuration")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            let text = scalar_string(value).ok_or_else(|| {
                DefinitionError::invalid(&format!("{config_path}.{key}"), "must be a string")
            })?;
            configuration.insert(key.clone(), text);
        }
        let artifact_names = |field: &str| -> Result<Vec<String>, DefinitionError> {
            action
                .get(field)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, a)| plain_string(a.get("Name"), &format!("{path}.{field}[{i}].Name")))
                .collect()
        };
        let input_artifacts = artifact_names("InputArtifacts")?;
        let output_artifacts = artifact_names("OutputArtifacts")?;
        let kind = self.action_kind(&action_type, &mut configuration, action, &config_path)?;
        Ok(ActionDefinition {
            name,
            action_type,
            run_order,
            configuration,
            input_artifacts,
            output_artifacts,
            namespace: optional_plain_string(action.get("Namespace")),
            region: optional_plain_string(action.get("Region")),
            role_arn: optional_plain_string(action.get("RoleArn")),
            timeout_in_minutes: action
                .get("TimeoutInMinutes")
                .and_then(scalar_string)
                .and_then(|s| s.parse().ok()),
            kind,
        })
    }

    fn action_kind(
        &self,
        action_type: &ActionTypeId,
        configuration: &mut BTreeMap<String, String>,
        action: &Json,
        config_path: &str,
    ) -> Result<ActionKind, DefinitionError> {
        let required = |configuration: &BTreeMap<String, String>, key: &str| {
            configuration.get(key).cloned().ok_or_else(|| {
                DefinitionError::invalid(
                    &format!("{config_path}.{key}"),
                    "required by this action type",
                )
            })
        };
        let kind = match (
            action_type.category.as_str(),
            action_type.owner.as_str(),
            action_type.provider.as_str(),
        ) {
            ("Source", "AWS", "S3") => ActionKind::S3Source {
                bucket: required(configuration, "S3Bucket")?,
                object_key: required(configuration, "S3ObjectKey")?,
                allow_object_key_override: configuration
                    .get("AllowOverrideForS3ObjectKey")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            },
            ("Invoke", "AWS", "Lambda") => {
                let raw = action.pointer("/Configuration/FunctionName");
                let function_logical_id = match raw.and_then(|v| v.get(LOGICAL_ID_MARKER)) {
                    Some(id) => id.as_str().unwrap_or_default().to_owned(),
                    None => required(configuration, "FunctionName")?,
                };
                ActionKind::LambdaInvoke {
                    function_logical_id,
                }
            }
            ("Approval", "AWS", "Manual") => ActionKind::ManualApproval {
                notification_topic_logical_id: action
                    .pointer("/Configuration/NotificationArn")
                    .and_then(|v| v.get(LOGICAL_ID_MARKER))
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                custom_data: configuration.get("CustomData").cloned(),
                external_entity_link: configuration.get("ExternalEntityLink").cloned(),
            },
            _ => ActionKind::Unsupported,
        };
        Ok(kind)
    }

    /// A string-valued property (after evaluation).
    fn string(&self, value: &Json, path: &str) -> Result<String, DefinitionError> {
        let evaluated = self.eval(value, path)?;
        plain_string(evaluated.as_ref(), path)
    }

    fn optional_string(
        &self,
        value: Option<&Json>,
        path: &str,
    ) -> Result<Option<String>, DefinitionError> {
        match value {
            None => Ok(None),
            Some(v) => Ok(self.eval(v, path)?.as_ref().and_then(scalar_string)),
        }
    }

    /// Evaluates every intrinsic in `value`. `None` is `AWS::NoValue` (the property is absent).
    fn eval(&self, value: &Json, path: &str) -> Result<Option<Json>, DefinitionError> {
        if let Some((function, argument)) = single_key(value)
            && (function == "Ref" || function == "Condition" || function.starts_with("Fn::"))
        {
            return self.intrinsic(function, argument, path);
        }
        match value {
            Json::Object(object) => {
                let mut out = Map::new();
                for (key, v) in object {
                    let child = format!("{path}.{key}");
                    let evaluated = if is_dispatch_key(key) {
                        self.eval_dispatch(key, v, &child)?
                    } else {
                        self.eval(v, &child)?
                    };
                    if let Some(evaluated) = evaluated {
                        out.insert(key.clone(), evaluated);
                    }
                }
                Ok(Some(Json::Object(out)))
            }
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(evaluated) = self.eval(item, &format!("{path}[{i}]"))? {
                        out.push(evaluated);
                    }
                }
                Ok(Some(Json::Array(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    /// `FunctionName` and `NotificationArn` keep the logical id they refer to (the local runner
    /// dispatches by it) next to their physical value, which falls back to a synthesised one.
    /// A value that imports one of the core's exports (`<core stack>-<LogicalId>`, anywhere in
    /// it: `!Select [6, !Split [":", <imported ARN>]]` is a function's name) keeps the core's
    /// logical id.
    fn eval_dispatch(
        &self,
        key: &str,
        value: &Json,
        path: &str,
    ) -> Result<Option<Json>, DefinitionError> {
        let (id, unresolved) = if let Some(id) = referenced_id(value) {
            let synthesised = self.synthesised_ref(&id);
            (id, synthesised)
        } else if let Some(export) = imported_export(value) {
            let id = exported_logical_id(&self.string(export, path)?).to_owned();
            let synthesised = match key {
                "NotificationArn" => self.arn("sns", &id),
                _ => id.clone(),
            };
            (id, synthesised)
        } else {
            return self.eval(value, path);
        };
        let physical = match self.eval(value, path) {
            Ok(Some(v)) => scalar_string(&v).unwrap_or_else(|| id.clone()),
            Ok(None) => return Ok(None),
            Err(
                DefinitionError::UnresolvedRef { .. } | DefinitionError::UnresolvedImport { .. },
            ) => unresolved,
            Err(other) => return Err(other),
        };
        let mut marked = Map::new();
        marked.insert(LOGICAL_ID_MARKER.to_owned(), Json::String(id));
        marked.insert(PHYSICAL_MARKER.to_owned(), Json::String(physical));
        Ok(Some(Json::Object(marked)))
    }

    /// What `Ref` of a resource the resolver does not know gives in this stand-in: a topic ARN
    /// for topics, the logical id otherwise (functions are dispatched by it).
    fn synthesised_ref(&self, logical_id: &str) -> String {
        match self.template.resource_type(logical_id) {
            Some("AWS::SNS::Topic") => self.arn("sns", logical_id),
            _ => logical_id.to_owned(),
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.resolver.region, self.resolver.account_id
        )
    }

    fn intrinsic(
        &self,
        function: &str,
        argument: &Json,
        path: &str,
    ) -> Result<Option<Json>, DefinitionError> {
        let path_fn = format!("{path}.{function}");
        match function {
            "Ref" => {
                let target = argument
                    .as_str()
                    .ok_or_else(|| DefinitionError::invalid(&path_fn, "Ref takes a logical id"))?;
                self.reference(target, path)
            }
            "Fn::GetAtt" => {
                let (target, attribute) = match argument {
                    Json::Array(parts) if parts.len() == 2 => {
                        let target = self.string(&parts[0], &path_fn)?;
                        let attribute = self.string(&parts[1], &path_fn)?;
                        (target, attribute)
                    }
                    Json::String(s) => match s.split_once('.') {
                        Some((t, a)) => (t.to_owned(), a.to_owned()),
                        None => {
                            return Err(DefinitionError::invalid(
                                &path_fn,
                                "expects LogicalId.Attribute",
                            ));
                        }
                    },
                    _ => {
                        return Err(DefinitionError::invalid(
                            &path_fn,
                            "expects [LogicalId, Attribute]",
                        ));
                    }
                };
                self.attribute(&target, &attribute, path)
                    .map(|s| Some(Json::String(s)))
            }
            "Fn::Sub" => {
                let (text, locals) = match argument {
                    Json::String(s) => (s.clone(), Map::new()),
                    Json::Array(parts) if parts.len() == 2 => {
                        let text = parts[0]
                            .as_str()
                            .ok_or_else(|| {
                                DefinitionError::invalid(
                                    &path_fn,
                                    "the first element must be a string",
                                )
                            })?
                            .to_owned();
                        let locals = parts[1]
                            .as_object()
                            .ok_or_else(|| {
                                DefinitionError::invalid(
                                    &path_fn,
                                    "the second element must be a mapping",
                                )
                            })?
                            .clone();
                        (text, locals)
                    }
                    _ => {
                        return Err(DefinitionError::invalid(
                            &path_fn,
                            "expects a string or [string, mapping]",
                        ));
                    }
                };
                self.substitute(&text, &locals, &path_fn)
                    .map(|s| Some(Json::String(s)))
            }
            "Fn::Join" => {
                let [delimiter, list] = arguments(argument, &path_fn, "[delimiter, list]")?;
                let delimiter = self.string(delimiter, &path_fn)?;
                let items = self.list(list, &path_fn)?;
                Ok(Some(Json::String(items.join(&delimiter))))
            }
            "Fn::Select" => {
                let [index, list] = arguments(argument, &path_fn, "[index, list]")?;
                let index: usize = self.string(index, &path_fn)?.parse().map_err(|_| {
                    DefinitionError::invalid(&path_fn, "the index must be a number")
                })?;
                let items = self.list(list, &path_fn)?;
                items
                    .get(index)
                    .map(|s| Some(Json::String(s.clone())))
                    .ok_or_else(|| DefinitionError::invalid(&path_fn, "index out of range"))
            }
            "Fn::Split" => {
                let [delimiter, text] = arguments(argument, &path_fn, "[delimiter, string]")?;
                let delimiter = self.string(delimiter, &path_fn)?;
                let text = self.string(text, &path_fn)?;
                Ok(Some(Json::Array(
                    text.split(delimiter.as_str())
                        .map(|s| Json::String(s.to_owned()))
                        .collect(),
                )))
            }
            "Fn::FindInMap" => {
                let parts: &[Json; 3] =
                    arguments(argument, &path_fn, "[map, top key, second key]")?;
                let keys = parts
                    .iter()
                    .map(|p| self.string(p, &path_fn))
                    .collect::<Result<Vec<_>, _>>()?;
                let found = self
                    .template
                    .section("Mappings")
                    .and_then(|m| m.get(&keys[0]))
                    .and_then(|m| m.get(&keys[1]))
                    .and_then(|m| m.get(&keys[2]))
                    .ok_or_else(|| {
                        DefinitionError::invalid(
                            &path_fn,
                            format!("no mapping {}.{}.{}", keys[0], keys[1], keys[2]),
                        )
                    })?;
                Ok(Some(found.clone()))
            }
            "Fn::ImportValue" => {
                let name = self.string(argument, &path_fn)?;
                match self.resolver.exports.get(&name) {
                    Some(value) => Ok(Some(Json::String(value.clone()))),
                    None => Err(DefinitionError::UnresolvedImport {
                        path: path.to_owned(),
                        name,
                    }),
                }
            }
            "Fn::If" => {
                let [condition, then, otherwise] =
                    arguments(argument, &path_fn, "[condition, then, else]")?;
                let condition = condition.as_str().ok_or_else(|| {
                    DefinitionError::invalid(&path_fn, "the condition must be a name")
                })?;
                let branch = if self.condition(condition, &path_fn, 0)? {
                    then
                } else {
                    otherwise
                };
                self.eval(branch, path)
            }
            other => Err(DefinitionError::UnsupportedIntrinsic {
                path: path.to_owned(),
                function: other.to_owned(),
            }),
        }
    }

    fn reference(&self, target: &str, path: &str) -> Result<Option<Json>, DefinitionError> {
        let r = self.resolver;
        if target == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(value) = r.refs.get(target) {
            return Ok(Some(Json::String(value.clone())));
        }
        let pseudo = match target {
            "AWS::Region" => Some(r.region.clone()),
            "AWS::AccountId" => Some(r.account_id.clone()),
            "AWS::StackName" => Some(r.stack_name.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/local",
                r.region, r.account_id, r.stack_name
            )),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Some(Json::String(value)));
        }
        let default = self
            .template
            .section("Parameters")
            .and_then(|p| p.get(target))
            .and_then(|p| p.get("Default"))
            .and_then(scalar_string);
        match default {
            Some(value) => Ok(Some(Json::String(value))),
            None => Err(DefinitionError::UnresolvedRef {
                path: path.to_owned(),
                target: target.to_owned(),
            }),
        }
    }

    fn attribute(
        &self,
        target: &str,
        attribute: &str,
        path: &str,
    ) -> Result<String, DefinitionError> {
        if let Some(value) = self
            .resolver
            .attributes
            .get(&format!("{target}.{attribute}"))
        {
            return Ok(value.clone());
        }
        let unresolved = || DefinitionError::UnresolvedAttribute {
            path: path.to_owned(),
            target: target.to_owned(),
            attribute: attribute.to_owned(),
        };
        if attribute != "Arn" {
            return Err(unresolved());
        }
        let kind = self.template.resource_type(target).ok_or_else(unresolved)?;
        let physical = self
            .resolver
            .refs
            .get(target)
            .cloned()
            .unwrap_or_else(|| target.to_owned());
        if physical.starts_with("arn:") {
            return Ok(physical);
        }
        let (r, a) = (&self.resolver.region, &self.resolver.account_id);
        Ok(match kind {
            "AWS::Lambda::Function" | "AWS::Serverless::Function" => {
                format!("arn:aws:lambda:{r}:{a}:function:{physical}")
            }
            "AWS::IAM::Role" => format!("arn:aws:iam::{a}:role/{physical}"),
            "AWS::S3::Bucket" => format!("arn:aws:s3:::{physical}"),
            "AWS::DynamoDB::Table" | "AWS::Serverless::SimpleTable" => {
                format!("arn:aws:dynamodb:{r}:{a}:table/{physical}")
            }
            other => {
                let service = other
                    .split("::")
                    .nth(1)
                    .unwrap_or("cloudformation")
                    .to_ascii_lowercase();
                format!("arn:aws:{service}:{r}:{a}:{physical}")
            }
        })
    }

    fn substitute(
        &self,
        text: &str,
        locals: &Map<String, Json>,
        path: &str,
    ) -> Result<String, DefinitionError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| DefinitionError::invalid(path, "unterminated ${"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` is how a template writes a literal `${Literal}`.
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(local) = locals.get(name) {
                out.push_str(&self.string(local, path)?);
            } else if let Some((target, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(target, attribute, path)?);
            } else {
                let value = self.reference(name, path)?.unwrap_or(Json::Null);
                out.push_str(&scalar_string(&value).unwrap_or_default());
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn list(&self, value: &Json, path: &str) -> Result<Vec<String>, DefinitionError> {
        match self.eval(value, path)? {
            Some(Json::Array(items)) => Ok(items.iter().filter_map(scalar_string).collect()),
            Some(Json::String(s)) => Ok(s.split(',').map(str::to_owned).collect()),
            _ => Err(DefinitionError::invalid(path, "expects a list")),
        }
    }

    fn condition(&self, name: &str, path: &str, depth: usize) -> Result<bool, DefinitionError> {
        if depth > 32 {
            return Err(DefinitionError::invalid(
                path,
                "conditions nest too deeply (a cycle?)",
            ));
        }
        let definition = self
            .template
            .section("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| DefinitionError::invalid(path, format!("no condition named {name}")))?;
        self.condition_value(definition, path, depth + 1)
    }

    fn condition_value(
        &self,
        value: &Json,
        path: &str,
        depth: usize,
    ) -> Result<bool, DefinitionError> {
        let (function, argument) = single_key(value).ok_or_else(|| {
            DefinitionError::invalid(path, "a condition must be a condition function")
        })?;
        let operands = || {
            argument
                .as_array()
                .ok_or_else(|| DefinitionError::invalid(path, format!("{function} expects a list")))
        };
        match function {
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| DefinitionError::invalid(path, "Condition takes a name"))?;
                self.condition(name, path, depth)
            }
            "Fn::Equals" => {
                let items = operands()?;
                if items.len() != 2 {
                    return Err(DefinitionError::invalid(
                        path,
                        "Fn::Equals expects two values",
                    ));
                }
                Ok(self.string(&items[0], path)? == self.string(&items[1], path)?)
            }
            "Fn::Not" => {
                let items = operands()?;
                let first = items.first().ok_or_else(|| {
                    DefinitionError::invalid(path, "Fn::Not expects one condition")
                })?;
                Ok(!self.condition_value(first, path, depth + 1)?)
            }
            "Fn::And" | "Fn::Or" => {
                let mut results = Vec::new();
                for item in operands()? {
                    results.push(self.condition_value(item, path, depth + 1)?);
                }
                Ok(if function == "Fn::And" {
                    results.iter().all(|b| *b)
                } else {
                    results.iter().any(|b| *b)
                })
            }
            other => Err(DefinitionError::UnsupportedIntrinsic {
                path: path.to_owned(),
                function: other.to_owned(),
            }),
        }
    }
}

/// Keys under which a dispatch field keeps its logical id and physical value after evaluation.
const LOGICAL_ID_MARKER: &str = "\u{0}logical-id";
const PHYSICAL_MARKER: &str = "\u{0}physical";

fn is_dispatch_key(key: &str) -> bool {
    key == "FunctionName" || key == "NotificationArn"
}

/// A scalar as CloudFormation passes it to a string property (`false` → `"false"`), or the
/// physical value of a dispatch field.
fn scalar_string(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Object(o) => o
            .get(PHYSICAL_MARKER)
            .and_then(Json::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// The arguments of an intrinsic function that takes a list of exactly `N`.
fn arguments<'j, const N: usize>(
    argument: &'j Json,
    path: &str,
    expects: &str,
) -> Result<&'j [Json; N], DefinitionError> {
    argument
        .as_array()
        .and_then(|list| <&[Json; N]>::try_from(list.as_slice()).ok())
        .ok_or_else(|| DefinitionError::invalid(path, format!("expects {expects}")))
}

/// The first name that occurs a second time (CodePipeline refuses two stages, or two actions
/// of a stage, with one name).
fn first_repeated<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::BTreeSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}

fn plain_string(value: Option<&Json>, path: &str) -> Result<String, DefinitionError> {
    value
        .and_then(scalar_string)
        .ok_or_else(|| DefinitionError::invalid(path, "missing, or not a string"))
}

fn optional_plain_string(value: Option<&Json>) -> Option<String> {
    value.and_then(scalar_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `template` with no references supplied.
    fn read_bare(template: &str) -> Result<Vec<PipelineDefinition>, DefinitionError> {
        pipelines_from_template(template, &Resolver::new(BTreeMap::new(), "r", "a"))
    }

    const TEMPLATE: &str = r##"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Environment:
    Type: String
    Default: int
  ReleaseKey:
    Type: String
    Default: incoming/release.zip
Conditions:
  IsProd: !Equals [!Ref Environment, prod]
Mappings:
  Approvals:
    int: { Hours: "4" }
    prod: { Hours: "1" }
Resources:
  ArtifactBucket:
    Type: AWS::S3::Bucket
  ApprovalTopic:
    Type: AWS::SNS::Topic
  IntakeFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: bootstrap
  MailerFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: bootstrap
      Events:
        Approval:
          Type: SNS
          Properties:
            Topic: !Ref ApprovalTopic
        Schedule:
          Type: Schedule
          Properties:
            Schedule: rate(1 day)
  AuditFunction:
    Type: AWS::Lambda::Function
  AuditSubscription:
    Type: AWS::SNS::Subscription
    Properties:
      Protocol: lambda
      TopicArn: !Ref ApprovalTopic
      Endpoint: !GetAtt AuditFunction.Arn
  PipelineRole:
    Type: AWS::IAM::Role
  Pipeline:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      Name: !Sub "${AWS::StackName}-release"
      PipelineType: V2
      ExecutionMode: QUEUED
      RoleArn: !GetAtt PipelineRole.Arn
      ArtifactStore:
        Type: S3
        Location: !Ref ArtifactBucket
      Variables:
        - Name: ReleaseId
          DefaultValue: none
        - Name: Version
      Stages:
        - Name: Source
          Actions:
            - Name: Drop
              ActionTypeId: { Category: Source, Owner: AWS, Provider: S3, Version: "1" }
              Configuration:
                S3Bucket: !Ref ArtifactBucket
                S3ObjectKey: !Ref ReleaseKey
                PollForSourceChanges: false
              OutputArtifacts:
                - Name: Release
              Namespace: SourceVariables
        - Name: Int
          Actions:
            - Name: ChangeSet
              ActionTypeId:
                Category: Invoke
                Owner: AWS
                Provider: Lambda
                Version: "1"
              Configuration:
                FunctionName: !Ref IntakeFunction
                UserParameters: !Sub
                  - '{"env":"${Env}","release":"#{variables.ReleaseId}","region":"${AWS::Region}"}'
                  - Env: !Ref Environment
              InputArtifacts:
                - Name: Release
              Namespace: ChangeSetVariables
            - Name: Approve
              RunOrder: 2
              ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: "1" }
              Configuration:
                NotificationArn: !Ref ApprovalTopic
                CustomData: !Join ["", ["Expires in ", !FindInMap [Approvals, !Ref Environment, Hours], " hours"]]
                ExternalEntityLink: !If [IsProd, "https://prod.example", !Ref "AWS::NoValue"]
            - Name: Deploy
              RunOrder: 3
              ActionTypeId:
                Category: Invoke
                Owner: AWS
                Provider: Lambda
                Version: "1"
              Configuration:
                FunctionName:
                  Fn::GetAtt: [AuditFunction, Arn]
                UserParameters:
                  Fn::Sub: "${!literal} ${IntakeFunction.Arn}"
"##;

    fn resolver() -> Resolver {
        Resolver::new(BTreeMap::new(), "eu-west-1", "111111111111")
            .with_stack_name("shipgate")
            .with_ref("ArtifactBucket", "shipgate-artifacts")
    }

    #[test]
    fn reads_the_pipeline_with_its_references_resolved() {
        let pipelines = pipelines_from_template(TEMPLATE, &resolver()).expect("parses");
        assert_eq!(pipelines.len(), 1);
        let p = &pipelines[0];
        assert_eq!(p.logical_id, "Pipeline");
        assert_eq!(p.name, "shipgate-release");
        assert_eq!(p.pipeline_type, PipelineType::V2);
        assert_eq!(p.execution_mode, ExecutionMode::Queued);
        assert_eq!(p.artifact_bucket, "shipgate-artifacts");
        assert_eq!(
            p.role_arn.as_deref(),
            Some("arn:aws:iam::111111111111:role/PipelineRole")
        );
        assert_eq!(p.variables.len(), 2);
        assert_eq!(p.variables[0].default_value.as_deref(), Some("none"));
        assert_eq!(p.variables[1].default_value, None);
        assert_eq!(
            p.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["Source", "Int"]
        );

        let drop = &p.stages[0].actions[0];
        assert_eq!(
            drop.kind,
            ActionKind::S3Source {
                bucket: "shipgate-artifacts".into(),
                object_key: "incoming/release.zip".into(),
                allow_object_key_override: false,
            }
        );
        assert_eq!(drop.configuration["PollForSourceChanges"], "false");
        assert_eq!(drop.output_artifacts, ["Release"]);
        assert_eq!(drop.namespace.as_deref(), Some("SourceVariables"));
        assert_eq!(drop.run_order, 1);
    }

    #[test]
    fn lambda_and_approval_actions_keep_the_logical_ids_they_dispatch_to() {
        let p = &pipelines_from_template(TEMPLATE, &resolver()).expect("parses")[0];
        let actions = &p.stages[1].actions;
        let change_set = &actions[0];
        assert_eq!(
            change_set.kind,
            ActionKind::LambdaInvoke {
                function_logical_id: "IntakeFunction".into()
            }
        );
        // Not supplied by the resolver: the physical name falls back to the logical id.
        assert_eq!(change_set.configuration["FunctionName"], "IntakeFunction");
        assert_eq!(
            change_set.configuration["UserParameters"],
            r##"{"env":"int","release":"#{variables.ReleaseId}","region":"eu-west-1"}"##
        );
        assert_eq!(change_set.input_artifacts, ["Release"]);

        let approve = &actions[1];
        assert_eq!(approve.run_order, 2);
        assert_eq!(
            approve.kind,
            ActionKind::ManualApproval {
                notification_topic_logical_id: Some("ApprovalTopic".into()),
                custom_data: Some("Expires in 4 hours".into()),
                external_entity_link: None,
            }
        );
        assert_eq!(
            approve.configuration["NotificationArn"],
            "arn:aws:sns:eu-west-1:111111111111:ApprovalTopic"
        );
        assert!(!approve.configuration.contains_key("ExternalEntityLink"));

        let deploy = &actions[2];
        assert_eq!(
            deploy.kind,
            ActionKind::LambdaInvoke {
                function_logical_id: "AuditFunction".into()
            }
        );
        assert_eq!(
            deploy.configuration["FunctionName"],
            "arn:aws:lambda:eu-west-1:111111111111:function:AuditFunction"
        );
        assert_eq!(
            deploy.configuration["UserParameters"],
            "${literal} arn:aws:lambda:eu-west-1:111111111111:function:IntakeFunction"
        );
    }

    #[test]
    fn supplied_references_win_over_synthesised_ones() {
        let resolver = resolver()
            .with_ref("IntakeFunction", "shipgate-intake")
            .with_ref("Environment", "prod")
            .with_attribute("PipelineRole.Arn", "arn:aws:iam::111111111111:role/real");
        let p = &pipelines_from_template(TEMPLATE, &resolver).expect("parses")[0];
        let actions = &p.stages[1].actions;
        assert_eq!(actions[0].configuration["FunctionName"], "shipgate-intake");
        assert_eq!(
            actions[0].kind,
            ActionKind::LambdaInvoke {
                function_logical_id: "IntakeFunction".into()
            }
        );
        assert_eq!(
            actions[1].configuration["ExternalEntityLink"],
            "https://prod.example"
        );
        assert_eq!(
            p.role_arn.as_deref(),
            Some("arn:aws:iam::111111111111:role/real")
        );
    }

    #[test]
    fn an_unresolvable_reference_is_an_error_naming_the_property() {
        let err = pipelines_from_template(
            TEMPLATE,
            &Resolver::new(BTreeMap::new(), "eu-west-1", "111111111111"),
        )
        .expect_err("ArtifactBucket is unknown");
        match err {
            DefinitionError::UnresolvedRef { path, target } => {
                assert_eq!(target, "ArtifactBucket");
                assert!(path.contains("ArtifactStore"), "{path}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn finds_the_functions_subscribed_to_each_topic() {
        let subscribers = sns_subscribers(TEMPLATE).expect("parses");
        assert_eq!(
            subscribers.get("ApprovalTopic").map(Vec::as_slice),
            Some(["MailerFunction".to_owned(), "AuditFunction".to_owned()].as_slice())
        );
        assert_eq!(subscribers.len(), 1);
    }

    #[test]
    fn long_forms_and_defaults_are_read_too() {
        let template = r##"
Resources:
  Bucket: { Type: "AWS::S3::Bucket" }
  Fn: { Type: "AWS::Lambda::Function" }
  P:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      ArtifactStores:
        - Region: us-east-1
          ArtifactStore: { Type: S3, Location: elsewhere }
        - Region: eu-west-1
          ArtifactStore: { Type: S3, Location: { "Fn::Sub": "${Bucket}-eu" } }
      Stages:
        - Name: Only
          Actions:
            - Name: Call
              ActionTypeId: { Category: Invoke, Owner: AWS, Provider: Lambda, Version: 1 }
              RunOrder: 5
              Configuration:
                FunctionName: { Ref: Fn }
            - Name: Build
              ActionTypeId: { Category: Build, Owner: AWS, Provider: CodeBuild, Version: "1" }
              Configuration: { ProjectName: p }
"##;
        let resolver = Resolver::new(BTreeMap::new(), "eu-west-1", "1").with_ref("Bucket", "b");
        let p = &pipelines_from_template(template, &resolver).expect("parses")[0];
        assert_eq!(p.name, "P");
        assert_eq!(p.pipeline_type, PipelineType::V1);
        assert_eq!(p.execution_mode, ExecutionMode::Superseded);
        assert_eq!(p.artifact_bucket, "b-eu");
        let call = &p.stages[0].actions[0];
        assert_eq!(call.run_order, 5);
        assert_eq!(call.action_type.version, "1");
        assert_eq!(
            call.kind,
            ActionKind::LambdaInvoke {
                function_logical_id: "Fn".into()
            }
        );
        assert_eq!(p.stages[0].actions[1].kind, ActionKind::Unsupported);
    }

    #[test]
    fn rejects_what_codepipeline_would_reject() {
        let queued_v1 = r##"
Resources:
  P:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      ExecutionMode: QUEUED
      ArtifactStore: { Type: S3, Location: b }
      Stages:
        - Name: S
          Actions:
            - Name: A
              ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: "1" }
"##;
        let err = read_bare(queued_v1).expect_err("V1");
        assert!(
            err.to_string().contains("requires PipelineType V2"),
            "{err}"
        );

        let duplicate = queued_v1
            .replace("ExecutionMode: QUEUED", "PipelineType: V2")
            .replace(
                "              ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: \"1\" }\n",
                "              ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: \"1\" }\n            - Name: A\n              ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: \"1\" }\n",
            );
        let err = read_bare(&duplicate).expect_err("dup");
        assert!(err.to_string().contains("used twice"), "{err}");

        assert!(matches!(
            read_bare("just: text"),
            Err(DefinitionError::NoResources)
        ));
        assert!(matches!(
            read_bare("Resources: ["),
            Err(DefinitionError::Yaml(_))
        ));
    }

    #[test]
    fn unsupported_intrinsics_are_named() {
        let template = r##"
Resources:
  P:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      Name: !Base64 shared-name
      ArtifactStore: { Type: S3, Location: b }
      Stages: []
"##;
        let err = read_bare(template).expect_err("base64");
        assert!(
            matches!(&err, DefinitionError::UnsupportedIntrinsic { function, .. } if function == "Fn::Base64"),
            "{err}"
        );
    }

    /// An application stack's pipeline: everything of the core comes from its exports.
    const IMPORTING: &str = r##"
Parameters:
  CoreStackName: { Type: String, Default: shipgate }
  QaName: { Type: String, Default: "" }
Conditions:
  HasQa: !Not [!Equals [!Ref QaName, ""]]
Resources:
  Pipeline:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      Name: orders
      PipelineType: V2
      ArtifactStore:
        Type: S3
        Location: { "Fn::ImportValue": !Sub "${CoreStackName}-ArtifactBucket" }
      Stages:
        - Name: Source
          Actions:
            - Name: Release
              ActionTypeId: { Category: Source, Owner: AWS, Provider: S3, Version: "1" }
              Configuration:
                S3Bucket: !ImportValue shipgate-ArtifactBucket
                S3ObjectKey: accepted/orders/release.zip
        - !If
          - HasQa
          - Name: !Ref QaName
            Actions:
              - Name: ChangeSet
                ActionTypeId: { Category: Invoke, Owner: AWS, Provider: Lambda, Version: "1" }
                Configuration:
                  FunctionName: !Select [6, !Split [":", { "Fn::ImportValue": !Sub "${CoreStackName}-ChangeSetFunction" }]]
              - Name: Approve
                RunOrder: 2
                ActionTypeId: { Category: Approval, Owner: AWS, Provider: Manual, Version: "1" }
                Configuration:
                  NotificationArn: { "Fn::ImportValue": !Sub "${CoreStackName}-ApprovalTopic" }
          - !Ref AWS::NoValue
"##;

    fn core_exports() -> Resolver {
        Resolver::new(BTreeMap::new(), "eu-west-1", "111111111111")
            .with_export("shipgate-ArtifactBucket", "shipgate-artifacts")
            .with_export(
                "shipgate-ChangeSetFunction",
                "arn:aws:lambda:eu-west-1:111111111111:function:shipgate-ChangeSetFunction-A1",
            )
            .with_export(
                "shipgate-ApprovalTopic",
                "arn:aws:sns:eu-west-1:111111111111:shipgate-approvals",
            )
    }

    #[test]
    fn imports_come_from_the_exports_and_dispatch_by_the_core_logical_id() {
        let resolver = core_exports().with_ref("QaName", "qa");
        let p = &pipelines_from_template(IMPORTING, &resolver).expect("parses")[0];
        assert_eq!(p.artifact_bucket, "shipgate-artifacts");
        assert_eq!(
            p.stages[0].actions[0].configuration["S3Bucket"],
            "shipgate-artifacts"
        );
        let qa = &p.stages[1];
        assert_eq!(qa.name, "qa");
        assert_eq!(
            qa.actions[0].kind,
            ActionKind::LambdaInvoke {
                function_logical_id: "ChangeSetFunction".into()
            }
        );
        // The function's name, the seventh field of the exported ARN.
        assert_eq!(
            qa.actions[0].configuration["FunctionName"],
            "shipgate-ChangeSetFunction-A1"
        );
        assert_eq!(
            qa.actions[1].kind,
            ActionKind::ManualApproval {
                notification_topic_logical_id: Some("ApprovalTopic".into()),
                custom_data: None,
                external_entity_link: None,
            }
        );
        assert_eq!(
            qa.actions[1].configuration["NotificationArn"],
            "arn:aws:sns:eu-west-1:111111111111:shipgate-approvals"
        );
    }

    #[test]
    fn an_unexported_import_dispatches_by_its_logical_id_but_fails_elsewhere() {
        // Only the bucket is exported: the function and the topic fall back to what a Ref of
        // them would synthesise, as a dispatch field does for an unsupplied Ref.
        let resolver = Resolver::new(BTreeMap::new(), "eu-west-1", "111111111111")
            .with_export("shipgate-ArtifactBucket", "shipgate-artifacts")
            .with_ref("QaName", "qa");
        let p = &pipelines_from_template(IMPORTING, &resolver).expect("parses")[0];
        let qa = &p.stages[1];
        assert_eq!(
            qa.actions[0].configuration["FunctionName"],
            "ChangeSetFunction"
        );
        assert_eq!(
            qa.actions[1].configuration["NotificationArn"],
            "arn:aws:sns:eu-west-1:111111111111:ApprovalTopic"
        );

        let err = pipelines_from_template(
            IMPORTING,
            &Resolver::new(BTreeMap::new(), "eu-west-1", "111111111111"),
        )
        .expect_err("no bucket export");
        match err {
            DefinitionError::UnresolvedImport { path, name } => {
                assert_eq!(name, "shipgate-ArtifactBucket");
                assert!(path.contains("ArtifactStore"), "{path}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_stage_its_condition_leaves_out_is_not_in_the_pipeline() {
        let p = &pipelines_from_template(IMPORTING, &core_exports()).expect("parses")[0];
        assert_eq!(
            p.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["Source"]
        );
    }

    #[test]
    fn an_exports_logical_id_follows_the_stacks_name() {
        assert_eq!(
            exported_logical_id("shipgate-ChangeSetFunction"),
            "ChangeSetFunction"
        );
        assert_eq!(
            exported_logical_id("team-a-shipgate-ApprovalTopic"),
            "ApprovalTopic"
        );
        assert_eq!(exported_logical_id("Bare"), "Bare");
    }
}
