//! STS: which account a set of credentials acts in.

use aws_sdk_sts::Client;

use super::CallFailure;

/// The account of the caller (`GetCallerIdentity`, which needs no permission).
pub async fn account(client: &Client) -> Result<String, CallFailure> {
    let out = client
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| CallFailure::new(&e))?;
    Ok(out.account().unwrap_or_default().to_owned())
}
