//! IAM: a role's trust policy.

use aws_sdk_iam::Client;

use super::{CallFailure, absent_if};

/// The trust policy (JSON) of the role named `name`; `Ok(None)` when there is no such role.
/// IAM returns the document URL-encoded (RFC 3986), as its API reference says of every policy
/// document it returns.
pub async fn trust_policy(client: &Client, name: &str) -> Result<Option<String>, CallFailure> {
    match client.get_role().role_name(name).send().await {
        Ok(out) => {
            let encoded = out
                .role()
                .and_then(|r| r.assume_role_policy_document())
                .unwrap_or_default();
            Ok(Some(
                percent_encoding::percent_decode_str(encoded)
                    .decode_utf8_lossy()
                    .into_owned(),
            ))
        }
        Err(e) => absent_if(&e, "NoSuchEntity"),
    }
}
