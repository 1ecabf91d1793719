//! A [`Registry`] for an ECR account, from `ecr:GetAuthorizationToken`.
//!
//! The token is base64 of `AWS:<password>` and is valid for 12 hours; the `proxyEndpoint`
//! (`https://<account>.dkr.ecr.<region>.amazonaws.com`) names the registry. An endpoint override
//! (`SHIPGATE_REGISTRY_ENDPOINTS`, `host=url` pairs) sends the requests for a host elsewhere
//! while image references keep the ECR host: in AWS the map is empty; the local stack maps each
//! account's ECR host to its local registry.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Credentials, Registry, RegistryError};

/// A client for the registry of the account `ecr`'s credentials belong to.
pub async fn ecr_registry(
    ecr: &aws_sdk_ecr::Client,
    http: reqwest::Client,
    endpoint_overrides: &BTreeMap<String, String>,
) -> Result<Registry, RegistryError> {
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| RegistryError::Ecr {
            operation: "GetAuthorizationToken",
            source: Box::new(e),
        })?;
    let data = output
        .authorization_data()
        .first()
        .ok_or(RegistryError::EcrAuthorization("no authorization data"))?;
    let token = data
        .authorization_token()
        .ok_or(RegistryError::EcrAuthorization("no authorization token"))?;
    let proxy_endpoint = data
        .proxy_endpoint()
        .ok_or(RegistryError::EcrAuthorization("no proxy endpoint"))?;
    let credentials = decode_authorization_token(token)?;
    let (host, endpoint) = resolve_endpoint(proxy_endpoint, endpoint_overrides)?;
    tracing::debug!(
        registry = %host,
        endpoint = %endpoint,
        overridden = endpoint_overrides.contains_key(&host),
        "registry endpoint resolved"
    );
    Ok(Registry::new(&endpoint, Some(credentials), http)?.with_host(host))
}

/// Decodes an ECR authorization token (base64 of `AWS:<password>`). Errors never include the
/// token.
pub fn decode_authorization_token(token: &str) -> Result<Credentials, RegistryError> {
    let decoded = STANDARD
        .decode(token.trim())
        .map_err(|_| RegistryError::EcrAuthorization("authorization token is not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| RegistryError::EcrAuthorization("authorization token is not UTF-8"))?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok(Credentials::new(user, password))
        }
        _ => Err(RegistryError::EcrAuthorization(
            "authorization token is not user:password",
        )),
    }
}

/// The registry host named by an ECR `proxyEndpoint`, and the URL to send its requests to: the
/// override for that host if there is one, else the proxy endpoint itself.
pub fn resolve_endpoint(
    proxy_endpoint: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<(String, String), RegistryError> {
    let url = reqwest::Url::parse(proxy_endpoint)
        .map_err(|_| RegistryError::EcrAuthorization("proxy endpoint is not a URL"))?;
    let host = url.host_str().ok_or(RegistryError::EcrAuthorization(
        "proxy endpoint has no host",
    ))?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let endpoint = match overrides.get(&host) {
        Some(over) => over.clone(),
        None => format!("{}://{host}", url.scheme()),
    };
    Ok((host, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecr_token_decodes_to_basic_credentials() {
        let token = STANDARD.encode("AWS:eyJwYXlsb2FkIjoi:with:colons");
        let c = decode_authorization_token(&token).unwrap();
        assert_eq!(c.username, "AWS");
        assert_eq!(c.password(), "eyJwYXlsb2FkIjoi:with:colons");
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        for bad in [
            "not base64 at all!".to_owned(),
            STANDARD.encode("no-colon"),
            STANDARD.encode("AWS:"),
            STANDARD.encode([0xff, 0xfe, b':', b'x']),
        ] {
            let err = decode_authorization_token(&bad).unwrap_err();
            assert!(!err.to_string().contains(&bad), "{err}");
        }
    }

    #[test]
    fn the_proxy_endpoint_names_the_host_and_an_override_redirects_it() {
        let ecr = "https://222222222222.dkr.ecr.eu-west-1.amazonaws.com";
        let none = BTreeMap::new();
        assert_eq!(
            resolve_endpoint(ecr, &none).unwrap(),
            (
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com".to_owned(),
                ecr.to_owned()
            )
        );
        let overrides = BTreeMap::from([(
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com".to_owned(),
            "http://127.0.0.1:5002".to_owned(),
        )]);
        let (host, endpoint) = resolve_endpoint(ecr, &overrides).unwrap();
        assert_eq!(host, "222222222222.dkr.ecr.eu-west-1.amazonaws.com");
        assert_eq!(endpoint, "http://127.0.0.1:5002");
        // Another account's host is not affected.
        let (_, other) = resolve_endpoint(
            "https://333333333333.dkr.ecr.eu-west-1.amazonaws.com",
            &overrides,
        )
        .unwrap();
        assert_eq!(
            other,
            "https://333333333333.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert!(resolve_endpoint("not a url", &none).is_err());
    }
}
