//! What is wrong with a drop: stable problem codes and the sentences that explain them.
//!
//! A code is a contract: it appears in the machine-readable rejection report and in tests, so a
//! code's string never changes meaning once released. The message is for a person and says what
//! to do. Validation collects problems instead of stopping at the first, and [`Problems`] caps
//! how many of one kind are listed so that a hostile archive cannot produce an unbounded report.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! problem_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, )*) => {
        /// The kind of a problem, with a stable `snake_case` string (see [`ProblemCode::as_str`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProblemCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ProblemCode {
            /// Every code, in declaration order (documentation, tests).
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)*];

            /// The stable string of this code, as it appears in reports.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $code,)*
                }
            }

            /// The code for a stable string, if there is one.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(ProblemCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

problem_codes! {
    // --- The object and the archive as a whole.
    /// The object is larger than `max_zip_bytes`; nothing else was read.
    ObjectTooLarge = "object_too_large",
    /// The object is not a zip archive (no end-of-central-directory record, no zip signature).
    NotAZip = "not_a_zip",
    /// The object starts like a zip but its end is missing (an interrupted upload).
    TruncatedZip = "truncated_zip",
    /// The archive's structure is inconsistent (offsets outside the object, bad signatures,
    /// data before the directory that no entry accounts for).
    CorruptZip = "corrupt_zip",
    /// A zip feature shipgate does not accept (split or multi-disk archives).
    UnsupportedZip = "unsupported_zip",
    /// A second end-of-central-directory record (in the comment, or before the real one), or a
    /// ZIP64 end record that names another directory than the plain one: readers disagree on
    /// which directory is the archive's.
    AmbiguousEndRecord = "ambiguous_end_record",
    /// Bytes before the first entry, with the offsets shifted to account for them (a
    /// self-extracting stub or a prepended file).
    LeadingBytes = "leading_bytes",
    /// Bytes between entries, or between the last entry and the directory, that belong to no
    /// entry (a hidden local record, padding, a second copy of a file).
    UnexplainedBytes = "unexplained_bytes",
    /// The archive holds no entries.
    EmptyZip = "empty_zip",
    /// More entries than `max_entries`.
    TooManyEntries = "too_many_entries",
    /// The central directory is larger than `max_entries` entries can justify.
    DirectoryTooLarge = "directory_too_large",
    /// The declared uncompressed size of all entries exceeds `max_total_uncompressed_bytes`.
    UncompressedTooLarge = "uncompressed_too_large",
    // --- One entry of the archive.
    /// An entry name with a `..` component.
    PathTraversal = "path_traversal",
    /// An entry name starting with `/` or `\`.
    AbsolutePath = "absolute_path",
    /// An entry name containing `\` (a path separator for Windows tools).
    BackslashInPath = "backslash_in_path",
    /// An entry name starting with a drive letter (`C:`).
    DriveLetterPath = "drive_letter_path",
    /// An entry name that is empty, too long, not text, or holds NUL, control or bidirectional
    /// formatting characters.
    InvalidEntryName = "invalid_entry_name",
    /// An entry that is a symbolic link.
    SymlinkEntry = "symlink_entry",
    /// An encrypted entry.
    EncryptedEntry = "encrypted_entry",
    /// A compression method other than stored (0) or deflate (8).
    UnsupportedCompression = "unsupported_compression",
    /// Two entries with the same name.
    DuplicateEntry = "duplicate_entry",
    /// Two entries whose names differ only by case (they collide on most file systems).
    CaseConflict = "case_conflict",
    /// An entry whose declared uncompressed size is more than `max_compression_ratio` times its
    /// compressed size.
    CompressionRatioTooHigh = "compression_ratio_too_high",
    /// Entries whose data overlap (the technique of "better" zip bombs).
    OverlappingEntries = "overlapping_entries",
    /// An entry's local header disagrees with the central directory (name, flags, method, CRC,
    /// sizes, ZIP64 values), or it carries a second name that some tools extract instead.
    EntryHeaderMismatch = "entry_header_mismatch",
    /// An entry's data descriptor is missing or disagrees with the central directory.
    DataDescriptorMismatch = "data_descriptor_mismatch",
    /// A directory entry (name ending in `/`) that holds data.
    DirectoryWithData = "directory_with_data",
    /// An entry shipgate must read is larger than the limit for its kind.
    EntryTooLarge = "entry_too_large",
    /// An entry (any entry, read by intake or not) decompresses to a size other than the one it
    /// declares.
    EntrySizeMismatch = "entry_size_mismatch",
    /// An entry's data (any entry's) does not match its CRC-32.
    CrcMismatch = "crc_mismatch",
    /// An entry's data cannot be read (missing local header, data past the directory, invalid
    /// deflate stream, bytes after the end of the deflate stream).
    CorruptEntry = "corrupt_entry",
    // --- The manifest, release.json.
    /// No `release.json` at the root of the archive.
    ManifestMissing = "manifest_missing",
    /// `release.json` is not UTF-8 JSON (or repeats a key).
    ManifestInvalidJson = "manifest_invalid_json",
    /// `schema_version` names a schema this shipgate does not know.
    UnknownSchemaVersion = "unknown_schema_version",
    /// A field the schema does not define.
    UnknownField = "unknown_field",
    /// A required field is absent.
    MissingField = "missing_field",
    /// A field has the wrong JSON type.
    WrongType = "wrong_type",
    /// A field's value breaks a rule of the schema (format, length, count).
    InvalidValue = "invalid_value",
    /// An image digest is not `sha256:` followed by 64 lowercase hex digits.
    InvalidDigest = "invalid_digest",
    /// The integrator's email address is not a plain address.
    InvalidEmail = "invalid_email",
    /// An image repository name breaks ECR's naming rules.
    InvalidRepository = "invalid_repository",
    /// An image tag breaks OCI tag rules.
    InvalidTag = "invalid_tag",
    /// An environment name is unknown, repeated or out of order.
    InvalidEnvironment = "invalid_environment",
    /// Two images with the same name, or one repository and tag with two digests.
    DuplicateImage = "duplicate_image",
    /// The same template file listed twice.
    DuplicateTemplate = "duplicate_template",
    /// Two templates deploying the same stack.
    DuplicateStack = "duplicate_stack",
    /// A parameter value uses a `${...}` placeholder that does not exist.
    UnknownPlaceholder = "unknown_placeholder",
    // --- Templates and checks.
    /// A template listed in the manifest is not in the archive.
    TemplateMissing = "template_missing",
    /// A template is not a valid CloudFormation template.
    TemplateInvalid = "template_invalid",
    /// A template nests lists and mappings (arrays and objects) deeper than the limit; reading
    /// stopped there.
    TemplateTooDeep = "template_too_deep",
    /// A template repeats a key in one mapping (or object), or holds two keys that YAML readers
    /// may take for the same one (`1` and `01`, `true` and `yes`).
    TemplateDuplicateKey = "template_duplicate_key",
    /// A template uses a YAML anchor (`&a`), alias (`*a`) or merge key (`<<`), which
    /// CloudFormation does not accept.
    TemplateYamlAlias = "template_yaml_alias",
    /// A template uses a YAML tag other than CloudFormation's short forms (`!Ref`, `!Sub`, ...),
    /// or declares tag handles with `%TAG`.
    TemplateUnknownTag = "template_unknown_tag",
    /// The manifest gives a template a parameter the template does not declare.
    UnknownTemplateParameter = "unknown_template_parameter",
    /// The checks file named in the manifest is not in the archive.
    ChecksMissing = "checks_missing",
    /// The checks file is not valid.
    ChecksInvalid = "checks_invalid",
    // --- Reading and intake.
    /// The drop could not be read for a reason outside the drop (storage, network): retry.
    ReadFailed = "read_failed",
    /// An image is absent from the source registry at the digest the manifest gives.
    ImageNotFound = "image_not_found",
    /// The application's version was accepted before with other contents.
    VersionConflict = "version_conflict",
    /// The drop is the same release (same contents) as one accepted before: nothing new starts.
    AlreadyReleased = "already_released",
    /// The drop was uploaded before another drop of the same application that already started.
    Overtaken = "overtaken",
    /// The drop was deleted (its key's current version is a delete marker, or the version is
    /// gone) before it was handled.
    Withdrawn = "withdrawn",
    /// The source registry could not be asked whether an image exists.
    RegistryUnavailable = "registry_unavailable",
    // --- Applications.
    /// The manifest's `application` is not one this shipgate serves: no declaration
    /// `/shipgate/applications/<application>`.
    ApplicationUnknown = "application_unknown",
    /// The manifest's `environments` are not the first environments of the application's
    /// chain, in order.
    EnvironmentsNotInChain = "environments_not_in_chain",
    /// The application's declaration could not be read, or is wrong, on every delivery of the
    /// event: an operator's fix, then the same drop again.
    ApplicationUnavailable = "application_unavailable",
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProblemCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProblemCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown problem code {code:?}")))
    }
}

