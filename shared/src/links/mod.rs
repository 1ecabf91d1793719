//! Approval links: signing and checking the token an approval email carries.
//!
//! A token binds one pipeline execution, stage, action and approver to an expiry and a nonce,
//! and is signed with HMAC-SHA256 under a key the caller fetched (SSM / Secrets Manager). The
//! CodePipeline approval token is never inside: the page looks it up from the record once the
//! link checks out. Checking is pure (the key and the time are arguments), so the forged-link
//! table is a set of unit and property tests. The caller still compares the claims with the
//! pending approval's record and claims [`nonce_key`] with a conditional write (single use).
//!
//! Format: `base64url(payload) "." base64url(mac)`, no padding. The payload is compact JSON;
//! the MAC covers a version prefix and the *encoded* payload, so any change to the text of the
//! token, even one that decodes to the same bytes, fails the check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

type HmacSha256 = Hmac<Sha256>;

/// Tokens longer than this are refused before any decoding or MAC work.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Domain separation: a MAC made with the same key for another purpose never verifies here.
const MAC_CONTEXT: &[u8] = b"shipgate-approval-link-v1.";

/// What a link asserts, once its signature checks out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    #[serde(rename = "e")]
    pub execution_id: String,
    #[serde(rename = "s")]
    pub stage: String,
    #[serde(rename = "a")]
    pub action: String,
    /// The approver's email address the link was sent to.
    #[serde(rename = "p")]
    pub approver: String,
    /// Epoch seconds; the link is valid up to and including this second.
    #[serde(rename = "x")]
    pub expires_at: i64,
    /// Random, from the caller: what makes the link single-use.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a link was refused. Each variant maps to one HTTP status on the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token: too long, bad base64, bad payload, missing fields.
    #[error("the approval link is malformed")]
    Malformed,
    /// Signed with no key we hold, or altered.
    #[error("the approval link's signature does not match")]
    BadSignature,
    #[error("the approval link expired at {expired_at} (epoch seconds)")]
    Expired { expired_at: i64 },
}

impl LinkError {
    /// The HTTP status the approval page answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            LinkError::Malformed => 400,
            LinkError::BadSignature => 403,
            LinkError::Expired { .. } => 410,
        }
    }
}

/// Signs claims into a token for a link.
pub fn sign_link(claims: &LinkClaims, key: &[u8]) -> String {
    // Serialising a struct of strings and an integer cannot fail; an empty payload would
    // only produce a token that never verifies (fail closed).
    let json = serde_json::to_vec(claims).unwrap_or_default();
    sign_payload(&json, key)
}

/// Signs raw payload bytes; `sign_link` and the tests' hand-made payloads share it.
fn sign_payload(payload: &[u8], key: &[u8]) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(payload);
    let Some(mac) = mac_for(key, &encoded) else {
        // Unreachable (HMAC takes keys of any length): an empty token is refused as malformed.
        return String::new();
    };
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{encoded}.{tag}")
}

/// Checks a token under one key, at `now` (epoch seconds).
pub fn verify_link(token: &str, key: &[u8], now: i64) -> Result<LinkClaims, LinkError> {
    verify_link_with_keys(token, &[key], now)
}

/// Whether `token` has the shape of a link token (`payload.tag`, both base64url, bounded in
/// length): what the page checks before it fetches a key, so text that cannot be a link costs
/// no call. Passing says nothing of its authenticity; [`verify_link_with_keys`] decides that.
pub fn check_link_shape(token: &str) -> Result<(), LinkError> {
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match token.split_once('.') {
        Some((payload, tag))
            if token.len() <= MAX_TOKEN_LEN && base64url(payload) && base64url(tag) =>
        {
            Ok(())
        }
        _ => Err(LinkError::Malformed),
    }
}

/// Checks a token under any of the given keys (current first, then previous ones), so links
/// sent before a key rotation keep working until they expire.
pub fn verify_link_with_keys(
    token: &str,
    keys: &[&[u8]],
    now: i64,
) -> Result<LinkClaims, LinkError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::Malformed);
    }
    let (encoded, tag) = token.split_once('.').ok_or(LinkError::Malformed)?;
    if encoded.is_empty() || tag.contains('.') {
        return Err(LinkError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| LinkError::Malformed)?;
    // verify_slice compares in constant time. Nothing of the payload is parsed until a key
    // vouches for it.
    let authentic = keys
        .iter()
        .any(|key| mac_for(key, encoded).is_some_and(|mac| mac.verify_slice(&tag).is_ok()));
    if !authentic {
        return Err(LinkError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| LinkError::Malformed)?;
    let claims: LinkClaims = serde_json::from_slice(&payload).map_err(|_| LinkError::Malformed)?;
    if now > claims.expires_at {
        return Err(LinkError::Expired {
            expired_at: claims.expires_at,
        });
    }
    Ok(claims)
}

/// The key the caller claims with a conditional write when the link decides, so a link
/// decides once. A hash of the binding and the nonce: unique per link, bounded in length, and
/// no email address in a table key.
pub fn nonce_key(claims: &LinkClaims) -> String {
    let mut hasher = Sha256::new();
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    for field in [
        &claims.execution_id,
        &claims.stage,
        &claims.action,
        &claims.approver,
        &claims.nonce,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    format!("LINK#{}", hex::encode(hasher.finalize()))
}

fn mac_for(key: &[u8], encoded_payload: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(MAC_CONTEXT);
    mac.update(encoded_payload.as_bytes());
    Some(mac)
}

/// Domain separation for the page's form token.
const FORM_CONTEXT: &[u8] = b"shipgate-approval-form-v1.";

/// The token the approval page puts in its form, bound to one link: a POST must carry it, so
/// only a form the page served can decide (a cross-site form cannot know it without the link).
pub fn form_token(claims: &LinkClaims, key: &[u8]) -> String {
    match form_mac(claims, key) {
        Some(mac) => URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// Checks a form token against any of `keys`, in constant time.
pub fn verify_form_token(token: &str, claims: &LinkClaims, keys: &[&[u8]]) -> bool {
    if token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    keys.iter()
        .any(|key| form_mac(claims, key).is_some_and(|mac| mac.verify_slice(&tag).is_ok()))
}

fn form_mac(claims: &LinkClaims, key: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(FORM_CONTEXT);
    mac.update(nonce_key(claims).as_bytes());
    Some(mac)
}
