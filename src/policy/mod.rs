//! Policy: scopes, audiences, redirect URIs and PKCE. Pure functions, unit-tested here.

pub mod client_metadata;
pub mod delegation;
pub mod pkce;
pub mod redirect;

use crate::error::OAuthError;

/// RFC 6749 §3.3: scope = scope-token *( SP scope-token ),
/// scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). Duplicates collapse, order kept.
pub fn parse_scope(s: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ') {
        if tok.is_empty() {
            continue;
        }
        if !tok.bytes().all(is_scope_char) {
            return Err(OAuthError::invalid_scope("malformed scope"));
        }
        if !out.iter().any(|t| t == tok) {
            out.push(tok.to_string());
        }
    }
    // RFC 6749 §3.3: scope = scope-token *( SP scope-token ); a value of only
    // spaces names nothing and is not the same as omitting the parameter.
    if out.is_empty() && !s.is_empty() {
        return Err(OAuthError::invalid_scope("malformed scope"));
    }
    Ok(out)
}

fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// A scope name acceptable for registration (same grammar, no spaces).
pub fn is_valid_scope_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(is_scope_char)
}

/// True when every requested scope is in `allowed`.
pub fn is_subset(requested: &[String], allowed: &[String]) -> bool {
    requested.iter().all(|r| allowed.contains(r))
}

/// Scopes present in both, in the order of `a`.
pub fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|s| b.contains(s)).cloned().collect()
}

/// RFC 8707 §2: a `resource` is an absolute URI without a fragment.
pub fn is_valid_resource_uri(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => u.fragment().is_none() && (!u.cannot_be_a_base() || u.scheme() == "urn"),
        Err(_) => false,
    }
}

/// Choose the one audience of a token from `resource` (RFC 8707) or
/// `audience` (RFC 8693 style). Both given must agree. `None` when neither.
pub fn requested_audience(
    resource: Option<&str>,
    audience: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    if let Some(r) = resource {
        if !is_valid_resource_uri(r) {
            return Err(OAuthError::invalid_target(
                "resource must be an absolute URI without a fragment",
            ));
        }
    }
    match (resource, audience) {
        (Some(r), Some(a)) if r != a => Err(OAuthError::invalid_target(
            "resource and audience name different targets",
        )),
        (Some(r), _) => Ok(Some(r.to_string())),
        (None, Some(a)) => Ok(Some(a.to_string())),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scope_parsing_follows_rfc6749_3_3() {
        assert_eq!(parse_scope("a b  a c").unwrap(), v(&["a", "b", "c"]));
        assert_eq!(parse_scope("").unwrap(), Vec::<String>::new());
        assert!(parse_scope("   ").is_err());
        assert!(parse_scope("a\"b").is_err());
        assert!(parse_scope("a\\b").is_err());
        assert!(parse_scope("caf\u{e9}").is_err());
        assert!(parse_scope("a\tb").is_err());
    }

    #[test]
    fn subset_and_intersection() {
        assert!(is_subset(&v(&["a"]), &v(&["a", "b"])));
        assert!(!is_subset(&v(&["a", "c"]), &v(&["a", "b"])));
        assert!(is_subset(&v(&[]), &v(&[])));
        assert_eq!(
            intersect(&v(&["c", "a", "b"]), &v(&["a", "b"])),
            v(&["a", "b"])
        );
    }

    #[test]
    fn audience_selection() {
        assert_eq!(requested_audience(None, None).unwrap(), None);
        assert_eq!(
            requested_audience(Some("https://api.example"), None)
                .unwrap()
                .as_deref(),
            Some("https://api.example")
        );
        assert_eq!(
            requested_audience(None, Some("billing"))
                .unwrap()
                .as_deref(),
            Some("billing")
        );
        assert!(requested_audience(Some("https://a.example"), Some("https://b.example")).is_err());
        assert!(requested_audience(Some("https://a.example/#frag"), None).is_err());
        assert!(requested_audience(Some("not a uri"), None).is_err());
        assert!(requested_audience(Some("urn:example:api"), None).is_ok());
    }
}
