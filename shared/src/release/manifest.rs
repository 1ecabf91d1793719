//! `release.json`: the manifest of a release, schema `shipgate.release/v1`.
//!
//! The manifest says what the release is (application, version, the integrator's message and
//! contact), which images it ships (by digest), which CloudFormation templates deploy it and
//! with which parameters, where it goes (environments, in promotion order), and optionally which
//! checks prove it works. `docs/release-format.md` is the integrator's documentation of this
//! schema; `docs/release.schema.json` is its JSON Schema. Validation reports every problem with
//! its field path; the typed [`Manifest`] exists only for a manifest without problems.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::Limits;
use super::problems::{ProblemCode as Code, Problems};
use super::schema::{Breaks, Validator, child, item, parse_json_strict};
use super::zipdir::name_problems;
use crate::application::{MAX_ENVIRONMENTS, MAX_LABEL_LEN, is_label};

/// The manifest's file name, at the root of the archive.
pub const MANIFEST_PATH: &str = "release.json";
/// The one schema version this shipgate reads.
pub const SCHEMA_VERSION: &str = "shipgate.release/v1";

const MAX_MESSAGE_CHARS: usize = 4000;
const MAX_NAME_CHARS: usize = 200;

/// A release manifest that passed validation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// DNS-style name of the application (`orders`), used in stack names.
    pub application: String,
    /// The release's version (`1.4.2`), usable as an image tag.
    pub version: String,
    /// The integrator's note to approvers: what changes and why.
    pub message: String,
    /// Who built the release and gets its problems and outcome by email.
    pub integrator: Integrator,
    /// Where the release goes, in promotion order: as the manifest lists it (empty when it
    /// lists none), then, once intake has checked it against the application's chain
    /// ([`crate::application::Application::route`]), the environments it goes to, which is
    /// what a release record holds.
    #[serde(default)]
    pub environments: Vec<String>,
    /// The images the release ships, by digest.
    pub images: Vec<Image>,
    /// The CloudFormation templates that deploy the release, one stack each.
    pub templates: Vec<StackTemplate>,
    /// Path in the archive of the HTTP checks file, if the release has checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<String>,
}

/// The integrator who built the release.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Integrator {
    pub name: String,
    pub email: String,
}

/// One container image of the release, in the source account's registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The image's name in this release (`web`), used by placeholders: `${image.web.digest}`.
    pub name: String,
    /// ECR repository name, without registry host (`orders/web`).
    pub repository: String,
    /// The tag the integrator pushed (`1.4.2`).
    pub tag: String,
    /// The manifest digest, `sha256:` and 64 lowercase hex digits: what is deployed.
    pub digest: String,
}

/// One template of the release and the stack it deploys.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StackTemplate {
    /// Path of the template in the archive (`templates/service.yaml`).
    pub path: String,
    /// Short name of the stack (`service`); the stack is `<application>-<environment>-<stack>`.
    pub stack: String,
    /// Template parameters; values may hold placeholders (see [`Manifest::stack_parameters`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// What could be learnt of who and what a drop is, even from a manifest with problems: a
/// rejection still needs somewhere to send its report. Each field is set only when that field
/// of the manifest is itself valid.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseIdentity {
    pub application: Option<String>,
    pub version: Option<String>,
    pub integrator_name: Option<String>,
    pub integrator_email: Option<String>,
}

/// The deployment a manifest's parameters are resolved for.
#[derive(Clone, Copy, Debug)]
pub struct DeployTarget<'a> {
    /// The environment being deployed (`stg`).
    pub environment: &'a str,
    /// The registry host images are pulled from there
    /// (`222222222222.dkr.ecr.eu-west-1.amazonaws.com`).
    pub registry: &'a str,
}

/// A parameter whose placeholder cannot be resolved (only possible for a manifest that did not
/// come from validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {parameter} of template {template}: {reason}")]
pub struct PlaceholderError {
    pub template: String,
    pub parameter: String,
    pub reason: String,
}