/// One problem found in a drop.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    pub code: ProblemCode,
    /// A sentence a person can act on.
    pub message: String,
    /// Where: a zip entry name (`templates/service.yaml`), a field of `release.json`
    /// (`images[1].digest`), or a field of another file (`checks.json#checks[0].path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Problem {
    pub fn new(code: ProblemCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            path: None,
        }
    }

    /// The same problem, located at `path`.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "[{}] {path}: {}", self.code, self.message),
            None => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

/// A size for a message: exact bytes, with a binary unit when it helps.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let value = bytes as f64 / unit as f64;
            return format!("{value:.1} {name} ({bytes} bytes)");
        }
    }
    format!("{bytes} bytes")
}

/// How many problems of one code are listed before the rest are summarised in one line.
pub const MAX_PROBLEMS_PER_CODE: usize = 20;

/// Collects problems in the order found, listing at most [`MAX_PROBLEMS_PER_CODE`] of each code.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    listed: Vec<Problem>,
    found: BTreeMap<ProblemCode, usize>,
}

impl Problems {
    pub(crate) fn push(&mut self, problem: Problem) {
        let found = self.found.entry(problem.code).or_default();
        *found += 1;
        if *found <= MAX_PROBLEMS_PER_CODE {
            self.listed.push(problem);
        }
    }

