//! Checking JSON documents field by field, so that every problem is found with its path.
//!
//! serde's `deny_unknown_fields` stops at the first surprise and names no path; the drop's
//! author needs all of them at once (`images[1].digest`, `integrator.email`, ...). A
//! [`Validator`] walks a parsed `serde_json::Value` and reports into [`Problems`]; the typed
//! structs are deserialised only once the walk found nothing wrong. Parsing itself refuses
//! duplicate keys, which `serde_json::Value` would otherwise resolve silently to the last one.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::limits::MAX_DOCUMENT_DEPTH;
use super::problems::{ProblemCode as Code, Problems};

/// Why a JSON document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonFault {
    /// Not JSON at all (the error says where).
    Syntax,
    /// An object repeats a key.
    DuplicateKey,
    /// Arrays and objects nested deeper than [`MAX_DOCUMENT_DEPTH`].
    TooDeep,
}

/// A JSON document refused by [`parse_json_strict`]: what kind of fault, and serde_json's error
/// (with line and column) as the message.
#[derive(Debug)]
pub(crate) struct JsonError {
    pub fault: JsonFault,
    pub error: serde_json::Error,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Parses JSON, refusing an object that repeats a key (tools disagree on which one wins) and
/// nesting deeper than [`MAX_DOCUMENT_DEPTH`] (serde_json's own limit, 128, would also stop a
/// stack overflow, but the documents share one documented limit). Time is linear in the text:
/// parsing stops at the first fault.
pub(crate) fn parse_json_strict(text: &str) -> Result<Value, JsonError> {
    let fault = Cell::new(JsonFault::Syntax);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let seed = StrictSeed {
        depth: 0,
        fault: &fault,
    };
    let parsed = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| JsonError {
        fault: fault.get(),
        error,
    })
}

/// Deserialises one value at `depth` collections down, recording why it refused one.
#[derive(Clone, Copy)]
struct StrictSeed<'f> {
    depth: usize,
    fault: &'f Cell<JsonFault>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed<'_> {
    /// The seed for the items of a collection opened here, or the depth error.
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DOCUMENT_DEPTH {
            self.fault.set(JsonFault::TooDeep);
            return Err(E::custom(format!(
                "arrays and objects are nested more than {MAX_DOCUMENT_DEPTH} levels deep"
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                self.fault.set(JsonFault::DuplicateKey);
                return Err(de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The path of `key` inside `parent` (`images[0]` + `digest` = `images[0].digest`); keys that
/// are not plain identifiers are quoted.
pub(crate) fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}[{key:?}]"),
    }
}

/// The path of item `index` of the array at `parent`.
pub(crate) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A known field close to `key` (a typo or a case slip), for "did you mean".
fn did_you_mean<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(key) || (key.len() > 3 && edit_distance(key, k) <= 2))
}

/// Levenshtein distance, for short field names only.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Walks one JSON document and reports what breaks its schema.
pub(crate) struct Validator<'p> {
    problems: &'p mut Problems,
    /// The file the document came from.
    file: &'p str,
    /// `Some(code)`: every problem of this document is reported under that one code (a file
    /// other than the manifest, e.g. `checks_invalid`); `None`: schema codes (the manifest).
    single_code: Option<Code>,
}

impl<'p> Validator<'p> {
    /// A validator for the manifest: problems keep their schema codes and field paths.
    pub(crate) fn manifest(problems: &'p mut Problems, file: &'p str) -> Self {
        Self {
            problems,
            file,
            single_code: None,
        }
    }

    /// A validator for another file: all problems get `code`, paths are `file#field`.
    pub(crate) fn file(problems: &'p mut Problems, file: &'p str, code: Code) -> Self {
        Self {
            problems,
            file,
            single_code: Some(code),
        }
    }

    pub(crate) fn problems(&mut self) -> &mut Problems {
        self.problems
    }

    /// Reports a problem at a field `path` ("" is the document itself).
    pub(crate) fn report(&mut self, code: Code, path: &str, message: impl Into<String>) {
        let message = message.into();
        match self.single_code {
            None if path.is_empty() => self.problems.report(code, Some(self.file), message),
            None => self.problems.report(code, Some(path), message),
            Some(code) => {
                let at = if path.is_empty() {
                    self.file.to_owned()
                } else {
                    format!("{}#{path}", self.file)
                };
                self.problems
                    .report(code, Some(&at), format!("{}: {message}", self.file))
            }
        }
    }

    /// How a field is named in a message.
    pub(crate) fn name(&self, path: &str) -> String {
        if path.is_empty() {
            self.file.to_owned()
        } else {
            format!("`{path}`")
        }
    }

