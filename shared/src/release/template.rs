//! CloudFormation templates of a release: do they parse, and are they templates at all?
//!
//! This is not cfn-lint: it catches what an integrator gets wrong by packaging (a Helm chart, a
//! half-saved file, a SAM `samconfig.toml` listed as a template, a typo in a short-form tag)
//! before the pipeline starts, with the template's path in the message. CloudFormation itself
//! validates the rest when the change set is created. JSON and YAML are accepted, YAML with the
//! short-form intrinsic function tags (`!Ref`, `!Sub`, `!GetAtt`, ...).
//!
//! Reading is strict where readers could disagree about what a template says, and linear in
//! time whatever the text: YAML is read event by event ([`super::yaml_events`]) and refused at
//! the first list or mapping nested deeper than [`MAX_DOCUMENT_DEPTH`], before libyaml's cost per
//! token can grow; anchors and aliases are refused rather than expanded, so nothing is read
//! twice; keys are compared through a hash set per mapping.

use std::collections::{BTreeSet, HashMap};

use serde_yaml::Value as Yaml;
use serde_yaml::value::{Tag, TaggedValue};

use super::limits::MAX_DOCUMENT_DEPTH;
use super::problems::{ProblemCode as Code, Problems};
use super::schema::{JsonFault, parse_json_strict};
use super::yaml_events::{Event, EventReader, Mark, Properties};

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

