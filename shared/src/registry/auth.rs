//! Registry authentication: Basic credentials (what ECR's authorization token decodes to) and
//! the distribution spec's Bearer token challenge (`WWW-Authenticate: Bearer realm=...`).
//!
//! Nothing here ever formats a password or token into a message: [`Credentials`] and
//! [`BearerToken`] have redacting `Debug` impls and no `Display`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A user name and password for Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One challenge of a `WWW-Authenticate` header: a scheme and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value (RFC 9110 §11.6.1) into its challenges. Malformed
/// input gives whatever could be read before the malformation, never a panic.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        let (token, after) = split_token(rest);
        if token.is_empty() {
            break;
        }
        let after_ws = after.trim_start();
        if let Some(value_part) = after_ws.strip_prefix('=') {
            // An auth-param of the current challenge; one before any scheme is malformed.
            let Some(current) = challenges.last_mut() else {
                break;
            };
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                match read_quoted(quoted) {
                    Some(v) => v,
                    None => break,
                }
            } else {
                let (v, r) = split_token(value_part);
                (v.to_owned(), r)
            };
            current.params.insert(token.to_ascii_lowercase(), value);
            rest = remaining;
        } else {
            challenges.push(Challenge {
                scheme: token.to_owned(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
    challenges
}

fn split_token(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| c.is_ascii_whitespace() || c == ',' || c == '=' || c == '"')
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Reads a quoted-string body (after the opening quote): the unescaped value and what follows
/// the closing quote; `None` if it is not closed.
fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// A token from a registry's token service, with when to stop using it.
#[derive(Clone)]
pub struct BearerToken {
    token: String,
    refresh_after: Instant,
}

impl BearerToken {
    pub fn secret(&self) -> &str {
        &self.token
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_after
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("refresh_after", &self.refresh_after)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The spec's default lifetime when the token service does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh this long before expiry, so a request never starts with a token about to lapse.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// Reads a token service's JSON answer (`token`, or the OAuth2 `access_token`). The error
/// never includes the body: it may hold the token.
pub fn parse_token_response(body: &[u8], now: Instant) -> Result<BearerToken, &'static str> {
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|_| "token response is not the expected JSON")?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("token response holds no token")?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .max(DEFAULT_TOKEN_LIFETIME);
    Ok(BearerToken {
        token,
        refresh_after: now + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_hub_style_bearer_challenge_parses() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn basic_challenges_spacing_escapes_and_several_schemes_parse() {
        let c = parse_challenges(
            r#"Basic realm="ECR \"quoted\"" , bearer Realm=https://r/t, error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "Basic");
        assert_eq!(c[0].param("realm"), Some(r#"ECR "quoted""#));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("https://r/t"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn malformed_challenges_do_not_panic() {
        for h in [
            "",
            "=",
            "realm=x",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\\",
            ",,,",
            "Bearer ==",
            "Bearer realm=\"é\",service=ü",
        ] {
            let _ = parse_challenges(h);
        }
        assert_eq!(
            parse_challenges("Bearer realm=\"é\",service=ü")[0].param("service"),
            Some("ü")
        );
    }

    #[test]
    fn token_responses_give_a_token_that_expires() {
        let now = Instant::now();
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.secret(), "abc");
        assert!(t.is_fresh(now + Duration::from_secs(280)));
        assert!(!t.is_fresh(now + Duration::from_secs(295)));
        let oauth = parse_token_response(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(oauth.secret(), "xyz");
        assert!(parse_token_response(br#"{"token":""}"#, now).is_err());
        assert!(parse_token_response(b"not json", now).is_err());
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = Credentials::new("AWS", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = parse_token_response(br#"{"token":"s3cr3t"}"#, Instant::now()).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