    pub(crate) fn report(
        &mut self,
        code: ProblemCode,
        path: Option<&str>,
        message: impl Into<String>,
    ) {
        let problem = Problem::new(code, message);
        self.push(match path {
            Some(path) => problem.at(path),
            None => problem,
        });
    }

    /// Problems found so far, including those that will not be listed.
    pub(crate) fn total(&self) -> usize {
        self.found.values().sum()
    }

    /// The listed problems, followed by one summary per code that had more than the cap.
    pub(crate) fn into_vec(self) -> Vec<Problem> {
        let mut out = self.listed;
        for (code, found) in self.found {
            if found > MAX_PROBLEMS_PER_CODE {
                out.push(Problem::new(
                    code,
                    format!(
                        "{} more problems of this kind were found and are not listed: fix the \
                         ones above and upload again to see the rest",
                        found - MAX_PROBLEMS_PER_CODE
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip_through_serde() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ProblemCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert_eq!(ProblemCode::from_code(s), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ProblemCode>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<ProblemCode>("\"no_such_code\"").is_err());
    }

    #[test]
    fn the_intake_codes_exist() {
        assert_eq!(ProblemCode::ImageNotFound.as_str(), "image_not_found");
        assert_eq!(
            ProblemCode::RegistryUnavailable.as_str(),
            "registry_unavailable"
        );
    }

    #[test]
    fn a_problem_serialises_with_its_path_only_when_it_has_one() {
        let p = Problem::new(ProblemCode::InvalidDigest, "fix it").at("images[1].digest");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "invalid_digest", "message": "fix it", "path": "images[1].digest"})
        );
        let bare = serde_json::to_value(Problem::new(ProblemCode::EmptyZip, "x")).unwrap();
        assert!(bare.get("path").is_none());
    }

    #[test]
    fn problems_of_one_kind_are_capped_and_summarised() {
        let mut problems = Problems::default();
        for i in 0..(MAX_PROBLEMS_PER_CODE + 5) {
            problems.report(ProblemCode::PathTraversal, Some(&format!("../{i}")), "no");
        }
        problems.report(ProblemCode::EmptyZip, None, "empty");
        assert_eq!(problems.total(), MAX_PROBLEMS_PER_CODE + 6);
        let list = problems.into_vec();
        assert_eq!(list.len(), MAX_PROBLEMS_PER_CODE + 2);
        let last = list.last().unwrap();
        assert_eq!(last.code, ProblemCode::PathTraversal);
        assert!(last.message.starts_with("5 more problems"));
    }
}