/// Short-form tags of CloudFormation's intrinsic functions and condition functions (the
/// "Intrinsic function reference"; `!ForEach`, `!Length`, `!ToJsonString` and `!Contains` are
/// the `Fn::` functions of the `AWS::LanguageExtensions` transform and of rules).
pub(crate) const SHORT_FORM_TAGS: [&str; 23] = [
    "Base64",
    "Cidr",
    "Condition",
    "FindInMap",
    "ForEach",
    "GetAtt",
    "GetAZs",
    "GetStackOutput",
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
    let root = read_template(text, &mut |code, message| {
        problems.report(code, Some(path), format!("template {path:?} {message}"));
    })?;
    let mut report = |message: String| {
        problems.report(
            Code::TemplateInvalid,
            Some(path),
            format!("template {path:?} {message}"),
        );
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

/// Receives each problem found while reading a template: its code and the sentence that follows
/// `template "path"`.
type Report<'r> = dyn FnMut(Code, String) + 'r;

/// Reads a template's text into a tree, reporting everything that makes it unreadable or
/// ambiguous. `None` when anything was reported.
fn read_template(text: &str, report: &mut Report<'_>) -> Option<Yaml> {
    // JSON is parsed as JSON for JSON's error messages; anything else is YAML.
    let first = text.trim_start_matches('\u{feff}').trim_start();
    if first.starts_with('{') {
        read_json(text, report)
    } else {
        read_yaml(text, report)
    }
}

fn read_json(text: &str, report: &mut Report<'_>) -> Option<Yaml> {
    let value = match parse_json_strict(text.trim_start_matches('\u{feff}')) {
        Ok(value) => value,
        Err(err) => {
            let (code, fix) = match err.fault {
                JsonFault::Syntax => (Code::TemplateInvalid, "fix its syntax"),
                JsonFault::DuplicateKey => (
                    Code::TemplateDuplicateKey,
                    "readers disagree on which value wins: keep one",
                ),
                JsonFault::TooDeep => (Code::TemplateTooDeep, "flatten it"),
            };
            report(code, format!("is not valid JSON: {err}: {fix}"));
            return None;
        }
    };
    match serde_yaml::to_value(value) {
        Ok(value) => Some(value),
        Err(err) => {
            report(Code::TemplateInvalid, format!("is not valid JSON: {err}"));
            None
        }
    }
}

fn read_yaml(text: &str, report: &mut Report<'_>) -> Option<Yaml> {
    // libyaml checks each `%TAG` handle against every earlier one (time quadratic in their
    // number) before it yields the document's first event: they are refused before parsing.
    if let Some(line) = tag_directive_line(text) {
        report(
            Code::TemplateUnknownTag,
            format!(
                "declares YAML tag handles with %TAG (line {line}), which would give tags \
                 another meaning than CloudFormation's: remove the %TAG directive"
            ),
        );
        return None;
    }
    let mut reader = YamlReader {
        report,
        stack: Vec::new(),
        root: None,
        faulty: false,
    };
    let mut events = EventReader::new(text);
    let mut documents = 0;
    loop {
        let (event, mark) = match events.next_event() {
            Ok(next) => next,
            Err(err) => {
                (reader.report)(
                    Code::TemplateInvalid,
                    format!("is not valid YAML: {err}: fix its syntax"),
                );
                return None;
            }
        };
        let step = match event {
            Event::StreamStart | Event::DocumentEnd => Ok(()),
            Event::StreamEnd => break,
            Event::DocumentStart { .. } => {
                documents += 1;
                if documents > 1 {
                    (reader.report)(
                        Code::TemplateInvalid,
                        format!(
                            "holds a second YAML document (from {mark}): a template is one \
                             document; remove the \"---\" and what follows, or split it"
                        ),
                    );
                    return None;
                }
                Ok(())
            }
            Event::Alias { anchor } => {
                reader.fault(
                    Code::TemplateYamlAlias,
                    format!(
                        "uses the YAML alias *{anchor} at {mark}: CloudFormation does not accept \
                         anchors and aliases; write the value out where it is used"
                    ),
                );
                reader.complete(Yaml::Null, None, mark)
            }
            Event::Scalar {
                properties,
                value,
                plain,
            } => reader.scalar(properties, value, plain, mark),
            Event::SequenceStart { properties } => reader.open(properties, false, mark),
            Event::MappingStart { properties } => reader.open(properties, true, mark),
            Event::SequenceEnd | Event::MappingEnd => reader.close(mark),
        };
        if step.is_err() {
            return None;
        }
    }
    match reader.root {
        Some(root) if !reader.faulty => Some(root),
        Some(_) => None,
        None => {
            (reader.report)(
                Code::TemplateInvalid,
                "is empty: write the template's sections (Resources, ...)".to_owned(),
            );
            None
        }
    }
}

/// The line of the first `%TAG` directive: `%TAG` at the start of a line, as libyaml sees lines
/// (it also breaks them at U+0085, U+2028 and U+2029).
fn tag_directive_line(text: &str) -> Option<usize> {
    let at = text.match_indices("%TAG").map(|(at, _)| at).find(|&at| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
    })?;
    Some(text[..at].matches('\n').count() + 1)
}

/// Reading stopped: what stopped it was reported.
struct Stop;

/// A key of a mapping being read: how readers may see it, for duplicate detection.
struct KeyInfo {
    /// What it is shown as in messages.
    shown: String,
    forms: Vec<String>,
}

/// A list or mapping being read.
enum Frame {
    Sequence {
        tag: Option<String>,
        items: Vec<Yaml>,
    },
    Mapping {
        tag: Option<String>,
        entries: serde_yaml::Mapping,
        /// The key read and waiting for its value.
        key: Option<Yaml>,
        /// Every form of every key so far, with the key's line and how it is shown.
        seen: HashMap<String, (u64, String)>,
    },
}

/// Builds the tree of a YAML template from its events.
struct YamlReader<'r, 'a> {
    report: &'r mut Report<'a>,
    stack: Vec<Frame>,
    root: Option<Yaml>,
    /// A problem was reported: reading goes on to report the others, the tree is not used.
    faulty: bool,
}

impl YamlReader<'_, '_> {
    fn fault(&mut self, code: Code, message: String) {
        self.faulty = true;
        (self.report)(code, message);
    }

    /// Refuses anchors and tags other than CloudFormation's; returns the tag to keep.
    fn check_properties(&mut self, properties: Properties, mark: Mark) -> Option<String> {
        if let Some(anchor) = properties.anchor {
            self.fault(
                Code::TemplateYamlAlias,
                format!(
                    "defines the YAML anchor &{anchor} at {mark}: CloudFormation does not accept \
                     anchors and aliases; write the value out where it is used"
                ),
            );
        }
        let tag = properties.tag?;
        let known = tag
            .strip_prefix('!')
            .is_some_and(|name| SHORT_FORM_TAGS.contains(&name));
        if !known {
            let shown = match tag.strip_prefix("tag:yaml.org,2002:") {
                Some(core) => format!("!!{core}"),
                None if tag.starts_with('!') => tag.clone(),
                None => format!("!<{tag}>"),
            };
            self.fault(
                Code::TemplateUnknownTag,
                format!(
                    "uses the tag {shown:?} at {mark}, which is not a CloudFormation function: \
                     use one of !{} (quote a value instead of tagging it !!str)",
                    SHORT_FORM_TAGS.join(", !")
                ),
            );
        }
        Some(tag)
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }

    fn scalar(
        &mut self,
        properties: Properties,
        text: String,
        plain: bool,
        mark: Mark,
    ) -> Result<(), Stop> {
        let tag = self.check_properties(properties, mark);
        let key = if self.expects_key() {
            if tag.is_some() {
                self.fault(
                    Code::TemplateInvalid,
                    format!("tags the key {text:?} at {mark}: a key is plain text; remove the tag"),
                );
            }
            if plain && text == "<<" {
                self.fault(
                    Code::TemplateYamlAlias,
                    format!(
                        "uses the YAML merge key \"<<\" at {mark}: CloudFormation does not accept \
                         merge keys; write the merged entries out"
                    ),
                );
            }
            Some(KeyInfo {
                shown: text.clone(),
                forms: if plain {
                    plain_key_forms(&text)
                } else {
                    vec![text.clone()]
                },
            })
        } else {
            None
        };
        let value = if plain {
            resolve_plain(&text)
        } else {
            Yaml::String(text)
        };
        self.complete(tagged(tag, value), key, mark)
    }

    fn open(&mut self, properties: Properties, mapping: bool, mark: Mark) -> Result<(), Stop> {
        if self.stack.len() >= MAX_DOCUMENT_DEPTH {
            (self.report)(
                Code::TemplateTooDeep,
                format!(
                    "nests lists and mappings more than {MAX_DOCUMENT_DEPTH} levels deep (at \
                     {mark}); reading stopped there: flatten it"
                ),
            );
            return Err(Stop);
        }
        if self.expects_key() {
            (self.report)(
                Code::TemplateInvalid,
                format!(
                    "uses a list or mapping as a key at {mark}: CloudFormation's keys are text"
                ),
            );
            return Err(Stop);
        }
        let tag = self.check_properties(properties, mark);
        self.stack.push(if mapping {
            Frame::Mapping {
                tag,
                entries: serde_yaml::Mapping::new(),
                key: None,
                seen: HashMap::new(),
            }
        } else {
            Frame::Sequence {
                tag,
                items: Vec::new(),
            }
        });
        Ok(())
    }

    fn close(&mut self, mark: Mark) -> Result<(), Stop> {
        let value = match self.stack.pop() {
            Some(Frame::Sequence { tag, items }) => tagged(tag, Yaml::Sequence(items)),
            Some(Frame::Mapping { tag, entries, .. }) => tagged(tag, Yaml::Mapping(entries)),
            // libyaml never ends a collection it did not start.
            None => return Err(Stop),
        };
        self.complete(value, None, mark)
    }

    /// Places a complete node in its parent: an item, a key (with `key` to check it against the
    /// mapping's other keys), a value, or the root.
    fn complete(&mut self, value: Yaml, key: Option<KeyInfo>, mark: Mark) -> Result<(), Stop> {
        let mut duplicate = None;
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                entries,
                key: pending,
                seen,
                ..
            }) => match pending.take() {
                Some(k) => {
                    entries.insert(k, value);
                }
                None => {
                    if let Some(info) = key {
                        if let Some((line, first)) = info.forms.iter().find_map(|f| seen.get(f)) {
                            duplicate = Some((info.shown.clone(), first.clone(), *line));
                        }
                        for form in info.forms {
                            seen.entry(form).or_insert((mark.line, info.shown.clone()));
                        }
                    }
                    *pending = Some(value);
                }
            },
        }
        if let Some((shown, first, line)) = duplicate {
            let message = if shown == first {
                format!(
                    "repeats the key {shown:?} at {mark} (first at line {line}): readers disagree \
                     on which value wins; keep one"
                )
            } else {
                format!(
                    "has the keys {first:?} (line {line}) and {shown:?} (at {mark}) in one \
                     mapping, which YAML readers may take for the same key: keep one, or rename \
                     one"
                )
            };
            self.fault(Code::TemplateDuplicateKey, message);
        }
        Ok(())
    }
}

