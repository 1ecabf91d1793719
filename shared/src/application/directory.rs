//! The applications an installation serves, read from SSM Parameter Store.
//!
//! One `GetParameter` of `/shipgate/applications/<application>` per application a process
//! needs, kept for [`Directory::ttl`]: the cost of a release does not grow with the number of
//! applications declared (no listing, no scan). A declaration that is found is kept, so that a
//! burst of drops or approval clicks is one call; one that is not found is asked again each
//! time, so an application declared a moment ago is known at once. `ssm:GetParameter` on
//! `arn:aws:ssm:<region>:<account>:parameter/shipgate/applications/*` is what a function needs
//! (Service Authorization Reference, AWS Systems Manager: GetParameter takes the `parameter`
//! resource type).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ssm::Client;
use tracing::info;

use super::{Application, DeclarationError, is_label, parameter_name};
use crate::error::{AwsError, aws_err};

/// How long a declaration read is used before it is read again: a changed declaration (an
/// approver removed, a plan changed) is seen by every function within this time.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Why an application could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// SSM could not answer (throttled, unreachable, denied): worth another try, or an
    /// operator's fix to a policy.
    #[error(transparent)]
    Unavailable(#[from] AwsError),
    /// The application is declared, but its declaration is wrong: an operator's fix.
    #[error(transparent)]
    Invalid(#[from] DeclarationError),
}

/// Where declarations are read, with a per-process cache.
#[derive(Debug)]
pub struct Directory {
    ssm: Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Application)>>,
}

impl Directory {
    pub fn new(ssm: Client) -> Self {
        Self::with_ttl(ssm, DEFAULT_TTL)
    }

    pub fn with_ttl(ssm: Client, ttl: Duration) -> Self {
        Self {
            ssm,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The application named `name`; `Ok(None)` when no such application is declared.
    pub async fn application(&self, name: &str) -> Result<Option<Application>, DirectoryError> {
        // Not a name an application can have: no parameter is asked for (SSM names are
        // restricted too, and such a name would only be a confusing error from SSM).
        if !is_label(name) {
            return Ok(None);
        }
        if let Some(application) = self.cached(name) {
            return Ok(Some(application));
        }
        let Some(text) = read_declaration(&self.ssm, name).await? else {
            info!(application = name, "no such application is declared");
            return Ok(None);
        };
        let application = Application::from_declaration(name, &text)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_owned(), (Instant::now(), application.clone()));
        }
        Ok(Some(application))
    }

    fn cached(&self, name: &str) -> Option<Application> {
        let cache = self.cache.lock().ok()?;
        let (read_at, application) = cache.get(name)?;
        (read_at.elapsed() < self.ttl).then(|| application.clone())
    }
}

/// The declaration's text; `None` when the parameter does not exist.
pub async fn read_declaration(ssm: &Client, application: &str) -> Result<Option<String>, AwsError> {
    let name = parameter_name(application);
    match ssm.get_parameter().name(&name).send().await {
        Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err("SSM", "GetParameter")(e)),
    }
}
