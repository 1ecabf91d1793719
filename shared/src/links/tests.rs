//! The forged-link table: every way a link can be wrong, and the one way it is right.

use proptest::prelude::*;
use serde_json::json;

use super::*;

const KEY: &[u8] = b"current-key-0123456789abcdef0123456789";
const OLD_KEY: &[u8] = b"previous-key-0123456789abcdef012345678";
const NOW: i64 = 1_800_000_000;

fn claims() -> LinkClaims {
    LinkClaims {
        execution_id: "0f3c1c3e-6f0c-4f41-9a57-6a4b6f1f7f21".to_owned(),
        stage: "prod".to_owned(),
        action: "Approve".to_owned(),
        approver: "ops@example.com".to_owned(),
        expires_at: NOW + 3600,
        nonce: "k3J9q0Zr8tY2".to_owned(),
    }
}

fn parts(token: &str) -> (&str, &str) {
    token.split_once('.').expect("a signed token has a dot")
}

/// Re-encodes edited claims but keeps the original MAC: the forger's best attempt.
fn with_edited_claims(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let (payload, tag) = parts(token);
    let mut value: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    edit(&mut value);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&value).expect("json"));
    format!("{payload}.{tag}")
}

#[test]
fn a_signed_link_verifies_to_its_claims() {
    let token = sign_link(&claims(), KEY);
    assert_eq!(verify_link(&token, KEY, NOW), Ok(claims()));
    // Valid up to and including the expiry second.
    assert_eq!(verify_link(&token, KEY, NOW + 3600), Ok(claims()));
    assert!(token.len() < MAX_TOKEN_LEN);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
        "URL-safe without escaping: {token}"
    );
}

#[test]
fn a_link_signed_with_another_key_is_refused() {
    let token = sign_link(&claims(), b"someone-elses-key");
    assert_eq!(verify_link(&token, KEY, NOW), Err(LinkError::BadSignature));
    assert_eq!(verify_link(&token, b"", NOW), Err(LinkError::BadSignature));
}

#[test]
fn a_link_signed_before_a_key_rotation_still_verifies() {
    let token = sign_link(&claims(), OLD_KEY);
    assert_eq!(
        verify_link_with_keys(&token, &[KEY, OLD_KEY], NOW),
        Ok(claims())
    );
    assert_eq!(
        verify_link_with_keys(&token, &[KEY], NOW),
        Err(LinkError::BadSignature)
    );
    assert_eq!(
        verify_link_with_keys(&token, &[], NOW),
        Err(LinkError::BadSignature)
    );
}

#[test]
fn any_altered_character_is_refused() {
    let token = sign_link(&claims(), KEY);
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'.' {
            continue;
        }
        // Flip to another character of the alphabet, so the change survives base64 decoding
        // in most positions and reaches the MAC check.
        let replacement = if bytes[i] == b'A' { b'B' } else { b'A' };
        let mut forged = bytes.to_vec();
        forged[i] = replacement;
        let forged = String::from_utf8(forged).expect("ascii");
        let outcome = verify_link(&forged, KEY, NOW);
        assert!(
            matches!(outcome, Err(LinkError::BadSignature | LinkError::Malformed)),
            "position {i}: {outcome:?}"
        );
    }
}

#[test]
fn one_flipped_byte_in_the_payload_or_the_mac_is_refused() {
    let token = sign_link(&claims(), KEY);
    let (payload, tag) = parts(&token);
    let payload = URL_SAFE_NO_PAD.decode(payload).expect("b64");
    let tag = URL_SAFE_NO_PAD.decode(tag).expect("b64");
    let encode = |p: &[u8], t: &[u8]| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(p),
            URL_SAFE_NO_PAD.encode(t)
        )
    };
    let flipped = |bytes: &[u8], i: usize, bit: u8| {
        let mut forged = bytes.to_vec();
        forged[i] ^= bit;
        forged
    };
    let forgeries = (0..payload.len())
        .map(|i| {
            (
                flipped(&payload, i, 0x01),
                tag.clone(),
                format!("payload byte {i}"),
            )
        })
        .chain((0..tag.len()).map(|i| {
            (
                payload.clone(),
                flipped(&tag, i, 0x80),
                format!("mac byte {i}"),
            )
        }));
    for (forged_payload, forged_tag, which) in forgeries {
        assert_eq!(
            verify_link(&encode(&forged_payload, &forged_tag), KEY, NOW),
            Err(LinkError::BadSignature),
            "{which}"
        );
    }
    // A truncated MAC is not a shorter valid MAC.
    assert_eq!(
        verify_link(&encode(&payload, &tag[..16]), KEY, NOW),
        Err(LinkError::BadSignature)
    );
}

#[test]
fn edited_claims_with_the_old_mac_are_refused() {
    let token = sign_link(&claims(), KEY);
    let edits: [(&str, serde_json::Value); 5] = [
        ("p", json!("attacker@example.com")),
        ("e", json!("another-execution")),
        ("s", json!("stg")),
        ("a", json!("Reject")),
        ("x", json!(NOW + 365 * 86_400)),
    ];
    for (field, value) in edits {
        let forged = with_edited_claims(&token, |v| v[field] = value.clone());
        assert_eq!(
            verify_link(&forged, KEY, NOW),
            Err(LinkError::BadSignature),
            "edited {field}"
        );
    }
}

#[test]
fn an_expired_link_is_refused_with_its_expiry() {
    let token = sign_link(&claims(), KEY);
    assert_eq!(
        verify_link(&token, KEY, NOW + 3601),
        Err(LinkError::Expired {
            expired_at: NOW + 3600
        })
    );
    assert_eq!(LinkError::Expired { expired_at: 0 }.http_status(), 410);
}

