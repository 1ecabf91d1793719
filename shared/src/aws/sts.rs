//! STS: the roles shipgate's functions act as in the environment accounts.
//!
//! Every cross-account call of every function starts here: a role ARN checked once
//! ([`RoleArn`]), a session name made by one rule ([`session_name`]), and `AssumeRole` with its
//! failure classified ([`AssumeRoleError`]): a refusal (no trust, no such role, a malformed
//! ARN) is final and says what to check, while throttling, 5xx and transport failures are worth
//! another try. [`Sessions`] keeps one set of credentials per role for the life of the process,
//! so a function that works in one account for many deployments assumes its role once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::operation::assume_role::AssumeRoleError as SdkAssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::AwsError;

/// STS's limits on a role session name (AWS STS API Reference, `AssumeRole`:
/// `RoleSessionName`, 2 to 64 characters of `[\w+=,.@-]`).
pub const MAX_SESSION_NAME_CHARS: usize = 64;
const MIN_SESSION_NAME_CHARS: usize = 2;

/// Credentials reused while they have at least this long to live: more than a function's
/// longest invocation (15 minutes), so none expires during a call.
const REUSE_MARGIN: Duration = Duration::from_secs(20 * 60);

/// An IAM role ARN, `arn:<partition>:iam::<12-digit account>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn {
    arn: String,
    account: String,
}

/// Why a string is not a role ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>")]
pub struct NotARoleArn;

impl RoleArn {
    pub fn parse(arn: &str) -> Result<Self, NotARoleArn> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, "iam", "", account, resource]
                if !partition.is_empty()
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && resource
                        .strip_prefix("role/")
                        .is_some_and(|n| !n.is_empty() && !n.ends_with('/')) =>
            {
                Ok(Self {
                    arn: arn.to_owned(),
                    account: (*account).to_owned(),
                })
            }
            _ => Err(NotARoleArn),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The account the role belongs to: where the work happens.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl std::str::FromStr for RoleArn {
    type Err = NotARoleArn;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The account of a role ARN, if `arn` is one.
pub fn account_of_role(arn: &str) -> Option<String> {
    RoleArn::parse(arn).ok().map(|r| r.account)
}

/// The role session name for `purpose` (the function, e.g. `deploy`) working on `subject` (a
/// release or deployment id): `shipgate-<purpose>-<subject>`, which CloudTrail shows in the
/// environment account. Characters STS does not take become `-` (`+`, which the pattern allows
/// but the API reference's prose does not list, included), and the name is cut at 64.
pub fn session_name(purpose: &str, subject: &str) -> String {
    let name: String = format!("shipgate-{purpose}-{subject}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME_CHARS)
        .collect();
    if name.chars().count() < MIN_SESSION_NAME_CHARS {
        return "shipgate".to_owned();
    }
    name
}

/// `AssumeRole` failed.
#[derive(Debug, thiserror::Error)]
#[error("could not assume {role_arn}: {}{}", words(.source), hint(.source))]
pub struct AssumeRoleError {
    pub role_arn: String,
    #[source]
    pub source: Box<AwsError>,
}

impl AssumeRoleError {
    /// Throttling, 5xx, timeouts and transport failures: another try may succeed. A refusal
    /// (the role does not exist, does not trust the caller, the ARN is malformed) never will.
    pub fn is_retryable(&self) -> bool {
        self.source.retryable
    }

    pub fn is_access_denied(&self) -> bool {
        self.source.is_access_denied()
    }
}

/// "STS AssumeRole failed: AccessDenied: User … is not authorized …"
fn words(e: &AwsError) -> String {
    match &e.code {
        Some(code) => format!(
            "{} {} failed: {code}: {}",
            e.service, e.operation, e.message
        ),
        None => format!("{} {} failed: {}", e.service, e.operation, e.message),
    }
}

fn hint(e: &AwsError) -> &'static str {
    if e.is_access_denied() {
        ": check that the role exists and that its trust policy names the tooling account (the \
         role this function runs as)"
    } else if e.retryable {
        " (temporary: the action tries again)"
    } else {
        ""
    }
}

/// The STS error behind a failed credentials request, as an [`AwsError`] with its code and
/// whether another try may succeed.
pub fn classify(err: CredentialsError) -> AwsError {
    let sdk = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<SdkError<SdkAssumeRoleError, HttpResponse>>());
    let (code, message, retryable) = match sdk {
        Some(e) => {
            let code = e.code().map(str::to_owned);
            let retryable = match e {
                SdkError::ServiceError(context) => {
                    context.raw().status().is_server_error()
                        || code.as_deref().is_some_and(|c| {
                            c.contains("Throttl")
                                || c == "RequestLimitExceeded"
                                || c == "IDPCommunicationError"
                        })
                }
                SdkError::ConstructionFailure(_) => false,
                // Timeouts, connection and response failures.
                _ => true,
            };
            let message = e
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(e).to_string());
            (code, message, retryable)
        }
        None => (
            None,
            DisplayErrorContext(&err).to_string(),
            matches!(err, CredentialsError::ProviderTimedOut(_)),
        ),
    };
    AwsError {
        service: "STS",
        operation: "AssumeRole",
        code,
        message,
        retryable,
        source: Box::new(err),
    }
}

