//! SES (API v2): the sender's identity and the account's sending status.

use aws_sdk_sesv2::Client;

use super::{CallFailure, absent_if, sent};

/// What `GetEmailIdentity` says of an identity (an address or a domain).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `VerificationStatus`: `PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`, `NOT_STARTED`.
    pub verification_status: Option<String>,
    /// `VerifiedForSendingStatus`.
    pub verified_for_sending: bool,
}

/// The identity `name`; `Ok(None)` when SES has none of that name (`NotFoundException`).
pub async fn identity(client: &Client, name: &str) -> Result<Option<Identity>, CallFailure> {
    match client
        .get_email_identity()
        .email_identity(name)
        .send()
        .await
    {
        Ok(out) => Ok(Some(Identity {
            verification_status: out.verification_status().map(|s| s.as_str().to_owned()),
            verified_for_sending: out.verified_for_sending_status(),
        })),
        Err(e) => absent_if(&e, "NotFoundException"),
    }
}

/// What `GetAccount` says of the account's sending in this region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// `ProductionAccessEnabled`: false in the sandbox.
    pub production_access: bool,
    /// `SendingEnabled`: false when SES paused the account's sending.
    pub sending_enabled: bool,
}

pub async fn account(client: &Client) -> Result<Account, CallFailure> {
    let out = sent(client.get_account().send()).await?;
    Ok(Account {
        production_access: out.production_access_enabled(),
        sending_enabled: out.sending_enabled(),
    })
}
