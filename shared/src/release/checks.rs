//! The release's HTTP checks: non-regression requests run against the new version's test
//! endpoint after each deployment, schema `shipgate.checks/v1`.
//!
//! The checks file is JSON (`docs/checks.schema.json`). Each check is one request, relative to
//! the endpoint the pipeline chooses (the ALB test listener for ECS, the new version's qualifier
//! for Lambda), so a release cannot point checks at an arbitrary host.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::problems::{ProblemCode as Code, Problems};
use super::schema::{Breaks, Validator, child, item, parse_json_strict};

/// The one checks schema version this shipgate reads.
pub const CHECKS_SCHEMA_VERSION: &str = "shipgate.checks/v1";

const MAX_CHECKS: usize = 100;
const MAX_PATH_LEN: usize = 2048;
const MAX_BODY_LEN: usize = 16 * 1024;
const MAX_FRAGMENT_LEN: usize = 4096;
const MAX_HEADERS: usize = 20;
/// Default and bounds of a check's timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 60_000;
const MIN_TIMEOUT_MS: u64 = 100;

/// A checks file that passed validation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Always [`CHECKS_SCHEMA_VERSION`].
    pub schema_version: String,
    pub checks: Vec<Check>,
}

/// One HTTP request and what its response must be.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique name, shown in results (`health`, `list-orders`).
    pub name: String,
    pub method: HttpMethod,
    /// Path and query, starting with `/` (`/orders?limit=1`).
    pub path: String,
    /// Request headers (e.g. `Accept`); `Host` and hop-by-hop headers are not allowed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, for methods that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The status the response must have.
    pub expect_status: u16,
    /// Text the response body must contain, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body_contains: Option<String>,
    /// How long to wait for the response.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// HTTP methods a check may use.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    const NAMES: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }

    fn takes_body(name: &str) -> bool {
        matches!(name, "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// Headers a check may not set: the pipeline owns the connection and the target.
const FORBIDDEN_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "keep-alive",
];

const CHECK_FIELDS: [&str; 8] = [
    "name",
    "method",
    "path",
    "headers",
    "body",
    "expect_status",
    "expect_body_contains",
    "timeout_ms",
];

/// Validates the checks file `file`. `None` when it has problems, all reported as
/// `checks_invalid` with paths `file#field`.
pub(crate) fn review_checks(file: &str, bytes: &[u8], problems: &mut Problems) -> Option<Checks> {
    let mut v = Validator::file(problems, file, Code::ChecksInvalid);
    let Some(text) = std::str::from_utf8(bytes).ok() else {
        v.report(
            Code::ChecksInvalid,
            "",
            "is not UTF-8 text: save it as UTF-8",
        );
        return None;
    };
    let value = match parse_json_strict(text.strip_prefix('\u{feff}').unwrap_or(text)) {
        Ok(value) => value,
        Err(err) => {
            v.report(
                Code::ChecksInvalid,
                "",
                format!("is not valid JSON: {err}: fix the JSON syntax"),
            );
            return None;
        }
    };
    let before = v.problems().total();
    walk_checks(&mut v, &value);
    if v.problems().total() != before {
        return None;
    }
    match serde_json::from_value(value) {
        Ok(checks) => Some(checks),
        Err(err) => {
            v.report(
                Code::ChecksInvalid,
                "",
                format!("does not match the schema: {err}"),
            );
            None
        }
    }
}

fn walk_checks(v: &mut Validator<'_>, value: &Value) {
    let Some(top) = v.object(value, "", &["schema_version", "checks"]) else {
        return;
    };
    match v.required_string(top, "", "schema_version") {
        Some(CHECKS_SCHEMA_VERSION) | None => {}
        Some(other) => {
            v.report(
                Code::UnknownSchemaVersion,
                "schema_version",
                format!("`schema_version` is {other:?}: use {CHECKS_SCHEMA_VERSION:?}"),
            );
            return;
        }
    }
    let Some(checks) = v.field(top, "", "checks", true) else {
        return;
    };
    let Some(items) = v.array(checks, "checks") else {
        return;
    };
    if items.is_empty() || items.len() > MAX_CHECKS {
        v.report(
            Code::InvalidValue,
            "checks",
            format!(
                "`checks` lists {} checks: list 1 to {MAX_CHECKS} (or leave `checks` out of \
                 release.json)",
                items.len()
            ),
        );
    }
    let mut names = HashSet::new();
    for (i, check) in items.iter().enumerate() {
        let at = item("checks", i);
        let Some(check) = v.object(check, &at, &CHECK_FIELDS) else {
            continue;
        };
        if let Some(name) = v.required_string(check, &at, "name") {
            let name_at = child(&at, "name");
            if v.text(name, &name_at, 100) && !names.insert(name) {
                v.report(
                    Code::InvalidValue,
                    &name_at,
                    format!("check name {name:?} is used twice: give each check its own name"),
                );
            }
        }
        let method = v.required_string(check, &at, "method");
        if let Some(method) = method
            && !HttpMethod::NAMES.contains(&method)
        {
            v.report(
                Code::InvalidValue,
                &child(&at, "method"),
                format!(
                    "`{at}.method` is {method:?}: use one of {}",
                    HttpMethod::NAMES.join(", ")
                ),
            );
        }
        if let Some(path) = v.required_string(check, &at, "path") {
            check_path(v, path, &child(&at, "path"));
        }
        if let Some(headers) = v.field(check, &at, "headers", false) {
            check_headers(v, headers, &child(&at, "headers"));
        }
        if let Some(body) = v.optional_string(check, &at, "body") {
            let body_at = child(&at, "body");
            v.plain_text(body, &body_at, Breaks::Allowed);
            if body.len() > MAX_BODY_LEN {
                v.report(
                    Code::InvalidValue,
                    &body_at,
                    format!("`{body_at}` is longer than {MAX_BODY_LEN} bytes: shorten it"),
                );
            }
            if let Some(method) = method.filter(|m| !HttpMethod::takes_body(m)) {
                v.report(
                    Code::InvalidValue,
                    &body_at,
                    format!("`{at}` sends a body with {method}: remove the body or use POST, PUT, PATCH or DELETE"),
                );
            }
        }
        if let Some(status) = v.field(check, &at, "expect_status", true) {
            v.integer(status, &child(&at, "expect_status"), 100, 599);
        }
        if let Some(fragment) = v.optional_string(check, &at, "expect_body_contains") {
            let fragment_at = child(&at, "expect_body_contains");
            v.plain_text(fragment, &fragment_at, Breaks::Allowed);
            if fragment.is_empty() || fragment.len() > MAX_FRAGMENT_LEN {
                v.report(
                    Code::InvalidValue,
                    &fragment_at,
                    format!("`{fragment_at}` must be 1 to {MAX_FRAGMENT_LEN} bytes (or left out)"),
                );
            }
        }
        if let Some(timeout) = v.field(check, &at, "timeout_ms", false) {
            v.integer(
                timeout,
                &child(&at, "timeout_ms"),
                MIN_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            );
        }
    }
}

/// A path and query on the test endpoint: no scheme or host, no spaces or control characters.
fn check_path(v: &mut Validator<'_>, path: &str, at: &str) {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= MAX_PATH_LEN
        && !path.contains('#')
        && path.bytes().all(|c| c.is_ascii_graphic());
    if !ok {
        v.report(
            Code::InvalidValue,
            at,
            format!(
                "`{at}` is {path:?}: write a path on the tested service, starting with a single \
                 \"/\" (like \"/health\" or \"/orders?limit=1\"), without host, spaces or \
                 fragment, at most {MAX_PATH_LEN} characters"
            ),
        );
    }
}

fn check_headers(v: &mut Validator<'_>, value: &Value, at: &str) {
    let Value::Object(headers) = value else {
        v.object(value, at, &[]);
        return;
    };
    if headers.len() > MAX_HEADERS {
        v.report(
            Code::InvalidValue,
            at,
            format!(
                "`{at}` sets {} headers: at most {MAX_HEADERS}",
                headers.len()
            ),
        );
    }
    for (name, header) in headers {
        let header_at = child(at, name);
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if !token || FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            v.report(
                Code::InvalidValue,
                &header_at,
                format!(
                    "header {name:?} cannot be set by a check: use a valid header name other \
                     than {}",
                    FORBIDDEN_HEADERS.join(", ")
                ),
            );
        }
        // A line break in a header value would start another header.
        if let Some(text) = v.string(header, &header_at) {
            v.plain_text(text, &header_at, Breaks::Refused);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(value: &Value) -> (Option<Checks>, Vec<super::super::Problem>) {
        let mut problems = Problems::default();
        let out = review_checks(
            "checks.json",
            &serde_json::to_vec(value).unwrap(),
            &mut problems,
        );
        (out, problems.into_vec())
    }

    #[test]
    fn good_checks_parse_with_defaults() {
        let (checks, problems) = review(&json!({
            "schema_version": "shipgate.checks/v1",
            "checks": [
                {"name": "health", "method": "GET", "path": "/health", "expect_status": 200,
                 "expect_body_contains": "ok"},
                {"name": "create", "method": "POST", "path": "/orders?dry_run=1",
                 "headers": {"Content-Type": "application/json"}, "body": "{}",
                 "expect_status": 201, "timeout_ms": 10000}
            ]
        }));
        assert!(problems.is_empty(), "{problems:?}");
        let checks = checks.unwrap();
        assert_eq!(checks.checks[0].method, HttpMethod::Get);
        assert_eq!(checks.checks[0].timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(checks.checks[1].headers["Content-Type"], "application/json");
    }

    #[test]
    fn every_problem_is_a_checks_problem_with_a_path() {
        let (checks, problems) = review(&json!({
            "schema_version": "shipgate.checks/v1",
            "checks": [
                {"name": "a", "method": "FETCH", "path": "http://evil.example/", "expect_status": 700},
                {"name": "a", "method": "GET", "path": "/x", "expect_status": "200",
                 "body": "no", "headers": {"Host": "evil"}, "retries": 3}
            ]
        }));
        assert!(checks.is_none());
        let paths: Vec<_> = problems
            .iter()
            .map(|p| p.path.as_deref().unwrap())
            .collect();
        for expected in [
            "checks.json#checks[0].method",
            "checks.json#checks[0].path",
            "checks.json#checks[0].expect_status",
            "checks.json#checks[1].name",
            "checks.json#checks[1].expect_status",
            "checks.json#checks[1].body",
            "checks.json#checks[1].headers.Host",
            "checks.json#checks[1].retries",
        ] {
            assert!(paths.contains(&expected), "{expected} not in {paths:?}");
        }
        assert!(problems.iter().all(|p| p.code == Code::ChecksInvalid));
    }

    #[test]
    fn not_json_is_reported() {
        let mut problems = Problems::default();
        assert!(review_checks("c.json", b"checks: []", &mut problems).is_none());
        let list = problems.into_vec();
        assert_eq!(list[0].path.as_deref(), Some("c.json"));
        assert!(list[0].message.starts_with("c.json: is not valid JSON"));
    }

    #[test]
    fn check_strings_take_no_control_or_bidi_characters() {
        let check = |field: &str, value: &str| {
            let mut check = json!({"name": "create", "method": "POST", "path": "/orders",
                                   "headers": {"Accept": "application/json"}, "body": "{}",
                                   "expect_status": 201, "expect_body_contains": "id"});
            if let Some(header) = field.strip_prefix("headers.") {
                check["headers"][header] = json!(value);
            } else {
                check[field] = json!(value);
            }
            review(&json!({"schema_version": "shipgate.checks/v1", "checks": [check]}))
        };
        for (field, multiline) in [
            ("name", true),
            ("body", true),
            ("expect_body_contains", true),
            ("headers.Accept", false),
        ] {
            let path = format!("checks.json#checks[0].{field}");
            let mut bad = vec![
                "a\u{0}b",
                "a\u{1b}[0m",
                "a\u{7f}",
                "a\u{85}b",
                "a\u{202e}b",
                "a\u{2068}b",
            ];
            if !multiline {
                bad.extend(["a\nb", "a\rb"]);
            }
            for value in bad {
                let (out, problems) = check(field, value);
                assert!(out.is_none(), "{field}: {value:?} accepted");
                assert!(
                    problems
                        .iter()
                        .any(|p| p.path.as_deref() == Some(path.as_str())),
                    "{field}: {value:?}: {problems:?}"
                );
            }
            let (out, problems) = check(field, "a\tb");
            assert!(out.is_some(), "{field}: {problems:?}");
        }
        let (out, problems) = check("body", "{\n  \"items\": []\n}");
        assert!(out.is_some(), "{problems:?}");
    }
}