/// An SDK configuration acting as `role`, its credentials fetched now, so that a refused
/// `AssumeRole` is this error (fetched lazily, it would surface as a transport failure of the
/// first call made with them).
pub async fn assume(
    base: &SdkConfig,
    role: &RoleArn,
    session: &str,
) -> Result<(SdkConfig, Option<SystemTime>), AssumeRoleError> {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role.as_str())
        .session_name(session)
        .configure(base)
        .build()
        .await;
    let credentials: Credentials =
        provider
            .provide_credentials()
            .await
            .map_err(|e| AssumeRoleError {
                role_arn: role.to_string(),
                source: Box::new(classify(e)),
            })?;
    let expiry = credentials.expiry();
    let config = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    Ok((config, expiry))
}

/// The process's sessions in the environment accounts: one `AssumeRole` per role while its
/// credentials have [`REUSE_MARGIN`] left, whatever the number of deployments or invocations.
#[derive(Debug)]
pub struct Sessions {
    base: SdkConfig,
    purpose: &'static str,
    cache: Mutex<HashMap<RoleArn, (SdkConfig, Option<SystemTime>)>>,
}

impl Clone for Sessions {
    fn clone(&self) -> Self {
        let cache = self.cache.lock().map(|c| c.clone()).unwrap_or_default();
        Self {
            base: self.base.clone(),
            purpose: self.purpose,
            cache: Mutex::new(cache),
        }
    }
}