/// `value` with its tag (`!` alone, the non-specific tag, is refused and kept as no tag).
fn tagged(tag: Option<String>, value: Yaml) -> Yaml {
    match tag.filter(|t| t.len() > 1) {
        Some(tag) => Yaml::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag.trim_start_matches('!')),
            value,
        })),
        None => value,
    }
}

/// A plain scalar's value, as YAML 1.2's core schema resolves it (as serde_yaml did).
fn resolve_plain(text: &str) -> Yaml {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Yaml::Null,
        "true" | "True" | "TRUE" => return Yaml::Bool(true),
        "false" | "False" | "FALSE" => return Yaml::Bool(false),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Yaml::Number(n.into());
        }
        if !negative && let Ok(n) = digits.parse::<u64>() {
            return Yaml::Number(n.into());
        }
    }
    if let Some(f) = core_float(text) {
        return Yaml::Number(f.into());
    }
    Yaml::String(text.to_owned())
}

/// A YAML 1.2 core-schema float (`1.5`, `-2e3`, `.inf`, `.nan`).
fn core_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    float_shape(unsigned).then(|| text.parse().ok()).flatten()
}

/// `digits [. digits] [e [sign] digits]` with a digit somewhere before the exponent.
fn float_shape(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    digits(whole)
        && fraction.is_none_or(digits)
        && (!whole.is_empty() || fraction.is_some_and(|f| !f.is_empty()))
        && exponent_ok
}