impl Manifest {
    /// The image named `name`.
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name == name)
    }

    /// The CloudFormation stack name of `template` in `environment`.
    pub fn stack_name(&self, environment: &str, template: &StackTemplate) -> String {
        format!("{}-{environment}-{}", self.application, template.stack)
    }

    /// The parameters of `template` with placeholders resolved for `target`:
    /// `${release.application}`, `${release.version}`, `${environment}`,
    /// `${image.<name>.repository|tag|digest|uri}` (`uri` is
    /// `<registry>/<repository>@<digest>`), and `$${` for a literal `${`.
    pub fn stack_parameters(
        &self,
        template: &StackTemplate,
        target: &DeployTarget<'_>,
    ) -> Result<BTreeMap<String, String>, PlaceholderError> {
        template
            .parameters
            .iter()
            .map(|(key, raw)| {
                let fail = |reason: String| PlaceholderError {
                    template: template.path.clone(),
                    parameter: key.clone(),
                    reason,
                };
                let mut out = String::new();
                for segment in segments(raw).map_err(&fail)? {
                    match segment {
                        Segment::Text(text) => out.push_str(text),
                        Segment::Placeholder(name) => {
                            out.push_str(&self.resolve(name, target).map_err(&fail)?)
                        }
                    }
                }
                Ok((key.clone(), out))
            })
            .collect()
    }

    fn resolve(&self, name: &str, target: &DeployTarget<'_>) -> Result<String, String> {
        match Placeholder::parse(name, |n| self.image(n).is_some())? {
            Placeholder::Application => Ok(self.application.clone()),
            Placeholder::Version => Ok(self.version.clone()),
            Placeholder::Environment => Ok(target.environment.to_owned()),
            Placeholder::Image { name, field } => {
                let image = self
                    .image(name)
                    .ok_or_else(|| format!("no image named {name:?}"))?;
                Ok(match field {
                    ImageField::Repository => image.repository.clone(),
                    ImageField::Tag => image.tag.clone(),
                    ImageField::Digest => image.digest.clone(),
                    ImageField::Uri => {
                        format!("{}/{}@{}", target.registry, image.repository, image.digest)
                    }
                })
            }
        }
    }
}

