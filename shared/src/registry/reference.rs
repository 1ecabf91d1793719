//! Repository names and manifest references (tag or digest), checked before they go into a URL.
//!
//! The rules are the distribution spec's: a repository is `/`-separated lowercase components
//! joined by `.`, `_`, `__` or runs of `-`; a tag is up to 128 of `[A-Za-z0-9_.-]` not starting
//! with `.` or `-`. Checking them here means a release manifest cannot steer a request to
//! another path of the registry.

use std::fmt;

use super::{Digest, DigestError};

/// Why a repository name or reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{value:?} is not a valid repository name")]
    Repository { value: String },
    #[error("{value:?} is not a valid tag")]
    Tag { value: String },
    #[error(transparent)]
    Digest(#[from] DigestError),
}

const MAX_REPOSITORY_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Checks a repository name (`team/app`).
pub fn check_repository(name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_REPOSITORY_LEN
        && name.split('/').all(valid_path_component);
    if valid {
        Ok(())
    } else {
        Err(NameError::Repository { value: name.into() })
    }
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators between alphanumeric runs: ".", "_", "__", or any number of "-".
    bytes
        .split(alnum)
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&b| b == b'-'))
}

/// A tag or a digest: what follows `/manifests/` in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// Parses a tag or digest; anything with a `:` is taken as a digest.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if Digest::looks_like_digest(s) {
            return Ok(Self::Digest(s.parse()?));
        }
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
        if valid {
            Ok(Self::Tag(s.to_owned()))
        } else {
            Err(NameError::Tag { value: s.into() })
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Digest(d) => Some(d),
            Self::Tag(_) => None,
        }
    }
}

impl From<Digest> for Reference {
    fn from(digest: Digest) -> Self {
        Self::Digest(digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_repository_names_are_accepted() {
        for name in [
            "app",
            "team/app",
            "team/app-api",
            "a/b/c",
            "my_app",
            "my__app",
            "my.app",
            "web--frontend",
            "0x",
        ] {
            assert_eq!(check_repository(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn repository_names_that_could_escape_the_path_are_refused() {
        for name in [
            "",
            "App",
            "../etc",
            "team/../app",
            "team//app",
            "/app",
            "app/",
            "app?x=1",
            "app#frag",
            "a%2fb",
            "-app",
            "app-",
            "a___b",
            "a._b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(
                check_repository(name).is_err(),
                "{name:?} should be refused"
            );
        }
    }

    #[test]
    fn tags_and_digests_are_told_apart() {
        assert_eq!(
            Reference::parse("1.4.2").unwrap(),
            Reference::Tag("1.4.2".into())
        );
        assert_eq!(
            Reference::parse("_latest-rc.1").unwrap(),
            Reference::Tag("_latest-rc.1".into())
        );
        let digest = Digest::sha256_of(b"x");
        assert_eq!(
            Reference::parse(digest.as_str()).unwrap(),
            Reference::Digest(digest.clone())
        );
        assert_eq!(Reference::from(digest.clone()).to_string(), digest.as_str());
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            ".hidden",
            "-dash",
            "a/b",
            "a?b",
            "sha256:zz",
            "md5:abc",
            &"t".repeat(129),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
