//! STS: which account a set of credentials acts in.

use aws_sdk_sts::Client;

use super::{CallFailure, sent};

/// The account of the caller (`GetCallerIdentity`, which needs no permission).
pub async fn account(client: &Client) -> Result<String, CallFailure> {
    let out = sent(client.get_caller_identity().send()).await?;
    Ok(out.account().unwrap_or_default().to_owned())
}