/// A piece of a parameter value.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a parameter value into text and `${...}` placeholders (`$${` is a literal `${`).
fn segments(value: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push(Segment::Text(&rest[..at - 1]));
            out.push(Segment::Text("${"));
            rest = &rest[at + 2..];
            continue;
        }
        out.push(Segment::Text(&rest[..at]));
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or_else(|| {
            "a `${` is not closed by `}` (write `$${` for a literal `${`)".to_owned()
        })?;
        out.push(Segment::Placeholder(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push(Segment::Text(rest));
    out.retain(|s| *s != Segment::Text(""));
    Ok(out)
}

enum Placeholder<'a> {
    Application,
    Version,
    Environment,
    Image { name: &'a str, field: ImageField },
}

enum ImageField {
    Repository,
    Tag,
    Digest,
    Uri,
}

const PLACEHOLDERS_HELP: &str = "known placeholders are ${release.application}, \
    ${release.version}, ${environment} and ${image.<name>.repository|tag|digest|uri}";

impl<'a> Placeholder<'a> {
    fn parse(name: &'a str, image_exists: impl Fn(&str) -> bool) -> Result<Self, String> {
        match name.trim() {
            "release.application" => return Ok(Self::Application),
            "release.version" => return Ok(Self::Version),
            "environment" => return Ok(Self::Environment),
            _ => {}
        }
        let unknown = || format!("`${{{name}}}` is not a placeholder: {PLACEHOLDERS_HELP}");
        let Some(rest) = name.trim().strip_prefix("image.") else {
            return Err(unknown());
        };
        let Some((image, field)) = rest.rsplit_once('.') else {
            return Err(unknown());
        };
        let field = match field {
            "repository" => ImageField::Repository,
            "tag" => ImageField::Tag,
            "digest" => ImageField::Digest,
            "uri" => ImageField::Uri,
            _ => return Err(unknown()),
        };
        if !image_exists(image) {
            return Err(format!(
                "`${{{name}}}` names image {image:?}, which `images` does not list"
            ));
        }
        Ok(Self::Image { name: image, field })
    }
}

/// A template the manifest lists, as far as the manifest could be read: enough to find and
/// check the template even when other parts of the manifest have problems.
#[derive(Debug, Clone)]
pub(crate) struct TemplateRef {
    pub index: usize,
    pub path: String,
    pub parameters: Vec<String>,
}

/// What validation learnt from `release.json`.
#[derive(Debug, Default)]
pub(crate) struct ManifestReview {
    pub manifest: Option<Manifest>,
    pub identity: ReleaseIdentity,
    pub templates: Vec<TemplateRef>,
    pub checks: Option<String>,
}

/// Validates the bytes of `release.json`, reporting every problem found.
pub(crate) fn review_manifest(
    bytes: &[u8],
    limits: &Limits,
    problems: &mut Problems,
) -> ManifestReview {
    let mut review = ManifestReview::default();
    let text = match std::str::from_utf8(bytes) {
        // Editors on Windows add a byte-order mark; it is harmless and accepted.
        Ok(text) => text.strip_prefix('\u{feff}').unwrap_or(text),
        Err(err) => {
            problems.report(
                Code::ManifestInvalidJson,
                Some(MANIFEST_PATH),
                format!(
                    "release.json is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
                    err.valid_up_to()
                ),
            );
            return review;
        }
    };
    let value = match parse_json_strict(text) {
        Ok(value) => value,
        Err(err) => {
            problems.report(
                Code::ManifestInvalidJson,
                Some(MANIFEST_PATH),
                format!("release.json is not valid JSON: {err}: fix the JSON syntax"),
            );
            return review;
        }
    };
    let before = problems.total();
    let mut v = Validator::manifest(problems, MANIFEST_PATH);
    walk_manifest(&mut v, &value, limits, &mut review);
    if problems.total() == before {
        match serde_json::from_value::<Manifest>(value) {
            Ok(manifest) => review.manifest = Some(manifest),
            // The walk and the types agree; this is a guard, not an expected path.
            Err(err) => problems.report(
                Code::WrongType,
                Some(MANIFEST_PATH),
                format!("release.json does not match the schema: {err}"),
            ),
        }
    }
    review
}

const TOP_FIELDS: [&str; 9] = [
    "schema_version",
    "application",
    "version",
    "message",
    "integrator",
    "environments",
    "images",
    "templates",
    "checks",
];

fn walk_manifest(v: &mut Validator<'_>, value: &Value, limits: &Limits, out: &mut ManifestReview) {
    let Value::Object(top) = value else {
        v.object(value, "", &TOP_FIELDS);
        return;
    };
    match v.required_string(top, "", "schema_version") {
        Some(SCHEMA_VERSION) | None => {}
        Some(other) => {
            // Another schema may mean anything: nothing else is judged against v1.
            v.report(
                Code::UnknownSchemaVersion,
                "schema_version",
                format!(
                    "`schema_version` is {other:?}, which this shipgate does not know: use \
                     {SCHEMA_VERSION:?}"
                ),
            );
            return;
        }
    }
    v.object(value, "", &TOP_FIELDS);

    if let Some(app) = v.required_string(top, "", "application") {
        if is_label(app) {
            out.identity.application = Some(app.to_owned());
        } else {
            v.report(
                Code::InvalidValue,
                "application",
                format!(
                    "`application` is {app:?}: it names CloudFormation stacks, so use 1 to \
                     {MAX_LABEL_LEN} lowercase letters, digits and hyphens, starting with a \
                     letter and not ending with a hyphen"
                ),
            );
        }
    }
    if let Some(version) = v.required_string(top, "", "version") {
        if is_version(version) {
            out.identity.version = Some(version.to_owned());
        } else {
            v.report(
                Code::InvalidValue,
                "version",
                format!(
                    "`version` is {version:?}: it is also an image tag, so use 1 to 64 letters, \
                     digits, dots, underscores and hyphens, starting with a letter or digit"
                ),
            );
        }
    }
    if let Some(message) = v.required_string(top, "", "message") {
        v.text(message, "message", MAX_MESSAGE_CHARS);
    }
    if let Some(integrator) = v.field(top, "", "integrator", true) {
        walk_integrator(v, integrator, out);
    }
    if let Some(environments) = v.field(top, "", "environments", false) {
        walk_environments(v, environments);
    }
    let image_names = v
        .field(top, "", "images", true)
        .and_then(|images| walk_images(v, images));
    if let Some(templates) = v.field(top, "", "templates", true) {
        walk_templates(v, templates, image_names.as_deref(), limits, out);
    }
    if let Some(checks) = v.optional_string(top, "", "checks")
        && archive_path(v, checks, "checks")
    {
        out.checks = Some(checks.to_owned());
    }
}

fn walk_integrator(v: &mut Validator<'_>, value: &Value, out: &mut ManifestReview) {
    let Some(integrator) = v.object(value, "integrator", &["name", "email"]) else {
        return;
    };
    if let Some(name) = v.required_string(integrator, "integrator", "name")
        && v.text(name, "integrator.name", MAX_NAME_CHARS)
    {
        out.identity.integrator_name = Some(name.to_owned());
    }
    if let Some(email) = v.required_string(integrator, "integrator", "email") {
        match email_problem(email) {
            None => out.identity.integrator_email = Some(email.to_owned()),
            Some(problem) => v.report(
                Code::InvalidEmail,
                "integrator.email",
                format!(
                    "`integrator.email` is {email:?}, which is not a plain email address \
                     ({problem}): write it as name@example.com, without a display name"
                ),
            ),
        }
    }
}

fn walk_environments(v: &mut Validator<'_>, value: &Value) {
    let Some(items) = v.array(value, "environments") else {
        return;
    };
    if items.is_empty() {
        v.report(
            Code::InvalidEnvironment,
            "environments",
            "`environments` is empty: list where the release goes, e.g. [\"int\", \"stg\"], or \
             leave the field out for the application's whole chain",
        );
    }
    if items.len() > MAX_ENVIRONMENTS {
        v.report(
            Code::InvalidEnvironment,
            "environments",
            format!(
                "`environments` lists {}: an application's chain has at most {MAX_ENVIRONMENTS}",
                items.len()
            ),
        );
    }
    // Which names an application has, and their order, is its declaration's: intake checks
    // the list against it (`environments_not_in_chain`).
    let mut seen: Vec<&str> = Vec::new();
    for (i, item_value) in items.iter().enumerate() {
        let at = item("environments", i);
        let Some(name) = v.string(item_value, &at) else {
            continue;
        };
        if !is_label(name) {
            v.report(
                Code::InvalidEnvironment,
                &at,
                format!(
                    "`{at}` is {name:?}, which is not an environment name: 1 to \
                     {MAX_LABEL_LEN} lowercase letters, digits and hyphens, starting with a \
                     letter and not ending with a hyphen"
                ),
            );
        } else if seen.contains(&name) {
            v.report(
                Code::InvalidEnvironment,
                &at,
                format!("`environments` lists {name:?} twice: list it once"),
            );
        } else {
            seen.push(name);
        }
    }
}

/// Validates `images` and returns the names it declares (valid or not: placeholders that use
/// them are then not reported a second time); `None` when `images` is not a list at all, so
/// that placeholders are not judged against a list that could not be read.
fn walk_images(v: &mut Validator<'_>, value: &Value) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let items = v.array(value, "images")?;
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_reference: HashMap<(&str, &str), (&str, usize)> = HashMap::new();
    for (i, image_value) in items.iter().enumerate() {
        let at = item("images", i);
        let Some(image) = v.object(image_value, &at, &["name", "repository", "tag", "digest"])
        else {
            continue;
        };
        let name = v.required_string(image, &at, "name");
        if let Some(name) = name {
            names.push(name.to_owned());
            if !is_label(name) {
                v.report(
                    Code::InvalidValue,
                    &child(&at, "name"),
                    format!(
                        "`{at}.name` is {name:?}: use 1 to {MAX_LABEL_LEN} lowercase letters, \
                         digits and hyphens, starting with a letter"
                    ),
                );
            }
            if let Some(first) = by_name.insert(name, i) {
                v.report(
                    Code::DuplicateImage,
                    &child(&at, "name"),
                    format!(
                        "image name {name:?} is used by images[{first}] and {at}: give each image \
                         its own name"
                    ),
                );
            }
        }
        let repository = v.required_string(image, &at, "repository");
        if let Some(repository) = repository
            && let Some(problem) = repository_problem(repository)
        {
            v.report(
                Code::InvalidRepository,
                &child(&at, "repository"),
                format!("`{at}.repository` is {repository:?}: {problem}"),
            );
        }
        let tag = v.required_string(image, &at, "tag");
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            v.report(
                Code::InvalidTag,
                &child(&at, "tag"),
                format!(
                    "`{at}.tag` is {tag:?}, which is not an image tag: use 1 to 128 letters, \
                     digits, . _ -, not starting with . or -"
                ),
            );
        }
        let digest = v.required_string(image, &at, "digest");
        if let Some(digest) = digest
            && !is_digest(digest)
        {
            v.report(
                Code::InvalidDigest,
                &child(&at, "digest"),
                format!(
                    "`{at}.digest` is {digest:?}: write the image manifest's digest as \"sha256:\" \
                     followed by 64 lowercase hex digits (as `docker buildx imagetools inspect` \
                     or `crane digest` print it)"
                ),
            );
        }
        if let (Some(repository), Some(tag), Some(digest)) = (repository, tag, digest)
            && let Some((other, first)) = by_reference.insert((repository, tag), (digest, i))
            && other != digest
        {
            v.report(
                Code::DuplicateImage,
                &child(&at, "digest"),
                format!(
                    "{repository}:{tag} has digest {other} in images[{first}] and {digest} in \
                     {at}: one tag names one image; fix the digest or the tag"
                ),
            );
        }
    }
    Some(names)
}

