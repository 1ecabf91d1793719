//! The HTTP client for what is not an AWS API (container registries, the release's checks),
//! built when a request first needs it.
//!
//! Building a `reqwest::Client` reads the system's root certificates and parses them into a
//! trust store: about half of a function's init when it is done there, for invocations that may
//! never make such a request (a drop without images, a job for a release nobody recorded). As
//! [`crate::aws::https_client`] does for the SDK, the set-up waits for the first request, and
//! every clone shares the one client (one connection pool) once it is built.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// A `reqwest::Client`, built from its builder on the first [`get`](Self::get). Cheap to clone.
#[derive(Clone)]
pub struct HttpClientOnFirstUse {
    client: Arc<OnceLock<reqwest::Client>>,
    configure: fn() -> reqwest::ClientBuilder,
}

impl HttpClientOnFirstUse {
    /// A client that `configure` will set up, on first use.
    pub fn new(configure: fn() -> reqwest::ClientBuilder) -> Self {
        Self {
            client: Arc::new(OnceLock::new()),
            configure,
        }
    }

    /// A client with reqwest's defaults (what `reqwest::Client::new()` builds), on first use.
    pub fn with_defaults() -> Self {
        Self::new(reqwest::Client::builder)
    }

    /// The client, built now if this is the first use. A failure (no usable TLS roots) is
    /// returned, not kept: the next use tries again.
    pub fn get(&self) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        // Two first uses at once may both build one; the first stored wins, the other is
        // dropped.
        let built = (self.configure)().build()?;
        Ok(self.client.get_or_init(|| built).clone())
    }
}

impl fmt::Debug for HttpClientOnFirstUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientOnFirstUse")
            .field("built", &self.client.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_until_the_first_use_and_clones_share_the_client() {
        let lazy = HttpClientOnFirstUse::with_defaults();
        let clone = lazy.clone();
        assert!(format!("{lazy:?}").contains("built: false"));

        lazy.get().expect("a client with the defaults builds");

        assert!(format!("{clone:?}").contains("built: true"), "{clone:?}");
    }
}
