//! Admin API inputs: query strings for the listings and the JSON body of a
//! revocation. Strict: an unknown or repeated parameter is an error rather
//! than a filter silently ignored (which would list, or revoke, more).

use serde::Deserialize;

use crate::admin::{check_limit, Selector};
use crate::error::OAuthError;
use crate::http::form::{parse_form, FormParams};
use crate::store::audit::AuditQuery;
use crate::store::lineage::TokenFilter;

/// Parse a query string, allowing only `known` parameters.
fn query(raw: &str, known: &[&str]) -> Result<FormParams, OAuthError> {
    let p = parse_form(raw.as_bytes())?;
    if known.iter().filter(|k| p.contains(k)).count() != p.len() {
        return Err(OAuthError::invalid_request("unknown query parameter"));
    }
    Ok(p)
}

fn owned(p: &FormParams, name: &str) -> Option<String> {
    p.get(name).map(str::to_string)
}

fn integer(p: &FormParams, name: &'static str) -> Result<Option<i64>, OAuthError> {
    p.get(name)
        .map(|v| {
            v.parse::<i64>().map_err(|_not_an_integer_or_json| {
                OAuthError::invalid_request(format!("{name} must be an integer"))
            })
        })
        .transpose()
}

fn limit(p: &FormParams) -> Result<i64, OAuthError> {
    check_limit(integer(p, "limit")?).map_err(OAuthError::invalid_request)
}

/// `GET /admin/tokens?sub=&client_id=&actor=&aud=&active=true|false&limit=`
pub fn token_filter(raw: &str) -> Result<TokenFilter, OAuthError> {
    let p = query(
        raw,
        &["sub", "client_id", "actor", "aud", "active", "limit"],
    )?;
    let active = match p.get("active") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(OAuthError::invalid_request("active must be true or false")),
    };
    Ok(TokenFilter {
        sub: owned(&p, "sub"),
        client_id: owned(&p, "client_id"),
        actor: owned(&p, "actor"),
        aud: owned(&p, "aud"),
        active,
        limit: limit(&p)?,
    })
}

/// `GET /admin/audit?person=&client_id=&actor=&task=&event=&since=&until=&limit=`
pub fn audit_query(raw: &str) -> Result<AuditQuery, OAuthError> {
    let p = query(
        raw,
        &[
            "person",
            "client_id",
            "actor",
            "task",
            "event",
            "since",
            "until",
            "limit",
        ],
    )?;
    Ok(AuditQuery {
        person: owned(&p, "person"),
        client_id: owned(&p, "client_id"),
        actor: owned(&p, "actor"),
        task: owned(&p, "task"),
        event: owned(&p, "event"),
        since: integer(&p, "since")?,
        until: integer(&p, "until")?,
        limit: Some(limit(&p)?),
    })
}

/// `POST /admin/revoke` body: exactly one of the members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    actor: Option<String>,
    grant_id: Option<String>,
}

pub fn revoke_selector(body: &[u8]) -> Result<Selector, OAuthError> {
    let b: RevokeBody = serde_json::from_slice(body).map_err(|_not_an_integer_or_json| {
        OAuthError::invalid_request(
            "the body must be a JSON object with one of jti, sub, client_id, actor, grant_id",
        )
    })?;
    let selector = Selector::exactly_one(b.jti, b.sub, b.client_id, b.actor, b.grant_id)
        .map_err(OAuthError::invalid_request)?;
    no_nul(selector.value())?;
    Ok(selector)
}

/// A token id from the path (`/admin/tokens/{jti}`).
pub fn path_jti(raw: String) -> Result<String, OAuthError> {
    no_nul(&raw)?;
    Ok(raw)
}

/// No identifier deputy issues holds a NUL, and PostgreSQL text cannot:
/// refused here as the bad input it is, not later as a store error (a 500).
fn no_nul(value: &str) -> Result<(), OAuthError> {
    if value.contains('\0') {
        return Err(OAuthError::invalid_request(
            "identifiers must not contain NUL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_filters_are_strict() {
        let f = token_filter("sub=p&active=false&limit=5").unwrap();
        assert_eq!(f.sub.as_deref(), Some("p"));
        assert_eq!(f.active, Some(false));
        assert_eq!(f.limit, 5);
        assert_eq!(token_filter("").unwrap().limit, 100);
        for bad in [
            "subject=p",
            "active=yes",
            "limit=0",
            "limit=x",
            "sub=a&sub=b",
        ] {
            assert_eq!(
                token_filter(bad).unwrap_err().code.as_str(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn nul_in_an_identifier_is_refused() {
        let err = revoke_selector(br#"{"jti":"a\u0000b"}"#).unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_request");
        assert_eq!(
            path_jti("a\0b".into()).unwrap_err().code.as_str(),
            "invalid_request"
        );
        assert_eq!(path_jti("ab".into()).unwrap(), "ab");
        assert_eq!(revoke_selector(br#"{"sub":"p"}"#).unwrap().value(), "p");
    }

    #[test]
    fn audit_queries_are_strict() {
        let q = audit_query("person=p&since=10&until=20").unwrap();
        assert_eq!((q.since, q.until, q.limit), (Some(10), Some(20), Some(100)));
        assert!(audit_query("since=yesterday").is_err());
        assert!(audit_query("who=p").is_err());
    }

    #[test]
    fn revoke_bodies() {
        assert_eq!(
            revoke_selector(br#"{"actor":"agent-a"}"#).unwrap(),
            Selector::Actor("agent-a".into(), None)
        );
        assert_eq!(
            revoke_selector(br#"{"actor":"agent-a","sub":"p1"}"#).unwrap(),
            Selector::Actor("agent-a".into(), Some("p1".into()))
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"jti":"a","sub":"b"}"#,
            br#"{"client_id":"a","sub":"b"}"#,
            br#"{"actor":"a","sub":""}"#,
            br#"{"actor":"a","sub":"b","jti":"c"}"#,
            br#"{"jti":""}"#,
            br#"{"token":"x"}"#,
            br#"{"jti":5}"#,
            b"jti=a",
        ] {
            assert!(revoke_selector(bad).is_err());
        }
    }
}