fn walk_templates(
    v: &mut Validator<'_>,
    value: &Value,
    image_names: Option<&[String]>,
    limits: &Limits,
    out: &mut ManifestReview,
) {
    let Some(items) = v.array(value, "templates") else {
        return;
    };
    if items.is_empty() {
        v.report(
            Code::InvalidValue,
            "templates",
            "`templates` is empty: list at least one CloudFormation template",
        );
    } else if items.len() > limits.max_templates as usize {
        v.report(
            Code::InvalidValue,
            "templates",
            format!(
                "`templates` lists {} templates, more than the {} allowed: deploy fewer stacks \
                 per release",
                items.len(),
                limits.max_templates
            ),
        );
    }
    let mut paths: HashMap<&str, usize> = HashMap::new();
    let mut stacks: HashMap<&str, usize> = HashMap::new();
    for (i, template_value) in items.iter().enumerate() {
        let at = item("templates", i);
        let Some(template) = v.object(template_value, &at, &["path", "stack", "parameters"]) else {
            continue;
        };
        let path = v.required_string(template, &at, "path");
        let usable_path = path.filter(|p| archive_path(v, p, &child(&at, "path")));
        if let Some(path) = path
            && let Some(first) = paths.insert(path, i)
        {
            v.report(
                Code::DuplicateTemplate,
                &child(&at, "path"),
                format!("template {path:?} is listed by templates[{first}] and {at}: list it once"),
            );
        }
        if let Some(stack) = v.required_string(template, &at, "stack") {
            if !is_label(stack) {
                v.report(
                    Code::InvalidValue,
                    &child(&at, "stack"),
                    format!(
                        "`{at}.stack` is {stack:?}: it names a CloudFormation stack, so use 1 to \
                         {MAX_LABEL_LEN} lowercase letters, digits and hyphens, starting with a \
                         letter and not ending with a hyphen"
                    ),
                );
            }
            if let Some(first) = stacks.insert(stack, i) {
                v.report(
                    Code::DuplicateStack,
                    &child(&at, "stack"),
                    format!(
                        "stack {stack:?} is deployed by templates[{first}] and {at}: give each \
                         template its own stack"
                    ),
                );
            }
        }
        let parameters = match v.field(template, &at, "parameters", false) {
            Some(parameters) => {
                walk_parameters(v, parameters, &child(&at, "parameters"), image_names)
            }
            None => Vec::new(),
        };
        if let Some(path) = usable_path {
            out.templates.push(TemplateRef {
                index: i,
                path: path.to_owned(),
                parameters,
            });
        }
    }
}

