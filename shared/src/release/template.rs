//! CloudFormation templates of a release: do they parse, and are they templates at all?
//!
//! This is not cfn-lint: it catches what an integrator gets wrong by packaging (a Helm chart, a
//! half-saved file, a SAM `samconfig.toml` listed as a template, a typo in a short-form tag)
//! before the pipeline starts, with the template's path in the message. CloudFormation itself
//! validates the rest when the change set is created. JSON and YAML are accepted, YAML with the
//! short-form intrinsic function tags (`!Ref`, `!Sub`, `!GetAtt`, ...).

use std::collections::BTreeSet;

use serde_yaml::Value as Yaml;

use super::problems::{ProblemCode as Code, Problems};

/// A template of the release, read from the archive and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateFile {
    /// Path in the archive, as the manifest names it.
    pub path: String,
    /// The template text, as CloudFormation will receive it.
    pub body: String,
    /// Number of resources the template declares.
    pub resource_count: usize,
}

/// What checking a template learnt beyond "it is valid".
#[derive(Debug)]
pub(crate) struct TemplateReview {
    pub resource_count: usize,
    pub parameters: BTreeSet<String>,
}

/// Top-level sections CloudFormation accepts.
const SECTIONS: [&str; 11] = [
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
    "Hooks",
];

/// Short-form tags of CloudFormation's intrinsic functions and condition functions.
const SHORT_FORM_TAGS: [&str; 22] = [
    "Base64",
    "Cidr",
    "Condition",
    "FindInMap",
    "ForEach",
    "GetAtt",
    "GetAZs",
    "ImportValue",
    "Join",
    "Length",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
    "Ref",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Contains",
];

/// CloudFormation's quota of resources per template.
const MAX_RESOURCES: usize = 500;

/// Checks `text`, the template at `path`. `None` when it has problems (reported).
pub(crate) fn review_template(
    path: &str,
    text: &str,
    problems: &mut Problems,
) -> Option<TemplateReview> {
    let mut report = |message: String| {
        problems.report(
            Code::TemplateInvalid,
            Some(path),
            format!("template {path:?} {message}"),
        );
    };
    // JSON is parsed as JSON for JSON's error messages; anything else is YAML.
    let parsed: Result<Yaml, String> = if text.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("is not valid JSON: {e}"))
            .and_then(|v| serde_yaml::to_value(v).map_err(|e| format!("is not valid JSON: {e}")))
    } else {
        serde_yaml::from_str::<Yaml>(text).map_err(|e| format!("is not valid YAML: {e}"))
    };
    let root = match parsed {
        Ok(root) => root,
        Err(message) => {
            report(format!("{message}: fix its syntax"));
            return None;
        }
    };
    let Yaml::Mapping(top) = &root else {
        report(
            "is not a CloudFormation template: its top level must be a mapping of sections \
             (Resources, Parameters, ...)"
                .to_owned(),
        );
        return None;
    };
    let mut messages = Vec::new();

    for key in top.keys() {
        match key.as_str() {
            Some(section) if SECTIONS.contains(&section) => {}
            _ => messages.push(format!(
                "has an unknown top-level section {}: CloudFormation accepts only {}",
                show(key),
                SECTIONS.join(", ")
            )),
        }
    }
    if let Some(version) = top.get("AWSTemplateFormatVersion")
        && version.as_str() != Some("2010-09-09")
    {
        messages.push(format!(
            "has AWSTemplateFormatVersion {}: the only version is \"2010-09-09\" (or leave it out)",
            show(version)
        ));
    }

    let mut resource_count = 0;
    match top.get("Resources") {
        None => messages.push(
            "has no Resources section: a CloudFormation template declares at least one resource"
                .to_owned(),
        ),
        Some(Yaml::Mapping(resources)) if resources.is_empty() => messages
            .push("has an empty Resources section: declare at least one resource".to_owned()),
        Some(Yaml::Mapping(resources)) => {
            resource_count = resources.len();
            if resource_count > MAX_RESOURCES {
                messages.push(format!(
                    "declares {resource_count} resources, more than CloudFormation's {MAX_RESOURCES}: \
                     split it into several stacks"
                ));
            }
            for (id, resource) in resources {
                check_resource(id, resource, &mut messages);
            }
        }
        Some(other) => messages.push(format!(
            "has a Resources section that is {}, not a mapping of logical IDs to resources",
            kind(other)
        )),
    }

    let mut parameters = BTreeSet::new();
    match top.get("Parameters") {
        None => {}
        Some(Yaml::Mapping(declared)) => {
            for (name, parameter) in declared {
                let Some(name) = name.as_str().filter(|n| is_logical_id(n)) else {
                    messages.push(format!(
                        "declares a parameter named {}: parameter names are letters and digits",
                        show(name)
                    ));
                    continue;
                };
                parameters.insert(name.to_owned());
                let has_type = matches!(parameter, Yaml::Mapping(m) if m.get("Type").is_some_and(|t| t.as_str().is_some()));
                if !has_type {
                    messages.push(format!("declares parameter {name} without a string Type"));
                }
            }
        }
        Some(other) => messages.push(format!(
            "has a Parameters section that is {}, not a mapping",
            kind(other)
        )),
    }

    let mut tags = BTreeSet::new();
    unknown_tags(&root, &mut tags);
    for tag in tags {
        messages.push(format!(
            "uses the tag {tag}, which is not a CloudFormation function: use one of !{}",
            SHORT_FORM_TAGS.join(", !")
        ));
    }

    if messages.is_empty() {
        Some(TemplateReview {
            resource_count,
            parameters,
        })
    } else {
        for message in messages {
            report(message);
        }
        None
    }
}

