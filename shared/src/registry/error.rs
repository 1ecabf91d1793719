//! What can go wrong talking to a registry, in variants a caller can act on: retry
//! ([`RegistryError::is_retryable`]), fix access (`Unauthorized`), report a missing image
//! (`NotFound`), or stop trusting the content (`DigestMismatch`, `SizeMismatch`).

use super::{Digest, ManifestError, NameError};

/// The boxed error of an AWS SDK call, kept whole as the source.
pub type SdkErrorBox = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry or its token service refused the credentials, or they do not allow this.
    #[error("registry {registry} refused access (HTTP {status}){}", code_suffix(.code))]
    Unauthorized {
        registry: String,
        status: u16,
        code: Option<String>,
    },

    /// The repository, manifest or blob does not exist.
    #[error("{reference} not found in repository {repo}")]
    NotFound { repo: String, reference: String },

    /// Content did not hash to the digest it was asked for or announced with.
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    /// Content was longer or shorter than announced.
    #[error("{digest} has {actual} bytes where {expected} were expected")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },

    /// Content larger than this client accepts for its kind (manifests, error bodies, tokens).
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },

    /// An HTTP status the operation does not expect; `code` is the distribution spec error code
    /// (`MANIFEST_BLOB_UNKNOWN`, `TAG_INVALID`, ...) when the body carried one.
    #[error("registry answered {method} {path} with HTTP {status}{}: {excerpt}", code_suffix(.code))]
    Http {
        method: String,
        path: String,
        status: u16,
        code: Option<String>,
        excerpt: String,
    },

    /// A success answer that lacks what the protocol promises (a `Location`, a usable header).
    #[error("registry answer to {method} {path} is unusable: {reason}")]
    InvalidResponse {
        method: String,
        path: String,
        reason: String,
    },

    #[error(transparent)]
    InvalidName(#[from] NameError),

    #[error(transparent)]
    InvalidManifest(#[from] ManifestError),

    #[error("registry endpoint {url:?} is not usable: {reason}")]
    InvalidEndpoint { url: String, reason: String },

    /// The request did not get an HTTP answer (connection, TLS, timeout, body stream). The URL
    /// is stripped: blob downloads are redirected to presigned URLs.
    #[error("HTTP request to the registry failed")]
    Transport(#[source] reqwest::Error),

    /// An ECR control-plane call failed; the SDK error is the source.
    #[error("ECR {operation} failed")]
    Ecr {
        operation: &'static str,
        #[source]
        source: SdkErrorBox,
    },

    /// ECR answered, but its authorization data cannot be used.
    #[error("ECR authorization data is unusable: {0}")]
    EcrAuthorization(&'static str),
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

impl RegistryError {
    /// Whether trying again later may succeed: transport failures, throttling, server errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        Self::Transport(e.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_name_the_request_and_the_registry_code() {
        let e = RegistryError::Http {
            method: "PUT".into(),
            path: "/v2/app/manifests/1.0".into(),
            status: 400,
            code: Some("TAG_INVALID".into()),
            excerpt: "tag is immutable".into(),
        };
        assert_eq!(
            e.to_string(),
            "registry answered PUT /v2/app/manifests/1.0 with HTTP 400 TAG_INVALID: tag is immutable"
        );
        assert!(!e.is_retryable());
        let throttled = RegistryError::Http {
            method: "GET".into(),
            path: "/v2/".into(),
            status: 429,
            code: None,
            excerpt: String::new(),
        };
        assert!(throttled.is_retryable());
    }
}