    fn wrong_type(&mut self, value: &Value, path: &str, expected: &str) {
        let message = format!(
            "{} must be {expected}, not {}",
            self.name(path),
            type_name(value)
        );
        self.report(Code::WrongType, path, message);
    }

    /// `value` as an object whose keys are all in `known`; unknown keys are reported with a
    /// suggestion when one is close.
    pub(crate) fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(object) = value else {
            self.wrong_type(value, path, "an object");
            return None;
        };
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            let at = child(path, key);
            let hint = match did_you_mean(key, known) {
                Some(close) => format!(" (did you mean `{close}`?)"),
                None => format!("; known fields here: {}", known.join(", ")),
            };
            let message = format!("field `{at}` is not part of the schema: remove it{hint}");
            self.report(Code::UnknownField, &at, message);
        }
        Some(object)
    }

    /// The field `key`, reporting it missing when `required`.
    pub(crate) fn field<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v Value> {
        let value = object.get(key);
        if value.is_none() && required {
            let at = child(path, key);
            let message = format!("required field `{at}` is missing: add it");
            self.report(Code::MissingField, &at, message);
        }
        value
    }

    pub(crate) fn string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(other, path, "a string");
                None
            }
        }
    }

    pub(crate) fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(other, path, "an array");
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(crate) fn integer(&mut self, value: &Value, path: &str, min: u64, max: u64) -> Option<u64> {
        let Some(n) = value.as_u64() else {
            self.wrong_type(value, path, &format!("a whole number from {min} to {max}"));
            return None;
        };
        if !(min..=max).contains(&n) {
            let message = format!("{} is {n}: it must be from {min} to {max}", self.name(path));
            self.report(Code::InvalidValue, path, message);
            return None;
        }
        Some(n)
    }

    /// A required string field; `None` (reported) when absent or not a string.
    pub(crate) fn required_string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        let value = self.field(object, path, key, true)?;
        self.string(value, &child(path, key))
    }

    /// An optional string field; `None` when absent or (reported) not a string.
    pub(crate) fn optional_string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        let value = self.field(object, path, key, false)?;
        self.string(value, &child(path, key))
    }

    /// Text for people: not blank, at most `max` characters, and [`text_problem`]'s rule with
    /// line breaks and tabs allowed.
    pub(crate) fn text(&mut self, value: &str, path: &str, max: usize) -> bool {
        let problem = if value.trim().is_empty() {
            Some("must not be empty".to_owned())
        } else if value.chars().count() > max {
            Some(format!("is longer than {max} characters: shorten it"))
        } else {
            text_problem(value, Breaks::Allowed)
        };
        match problem {
            Some(problem) => {
                let message = format!("{} {problem}", self.name(path));
                self.report(Code::InvalidValue, path, message);
                false
            }
            None => true,
        }
    }

    /// Any other text field: [`text_problem`]'s rule only.
    pub(crate) fn plain_text(&mut self, value: &str, path: &str, breaks: Breaks) -> bool {
        match text_problem(value, breaks) {
            Some(problem) => {
                let message = format!("{} {problem}", self.name(path));
                self.report(Code::InvalidValue, path, message);
                false
            }
            None => true,
        }
    }
}

/// Whether a text field may hold line breaks (LF and CR) besides tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breaks {
    Allowed,
    Refused,
}

/// Bidirectional embedding, override and isolate characters: they make text display in another
/// order than it is stored ("Trojan Source"), so an approver reading an email or a report would
/// read something else than what was released. The marks (U+200E, U+200F, U+061C), which
/// right-to-left names need and which reorder nothing by themselves, are allowed.
const BIDI_CONTROLS: [char; 9] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];

