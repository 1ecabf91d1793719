//! The HTTP details of the page that are pure decisions: reading the form, refusing
//! cross-site submissions, and the headers every answer carries.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

/// Largest form body read; the form holds two tokens, a choice and a comment of at most
/// [`MAX_COMMENT_CHARS`] characters, far below this.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest comment accepted (it goes into CodePipeline's 512-character summary, shortened).
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form is too large")]
    TooLarge,
    #[error("the form is not URL-encoded text")]
    NotAForm,
    #[error("the form field {0} appears more than once")]
    Repeated(String),
}

/// `application/x-www-form-urlencoded` → fields. A repeated field is refused rather than
/// guessed at (which `decision` would win?).
pub fn read_form(body: &[u8]) -> Result<BTreeMap<String, String>, FormError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FormError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| FormError::NotAForm)?;
    let mut fields = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| FormError::NotAForm)
        };
        let name = decode(name)?;
        let value = decode(value)?;
        if fields.contains_key(&name) {
            return Err(FormError::Repeated(name));
        }
        fields.insert(name, value);
    }
    Ok(fields)
}

/// Whether a POST comes from another site, by the headers browsers set: `Sec-Fetch-Site`
/// (anything but `same-origin`, or `none` for a typed navigation, is refused) and `Origin`
/// (must name this host). Clients that send neither (not browsers) still need the form token.
pub fn cross_site(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&str>,
) -> Option<String> {
    if let Some(site) = sec_fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!("the browser reports a {site} request"));
    }
    // A page served with a strict referrer policy makes some browsers send `Origin: null` even
    // for its own form; `Sec-Fetch-Site` then says where the request came from.
    if origin == Some("null") && sec_fetch_site == Some("same-origin") {
        return None;
    }
    if let Some(origin) = origin {
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => {}
            _ => return Some(format!("the form was sent from {origin}")),
        }
    }
    None
}

/// Headers on every answer: nothing cached, nothing framed, nothing loaded from elsewhere.
pub fn security_headers(csp: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "text/html; charset=utf-8".to_owned()),
        ("content-security-policy", csp.to_owned()),
        ("x-frame-options", "DENY".to_owned()),
        ("cache-control", "no-store, max-age=0".to_owned()),
        ("pragma", "no-cache".to_owned()),
        // Same-origin only: the link (with its token) never leaves as a Referer to another site,
        // and the page's own form still carries a real `Origin`.
        ("referrer-policy", "same-origin".to_owned()),
        ("x-content-type-options", "nosniff".to_owned()),
        ("cross-origin-opener-policy", "same-origin".to_owned()),
        ("cross-origin-resource-policy", "same-origin".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_refuse_what_is_ambiguous() {
        let f = read_form(b"t=a.b&f=xyz&decision=approve&comment=ship+it%21+%C3%A9").unwrap();
        assert_eq!(f["decision"], "approve");
        assert_eq!(f["comment"], "ship it! \u{e9}");
        assert_eq!(
            read_form(b"decision=approve&decision=reject"),
            Err(FormError::Repeated("decision".into()))
        );
        assert_eq!(read_form(&[0xff, 0xfe]), Err(FormError::NotAForm));
        assert_eq!(read_form(b"comment=%ff"), Err(FormError::NotAForm));
        assert_eq!(
            read_form(&vec![b'a'; MAX_BODY_BYTES + 1]),
            Err(FormError::TooLarge)
        );
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let host = Some("abc.lambda-url.eu-west-1.on.aws");
        assert_eq!(cross_site(None, None, host), None);
        assert_eq!(
            cross_site(
                Some("https://abc.lambda-url.eu-west-1.on.aws"),
                Some("same-origin"),
                host
            ),
            None
        );
        assert!(cross_site(None, Some("cross-site"), host).is_some());
        assert!(cross_site(None, Some("same-site"), host).is_some());
        assert!(cross_site(Some("https://evil.example"), None, host).is_some());
        assert!(cross_site(Some("null"), None, host).is_some());
        assert!(cross_site(Some("null"), Some("cross-site"), host).is_some());
        assert_eq!(cross_site(Some("null"), Some("same-origin"), host), None);
        assert!(cross_site(Some("https://abc.lambda-url.eu-west-1.on.aws"), None, None).is_some());
    }
}
