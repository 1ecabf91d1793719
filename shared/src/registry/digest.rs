//! Content digests (`sha256:<64 hex>`), the only identity an image has across registries.
//!
//! A [`Digest`] is always well formed, so it can go into a URL path as is. Only `sha256` is
//! accepted: it is what ECR and every common registry use, and a digest this client cannot
//! verify is one it should not trust.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LEN: usize = 64;

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{value:?} is not a digest: expected sha256:<64 lowercase hex digits>")]
    Malformed { value: String },
    #[error("{value:?} uses an unsupported digest algorithm (only sha256 is supported)")]
    UnsupportedAlgorithm { value: String },
}

/// A `sha256:<hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_hash(Sha256::digest(bytes).as_slice())
    }

    fn from_hash(hash: &[u8]) -> Self {
        Self(format!("{SHA256_PREFIX}{}", hex::encode(hash)))
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }

    /// Whether `s` looks like a digest (`algorithm:encoded`) rather than a tag, whether or not
    /// the algorithm is supported. Tags cannot contain `:`, so this is unambiguous.
    pub fn looks_like_digest(s: &str) -> bool {
        s.contains(':')
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::Malformed { value: s.into() });
        };
        if algorithm != "sha256" {
            let known_shape = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && !encoded.is_empty()
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
            return Err(if known_shape {
                DigestError::UnsupportedAlgorithm { value: s.into() }
            } else {
                DigestError::Malformed { value: s.into() }
            });
        }
        let hex_ok = encoded.len() == SHA256_HEX_LEN
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(DigestError::Malformed { value: s.into() });
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> Self {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Computes a [`Digest`] over content that arrives in pieces (a streamed blob), so no piece has
/// to be kept.
#[derive(Debug, Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl Digester {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything seen.
    pub fn finish(self) -> Digest {
        Digest::from_hash(self.hasher.finalize().as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_digest_of_nothing_is_the_well_known_one() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        assert_eq!(Digester::new().finish().as_str(), EMPTY);
    }

    #[test]
    fn a_streamed_digest_equals_the_one_shot_digest() {
        let mut d = Digester::new();
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(d.len(), 11);
        assert_eq!(d.finish(), Digest::sha256_of(b"hello world"));
    }

    #[test]
    fn well_formed_digests_parse_and_print_back() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.hex().len(), 64);
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            "",
            "latest",
            "sha256:",
            "sha256:abc",
            // upper case hex is not canonical
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            // one digit too many
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            // path traversal must never reach a URL
            "sha256:../../../../etc/passwd",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
    }

    #[test]
    fn other_algorithms_are_reported_as_unsupported() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert!(matches!(
            sha512.parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn digests_round_trip_through_json_and_bad_ones_fail() {
        let d: Digest = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY}\""));
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
