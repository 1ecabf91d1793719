//! `docs/release.schema.json` held to the manifest validator.
//!
//! Integrators check `release.json` against the JSON Schema before they upload (as
//! `docs/release-format.md` tells them); shipgate checks it with
//! [`shipgate::release::inspect_release`]. If the two drift apart, a manifest that passes the
//! schema is rejected on upload, or the schema refuses one shipgate would take. These tests run
//! both over every `release.json` the docs show (the ```json blocks of `release-format.md`, found
//! by reading the file, so a new example is tested without touching this file), the sample
//! releases of `examples/`, and a table of good and bad manifests, and require the same verdict.
//! The rules a schema cannot express (`beyond_the_schema`) are listed as such: shipgate refuses
//! those manifests and the schema lets them through, as the docs say.
//!
//! The validator is run the way intake runs it: on a zip holding the manifest, a template for
//! each path it lists (declaring the parameters it gives) and its checks file, so that the only
//! problems found are the manifest's own.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};
use shipgate::release::{Inspection, Limits, inspect_release};

// ---------------------------------------------------------------------------------------------
// The two judges.

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ is inside the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compile(file: &str, assert_formats: bool) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(file)).expect("the schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(assert_formats)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} does not compile: {e}"))
}

fn schema(file: &str) -> jsonschema::Validator {
    compile(file, true)
}

fn release_schema() -> jsonschema::Validator {
    schema("docs/release.schema.json")
}

/// The release schema as validators read it: with `format` asserted (as `check-jsonschema`, the
/// tool the docs show, does by default) and as an annotation only (2020-12's default). Its
/// patterns must hold the line alone: `"format": "email"` is a bonus where a tool checks it.
fn release_schemas() -> [(&'static str, jsonschema::Validator); 2] {
    [
        (
            "formats asserted",
            compile("docs/release.schema.json", true),
        ),
        (
            "formats as annotations",
            compile("docs/release.schema.json", false),
        ),
    ]
}

/// What the schema says is wrong with `manifest` (empty: it passes).
fn schema_errors(schema: &jsonschema::Validator, manifest: &Value) -> Vec<String> {
    schema
        .iter_errors(manifest)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect()
}

/// A zip of `files` (name, content), as an integrator's zip tool writes it.
fn zip(files: &[(String, Vec<u8>)]) -> Bytes {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        writer
            .start_file(name.as_str(), options)
            .expect("a new entry");
        writer.write_all(content).expect("written in memory");
    }
    Bytes::from(writer.finish().expect("a finished zip").into_inner())
}

fn inspect(files: &[(String, Vec<u8>)]) -> Inspection {
    futures::executor::block_on(inspect_release(&zip(files), &Limits::default()))
}

/// A path the validator will look for in the zip: the ones it refuses are not added, or the
/// zip itself would have problems (path traversal, absolute paths...) besides the manifest.
fn usable_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    !path.is_empty()
        && path.len() <= 1024
        && !path.chars().any(char::is_control)
        && !path.contains('\\')
        && !path.starts_with('/')
        && !(bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
        && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

/// A CloudFormation template (JSON) declaring `parameters`.
fn template_declaring(parameters: &BTreeSet<String>) -> Vec<u8> {
    let declared: serde_json::Map<String, Value> = parameters
        .iter()
        .map(|name| (name.clone(), json!({"Type": "String"})))
        .collect();
    serde_json::to_vec_pretty(&json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": declared,
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}
    }))
    .expect("JSON")
}

const A_CHECKS_FILE: &str = r#"{"schema_version": "shipgate.checks/v1",
  "checks": [{"name": "health", "method": "GET", "path": "/health", "expect_status": 200}]}"#;

