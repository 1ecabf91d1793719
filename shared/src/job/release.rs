//! The release record an action works on: one intake accepted, going to the action's
//! environment. Every action that touches a release reads it this way, so a release intake
//! rejected, or one that does not list the environment, is refused the same way everywhere.

use crate::release::Manifest;
use crate::store::{ReleaseRecord, ReleaseState, Store, StoreError};

/// The release cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "release {release_id} is not in the release table: only a release intake accepted is \
         worked on (is releaseId the pipeline's ReleaseId variable?)"
    )]
    NotFound { release_id: String },
    #[error("release {release_id} is {state}: only a release intake accepted is worked on")]
    NotAccepted {
        release_id: String,
        state: &'static str,
    },
    #[error("release {release_id} has no recorded manifest: intake never accepted it")]
    ManifestMissing { release_id: String },
    #[error("the manifest recorded for release {release_id} cannot be read: {source}")]
    ManifestUnreadable {
        release_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "release {release_id} does not go to {environment}: its manifest lists {}",
        .listed.join(", ")
    )]
    NotForEnvironment {
        release_id: String,
        environment: String,
        listed: Vec<String>,
    },
    #[error(
        "release {release_id} is a release of {}, not of {application}, whose pipeline this \
         action is in: an application's actions work on its own releases only",
        .recorded.as_deref().unwrap_or("no application")
    )]
    OtherApplication {
        release_id: String,
        application: String,
        recorded: Option<String>,
    },
    #[error(transparent)]
    Store(#[from] TableError),
}

crate::from_store_error!(ReleaseError);

/// The release table cannot be used: what every action says when reading or writing it fails.
/// Boxed, as a [`StoreError`] is large. An action's error holds it as its `Store` variant and
/// takes a [`StoreError`] through [`from_store_error!`](crate::from_store_error).
#[derive(Debug, thiserror::Error)]
#[error("the release table could not be used: {0}")]
pub struct TableError(#[source] Box<StoreError>);

impl From<StoreError> for TableError {
    fn from(e: StoreError) -> Self {
        TableError(Box::new(e))
    }
}

impl TableError {
    pub fn store_error(&self) -> &StoreError {
        &self.0
    }

    /// The table throttled or failed for a moment.
    pub fn is_retryable(&self) -> bool {
        self.0.is_retryable()
    }
}

/// `From<StoreError>` for an error enum whose `Store` variant holds a [`TableError`], so that
/// `?` works on the store's calls: `shipgate::from_store_error!(ChecksError);`.
#[macro_export]
macro_rules! from_store_error {
    ($error:ty) => {
        impl ::std::convert::From<$crate::store::StoreError> for $error {
            fn from(e: $crate::store::StoreError) -> Self {
                Self::Store(e.into())
            }
        }
    };
}

impl ReleaseError {
    pub fn error_type(&self) -> &'static str {
        match self {
            ReleaseError::NotFound { .. } => "ReleaseNotFound",
            ReleaseError::NotAccepted { .. } => "ReleaseNotAccepted",
            ReleaseError::ManifestMissing { .. } | ReleaseError::ManifestUnreadable { .. } => {
                "ReleaseNotValidated"
            }
            ReleaseError::NotForEnvironment { .. } => "NotForEnvironment",
            ReleaseError::OtherApplication { .. } => "OtherApplication",
            ReleaseError::Store(_) => "StoreError",
        }
    }

    /// The table throttled or failed for a moment.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReleaseError::Store(e) if e.is_retryable())
    }
}

/// The release intake accepted (its execution may start before intake records the start,
/// hence `Accepted` as well as `Started`), of `application` when the action names the
/// application whose pipeline it is in ([`check_application`]).
pub async fn accepted_release(
    store: &Store,
    release_id: &str,
    application: Option<&str>,
) -> Result<ReleaseRecord, ReleaseError> {
    let record = store
        .get_release(release_id)
        .await?
        .ok_or_else(|| ReleaseError::NotFound {
            release_id: release_id.to_owned(),
        })?;
    check_accepted(&record)?;
    check_application(&record, application)?;
    Ok(record)
}

/// Refuses a release of another application than `application`, the one whose pipeline the
/// action is in (its `application` parameter): a release id given to another application's
/// pipeline is never worked on there. `None`: the action names no application (a pipeline of
/// the single-application shape).
pub fn check_application(
    record: &ReleaseRecord,
    application: Option<&str>,
) -> Result<(), ReleaseError> {
    match application {
        Some(application) if record.application.as_deref() != Some(application) => {
            Err(ReleaseError::OtherApplication {
                release_id: record.release_id.clone(),
                application: application.to_owned(),
                recorded: record.application.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Refuses a release intake is still validating or rejected.
pub fn check_accepted(record: &ReleaseRecord) -> Result<(), ReleaseError> {
    match record.state {
        ReleaseState::Started | ReleaseState::Accepted => Ok(()),
        ReleaseState::Validating | ReleaseState::Rejected => Err(ReleaseError::NotAccepted {
            release_id: record.release_id.clone(),
            state: record.state.as_str(),
        }),
    }
}

/// The manifest intake recorded with the release.
pub fn recorded_manifest(record: &ReleaseRecord) -> Result<Manifest, ReleaseError> {
    let value = record
        .manifest
        .clone()
        .ok_or_else(|| ReleaseError::ManifestMissing {
            release_id: record.release_id.clone(),
        })?;
    serde_json::from_value(value).map_err(|source| ReleaseError::ManifestUnreadable {
        release_id: record.release_id.clone(),
        source,
    })
}

/// Refuses an environment the manifest does not list.
pub fn check_goes_to(
    release_id: &str,
    manifest: &Manifest,
    environment: &str,
) -> Result<(), ReleaseError> {
    if manifest.environments.iter().any(|e| e == environment) {
        return Ok(());
    }
    Err(ReleaseError::NotForEnvironment {
        release_id: release_id.to_owned(),
        environment: environment.to_owned(),
        listed: manifest.environments.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_s_action_refuses_another_application_s_release() {
        let mut record = crate::testing::received_release("rel-1", "drops");
        record.application = Some("orders".into());
        assert!(check_application(&record, Some("orders")).is_ok());
        // A pipeline of the single-application shape names no application.
        assert!(check_application(&record, None).is_ok());
        let refused = check_application(&record, Some("billing")).unwrap_err();
        assert_eq!(refused.error_type(), "OtherApplication");
        assert!(
            refused
                .to_string()
                .contains("release rel-1 is a release of orders, not of billing"),
            "{refused}"
        );
        record.application = None;
        assert!(check_application(&record, Some("billing")).is_err());
    }
}