/// The one rule for text in the release's files (every free-text field of `release.json` and
/// of the checks file): no control character (Unicode `Cc`: U+0000-U+001F, U+007F-U+009F) but
/// tab and, where `breaks` allows, LF and CR; no bidirectional formatting character
/// ([`BIDI_CONTROLS`]). The problem names the first offending character and its position.
pub(crate) fn text_problem(value: &str, breaks: Breaks) -> Option<String> {
    let (position, c) = value.chars().enumerate().find(|&(_, c)| {
        BIDI_CONTROLS.contains(&c)
            || (c.is_control()
                && !(c == '\t' || (breaks == Breaks::Allowed && matches!(c, '\n' | '\r'))))
    })?;
    let code = format!("U+{:04X}", u32::from(c));
    let at = position + 1;
    Some(if BIDI_CONTROLS.contains(&c) {
        format!(
            "contains the bidirectional formatting character {code} (character {at}), which \
             makes text display in another order than it is written: remove it"
        )
    } else if matches!(c, '\n' | '\r') {
        format!("contains a line break ({code}, character {at}): keep it on one line")
    } else {
        format!("contains the control character {code} (character {at}): remove it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_with_a_position() {
        let err = parse_json_strict("{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!(err.fault, JsonFault::DuplicateKey);
        assert!(err.to_string().contains("\"a\" appears twice"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        // Escapes are decoded before keys are compared.
        let err = parse_json_strict("{\"a\": 1, \"\\u0061\": 2}").unwrap_err();
        assert_eq!(err.fault, JsonFault::DuplicateKey);
        assert_eq!(
            parse_json_strict("[1,").unwrap_err().fault,
            JsonFault::Syntax
        );
        assert_eq!(
            parse_json_strict("{\"a\": [1, -2, 3.5, null, true, {}]}").unwrap(),
            json!({"a": [1, -2, 3.5, null, true, {}]})
        );
        assert!(parse_json_strict("{} trailing").is_err());
    }

    #[test]
    fn nesting_stops_at_the_documented_depth() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_json_strict(&nested(MAX_DOCUMENT_DEPTH)).is_ok());
        let err = parse_json_strict(&nested(MAX_DOCUMENT_DEPTH + 1)).unwrap_err();
        assert_eq!(err.fault, JsonFault::TooDeep);
        assert!(err.to_string().contains("nested more than 64"), "{err}");
        // 1 MiB of openings is refused where the limit is crossed, not read to the end.
        let err = parse_json_strict(&"[{\"a\":".repeat(200_000)).unwrap_err();
        assert_eq!(err.fault, JsonFault::TooDeep);
        assert!(err.to_string().contains("column"), "{err}");
    }

    #[test]
    fn paths_read_like_field_access() {
        assert_eq!(child("", "images"), "images");
        assert_eq!(child(&item("images", 1), "digest"), "images[1].digest");
        assert_eq!(child("parameters", "a.b"), "parameters[\"a.b\"]");
    }

    #[test]
    fn unknown_fields_get_a_suggestion() {
        let mut problems = Problems::default();
        let mut v = Validator::manifest(&mut problems, "release.json");
        let value = json!({"digets": "x", "zzz": 1});
        v.object(&value, "images[0]", &["name", "digest"]);
        let list = problems.into_vec();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].path.as_deref(), Some("images[0].digets"));
        assert!(
            list[0].message.contains("did you mean `digest`"),
            "{}",
            list[0].message
        );
        assert!(list[1].message.contains("known fields here: name, digest"));
    }

    #[test]
    fn other_files_report_under_one_code_with_file_paths() {
        let mut problems = Problems::default();
        let mut v = Validator::file(&mut problems, "checks.json", Code::ChecksInvalid);
        let value = json!({"checks": 3});
        let object = v.object(&value, "", &["checks"]).unwrap();
        let checks = v.field(object, "", "checks", true).unwrap();
        v.array(checks, "checks");
        let list = problems.into_vec();
        assert_eq!(list[0].code, Code::ChecksInvalid);
        assert_eq!(list[0].path.as_deref(), Some("checks.json#checks"));
        assert_eq!(
            list[0].message,
            "checks.json: `checks` must be an array, not a number"
        );
    }

    #[test]
    fn one_rule_for_text() {
        assert_eq!(
            text_problem("Plain text, ünïcode, 日本", Breaks::Refused),
            None
        );
        assert_eq!(text_problem("a\tb", Breaks::Refused), None);
        assert_eq!(text_problem("a\r\nb", Breaks::Allowed), None);
        assert_eq!(text_problem("\u{200f}rtl mark", Breaks::Refused), None);
        let problem = |s: &str, breaks| text_problem(s, breaks).unwrap();
        assert!(problem("a\nb", Breaks::Refused).contains("line break (U+000A, character 2)"));
        assert!(
            problem("ab\u{7}", Breaks::Allowed).contains("control character U+0007 (character 3)")
        );
        assert!(problem("\u{9b}", Breaks::Allowed).contains("U+009B"));
        for c in BIDI_CONTROLS {
            assert!(
                problem(&format!("x{c}"), Breaks::Allowed).contains("bidirectional"),
                "{c:?}"
            );
        }
        for c in (0u32..=0x9f)
            .filter_map(char::from_u32)
            .filter(|c| c.is_control())
        {
            let allowed = matches!(c, '\t' | '\n' | '\r');
            assert_eq!(
                text_problem(&c.to_string(), Breaks::Allowed).is_none(),
                allowed,
                "{c:?}"
            );
        }
    }
}