/// `manifest` in a zip with a template for each path it lists (declaring the parameters given to
/// it, valid names only) and, when it names one, a checks file.
fn drop_around(manifest: &Value) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "release.json".to_owned(),
        serde_json::to_vec_pretty(manifest).expect("JSON"),
    )];
    let mut added = BTreeSet::from(["release.json".to_owned()]);
    let mut add = |files: &mut Vec<(String, Vec<u8>)>, path: &str, content: Vec<u8>| {
        if usable_path(path) && added.insert(path.to_lowercase()) {
            files.push((path.to_owned(), content));
        }
    };
    let templates = manifest.get("templates").and_then(Value::as_array);
    for template in templates.into_iter().flatten() {
        let Some(path) = template.get("path").and_then(Value::as_str) else {
            continue;
        };
        let parameters = template
            .get("parameters")
            .and_then(Value::as_object)
            .map(|p| {
                p.keys()
                    .filter(|k| {
                        (1..=255).contains(&k.len()) && k.bytes().all(|c| c.is_ascii_alphanumeric())
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        add(&mut files, path, template_declaring(&parameters));
    }
    if let Some(path) = manifest.get("checks").and_then(Value::as_str) {
        add(&mut files, path, A_CHECKS_FILE.as_bytes().to_vec());
    }
    files
}

/// The validator's problems with `manifest`, as `code at path`.
fn validator_problems(manifest: &Value) -> Vec<(String, String)> {
    let inspection = inspect(&drop_around(manifest));
    let problems: Vec<(String, String)> = inspection
        .problems
        .iter()
        .map(|p| {
            (
                p.code.as_str().to_owned(),
                p.path.clone().unwrap_or_default(),
            )
        })
        .collect();
    // The zip is built to hold every file the manifest names: anything else is this harness's
    // mistake, not the manifest's.
    for (code, path) in &problems {
        assert!(
            !matches!(
                code.as_str(),
                "template_missing" | "checks_missing" | "template_invalid" | "checks_invalid"
            ),
            "the test's zip is wrong: {code} at {path}"
        );
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// A manifest both judges accept; each case changes one thing in it.
fn base() -> Value {
    serde_json::from_str(include_str!("fixtures/release-manifest.json"))
        .expect("the fixture is JSON")
}

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut manifest = base();
    change(&mut manifest);
    manifest
}

fn without(pointer: &str) -> Value {
    with(|m| {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        m.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("an object")
            .remove(key)
            .expect("the field is there");
    })
}

fn templates(count: usize) -> Value {
    (0..count)
        .map(|i| json!({"path": format!("templates/t{i}.yaml"), "stack": format!("s{i}")}))
        .collect()
}

/// Manifests both judges accept.
fn good_manifests() -> Vec<(&'static str, Value)> {
    vec![
        ("the base manifest", base()),
        (
            "only what is required",
            json!({
                "schema_version": "shipgate.release/v1", "application": "a", "version": "1",
                "message": "m", "integrator": {"name": "n", "email": "a@b.co"},
                "images": [], "templates": [{"path": "t.yaml", "stack": "s"}]
            }),
        ),
        (
            "no environments: the application's whole chain",
            without("/environments"),
        ),
        (
            "environments named as the application's team chose",
            with(|m| m["environments"] = json!(["eu-int", "eu-prod2"])),
        ),
        (
            "every environment",
            with(|m| m["environments"] = json!(["dev", "int", "stg", "prod"])),
        ),
        ("dev alone", with(|m| m["environments"] = json!(["dev"]))),
        (
            "an empty image list",
            with(|m| {
                m["images"] = json!([]);
                m["templates"][0]["parameters"] = json!({"Version": "${release.version}"});
            }),
        ),
        (
            "a thousand images: no rule limits their count (the 1 MiB manifest does)",
            with(|m| {
                m["images"] = (0..1000)
                    .map(|i| {
                        json!({"name": format!("img{i}"), "repository": format!("orders/img{i}"),
                                    "tag": "1.4.2", "digest": format!("sha256:{i:064x}")})
                    })
                    .collect();
                m["templates"][0]["parameters"] = json!({});
            }),
        ),
        ("twenty templates", with(|m| m["templates"] = templates(20))),
        ("no checks", without("/checks")),
        (
            "checks in a folder",
            with(|m| m["checks"] = json!("tests/http-checks.json")),
        ),
        (
            "a dotted file name",
            with(|m| m["templates"][0]["path"] = json!("templates/.service.v2.yaml")),
        ),
        (
            "empty parameters",
            with(|m| m["templates"][0]["parameters"] = json!({})),
        ),
        (
            "application of 32 characters",
            with(|m| m["application"] = json!(format!("a{}", "b".repeat(31)))),
        ),
        (
            "application with digits and hyphens",
            with(|m| m["application"] = json!("orders-2-api")),
        ),
        (
            "a pre-release version",
            with(|m| m["version"] = json!("2.0.0-rc.1")),
        ),
        (
            "version of 64 characters",
            with(|m| m["version"] = json!("1".repeat(64))),
        ),
        (
            "version with underscore",
            with(|m| m["version"] = json!("Build_2026.11")),
        ),
        (
            "a message of 4000 characters",
            with(|m| m["message"] = json!("x".repeat(4000))),
        ),
        (
            "a message of 4000 characters outside ASCII (both count characters)",
            with(|m| m["message"] = json!("\u{1F680}".repeat(4000))),
        ),
        (
            "a message with tabs and CRLF",
            with(|m| m["message"] = json!("Fixes:\r\n\t- totals")),
        ),
        (
            "an integrator name of 200 characters",
            with(|m| m["integrator"]["name"] = json!("é".repeat(200))),
        ),
        (
            "line breaks in the integrator name (the docs' rule said none; both allow them)",
            with(|m| m["integrator"]["name"] = json!("Acme\nIntegrations")),
        ),
        (
            "a tagged, dotted address",
            with(|m| m["integrator"]["email"] = json!("first.last+tag@sub.example.com")),
        ),
        (
            "an address with every allowed symbol",
            with(|m| m["integrator"]["email"] = json!("a!#$%&'*+/=?^_`{|}~-b@x-y.example")),
        ),
        (
            "a local part of 64 characters",
            with(|m| m["integrator"]["email"] = json!(format!("{}@x.example", "a".repeat(64)))),
        ),
        (
            "a tag starting with an underscore",
            with(|m| m["images"][0]["tag"] = json!("_latest")),
        ),
        (
            "a tag of 128 characters",
            with(|m| m["images"][0]["tag"] = json!("t".repeat(128))),
        ),
        (
            "a nested repository",
            with(|m| m["images"][0]["repository"] = json!("team/orders/web-api_v2.x")),
        ),
        (
            "a repository of 2 characters",
            with(|m| m["images"][0]["repository"] = json!("ab")),
        ),
        (
            "one repository and tag listed twice with one digest",
            with(|m| {
                m["images"][1]["repository"] = json!("orders/web");
                m["images"][1]["digest"] = m["images"][0]["digest"].clone();
            }),
        ),
        (
            "a path of 1024 ASCII characters",
            with(|m| m["templates"][0]["path"] = json!(format!("t/{}", "a".repeat(1022)))),
        ),
    ]
}

/// Manifests both judges refuse, with the problem shipgate reports: `(case, manifest, code, path)`.
fn bad_manifests() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let path_of_1025 = format!("t/{}", "a".repeat(1023));
    let mut cases = vec![
        (
            "not an object",
            json!([base()]),
            "wrong_type",
            "release.json",
        ),
        (
            "another schema version",
            with(|m| m["schema_version"] = json!("shipgate.release/v2")),
            "unknown_schema_version",
            "schema_version",
        ),
        (
            "an empty schema version",
            with(|m| m["schema_version"] = json!("")),
            "unknown_schema_version",
            "schema_version",
        ),
        (
            "a schema version that is a number",
            with(|m| m["schema_version"] = json!(1)),
            "wrong_type",
            "schema_version",
        ),
        (
            "an unknown top-level field",
            with(|m| m["extra"] = json!(true)),
            "unknown_field",
            "extra",
        ),
        (
            "a field in the wrong case",
            with(|m| m["Application"] = json!("orders")),
            "unknown_field",
            "Application",
        ),
        (
            "an unknown integrator field",
            with(|m| m["integrator"]["phone"] = json!("+33")),
            "unknown_field",
            "integrator.phone",
        ),
        (
            "an unknown image field",
            with(|m| m["images"][0]["sha"] = json!("x")),
            "unknown_field",
            "images[0].sha",
        ),
        (
            "an unknown template field",
            with(|m| m["templates"][0]["region"] = json!("eu-west-1")),
            "unknown_field",
            "templates[0].region",
        ),
        (
            "application not a string",
            with(|m| m["application"] = json!(7)),
            "wrong_type",
            "application",
        ),
        (
            "integrator not an object",
            with(|m| m["integrator"] = json!("Acme")),
            "wrong_type",
            "integrator",
        ),
        (
            "images not an array",
            with(|m| m["images"] = json!({"web": "orders/web"})),
            "wrong_type",
            "images",
        ),
        (
            "an image that is a string",
            with(|m| m["images"][0] = json!("orders/web:1.4.2")),
            "wrong_type",
            "images[0]",
        ),
        (
            "templates not an array",
            with(|m| m["templates"] = json!("templates/service.yaml")),
            "wrong_type",
            "templates",
        ),
        (
            "environments null",
            with(|m| m["environments"] = Value::Null),
            "wrong_type",
            "environments",
        ),
        (
            "an environment that is a number",
            with(|m| m["environments"] = json!([1])),
            "wrong_type",
            "environments[0]",
        ),
        (
            "checks null",
            with(|m| m["checks"] = Value::Null),
            "wrong_type",
            "checks",
        ),
        (
            "parameters not an object",
            with(|m| m["templates"][0]["parameters"] = json!(["WebImage"])),
            "wrong_type",
            "templates[0].parameters",
        ),
        (
            "a parameter value that is a number",
            with(|m| m["templates"][0]["parameters"]["Port"] = json!(8080)),
            "wrong_type",
            "templates[0].parameters.Port",
        ),
        (
            "application with capitals",
            with(|m| m["application"] = json!("Orders")),
            "invalid_value",
            "application",
        ),
        (
            "application starting with a digit",
            with(|m| m["application"] = json!("2orders")),
            "invalid_value",
            "application",
        ),
        (
            "application ending with a hyphen",
            with(|m| m["application"] = json!("orders-")),
            "invalid_value",
            "application",
        ),
        (
            "application with an underscore",
            with(|m| m["application"] = json!("orders_app")),
            "invalid_value",
            "application",
        ),
        (
            "application of 33 characters",
            with(|m| m["application"] = json!("a".repeat(33))),
            "invalid_value",
            "application",
        ),
        (
            "application empty",
            with(|m| m["application"] = json!("")),
            "invalid_value",
            "application",
        ),
        (
            "application with a trailing line break",
            with(|m| m["application"] = json!("orders\n")),
            "invalid_value",
            "application",
        ),
        (
            "version empty",
            with(|m| m["version"] = json!("")),
            "invalid_value",
            "version",
        ),
        (
            "version with build metadata",
            with(|m| m["version"] = json!("1.4.2+build.7")),
            "invalid_value",
            "version",
        ),
        (
            "version starting with a dot",
            with(|m| m["version"] = json!(".1")),
            "invalid_value",
            "version",
        ),
        (
            "version of 65 characters",
            with(|m| m["version"] = json!("1".repeat(65))),
            "invalid_value",
            "version",
        ),
        (
            "version with a space",
            with(|m| m["version"] = json!("1.4 beta")),
            "invalid_value",
            "version",
        ),
        (
            "message empty",
            with(|m| m["message"] = json!("")),
            "invalid_value",
            "message",
        ),
        (
            "message blank",
            with(|m| m["message"] = json!(" \n\t ")),
            "invalid_value",
            "message",
        ),
        (
            "message of 4001 characters",
            with(|m| m["message"] = json!("x".repeat(4001))),
            "invalid_value",
            "message",
        ),
        (
            "message with a bell",
            with(|m| m["message"] = json!("ding\u{7}")),
            "invalid_value",
            "message",
        ),
        (
            "message with NUL",
            with(|m| m["message"] = json!("a\u{0}b")),
            "invalid_value",
            "message",
        ),
        (
            "message with an escape sequence",
            with(|m| m["message"] = json!("\u{1b}[31mred")),
            "invalid_value",
            "message",
        ),
        (
            "message with DEL",
            with(|m| m["message"] = json!("a\u{7f}")),
            "invalid_value",
            "message",
        ),
        (
            "message with a C1 control (NEL)",
            with(|m| m["message"] = json!("a\u{85}b")),
            "invalid_value",
            "message",
        ),
        (
            "message with a right-to-left override",
            with(|m| m["message"] = json!("Fixes \u{202e}txt.exe")),
            "invalid_value",
            "message",
        ),
        (
            "message with a first-strong isolate",
            with(|m| m["message"] = json!("a\u{2068}b\u{2069}")),
            "invalid_value",
            "message",
        ),
        (
            "integrator name with a left-to-right embedding",
            with(|m| m["integrator"]["name"] = json!("Acme\u{202a}")),
            "invalid_value",
            "integrator.name",
        ),
        (
            "a parameter value with an escape sequence",
            with(|m| m["templates"][0]["parameters"]["Version"] = json!("1\u{1b}[2J")),
            "invalid_value",
            "templates[0].parameters.Version",
        ),
        (
            "a parameter value with a right-to-left override",
            with(|m| m["templates"][0]["parameters"]["Version"] = json!("1\u{202e}")),
            "invalid_value",
            "templates[0].parameters.Version",
        ),
        (
            "integrator name empty",
            with(|m| m["integrator"]["name"] = json!("")),
            "invalid_value",
            "integrator.name",
        ),
        (
            "integrator name blank",
            with(|m| m["integrator"]["name"] = json!("\t")),
            "invalid_value",
            "integrator.name",
        ),
        (
            "integrator name of 201 characters",
            with(|m| m["integrator"]["name"] = json!("n".repeat(201))),
            "invalid_value",
            "integrator.name",
        ),
        (
            "integrator name with a control character",
            with(|m| m["integrator"]["name"] = json!("Acme\u{8}")),
            "invalid_value",
            "integrator.name",
        ),
        (
            "an email with a display name",
            with(|m| m["integrator"]["email"] = json!("Acme <release@acme.example>")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email without a dot in the domain",
            with(|m| m["integrator"]["email"] = json!("a@b")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email without a local part",
            with(|m| m["integrator"]["email"] = json!("@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email without @",
            with(|m| m["integrator"]["email"] = json!("release.acme.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with two dots in a row",
            with(|m| m["integrator"]["email"] = json!("a..b@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email starting with a dot",
            with(|m| m["integrator"]["email"] = json!(".a@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email whose local part ends with a dot",
            with(|m| m["integrator"]["email"] = json!("a.@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with a space",
            with(|m| m["integrator"]["email"] = json!("a b@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with a domain label starting with a hyphen",
            with(|m| m["integrator"]["email"] = json!("a@-x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with a digit in the top-level domain",
            with(|m| m["integrator"]["email"] = json!("a@x.c0m")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with a one-letter top-level domain",
            with(|m| m["integrator"]["email"] = json!("a@x.c")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with two @",
            with(|m| m["integrator"]["email"] = json!("a@b@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with a quoted local part",
            with(|m| m["integrator"]["email"] = json!("\"a b\"@x.example")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email with an IP literal",
            with(|m| m["integrator"]["email"] = json!("a@[192.0.2.1]")),
            "invalid_email",
            "integrator.email",
        ),
        (
            "a local part of 65 characters",
            with(|m| m["integrator"]["email"] = json!(format!("{}@x.example", "a".repeat(65)))),
            "invalid_email",
            "integrator.email",
        ),
        (
            "a dotted local part of 71 characters",
            with(|m| {
                m["integrator"]["email"] =
                    json!(format!("{}.{}@x.example", "a".repeat(60), "b".repeat(10)))
            }),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an email of 255 characters",
            with(|m| {
                m["integrator"]["email"] = json!(format!(
                    "abc@{}.example",
                    [
                        "b".repeat(60),
                        "c".repeat(60),
                        "d".repeat(60),
                        "e".repeat(60)
                    ]
                    .join(".")
                ))
            }),
            "invalid_email",
            "integrator.email",
        ),
        (
            "an empty environment list",
            with(|m| m["environments"] = json!([])),
            "invalid_environment",
            "environments",
        ),
        (
            "an environment that is no name",
            with(|m| m["environments"] = json!(["int", "qa_1"])),
            "invalid_environment",
            "environments[1]",
        ),
        (
            "more environments than a chain has",
            with(|m| m["environments"] = json!(["a", "b", "c", "d", "e", "f", "g"])),
            "invalid_environment",
            "environments",
        ),
        (
            "an environment in capitals",
            with(|m| m["environments"] = json!(["INT"])),
            "invalid_environment",
            "environments[0]",
        ),
        (
            "an environment twice",
            with(|m| m["environments"] = json!(["int", "int"])),
            "invalid_environment",
            "environments[1]",
        ),
        (
            "an image name with capitals",
            with(|m| m["images"][0]["name"] = json!("Web")),
            "invalid_value",
            "images[0].name",
        ),
        (
            "an image name of 33 characters",
            with(|m| m["images"][1]["name"] = json!("w".repeat(33))),
            "invalid_value",
            "images[1].name",
        ),
        (
            "a digest that is not hex",
            with(|m| m["images"][1]["digest"] = json!("sha256:XYZ")),
            "invalid_digest",
            "images[1].digest",
        ),
        (
            "a digest in capitals",
            with(|m| m["images"][0]["digest"] = json!(format!("sha256:{}", "3F".repeat(32)))),
            "invalid_digest",
            "images[0].digest",
        ),
        (
            "a sha512 digest",
            with(|m| m["images"][0]["digest"] = json!(format!("sha512:{}", "3f".repeat(64)))),
            "invalid_digest",
            "images[0].digest",
        ),
        (
            "a digest without its algorithm",
            with(|m| m["images"][0]["digest"] = json!("3f".repeat(32))),
            "invalid_digest",
            "images[0].digest",
        ),
        (
            "a digest of 63 hex digits",
            with(|m| m["images"][0]["digest"] = json!(format!("sha256:{}", "a".repeat(63)))),
            "invalid_digest",
            "images[0].digest",
        ),
        (
            "a digest of 65 hex digits",
            with(|m| m["images"][0]["digest"] = json!(format!("sha256:{}", "a".repeat(65)))),
            "invalid_digest",
            "images[0].digest",
        ),
        (
            "a tag starting with a hyphen",
            with(|m| m["images"][1]["tag"] = json!("-bad")),
            "invalid_tag",
            "images[1].tag",
        ),
        (
            "a tag starting with a dot",
            with(|m| m["images"][0]["tag"] = json!(".x")),
            "invalid_tag",
            "images[0].tag",
        ),
        (
            "a tag of 129 characters",
            with(|m| m["images"][0]["tag"] = json!("t".repeat(129))),
            "invalid_tag",
            "images[0].tag",
        ),
        (
            "an empty tag",
            with(|m| m["images"][0]["tag"] = json!("")),
            "invalid_tag",
            "images[0].tag",
        ),
        (
            "a tag with a colon",
            with(|m| m["images"][0]["tag"] = json!("1.4:2")),
            "invalid_tag",
            "images[0].tag",
        ),
        (
            "a repository with capitals",
            with(|m| m["images"][0]["repository"] = json!("Orders/web")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository with an empty part",
            with(|m| m["images"][0]["repository"] = json!("orders//web")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository part starting with a hyphen",
            with(|m| m["images"][0]["repository"] = json!("orders/-web")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository of one character",
            with(|m| m["images"][0]["repository"] = json!("a")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository of 257 characters",
            with(|m| m["images"][0]["repository"] = json!("r".repeat(257))),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository with its tag",
            with(|m| m["images"][0]["repository"] = json!("orders/web:1.4.2")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository with its digest",
            with(|m| {
                m["images"][0]["repository"] =
                    json!(format!("orders/web@sha256:{}", "3f".repeat(32)))
            }),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "a repository with the registry host",
            with(|m| {
                m["images"][1]["repository"] =
                    json!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/orders/web")
            }),
            "invalid_repository",
            "images[1].repository",
        ),
        (
            "a repository with another amazonaws.com host",
            with(|m| m["images"][0]["repository"] = json!("public.ecr.aws.amazonaws.com/web")),
            "invalid_repository",
            "images[0].repository",
        ),
        (
            "an empty template list",
            with(|m| m["templates"] = json!([])),
            "invalid_value",
            "templates",
        ),
        (
            "21 templates",
            with(|m| m["templates"] = templates(21)),
            "invalid_value",
            "templates",
        ),
        (
            "a template stack with capitals",
            with(|m| m["templates"][0]["stack"] = json!("Service")),
            "invalid_value",
            "templates[0].stack",
        ),
        (
            "an empty template stack",
            with(|m| m["templates"][0]["stack"] = json!("")),
            "invalid_value",
            "templates[0].stack",
        ),
        (
            "a parameter name with a hyphen",
            with(|m| m["templates"][0]["parameters"]["Web-Image"] = json!("x")),
            "invalid_value",
            "templates[0].parameters.Web-Image",
        ),
        (
            "an empty parameter name",
            with(|m| m["templates"][0]["parameters"][""] = json!("x")),
            "invalid_value",
            "templates[0].parameters[\"\"]",
        ),
        (
            "a parameter name of 256 characters",
            with(|m| m["templates"][0]["parameters"]["P".repeat(256)] = json!("x")),
            "invalid_value",
            "",
        ),
        (
            "checks empty",
            with(|m| m["checks"] = json!("")),
            "invalid_value",
            "checks",
        ),
        (
            "checks with a trailing slash",
            with(|m| m["checks"] = json!("tests/")),
            "invalid_value",
            "checks",
        ),
    ];
    for (name, path) in [
        ("a template path climbing out", "../service.yaml"),
        (
            "a template path climbing out midway",
            "templates/../../service.yaml",
        ),
        ("an absolute template path", "/templates/service.yaml"),
        (
            "a template path starting with ./",
            "./templates/service.yaml",
        ),
        ("a template path with a . part", "templates/./service.yaml"),
        (
            "a template path with an empty part",
            "templates//service.yaml",
        ),
        ("a template path ending with /", "templates/"),
        (
            "a template path with a backslash",
            "templates\\service.yaml",
        ),
        (
            "a template path with a drive letter",
            "C:templates/service.yaml",
        ),
        (
            "a template path with a control character",
            "templates/serv\u{1}ice.yaml",
        ),
        (
            "a template path with a C1 control",
            "templates/serv\u{9b}ice.yaml",
        ),
        (
            "a template path with a right-to-left override",
            "templates/serv\u{202e}lmay.ecivres",
        ),
        ("an empty template path", ""),
        (
            "a template path of 1025 ASCII characters",
            path_of_1025.as_str(),
        ),
    ] {
        cases.push((
            name,
            with(|m| m["templates"][0]["path"] = json!(path)),
            "invalid_value",
            "templates[0].path",
        ));
    }
    for (name, pointer, path) in [
        ("no schema_version", "/schema_version", "schema_version"),
        ("no application", "/application", "application"),
        ("no version", "/version", "version"),
        ("no message", "/message", "message"),
        ("no integrator", "/integrator", "integrator"),
        ("no images", "/images", "images"),
        ("no templates", "/templates", "templates"),
        ("no integrator name", "/integrator/name", "integrator.name"),
        (
            "no integrator email",
            "/integrator/email",
            "integrator.email",
        ),
        ("no image name", "/images/0/name", "images[0].name"),
        (
            "no image repository",
            "/images/0/repository",
            "images[0].repository",
        ),
        ("no image tag", "/images/0/tag", "images[0].tag"),
        ("no image digest", "/images/1/digest", "images[1].digest"),
        ("no template path", "/templates/0/path", "templates[0].path"),
        (
            "no template stack",
            "/templates/0/stack",
            "templates[0].stack",
        ),
    ] {
        cases.push((name, without(pointer), "missing_field", path));
    }
    cases
}

/// What a JSON Schema cannot express, as `docs/release-format.md` lists it: shipgate refuses
/// these manifests and the schema lets them through. `(case, manifest, code, path)`.
fn beyond_the_schema() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "two images with one name",
            with(|m| m["images"][1]["name"] = json!("web")),
            "duplicate_image",
            "images[1].name",
        ),
        (
            "one repository and tag with two digests",
            with(|m| {
                m["images"][1]["repository"] = json!("orders/web");
                m["images"][1]["digest"] = json!(format!("sha256:{}", "b".repeat(64)));
            }),
            "duplicate_image",
            "images[1].digest",
        ),
        (
            "one template file listed twice",
            with(|m| {
                m["templates"] =
                    json!([{"path": "t.yaml", "stack": "a"}, {"path": "t.yaml", "stack": "b"}])
            }),
            "duplicate_template",
            "templates[1].path",
        ),
        (
            "two templates for one stack",
            with(|m| {
                m["templates"] =
                    json!([{"path": "a.yaml", "stack": "app"}, {"path": "b.yaml", "stack": "app"}])
            }),
            "duplicate_stack",
            "templates[1].stack",
        ),
        (
            "an unknown placeholder",
            with(|m| m["templates"][0]["parameters"]["X"] = json!("${release.name}")),
            "unknown_placeholder",
            "templates[0].parameters.X",
        ),
        (
            "a placeholder for an image not listed",
            with(|m| m["templates"][0]["parameters"]["X"] = json!("${image.api.digest}")),
            "unknown_placeholder",
            "templates[0].parameters.X",
        ),
        (
            "an unclosed placeholder",
            with(|m| m["templates"][0]["parameters"]["X"] = json!("${release.version")),
            "unknown_placeholder",
            "templates[0].parameters.X",
        ),
        (
            "a path of 1202 bytes in 602 characters (shipgate counts bytes, a schema characters)",
            with(|m| m["templates"][0]["path"] = json!(format!("t/{}", "é".repeat(600)))),
            "invalid_value",
            "templates[0].path",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The documented examples.

/// The contents of the fenced blocks of `language` in a Markdown text.
fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(info)) if info.trim() == language => current = Some(String::new()),
            (Some(block), Some(_)) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ``` block");
    blocks
}

/// The documents of `release-format.md` by kind: (release manifests, checks files).
fn documented_examples() -> (Vec<Value>, Vec<Value>) {
    let (mut releases, mut checks) = (Vec::new(), Vec::new());
    for (i, block) in fenced_blocks(&read("docs/release-format.md"), "json")
        .into_iter()
        .enumerate()
    {
        let document: Value = serde_json::from_str(&block)
            .unwrap_or_else(|e| panic!("```json block {i} of release-format.md is not JSON: {e}"));
        match document["schema_version"].as_str() {
            Some("shipgate.release/v1") => releases.push(document),
            Some("shipgate.checks/v1") => checks.push(document),
            other => panic!(
                "```json block {i} of release-format.md has schema_version {other:?}: teach this \
                 test which schema it follows"
            ),
        }
    }
    (releases, checks)
}

fn problems_of(inspection: &Inspection) -> Vec<String> {
    inspection
        .problems
        .iter()
        .map(|p| format!("{} at {:?}: {}", p.code.as_str(), p.path, p.message))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_schemas_are_valid_draft_2020_12_schemas() {
    for file in ["docs/release.schema.json", "docs/checks.schema.json"] {
        let schema: Value = serde_json::from_str(&read(file)).expect("JSON");
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{file} is not a valid 2020-12 schema: {e}");
        }
    }
}

#[test]
fn every_release_json_in_the_docs_passes_the_schema_and_the_validator() {
    let (releases, checks) = documented_examples();
    assert!(
        !releases.is_empty(),
        "release-format.md shows no release.json"
    );
    let release_schema = release_schema();
    for manifest in &releases {
        let errors = schema_errors(&release_schema, manifest);
        assert!(
            errors.is_empty(),
            "the schema refuses a documented manifest: {errors:#?}"
        );
        let problems = validator_problems(manifest);
        assert!(
            problems.is_empty(),
            "shipgate refuses a documented manifest: {problems:?}"
        );
    }
    let checks_schema = schema("docs/checks.schema.json");
    for document in &checks {
        let errors = schema_errors(&checks_schema, document);
        assert!(
            errors.is_empty(),
            "the schema refuses a documented checks file: {errors:#?}"
        );
        let mut files = drop_around(&base());
        for (name, content) in &mut files {
            if name == "checks.json" {
                *content = serde_json::to_vec(document).expect("JSON");
            }
        }
        let inspection = inspect(&files);
        assert!(
            inspection.is_acceptable(),
            "shipgate refuses a documented checks file: {:#?}",
            problems_of(&inspection)
        );
    }
}

#[test]
fn the_complete_example_in_the_docs_is_accepted_whole() {
    let markdown = read("docs/release-format.md");
    let (releases, checks) = documented_examples();
    let manifest = &releases[0];
    let templates = fenced_blocks(&markdown, "yaml");
    assert_eq!(
        manifest["templates"].as_array().map(Vec::len),
        Some(1),
        "the complete example has one template, shown as the first ```yaml block"
    );
    let files = vec![
        (
            "release.json".to_owned(),
            serde_json::to_vec_pretty(manifest).expect("JSON"),
        ),
        (
            manifest["checks"]
                .as_str()
                .expect("the example has checks")
                .to_owned(),
            serde_json::to_vec_pretty(&checks[0]).expect("JSON"),
        ),
        (
            manifest["templates"][0]["path"]
                .as_str()
                .expect("a path")
                .to_owned(),
            templates[0].clone().into_bytes(),
        ),
    ];
    let inspection = inspect(&files);
    assert!(
        inspection.is_acceptable(),
        "{:#?}",
        problems_of(&inspection)
    );
    assert_eq!(
        inspection.manifest.map(|m| m.version).as_deref(),
        manifest["version"].as_str()
    );
}

#[test]
fn every_sample_release_passes_the_schema_and_the_validator() {
    let release_schema = release_schema();
    let checks_schema = schema("docs/checks.schema.json");
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let dir = entry.expect("a directory entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("release.json")) else {
            continue;
        };
        seen += 1;
        let manifest: Value = serde_json::from_str(&text).expect("JSON");
        let errors = schema_errors(&release_schema, &manifest);
        assert!(errors.is_empty(), "{}: {errors:#?}", dir.display());
        if let Some(checks) = manifest["checks"].as_str() {
            let document: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(checks)).expect("checks"))
                    .expect("JSON");
            let errors = schema_errors(&checks_schema, &document);
            assert!(
                errors.is_empty(),
                "{}: {errors:#?}",
                dir.join(checks).display()
            );
        }
        // The folder zipped as the docs tell integrators to: its contents, not the folder.
        let mut files = Vec::new();
        let mut pending = vec![dir.clone()];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(&folder).expect("a folder") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let name = path
                        .strip_prefix(&dir)
                        .expect("inside")
                        .to_string_lossy()
                        .into_owned();
                    files.push((name, std::fs::read(&path).expect("a file")));
                }
            }
        }
        files.sort();
        let inspection = inspect(&files);
        assert!(
            inspection.is_acceptable(),
            "{}: {:#?}",
            dir.display(),
            problems_of(&inspection)
        );
    }
    assert!(seen > 0, "no sample release under examples/");
}

#[test]
fn the_schema_and_the_validator_accept_the_same_good_manifests() {
    let schemas = release_schemas();
    let mut disagreements = Vec::new();
    for (case, manifest) in good_manifests() {
        for (how, schema) in &schemas {
            let errors = schema_errors(schema, &manifest);
            if !errors.is_empty() {
                disagreements.push(format!("{case}: the schema ({how}) refuses it: {errors:?}"));
            }
        }
        let problems = validator_problems(&manifest);
        if !problems.is_empty() {
            disagreements.push(format!("{case}: shipgate refuses it: {problems:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn the_schema_and_the_validator_refuse_the_same_bad_manifests() {
    let schemas = release_schemas();
    let mut disagreements = Vec::new();
    for (case, manifest, code, path) in bad_manifests() {
        for (how, schema) in &schemas {
            if schema.is_valid(&manifest) {
                disagreements.push(format!("{case}: the schema ({how}) accepts it"));
            }
        }
        let problems = validator_problems(&manifest);
        if problems.is_empty() {
            disagreements.push(format!("{case}: shipgate accepts it"));
        } else if !problems
            .iter()
            .any(|(c, p)| c == code && (path.is_empty() || p == path))
        {
            disagreements.push(format!(
                "{case}: shipgate reports {problems:?}, not {code} at {path}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn what_the_schema_cannot_express_is_refused_by_shipgate_alone() {
    let schemas = release_schemas();
    let mut surprises = Vec::new();
    for (case, manifest, code, path) in beyond_the_schema() {
        for (how, schema) in &schemas {
            if !schema.is_valid(&manifest) {
                surprises.push(format!(
                    "{case}: the schema ({how}) now refuses it too: move the case to \
                     bad_manifests and the rule out of release-format.md's list of what a \
                     schema cannot express"
                ));
            }
        }
        let problems = validator_problems(&manifest);
        if !problems.iter().any(|(c, p)| c == code && p == path) {
            surprises.push(format!(
                "{case}: shipgate reports {problems:?}, not {code} at {path}"
            ));
        }
    }
    assert!(surprises.is_empty(), "{surprises:#?}");
}
