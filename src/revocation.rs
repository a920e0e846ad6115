//! Token revocation (RFC 7009).
//!
//! A client may revoke only tokens issued to it (RFC 7009 §2.1). Revoking an
//! access token revokes it and every token derived from it, and the audit
//! event is written in the same transaction. Whatever the outcome — revoked,
//! unknown, garbage, already revoked, another client's — the caller learns
//! nothing beyond "200" (RFC 7009 §2.2).

use crate::store::Db;

use crate::audit::{AuditEvent, Mode};
use crate::client_auth::{AuthenticatedClient, RequestJob};
use crate::error::{ErrorCode, OAuthError};
use crate::model::{SubjectKind, TokenKind};
use crate::store::tokens::{self, TokenRecord};
use crate::store::{Outcome, StoreResult};
use crate::token::gate::OwnTokens;

/// `revoked_reason` written on every token a client's revocation reaches.
pub const REASON: &str = "revoked_by_client";

/// RFC 7009 §2.1: `token_type_hint` is `access_token` or `refresh_token`
/// (RFC 7009 §4.1.2); any other value is `unsupported_token_type` (§2.2.1).
/// The hint only orders the search; it never limits it.
pub fn check_hint(hint: Option<&str>) -> Result<(), OAuthError> {
    match hint {
        None | Some("access_token") | Some("refresh_token") => Ok(()),
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedTokenType,
            "unsupported token_type_hint",
        )),
    }
}

/// Who acts when a token is revoked: the party that holds it, in the mode the
/// token was issued in.
fn mode_of(record: &TokenRecord) -> Mode {
    match (&record.actor_chain, record.subject_kind) {
        (Some(_), _) => Mode::Delegated,
        (None, SubjectKind::Person) => Mode::Person,
        (None, SubjectKind::Service) => Mode::Service,
    }
}

fn revoked_event(record: &TokenRecord, count: usize, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(now, "token_revoked", mode_of(record))
        .client(&record.client_id, &record.client_kind)
        .person((record.subject_kind == SubjectKind::Person).then_some(record.subject.as_str()))
        .detail(serde_json::json!({ "kind": "access", "revoked_count": count }));
    e.jti = Some(record.jti.clone());
    e.parent_jti = record.parent_jti.clone();
    e.actor_chain = record.actor_chain.clone();
    e.audience = Some(record.audience.clone());
    e.scope = Some(record.scope.clone());
    e.task = record.task.clone();
    e.rule_id = record.rule_id.clone();
    e
}

/// Inside the write: revoke the token's tree when the caller owns it. Returns
/// how many tokens changed state (0: not the caller's, unknown, or already
/// revoked — nothing is written then).
fn revoke_owned(conn: &dyn Db, jti: &str, caller: &str, now: i64) -> StoreResult<usize> {
    let Some(record) = tokens::get(conn, jti)? else {
        return Ok(0);
    };
    // RFC 7009 §2.1: the server verifies the token was issued to the client
    // making the request; if not, it refuses silently (§2.2).
    if record.kind != TokenKind::Access || record.client_id != caller {
        tracing::info!(client_id = %caller, jti = %jti, "revocation of a token not the caller's ignored");
        return Ok(0);
    }
    let count = tokens::revoke_tree(conn, jti, now, REASON)?;
    if count > 0 {
        crate::metrics::revoked_by_client();
        crate::store::audit::insert(conn, &revoked_event(&record, count, now))?;
    }
    Ok(count)
}

/// The job that revokes `token` for the authenticated caller in the
/// request's transaction. It answers `Ok` whether or not anything changed
/// (RFC 7009 §2.2); only a store failure is an error.
pub fn revoke(
    own: &OwnTokens,
    now: i64,
    auth: &AuthenticatedClient,
    token: &str,
) -> RequestJob<()> {
    let caller = auth.client.id.clone();
    // Only access tokens deputy signed carry a `jti` we can look up; expiry is
    // no obstacle. Anything else is unknown: RFC 7009 §2.2, answered 200.
    if let Some(jti) = own.known_access_token(now, token) {
        return Box::new(move |c| {
            let count = revoke_owned(c, &jti, &caller, now)?;
            if count > 0 {
                tracing::info!(client_id = %caller, jti = %jti, revoked = count, "token revoked");
            }
            Ok(Outcome::Commit(()))
        });
    }
    // Not one of our JWTs: perhaps an opaque refresh token.
    if token.len() > 512 || token.contains('.') {
        return Box::new(|_| Ok(Outcome::Commit(())));
    }
    let hash = crate::secret::sha256_b64(token.as_bytes());
    let kind = auth.client.kind.as_str().to_string();
    Box::new(move |c| {
        revoke_refresh(c, &hash, &caller, &kind, now)?;
        Ok(Outcome::Commit(()))
    })
}

/// RFC 7009 §2.1: revoking a refresh token revokes its whole family and every
/// token issued from it (RFC 9700 §4.14.2). Unknown strings change nothing.
fn revoke_refresh(c: &dyn Db, hash: &str, caller: &str, kind: &str, now: i64) -> StoreResult<()> {
    let Some(rec) = crate::store::refresh::get(c, hash)? else {
        return Ok(());
    };
    if rec.client_id != caller {
        return Ok(());
    }
    let revoked = crate::store::refresh::revoke_family(c, &rec.family_id, now, REASON)?;
    let count = revoked.tokens;
    if revoked.changed_anything() {
        crate::metrics::revoked_by_client();
        // The client holding the person's grant acts: an agent for
        // the person (delegated), the person's own app as the person.
        let mode = if kind == crate::model::ClientKind::Agent.as_str() {
            Mode::Delegated
        } else {
            Mode::Person
        };
        let mut e = AuditEvent::new(now, "token_revoked", mode)
            .client(caller, kind)
            .person(Some(&rec.user_id))
            .detail(serde_json::json!({ "kind": "refresh", "family_id": rec.family_id, "revoked_count": count }));
        e.jti = Some(rec.jti.clone());
        crate::store::audit::insert(c, &e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_rfc7009_2_1() {
        assert!(check_hint(None).is_ok());
        assert!(check_hint(Some("access_token")).is_ok());
        assert!(check_hint(Some("refresh_token")).is_ok());
        let e = check_hint(Some("id_token")).unwrap_err();
        assert_eq!(e.code.as_str(), "unsupported_token_type");
        assert_eq!(e.status.as_u16(), 400);
    }
}