fn check_resource(id: &Yaml, resource: &Yaml, messages: &mut Vec<String>) {
    let Some(id) = id.as_str().filter(|id| is_logical_id(id)) else {
        messages.push(format!(
            "declares a resource with logical ID {}: logical IDs are letters and digits",
            show(id)
        ));
        return;
    };
    let Yaml::Mapping(resource) = resource else {
        messages.push(format!(
            "declares resource {id} as {}, not a mapping",
            kind(resource)
        ));
        return;
    };
    match resource.get("Type") {
        None => messages.push(format!("declares resource {id} without a Type")),
        Some(Yaml::String(ty)) if is_resource_type(ty) => {}
        Some(other) => messages.push(format!(
            "declares resource {id} with Type {}: a type is AWS::Service::Resource or \
             Custom::Name",
            show(other)
        )),
    }
}

fn is_logical_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// `AWS::Service::Resource` (SAM's `AWS::Serverless::*` included) or `Custom::Name`.
fn is_resource_type(ty: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric());
    if let Some(rest) = ty.strip_prefix("Custom::") {
        return !rest.is_empty()
            && rest.len() <= 60
            && rest
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'@' | b'-'));
    }
    match ty
        .strip_prefix("AWS::")
        .map(|r| r.split("::").collect::<Vec<_>>())
    {
        Some(parts) => (2..=3).contains(&parts.len()) && parts.iter().all(|p| word(p)),
        None => false,
    }
}

/// Collects tags that are not CloudFormation short forms (`!!` YAML core tags are allowed).
fn unknown_tags(value: &Yaml, out: &mut BTreeSet<String>) {
    match value {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            if !tag.starts_with("!!") && !SHORT_FORM_TAGS.contains(&name) {
                out.insert(tag);
            }
            unknown_tags(&tagged.value, out);
        }
        Yaml::Mapping(map) => {
            for (k, v) in map {
                unknown_tags(k, out);
                unknown_tags(v, out);
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|v| unknown_tags(v, out)),
        _ => {}
    }
}

fn kind(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "empty",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// A short rendering of a YAML value for a message.
fn show(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::testzip::ECS_TEMPLATE;

    fn review(text: &str) -> (Option<TemplateReview>, Vec<String>) {
        let mut problems = Problems::default();
        let out = review_template("t.yaml", text, &mut problems);
        let messages = problems.into_vec().into_iter().map(|p| {
            assert_eq!(p.code, Code::TemplateInvalid);
            assert_eq!(p.path.as_deref(), Some("t.yaml"));
            p.message
        });
        (out, messages.collect())
    }

    #[test]
    fn yaml_with_short_form_tags_is_a_template() {
        let (out, messages) = review(ECS_TEMPLATE);
        assert!(messages.is_empty(), "{messages:?}");
        let out = out.unwrap();
        assert_eq!(out.resource_count, 3);
        assert_eq!(
            out.parameters.into_iter().collect::<Vec<_>>(),
            ["ImageUri", "Version"]
        );
    }

    #[test]
    fn json_templates_are_accepted() {
        let json = r#"{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"},
                       "Thing": {"Type": "Custom::Thing", "Properties": {"Ref": "x"}}}}"#;
        assert_eq!(review(json).0.unwrap().resource_count, 2);
    }

    #[test]
    fn what_is_not_a_template_says_why() {
        let cases: [(&str, &str); 9] = [
            ("Resources: [", "is not valid YAML"),
            ("{\"Resources\": ", "is not valid JSON"),
            ("- a\n- b\n", "top level must be a mapping"),
            (
                "apiVersion: v1\nkind: Deployment\n",
                "unknown top-level section \"apiVersion\"",
            ),
            ("Description: x\n", "has no Resources section"),
            ("Resources: {}\n", "empty Resources"),
            (
                "AWSTemplateFormatVersion: 2012-01-01\nResources: {A: {Type: AWS::SNS::Topic}}\n",
                "2010-09-09",
            ),
            ("Resources: {A: {Type: Thing}}\n", "Type \"Thing\""),
            (
                "Resources: {A: {Type: AWS::SNS::Topic, Properties: {Name: !Reff x}}}\n",
                "!Reff",
            ),
        ];
        for (text, expected) in cases {
            let (out, messages) = review(text);
            assert!(out.is_none(), "{text}");
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "{text}: {messages:?} lacks {expected}"
            );
        }
    }

    #[test]
    fn every_bad_resource_is_listed() {
        let text = "Resources:\n  A: {Properties: {}}\n  b-c: {Type: AWS::SNS::Topic}\n  D: 3\n";
        let (_, messages) = review(text);
        assert_eq!(messages.len(), 3, "{messages:?}");
    }

    #[test]
    fn multiple_documents_and_alias_bombs_are_refused_without_blowing_up() {
        assert!(
            review("Resources: {A: {Type: AWS::SNS::Topic}}\n---\nB: 1\n")
                .0
                .is_none()
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            bomb.push_str(&format!(
                "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                p = if i == 0 {
                    "a".to_owned()
                } else {
                    format!("b{}", i - 1)
                }
            ));
        }
        bomb.push_str("Resources: {A: {Type: AWS::SNS::Topic}}\n");
        assert!(review(&bomb).0.is_none());
    }
}