/// Every text a plain key may stand for: itself, and what YAML 1.1 or 1.2 resolves it to,
/// rendered as a JSON key would be (`01`, `0x1`, `1` and `"1"` are all "1"; `yes`, `on` and
/// `true` are all "true"). Two keys that share a form are duplicates for some reader.
fn plain_key_forms(text: &str) -> Vec<String> {
    let mut forms = vec![text.to_owned()];
    match text {
        "" | "~" | "null" | "Null" | "NULL" => forms.extend(["null".to_owned(), String::new()]),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            forms.push("true".to_owned())
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            forms.push("false".to_owned())
        }
        _ => {}
    }
    // Numbers start with a digit, a sign or a dot: most keys (`Type`, `Properties`) end here.
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return forms;
    }
    forms.extend(integer_readings(text).into_iter().map(|n| n.to_string()));
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if float_shape(&unsigned.replace('_', ""))
        && let Ok(f) = text.replace('_', "").parse::<f64>()
    {
        forms.push(render_float(f));
    }
    if let Some(f) = core_float(text).filter(|f| f.is_infinite()) {
        forms.push(render_float(f));
    }
    forms.sort();
    forms.dedup();
    forms
}

fn render_float(f: f64) -> String {
    if f.is_infinite() {
        return if f < 0.0 { "-.inf" } else { ".inf" }.to_owned();
    }
    if f.fract() == 0.0 && f.abs() < 1e18 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// The integers YAML 1.2 (core) and YAML 1.1 read in `text`: decimal (with leading zeros in
/// 1.2, underscores in 1.1), `0x`, `0o` (1.2), `0b` and leading-zero octal (1.1), and base 60
/// (`1:30`, 1.1).
fn integer_readings(text: &str) -> Vec<i128> {
    let (sign, body) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    if body.is_empty() || body.len() > 40 {
        return Vec::new();
    }
    let radix = |digits: &str, radix: u32| -> Option<i128> {
        let digits = digits.replace('_', "");
        (!digits.is_empty())
            .then(|| i128::from_str_radix(&digits, radix).ok())
            .flatten()
    };
    let mut out = Vec::new();
    let decimal = body.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if decimal && body.as_bytes()[0].is_ascii_digit() {
        out.extend(radix(body, 10));
        if body.len() > 1 && body.starts_with('0') {
            out.extend(radix(&body[1..], 8));
        }
    }
    if let Some(hex) = body.strip_prefix("0x") {
        out.extend(radix(hex, 16));
    }
    if let Some(octal) = body.strip_prefix("0o") {
        out.extend(radix(octal, 8));
    }
    if let Some(binary) = body.strip_prefix("0b") {
        out.extend(radix(binary, 2));
    }
    if body.contains(':') && body.as_bytes()[0] != b'0' {
        let mut total: Option<i128> = Some(0);
        for part in body.split(':') {
            total = total
                .zip(radix(part, 10))
                .and_then(|(t, p)| t.checked_mul(60)?.checked_add(p));
        }
        out.extend(total);
    }
    out.into_iter().map(|n| sign * n).collect()
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
        let (out, found) = review_coded(text);
        (out, found.into_iter().map(|(_, message)| message).collect())
    }

    fn review_coded(text: &str) -> (Option<TemplateReview>, Vec<(Code, String)>) {
        let mut problems = Problems::default();
        let out = review_template("t.yaml", text, &mut problems);
        let found = problems.into_vec().into_iter().map(|p| {
            // Past 20 problems of one kind, one summary line without a path counts the rest.
            if !p.message.contains("more problems of this kind") {
                assert_eq!(p.path.as_deref(), Some("t.yaml"));
                assert!(
                    p.message.starts_with("template \"t.yaml\" "),
                    "{}",
                    p.message
                );
            }
            (p.code, p.message)
        });
        (out, found.collect())
    }

    /// Asserts that `text` is refused with `code` and a message holding `expected`.
    #[track_caller]
    fn refused(text: &str, code: Code, expected: &str) {
        let (out, found) = review_coded(text);
        assert!(out.is_none(), "accepted: {text}");
        assert!(
            found
                .iter()
                .any(|(c, m)| *c == code && m.contains(expected)),
            "{text}: {found:?} lacks {code} with {expected:?}"
        );
    }

    const TOPIC: &str = "Resources:\n  A:\n    Type: AWS::SNS::Topic\n";

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
        let cases: [(&str, &str); 8] = [
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

    #[test]
    fn duplicate_keys_are_refused_in_yaml_and_json() {
        // The classic: a second Resources section that one reader keeps and another drops.
        let twice = format!("{TOPIC}Resources:\n  B:\n    Type: AWS::SQS::Queue\n");
        refused(
            &twice,
            Code::TemplateDuplicateKey,
            "repeats the key \"Resources\" at line 4 column 1 (first at line 1)",
        );
        refused(
            "Resources:\n  A: {Type: AWS::SNS::Topic, Type: AWS::SQS::Queue}\n",
            Code::TemplateDuplicateKey,
            "\"Type\"",
        );
        refused(
            "{\"Resources\": {\"A\": {\"Type\": \"AWS::SNS::Topic\"},\n \"A\": {\"Type\": \"AWS::SQS::Queue\"}}}",
            Code::TemplateDuplicateKey,
            "line 2",
        );
        refused(
            "{\"Resources\": {\"A\": {\"Type\": \"AWS::SNS::Topic\"}}, \"Resources\": {}}",
            Code::TemplateDuplicateKey,
            "\"Resources\" appears twice",
        );
    }

    #[test]
    fn keys_yaml_readers_take_for_the_same_are_duplicates() {
        for (first, second) in [
            ("Name", "\"Name\""),
            ("Name", "'Name'"),
            ("1", "01"),
            ("1", "\"1\""),
            ("16", "0x10"),
            ("8", "010"),
            ("90", "1:30"),
            ("1000", "1_000"),
            ("1", "1.0"),
            ("true", "yes"),
            ("on", "\"true\""),
            ("off", "No"),
            ("~", "null"),
            ("\"\\u0041\"", "A"),
        ] {
            let text =
                format!("{TOPIC}Mappings:\n  M:\n    {first}: {{V: a}}\n    {second}: {{V: b}}\n");
            refused(&text, Code::TemplateDuplicateKey, "at line 7 column 5");
        }
        // Distinct for every reader: accepted.
        for (first, second) in [("\"1\"", "\"01\""), ("yes", "no"), ("a", "A"), ("1", "2")] {
            let text =
                format!("{TOPIC}Mappings:\n  M:\n    {first}: {{V: a}}\n    {second}: {{V: b}}\n");
            let (out, messages) = review(&text);
            assert!(out.is_some(), "{text}: {messages:?}");
        }
        // The same key in two mappings is no duplicate.
        assert!(
            review("Resources:\n  A: {Type: AWS::SNS::Topic}\n  B: {Type: AWS::SNS::Topic}\n")
                .0
                .is_some()
        );
    }

    #[test]
    fn only_cloudformation_tags_are_accepted() {
        for tag in SHORT_FORM_TAGS {
            let text = format!("{TOPIC}    Properties:\n      TopicName: !{tag} x\n");
            let (out, messages) = review(&text);
            assert!(out.is_some(), "!{tag}: {messages:?}");
        }
        for (value, shown) in [
            (
                "!!python/object/apply:os.system [\"id\"]",
                "\"!!python/object/apply:os.system\"",
            ),
            (
                "!!python/object:__main__.X {a: 1}",
                "\"!!python/object:__main__.X\"",
            ),
            ("!!binary aGk=", "\"!!binary\""),
            ("!!str x", "\"!!str\""),
            ("!!timestamp 2001-12-14", "\"!!timestamp\""),
            ("!<tag:yaml.org,2002:str> x", "\"!!str\""),
            (
                "!<tag:example.com,2000:x> x",
                "\"!<tag:example.com,2000:x>\"",
            ),
            ("!Reff x", "\"!Reff\""),
            ("!ref x", "\"!ref\""),
            ("! x", "\"!\""),
        ] {
            let text = format!("{TOPIC}    Properties:\n      TopicName: {value}\n");
            refused(&text, Code::TemplateUnknownTag, shown);
            refused(&text, Code::TemplateUnknownTag, "at line 5 column 18");
        }
        refused(
            "Resources:\n  !Ref A: {Type: AWS::SNS::Topic}\n",
            Code::TemplateInvalid,
            "tags the key \"A\"",
        );
    }

    #[test]
    fn tag_directives_are_refused_before_parsing() {
        refused(
            &format!(
                "%TAG ! tag:yaml.org,2002:\n---\n{TOPIC}    Properties: {{TopicName: !python/object x}}\n"
            ),
            Code::TemplateUnknownTag,
            "%TAG (line 1)",
        );
        refused(
            &format!("%YAML 1.1\n%TAG !x! tag:example.com,2000:\n---\n{TOPIC}"),
            Code::TemplateUnknownTag,
            "%TAG (line 2)",
        );
        // libyaml also breaks lines at U+2028: a directive there is found too.
        assert_eq!(tag_directive_line("a: b\u{2028}%TAG !x! y\n"), Some(1));
        assert_eq!(tag_directive_line("a: \"%TAG\"\n"), None);
        // Thousands of them would take libyaml quadratic time: refused at once.
        let many: String = (0..50_000)
            .map(|i| format!("%TAG !t{i}! tag:x,2000:\n"))
            .collect();
        refused(
            &format!("{many}---\n{TOPIC}"),
            Code::TemplateUnknownTag,
            "%TAG (line 1)",
        );
        // %YAML is allowed.
        assert!(review(&format!("%YAML 1.1\n---\n{TOPIC}")).0.is_some());
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_refused_unexpanded() {
        refused(
            &format!("{TOPIC}  B: &b\n    Type: AWS::SNS::Topic\n"),
            Code::TemplateYamlAlias,
            "anchor &b at line 4",
        );
        refused(
            &format!("{TOPIC}    Properties: {{TopicName: &n x, DisplayName: *n}}\n"),
            Code::TemplateYamlAlias,
            "alias *n at line 4",
        );
        refused(
            &format!("{TOPIC}    Properties:\n      <<: {{TopicName: x}}\n"),
            Code::TemplateYamlAlias,
            "merge key \"<<\" at line 5",
        );
        // A quoted "<<" is an ordinary key.
        assert!(
            review(&format!("{TOPIC}    Metadata:\n      \"<<\": x\n"))
                .0
                .is_some()
        );
        // Billion laughs: 10^9 nodes if expanded; refused at its first anchor, nothing expanded.
        let mut laughs = String::from(
            "Metadata:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            laughs.push_str(&format!(
                "  l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        laughs.push_str(TOPIC);
        let started = std::time::Instant::now();
        refused(&laughs, Code::TemplateYamlAlias, "anchor &l0 at line 2");
        refused(
            &laughs,
            Code::TemplateYamlAlias,
            "alias *l0 at line 3 column 12",
        );
        // 10 anchors and 90 aliases: each counted, 20 listed.
        refused(
            &laughs,
            Code::TemplateYamlAlias,
            "80 more problems of this kind",
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A template whose deepest list is `depth` levels down (the top-level mapping is 1).
    fn nested_template(depth: usize, flow: bool) -> String {
        let inner = depth - 4; // top, Resources, A, Properties
        let body = if flow {
            format!("{}x{}", "[".repeat(inner), "]".repeat(inner))
        } else {
            let mut body = String::new();
            for level in 0..inner {
                body.push_str(&format!("\n{}-", "  ".repeat(level + 4)));
            }
            body.push_str(" x");
            body
        };
        format!("{TOPIC}    Properties:\n      Deep: {body}\n")
    }

    #[test]
    fn nesting_is_bounded_at_the_documented_depth() {
        for flow in [true, false] {
            let (out, messages) = review(&nested_template(MAX_DOCUMENT_DEPTH, flow));
            assert!(out.is_some(), "{messages:?}");
            refused(
                &nested_template(MAX_DOCUMENT_DEPTH + 1, flow),
                Code::TemplateTooDeep,
                "more than 64 levels deep",
            );
        }
        refused(
            &nested_template(MAX_DOCUMENT_DEPTH + 1, true),
            Code::TemplateTooDeep,
            "at line 5 column 73",
        );
        let json_deep = format!(
            "{{\"Resources\": {{\"A\": {{\"Type\": \"AWS::SNS::Topic\", \"Properties\": {{\"D\": {}x{}}}}}}}}}",
            "[".repeat(61),
            "]".repeat(61)
        );
        refused(
            &json_deep,
            Code::TemplateTooDeep,
            "nested more than 64 levels deep",
        );
    }

    #[test]
    fn a_mebibyte_of_openings_is_refused_at_the_limit() {
        // Read whole, libyaml would take time quadratic in the depth (64k deep took 12.9 s in a
        // release build); refused at level 65, the rest is never scanned.
        let mib = 1 << 20;
        for (head, opening) in [
            ("", "["),
            ("Resources: ", "{a: "),
            ("", "- "),
            ("", "[{a: "),
        ] {
            let text = format!("{head}{}", opening.repeat(mib / opening.len()));
            let started = std::time::Instant::now();
            refused(&text, Code::TemplateTooDeep, "more than 64 levels deep");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{opening}"
            );
        }
        let json = format!("{{\"Resources\": {}", "{\"a\": ".repeat(mib / 6));
        refused(
            &json,
            Code::TemplateTooDeep,
            "nested more than 64 levels deep",
        );
    }

    #[test]
    fn keys_are_text_and_documents_one() {
        refused(
            &format!("{TOPIC}Metadata:\n  ? [a, b]\n  : c\n"),
            Code::TemplateInvalid,
            "list or mapping as a key at line 5",
        );
        refused(
            &format!("{TOPIC}---\n{TOPIC}"),
            Code::TemplateInvalid,
            "second YAML document (from line 4",
        );
        refused("", Code::TemplateInvalid, "is empty");
        refused("# nothing\n", Code::TemplateInvalid, "is empty");
    }

    #[test]
    fn plain_scalars_resolve_as_the_core_schema_says() {
        assert_eq!(
            resolve_plain("2010-09-09"),
            Yaml::String("2010-09-09".into())
        );
        assert_eq!(resolve_plain("~"), Yaml::Null);
        assert_eq!(resolve_plain("True"), Yaml::Bool(true));
        assert_eq!(resolve_plain("yes"), Yaml::String("yes".into()));
        assert_eq!(resolve_plain("-12"), Yaml::Number((-12).into()));
        assert_eq!(resolve_plain("1.5e3"), Yaml::Number(1500.0.into()));
        assert_eq!(resolve_plain("1.2.3"), Yaml::String("1.2.3".into()));
        assert_eq!(resolve_plain("e3"), Yaml::String("e3".into()));
        assert_eq!(plain_key_forms("0x1F"), ["0x1F", "31"]);
        assert_eq!(plain_key_forms("Type"), ["Type"]);
    }
}
