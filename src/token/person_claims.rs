//! What deputy says about a person: the standard claims it holds (OIDC Core
//! §5.1), which granted scope releases each (§5.4), and what a request's
//! `claims` parameter (§5.5) asks for. Used for the ID token and /userinfo.
//!
//! Released only what the person consented to: a claim asked for with the
//! `claims` parameter is returned only when a granted scope covers it
//! (§5.5 leaves it to the OP's policy; deputy's consent page speaks of
//! scopes, so a scope is what the person approved).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::OAuthError;
use crate::store::users::User;

/// Each scope and the claims it releases (OIDC Core §5.4), for the claims
/// deputy holds.
const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    ("profile", &["name", "preferred_username"]),
    ("email", &["email", "email_verified"]),
];

/// The largest `claims` parameter accepted (it is kept with the request).
const MAX_CLAIMS_PARAM: usize = 4096;

/// What a `claims` request parameter asked for (OIDC Core §5.5): the names
/// of the standard claims wanted in the ID token, and the `sub` value the
/// ID token must carry if one was given (§5.5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    pub id_token: Vec<String>,
    pub userinfo: Vec<String>,
    pub sub: Option<String>,
}

impl ClaimsRequest {
    /// Parse the parameter's JSON (§5.5). Unknown members and claims are
    /// ignored (§5.5: an OP that does not hold a claim does not return it);
    /// a value that is not the documented shape is an `invalid_request`.
    pub fn parse(raw: &str) -> Result<ClaimsRequest, OAuthError> {
        let bad = |why: &str| OAuthError::invalid_request(format!("claims parameter: {why}"));
        if raw.len() > MAX_CLAIMS_PARAM {
            return Err(bad("too long"));
        }
        let v: Value = serde_json::from_str(raw).map_err(|_never_echoed| bad("not JSON"))?;
        let Value::Object(top) = v else {
            return Err(bad("not a JSON object"));
        };
        let mut out = ClaimsRequest::default();
        for (member, target) in [("id_token", true), ("userinfo", false)] {
            let Some(m) = top.get(member) else { continue };
            let Value::Object(requested) = m else {
                return Err(bad(&format!("{member} is not an object")));
            };
            for (name, spec) in requested {
                // §5.5.1: null (default) or an object with essential/value/values.
                let spec = match spec {
                    Value::Null => None,
                    Value::Object(o) => Some(o),
                    _ => return Err(bad(&format!("{member}.{name} is not null or an object"))),
                };
                if let Some(o) = spec {
                    if o.get("essential").is_some_and(|e| !e.is_boolean()) {
                        return Err(bad(&format!("{member}.{name}.essential is not a boolean")));
                    }
                    if o.get("values").is_some_and(|e| !e.is_array()) {
                        return Err(bad(&format!("{member}.{name}.values is not an array")));
                    }
                    if target && name == "sub" {
                        match o.get("value") {
                            None => {}
                            Some(Value::String(s)) => out.sub = Some(s.clone()),
                            Some(_) => return Err(bad("id_token.sub.value is not a string")),
                        }
                    }
                }
                if released_by_any(name) {
                    let list = if target {
                        &mut out.id_token
                    } else {
                        &mut out.userinfo
                    };
                    if !list.contains(name) {
                        list.push(name.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

fn released_by_any(claim: &str) -> bool {
    SCOPE_CLAIMS.iter().any(|(_, c)| c.contains(&claim))
}

/// Is `claim` released by one of the granted `scopes`?
fn covered(claim: &str, scopes: &[&str]) -> bool {
    SCOPE_CLAIMS
        .iter()
        .any(|(s, c)| scopes.contains(s) && c.contains(&claim))
}

/// The value of one standard claim for this person, if deputy holds it.
fn value_of(user: &User, claim: &str) -> Option<Value> {
    match claim {
        "preferred_username" => Some(json!(user.username)),
        "name" => user.name.as_ref().map(|n| json!(n)),
        "email" => user.email.as_ref().map(|e| json!(e)),
        // Only meaningful with an address (§5.1).
        "email_verified" => user.email.as_ref().map(|_| json!(user.email_verified)),
        _ => None,
    }
}

fn insert_claims<'a>(
    out: &mut Map<String, Value>,
    user: &User,
    names: impl Iterator<Item = &'a str>,
) {
    for name in names {
        if let Some(v) = value_of(user, name) {
            out.insert(name.to_string(), v);
        }
    }
}

/// /userinfo (§5.3.2): every claim the granted scopes release (a `claims`
/// request's `userinfo` member can only ask for a subset of these).
pub fn userinfo_claims(user: &User, scopes: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    let names = SCOPE_CLAIMS
        .iter()
        .filter(|(s, _)| scopes.contains(s))
        .flat_map(|(_, c)| c.iter().copied());
    insert_claims(&mut out, user, names);
    out
}

/// The person's claims for an ID token beyond the protocol claims: all the
/// granted scopes release when the client is registered for them
/// (`--id-token-claims`, §5.4), else those the `claims` parameter asked
/// for that a granted scope covers (§5.5).
pub fn id_token_claims(
    user: &User,
    scopes: &[&str],
    all_scope_claims: bool,
    requested: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    let names = SCOPE_CLAIMS
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .filter(|c| covered(c, scopes))
        .filter(|c| all_scope_claims || requested.iter().any(|r| r == c));
    insert_claims(&mut out, user, names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(email_verified: bool) -> User {
        User {
            id: "sub-1".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice Example".into()),
            password_hash: String::new(),
            disabled_at: None,
            created_at: 0,
            email_verified,
        }
    }

    #[test]
    fn userinfo_releases_what_the_scopes_cover() {
        let u = alice(true);
        assert_eq!(
            Value::Object(userinfo_claims(&u, &["openid"])),
            json!({"sub": "sub-1"})
        );
        assert_eq!(
            Value::Object(userinfo_claims(&u, &["openid", "email"])),
            json!({"sub": "sub-1", "email": "alice@example.com", "email_verified": true})
        );
        assert_eq!(
            Value::Object(userinfo_claims(&u, &["openid", "profile"])),
            json!({"sub": "sub-1", "name": "Alice Example", "preferred_username": "alice"})
        );
    }

    #[test]
    fn no_address_means_no_email_claims() {
        let mut u = alice(true);
        u.email = None;
        assert_eq!(
            Value::Object(userinfo_claims(&u, &["openid", "email"])),
            json!({"sub": "sub-1"})
        );
    }

    #[test]
    fn id_token_gets_scope_claims_only_when_the_client_asks() {
        let u = alice(false);
        let scopes = ["openid", "email", "profile"];
        assert!(id_token_claims(&u, &scopes, false, &[]).is_empty());
        assert_eq!(
            Value::Object(id_token_claims(&u, &scopes, true, &[])),
            json!({"email": "alice@example.com", "email_verified": false,
                   "name": "Alice Example", "preferred_username": "alice"})
        );
    }

    #[test]
    fn requested_claims_need_a_granted_scope() {
        let u = alice(true);
        let requested = vec!["email".to_string(), "name".to_string()];
        // profile not granted: name stays out though it was asked for.
        assert_eq!(
            Value::Object(id_token_claims(&u, &["openid", "email"], false, &requested)),
            json!({"email": "alice@example.com"})
        );
    }

    #[test]
    fn claims_parameter_is_parsed_per_member() {
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"email":{"essential":true},"name":null,"acr":{"values":["x"]},
                "sub":{"value":"sub-1"}},"userinfo":{"email_verified":null},"other":1}"#,
        )
        .unwrap();
        assert_eq!(c.id_token, vec!["email".to_string(), "name".to_string()]);
        assert_eq!(c.userinfo, vec!["email_verified".to_string()]);
        assert_eq!(c.sub.as_deref(), Some("sub-1"));
    }

    #[test]
    fn malformed_claims_parameter_is_invalid_request() {
        for raw in [
            "not json",
            "[]",
            r#"{"id_token":[]}"#,
            r#"{"id_token":{"email":true}}"#,
            r#"{"userinfo":{"email":{"essential":"yes"}}}"#,
            r#"{"id_token":{"sub":{"value":7}}}"#,
            r#"{"id_token":{"name":{"values":"x"}}}"#,
        ] {
            let e = ClaimsRequest::parse(raw).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::InvalidRequest, "{raw}");
        }
        let long = format!(r#"{{"id_token":{{"x":"{}"}}}}"#, "a".repeat(5000));
        assert!(ClaimsRequest::parse(&long).is_err());
    }
}