#[test]
fn a_signed_payload_with_a_missing_field_is_malformed() {
    // Even correctly signed (a bug on our side, or an old format), it must not half-verify.
    let mut value = serde_json::to_value(claims()).expect("json");
    value.as_object_mut().expect("object").remove("n");
    let token = sign_payload(&serde_json::to_vec(&value).expect("json"), KEY);
    assert_eq!(verify_link(&token, KEY, NOW), Err(LinkError::Malformed));
}

#[test]
fn an_oversized_token_is_refused_before_any_work() {
    let huge = LinkClaims {
        nonce: "n".repeat(MAX_TOKEN_LEN),
        ..claims()
    };
    let token = sign_link(&huge, KEY);
    assert_eq!(verify_link(&token, KEY, NOW), Err(LinkError::Malformed));
    assert_eq!(
        verify_link(&"A".repeat(1 << 20), KEY, NOW),
        Err(LinkError::Malformed)
    );
}

#[test]
fn garbage_is_malformed_or_unsigned() {
    let token = sign_link(&claims(), KEY);
    let (payload, tag) = parts(&token);
    let cases = [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "no-dot-at-all".to_owned(),
        format!("{payload}."),
        format!(".{tag}"),
        format!("{payload}.{tag}.{tag}"),
        format!("{payload}.{tag}="),
        format!("{payload}=.{tag}"),
        format!("{payload}.!!!!"),
        format!("{payload}.{tag} "),
        "é.é".to_owned(),
    ];
    for case in cases {
        let outcome = verify_link(&case, KEY, NOW);
        assert!(
            matches!(outcome, Err(LinkError::Malformed | LinkError::BadSignature)),
            "{case:?}: {outcome:?}"
        );
    }
    assert_eq!(verify_link("", KEY, NOW), Err(LinkError::Malformed));
    assert_eq!(LinkError::Malformed.http_status(), 400);
    assert_eq!(LinkError::BadSignature.http_status(), 403);
}

#[test]
fn the_nonce_key_is_per_link_and_holds_no_email() {
    let key = nonce_key(&claims());
    assert!(key.starts_with("LINK#"));
    assert!(!key.contains("example.com"));
    assert_eq!(key, nonce_key(&claims()), "stable for the same link");
    let other_nonce = LinkClaims {
        nonce: "other".to_owned(),
        ..claims()
    };
    assert_ne!(key, nonce_key(&other_nonce));
    let other_approver = LinkClaims {
        approver: "dev@example.com".to_owned(),
        ..claims()
    };
    assert_ne!(key, nonce_key(&other_approver));
}

proptest! {
    #[test]
    fn random_strings_never_panic_and_never_verify(token in any::<String>()) {
        prop_assert!(verify_link(&token, KEY, NOW).is_err());
    }

    #[test]
    fn random_well_shaped_tokens_never_verify(
        payload in "[A-Za-z0-9_-]{0,400}",
        tag in "[A-Za-z0-9_-]{0,64}",
    ) {
        let token = format!("{payload}.{tag}");
        prop_assert!(verify_link_with_keys(&token, &[KEY, OLD_KEY], NOW).is_err());
    }

    #[test]
    fn any_claims_round_trip(
        execution_id in ".{0,60}",
        approver in ".{0,60}",
        nonce in "[A-Za-z0-9]{1,32}",
        expires_at in any::<i64>(),
    ) {
        let claims = LinkClaims { execution_id, approver, nonce, expires_at, ..claims() };
        let token = sign_link(&claims, KEY);
        prop_assume!(token.len() <= MAX_TOKEN_LEN);
        prop_assert_eq!(verify_link(&token, KEY, i64::MIN), Ok(claims));
    }
}

#[test]
fn a_form_token_belongs_to_its_link_and_key() {
    let key = b"0123456789abcdef0123456789abcdef";
    let other_key = b"fedcba9876543210fedcba9876543210";
    let claims = LinkClaims {
        execution_id: "exec-1".into(),
        stage: "Int".into(),
        action: "ApproveInt".into(),
        approver: "ops@example.com".into(),
        expires_at: 2_000_000_000,
        nonce: "n1".into(),
    };
    let token = form_token(&claims, key);
    assert!(verify_form_token(&token, &claims, &[key]));
    // Verified under the previous key too (rotation), but not under a stranger's.
    assert!(verify_form_token(&token, &claims, &[other_key, key]));
    assert!(!verify_form_token(&token, &claims, &[other_key]));
    // Another link (other nonce, other approver) does not share it.
    let other_link = LinkClaims {
        nonce: "n2".into(),
        ..claims.clone()
    };
    assert!(!verify_form_token(&token, &other_link, &[key]));
    let other_approver = LinkClaims {
        approver: "else@example.com".into(),
        ..claims.clone()
    };
    assert!(!verify_form_token(&token, &other_approver, &[key]));
    // Garbage is refused, not a panic.
    for junk in ["", "!!!", &"A".repeat(5000), &token[1..]] {
        assert!(!verify_form_token(junk, &claims, &[key]));
    }
}

#[test]
fn signed_links_have_a_links_shape_and_text_that_cannot_be_one_does_not() {
    let token = sign_link(&claims(), KEY);
    assert_eq!(check_link_shape(&token), Ok(()));
    for text in [
        "",
        ".",
        "abc",
        "abc.",
        ".abc",
        "a.b.c",
        "\"<script>\".abc",
        "abc.d>e",
        "ab c.def",
        "abc.déf",
    ] {
        assert_eq!(
            check_link_shape(text),
            Err(LinkError::Malformed),
            "{text:?}"
        );
    }
    assert_eq!(
        check_link_shape(&format!("{}.abc", "a".repeat(MAX_TOKEN_LEN))),
        Err(LinkError::Malformed)
    );
}