/// Validates a `parameters` object and returns its keys.
fn walk_parameters(
    v: &mut Validator<'_>,
    value: &Value,
    at: &str,
    image_names: Option<&[String]>,
) -> Vec<String> {
    let Value::Object(parameters) = value else {
        v.object(value, at, &[]);
        return Vec::new();
    };
    for (key, raw) in parameters {
        let path = child(at, key);
        if !is_parameter_name(key) {
            v.report(
                Code::InvalidValue,
                &path,
                format!(
                    "parameter name {key:?} is not a CloudFormation parameter name: use 1 to 255 \
                     letters and digits"
                ),
            );
        }
        let Some(raw) = v.string(raw, &path) else {
            continue;
        };
        // Approvers see parameter values; CloudFormation passes them on to resources.
        v.plain_text(raw, &path, Breaks::Allowed);
        let placeholders = match segments(raw) {
            Ok(segments) => segments,
            Err(reason) => {
                v.report(
                    Code::UnknownPlaceholder,
                    &path,
                    format!("`{path}`: {reason}"),
                );
                continue;
            }
        };
        for segment in placeholders {
            if let Segment::Placeholder(name) = segment
                && let Err(reason) = Placeholder::parse(name, |n| {
                    image_names.is_none_or(|names| names.iter().any(|i| i == n))
                })
            {
                v.report(
                    Code::UnknownPlaceholder,
                    &path,
                    format!("`{path}`: {reason}"),
                );
            }
        }
    }
    parameters.keys().cloned().collect()
}

/// A path the manifest gives for a file in the archive: relative, `/`-separated, no `.` or
/// `..` parts. Reports and returns `false` otherwise.
fn archive_path(v: &mut Validator<'_>, path: &str, at: &str) -> bool {
    let mut ok = true;
    for (_, message) in name_problems(path) {
        v.report(Code::InvalidValue, at, format!("`{at}`: {message}"));
        ok = false;
    }
    if ok && (path.ends_with('/') || path.split('/').any(|p| p == "." || p.is_empty())) {
        v.report(
            Code::InvalidValue,
            at,
            format!(
                "`{at}` is {path:?}: name a file by its path from the archive root, like \
                 \"templates/service.yaml\" (no \"./\", no empty parts, no trailing \"/\")"
            ),
        );
        ok = false;
    }
    ok
}

fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Why `s` is not the name of a repository in the source registry, if it is not.
fn repository_problem(s: &str) -> Option<&'static str> {
    if s.contains([':', '@']) {
        return Some("it includes a tag or a digest: give them in `tag` and `digest`");
    }
    let host = s.split('/').next().unwrap_or_default();
    if s.contains('/') && (host.contains(".dkr.ecr.") || host.ends_with(".amazonaws.com")) {
        return Some("it includes the registry host: give the repository name only (orders/web)");
    }
    if !is_repository(s) {
        return Some(
            "it is not an ECR repository name: use 2 to 256 lowercase letters, digits and . _ - /, \
             each part starting and ending with a letter or digit",
        );
    }
    None
}

/// ECR: `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2 to 256 characters.
fn is_repository(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (2..=256).contains(&s.len())
        && s.split('/').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && alnum(b[0])
                && alnum(b[b.len() - 1])
                && b.windows(2).all(|w| alnum(w[0]) || alnum(w[1]))
                && b.iter()
                    .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
        })
}

/// OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `sha256:` and 64 lowercase hex digits.
pub(crate) fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

fn is_parameter_name(s: &str) -> bool {
    (1..=255).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// Why `email` is not a plain address (`local@domain.tld`), if it is not. Deliberately
/// stricter than RFC 5322 (no quoted parts, no comments, no IP literals): it is used as an SES
/// destination, and a plain address is what every integrator has.
fn email_problem(email: &str) -> Option<&'static str> {
    if email.len() > 254 {
        return Some("longer than 254 characters");
    }
    if email.contains(['<', '>', ' ']) {
        return Some("it holds spaces or angle brackets");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some("no @");
    };
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    if !local_ok {
        return Some("the part before @ is not valid");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let labels_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()));
    if !(labels_ok && tld_ok) {
        return Some("the domain is not valid");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A manifest with every field, two images and a template (the fixture the schema tests and
    /// the change-set action's tests share).
    pub(crate) fn good() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/release-manifest.json"))
            .expect("the fixture is JSON")
    }

    fn review(value: &Value) -> (ManifestReview, Vec<super::super::Problem>) {
        let mut problems = Problems::default();
        let bytes = serde_json::to_vec(value).unwrap();
        let review = review_manifest(&bytes, &Limits::default(), &mut problems);
        (review, problems.into_vec())
    }

    fn found(problems: &[super::super::Problem]) -> Vec<(&'static str, Option<&str>)> {
        problems
            .iter()
            .map(|p| (p.code.as_str(), p.path.as_deref()))
            .collect()
    }

    #[test]
    fn a_good_manifest_is_typed_and_identified() {
        let (review, problems) = review(&good());
        assert!(problems.is_empty(), "{problems:?}");
        let manifest = review.manifest.unwrap();
        assert_eq!(manifest.application, "orders");
        assert_eq!(manifest.images[1].name, "worker");
        assert_eq!(manifest.checks.as_deref(), Some("checks.json"));
        assert_eq!(
            review.identity.integrator_email.as_deref(),
            Some("release@acme.example")
        );
        assert_eq!(review.templates[0].path, "templates/service.yaml");
        assert_eq!(review.templates[0].parameters.len(), 4);
    }

    #[test]
    fn environments_are_kept_as_listed_and_none_listed_is_the_whole_chain() {
        let mut value = good();
        value.as_object_mut().unwrap().remove("environments");
        let manifest = review(&value).0.manifest.unwrap();
        // Empty: the application's whole chain, which intake fills in.
        assert!(manifest.environments.is_empty());
        // Any chain's names: which ones an application has is its declaration's.
        value["environments"] = json!(["dev", "eu-prod"]);
        let manifest = review(&value).0.manifest.unwrap();
        assert_eq!(manifest.environments, ["dev", "eu-prod"]);
        value["environments"] = json!(["a", "b", "c", "d", "e", "f", "g"]);
        let (_, problems) = review(&value);
        assert!(
            found(&problems).contains(&("invalid_environment", Some("environments"))),
            "seven environments are more than a chain holds"
        );
    }

    #[test]
    fn placeholders_resolve_for_a_target() {
        let manifest = review(&good()).0.manifest.unwrap();
        let target = DeployTarget {
            environment: "stg",
            registry: "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
        };
        let params = manifest
            .stack_parameters(&manifest.templates[0], &target)
            .unwrap();
        assert_eq!(
            params["ImageUri"],
            format!(
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com/orders/web@sha256:{}",
                "a".repeat(64)
            )
        );
        assert_eq!(params["Version"], "1.4.2");
        assert_eq!(params["Env"], "stg");
        assert_eq!(params["Literal"], "${AWS::Region}");
        assert_eq!(
            manifest.stack_name("stg", &manifest.templates[0]),
            "orders-stg-service"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut value = good();
        value["images"][1]["digest"] = json!("sha256:XYZ");
        value["images"][0]["sha"] = json!("x");
        value["integrator"]["email"] = json!("Acme <release@acme.example>");
        value["integrator"].as_object_mut().unwrap().remove("name");
        value["application"] = json!("Orders_App");
        value["environments"] = json!(["int", "QA", "prod", "stg", "stg"]);
        value["images"][1]["name"] = json!("web");
        value["images"][1]["repository"] = json!("123.dkr.ecr.eu-west-1.amazonaws.com/web");
        value["images"][1]["tag"] = json!("-bad");
        value["templates"][0]["parameters"]["X"] = json!("${image.api.digest}");
        value["templates"][0]["parameters"]["Y"] = json!(3);
        value["extra"] = json!(true);
        let (review, problems) = review(&value);
        assert!(review.manifest.is_none());
        let found = found(&problems);
        for expected in [
            ("invalid_digest", Some("images[1].digest")),
            ("unknown_field", Some("images[0].sha")),
            ("unknown_field", Some("extra")),
            ("invalid_email", Some("integrator.email")),
            ("missing_field", Some("integrator.name")),
            ("invalid_value", Some("application")),
            ("invalid_environment", Some("environments[1]")),
            ("invalid_environment", Some("environments[4]")),
            ("duplicate_image", Some("images[1].name")),
            ("invalid_repository", Some("images[1].repository")),
            ("invalid_tag", Some("images[1].tag")),
            ("unknown_placeholder", Some("templates[0].parameters.X")),
            ("wrong_type", Some("templates[0].parameters.Y")),
        ] {
            assert!(found.contains(&expected), "{expected:?} not in {found:?}");
        }
        // What was valid still identifies the release.
        assert_eq!(review.identity.version.as_deref(), Some("1.4.2"));
        assert_eq!(review.identity.application, None);
        assert_eq!(review.templates.len(), 1);
    }

    #[test]
    fn unreadable_images_do_not_make_placeholders_wrong_too() {
        let mut value = good();
        value["images"] = json!({"web": "orders/web"});
        let (_, problems) = review(&value);
        assert_eq!(found(&problems), [("wrong_type", Some("images"))]);
    }

    #[test]
    fn an_unknown_schema_version_stops_the_review() {
        let mut value = good();
        value["schema_version"] = json!("shipgate.release/v2");
        value["bogus"] = json!(1);
        let (_, problems) = review(&value);
        assert_eq!(
            found(&problems),
            [("unknown_schema_version", Some("schema_version"))]
        );
        assert!(problems[0].message.contains("shipgate.release/v1"));
    }

    #[test]
    fn missing_required_fields_are_each_named() {
        let (_, problems) = review(&json!({"schema_version": "shipgate.release/v1"}));
        let paths: Vec<_> = problems.iter().filter_map(|p| p.path.as_deref()).collect();
        assert_eq!(
            paths,
            [
                "application",
                "version",
                "message",
                "integrator",
                "images",
                "templates"
            ]
        );
    }

    #[test]
    fn not_json_not_utf8_and_not_an_object_are_reported() {
        let mut problems = Problems::default();
        review_manifest(b"{\"a\": ", &Limits::default(), &mut problems);
        review_manifest(&[0xff, 0xfe], &Limits::default(), &mut problems);
        review_manifest(b"[1]", &Limits::default(), &mut problems);
        let codes: Vec<_> = problems
            .into_vec()
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "manifest_invalid_json",
                "manifest_invalid_json",
                "wrong_type"
            ]
        );
    }

    #[test]
    fn template_paths_must_be_safe_and_unique() {
        let mut value = good();
        value["templates"] = json!([
            {"path": "../x.yaml", "stack": "a"},
            {"path": "./t.yaml", "stack": "b"},
            {"path": "t.yaml", "stack": "c"},
            {"path": "t.yaml", "stack": "c"}
        ]);
        value["checks"] = json!("/abs/checks.json");
        let (review, problems) = review(&value);
        let found = found(&problems);
        assert!(found.contains(&("invalid_value", Some("templates[0].path"))));
        assert!(found.contains(&("invalid_value", Some("templates[1].path"))));
        assert!(found.contains(&("duplicate_template", Some("templates[3].path"))));
        assert!(found.contains(&("duplicate_stack", Some("templates[3].stack"))));
        assert!(found.contains(&("invalid_value", Some("checks"))));
        assert_eq!(review.templates.len(), 2);
        assert!(review.checks.is_none());
    }

    #[test]
    fn rules_accept_and_refuse_what_they_should() {
        assert!(is_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!is_digest(&format!("sha256:{}", "0F".repeat(32))));
        assert!(!is_digest(&format!("sha512:{}", "0f".repeat(32))));
        assert!(is_repository("orders/web-api_v2.x"));
        assert!(!is_repository("Orders/web"));
        assert!(!is_repository("orders//web"));
        assert!(!is_repository("orders/-web"));
        assert!(!is_repository("a"));
        assert!(is_tag("1.4.2_rc-1") && is_tag("_x") && !is_tag(".x") && !is_tag(""));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(is_label("orders-2") && !is_label("2orders") && !is_label("orders-"));
        assert_eq!(email_problem("first.last+tag@sub.example.com"), None);
        for bad in [
            "a@b",
            "@x.com",
            "a..b@x.com",
            "a@-x.com",
            "a b@x.com",
            "a@x.c0m",
            "a@x.c",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn segments_split_placeholders_and_escapes() {
        assert_eq!(
            segments("a${x}b$${y}").unwrap(),
            [
                Segment::Text("a"),
                Segment::Placeholder("x"),
                Segment::Text("b"),
                Segment::Text("${"),
                Segment::Text("y}")
            ]
        );
        assert!(segments("${open").is_err());
    }

    /// Every string of the manifest, by JSON pointer, with the field path problems name.
    const STRING_FIELDS: [(&str, &str); 15] = [
        ("/schema_version", "schema_version"),
        ("/application", "application"),
        ("/version", "version"),
        ("/message", "message"),
        ("/integrator/name", "integrator.name"),
        ("/integrator/email", "integrator.email"),
        ("/environments/1", "environments[1]"),
        ("/images/0/name", "images[0].name"),
        ("/images/0/repository", "images[0].repository"),
        ("/images/0/tag", "images[0].tag"),
        ("/images/0/digest", "images[0].digest"),
        ("/templates/0/path", "templates[0].path"),
        ("/templates/0/stack", "templates[0].stack"),
        (
            "/templates/0/parameters/Literal",
            "templates[0].parameters.Literal",
        ),
        ("/checks", "checks"),
    ];

    /// Fields where a line break is text: they are shown to people as paragraphs.
    const MULTILINE_FIELDS: [&str; 3] = [
        "message",
        "integrator.name",
        "templates[0].parameters.Literal",
    ];

    #[test]
    fn no_manifest_field_takes_control_or_bidi_characters() {
        let refused_everywhere = [
            '\u{0}', '\u{7}', '\u{8}', '\u{b}', '\u{c}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}',
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ];
        let mut accepted = Vec::new();
        for (pointer, path) in STRING_FIELDS {
            let breaks = if MULTILINE_FIELDS.contains(&path) {
                &[][..]
            } else {
                &['\n', '\r'][..]
            };
            for &c in refused_everywhere.iter().chain(breaks) {
                let mut value = good();
                let field = value.pointer_mut(pointer).unwrap();
                let text = field.as_str().unwrap().to_owned();
                let mid = text.len() / 2;
                *field = json!(format!("{}{c}{}", &text[..mid], &text[mid..]));
                let (_, problems) = review(&value);
                if !problems.iter().any(|p| p.path.as_deref() == Some(path)) {
                    accepted.push(format!("U+{:04X} in {path}: {problems:?}", u32::from(c)));
                }
            }
        }
        assert!(accepted.is_empty(), "{accepted:#?}");
    }

    #[test]
    fn text_fields_say_which_character_and_where() {
        let mut value = good();
        value["message"] = json!("Approve \u{202e}gnp.exe");
        value["templates"][0]["parameters"]["Literal"] = json!("a\u{1b}[2J");
        let (_, problems) = review(&value);
        let message = |path: &str| {
            problems
                .iter()
                .find(|p| p.path.as_deref() == Some(path))
                .map(|p| (p.code, p.message.clone()))
                .unwrap()
        };
        let (code, text) = message("message");
        assert_eq!(code, Code::InvalidValue);
        assert!(
            text.contains("bidirectional formatting character U+202E (character 9)"),
            "{text}"
        );
        let (_, text) = message("templates[0].parameters.Literal");
        assert!(
            text.contains("control character U+001B (character 2)"),
            "{text}"
        );
        // Line breaks, tabs and right-to-left marks are text.
        let mut value = good();
        value["message"] = json!("Line one\r\nline\ttwo \u{200f}\u{5e9}\u{5dc}\u{5d5}\u{5dd}");
        value["integrator"]["name"] = json!("\u{5d0}\u{5e7}\u{5de}\u{5d4} \u{200e}Acme");
        value["templates"][0]["parameters"]["Literal"] = json!("-----BEGIN-----\nabc\n");
        let (review, problems) = review(&value);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(review.manifest.is_some());
    }
}