impl Sessions {
    /// `base`: the function's own configuration (tooling account); `purpose`: the function's
    /// name in session names.
    pub fn new(base: &SdkConfig, purpose: &'static str) -> Self {
        Self {
            base: base.clone(),
            purpose,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The function's own configuration.
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// A configuration acting as `role`, reused while its credentials last. `subject` names
    /// the session when a new one is made (the release or deployment it is made for).
    pub async fn config(
        &self,
        role: &RoleArn,
        subject: &str,
    ) -> Result<SdkConfig, AssumeRoleError> {
        let now = SystemTime::now();
        if let Some(config) = self.cached(role, now) {
            return Ok(config);
        }
        let (config, expiry) =
            assume(&self.base, role, &session_name(self.purpose, subject)).await?;
        tracing::info!(role_arn = %role, account = role.account(), "role assumed");
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(role.clone(), (config.clone(), expiry));
        }
        Ok(config)
    }

    fn cached(&self, role: &RoleArn, now: SystemTime) -> Option<SdkConfig> {
        let cache = self.cache.lock().ok()?;
        let (config, expiry) = cache.get(role)?;
        let fresh = match expiry {
            Some(expiry) => expiry
                .duration_since(now)
                .is_ok_and(|left| left > REUSE_MARGIN),
            // Credentials that never expire (a local stand-in): reuse.
            None => true,
        };
        fresh.then(|| config.clone())
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn refused(status: u16, code: &str, message: &str) -> CredentialsError {
        let error: SdkAssumeRoleError = crate::aws::mock::service_error(code, message);
        let response = HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        CredentialsError::provider_error(SdkError::service_error(error, response))
    }

    #[test]
    fn role_arns_name_their_account() {
        let role = RoleArn::parse("arn:aws:iam::222222222222:role/shipgate-deploy").unwrap();
        assert_eq!(role.account(), "222222222222");
        let path = RoleArn::parse("arn:aws-cn:iam::222222222222:role/team/deploy").unwrap();
        assert_eq!(path.account(), "222222222222");
        for bad in [
            "",
            "arn:aws:iam::22222222222:role/x",
            "arn:aws:iam::2222222222222:role/x",
            "arn:aws:iam::22222222222a:role/x",
            "arn:aws:iam::222222222222:user/x",
            "arn:aws:iam::222222222222:role/",
            "arn:aws:sts::222222222222:role/x",
            "arn::iam::222222222222:role/x",
            "arn:aws:iam:eu-west-1:222222222222:role/x",
            "#{variables.RoleArn}",
        ] {
            assert_eq!(RoleArn::parse(bad), Err(NotARoleArn), "{bad:?}");
        }
    }

    #[test]
    fn session_names_keep_to_what_sts_takes() {
        assert_eq!(
            session_name("deploy", "rel-1a2b"),
            "shipgate-deploy-rel-1a2b"
        );
        let odd = session_name("traffic", "a+b c/d:e_f=g,h.i@j");
        assert_eq!(odd, "shipgate-traffic-a-b-c-d-e_f=g,h.i@j");
        let long = session_name("change-set", &"x".repeat(200));
        assert_eq!(long.chars().count(), MAX_SESSION_NAME_CHARS);
        let pattern = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_=,.@-".contains(c))
        };
        for subject in ["é", "\u{0}", "a\nb", "#{x}", "", "💥"] {
            let name = session_name("promote", subject);
            assert!(pattern(&name), "{name:?}");
            assert!((2..=64).contains(&name.chars().count()), "{name:?}");
        }
    }

    #[test]
    fn a_refusal_is_final_and_says_what_to_check() {
        let source = classify(refused(
            403,
            "AccessDenied",
            "User: arn:aws:sts::111111111111:assumed-role/deploy/x is not authorized to perform: \
             sts:AssumeRole on resource: arn:aws:iam::222222222222:role/shipgate-deploy",
        ));
        assert!(!source.retryable);
        let err = AssumeRoleError {
            role_arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
            source: Box::new(source),
        };
        assert!(err.is_access_denied());
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(
            message.starts_with(
                "could not assume arn:aws:iam::222222222222:role/shipgate-deploy: STS AssumeRole \
                 failed: AccessDenied: User: "
            ),
            "{message}"
        );
        assert!(
            message.ends_with("(the role this function runs as)"),
            "{message}"
        );

        let malformed = classify(refused(
            400,
            "ValidationError",
            "1 validation error detected",
        ));
        assert!(!malformed.retryable);
    }

    #[test]
    fn throttling_5xx_and_timeouts_are_worth_another_try() {
        for (status, code) in [
            (400, "Throttling"),
            (400, "RequestLimitExceeded"),
            (503, "ServiceUnavailable"),
            (500, "InternalFailure"),
        ] {
            assert!(
                classify(refused(status, code, "slow down")).retryable,
                "{code}"
            );
        }
        let timed_out = classify(CredentialsError::provider_timed_out(Duration::from_secs(5)));
        assert!(timed_out.retryable);
        assert_eq!(timed_out.code, None);
        let err = AssumeRoleError {
            role_arn: "arn:aws:iam::222222222222:role/x".into(),
            source: Box::new(timed_out),
        };
        assert!(
            err.to_string()
                .ends_with("(temporary: the action tries again)")
        );
    }
}
