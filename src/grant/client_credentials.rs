//! `grant_type=client_credentials` (RFC 6749 §4.4): a service gets a token for
//! itself. `sub` = `client_id` = the service; no refresh token (RFC 6749 §4.4.3).

use crate::audit::{AuditEvent, Mode};
use crate::client_auth::{AuthenticatedClient, RequestJob};
use crate::error::OAuthError;
use crate::grant::GrantContext;
use crate::model::{GrantType, SubjectKind};
use crate::policy::{is_subset, parse_scope, requested_audience};
use crate::store::clients::Client;
use crate::store::liveness::{still_live, Dependencies};
use crate::store::Outcome;
use crate::token::{mint_access_token, AccessTokenSpec, TokenResponse};

/// A checked client-credentials request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsRequest {
    pub scope: Vec<String>,
    pub audience: String,
}

/// The parameters of a client-credentials request (RFC 6749 §4.4.2), as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCredentialsParams {
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
}

/// RFC 6749 §4.4.2 and §3.3; RFC 8707 §2 for the target.
pub fn validate(
    client: &Client,
    params: &ClientCredentialsParams,
) -> Result<ClientCredentialsRequest, OAuthError> {
    let scope = match params.scope.as_deref() {
        Some(s) => {
            let requested = parse_scope(s)?;
            if !is_subset(&requested, &client.scopes) {
                return Err(OAuthError::invalid_scope(
                    "requested scope exceeds what the client may request",
                ));
            }
            requested
        }
        // RFC 6749 §3.3: omitted scope means the client's pre-defined default.
        None => client.scopes.clone(),
    };
    let audience = match requested_audience(params.resource.as_deref(), params.audience.as_deref())?
    {
        Some(a) if client.audiences.contains(&a) => a,
        Some(_) => {
            return Err(OAuthError::invalid_target(
                "the client may not obtain tokens for this target",
            ))
        }
        // Documented default: the first audience registered for the client.
        None => client.audiences.first().cloned().ok_or_else(|| {
            OAuthError::invalid_target("no target requested and the client has no default")
        })?,
    };
    Ok(ClientCredentialsRequest { scope, audience })
}

/// Sign the token now; the returned job records it in the request's transaction.
pub fn issue(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    req: ClientCredentialsRequest,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    let now = ctx.now;
    let client = &auth.client;
    let ttl = ctx.settings.access_token_ttl;
    let minted = mint_access_token(
        &ctx.ring,
        &ctx.settings.issuer,
        now,
        client,
        AccessTokenSpec {
            subject: client.id.clone(),
            subject_kind: SubjectKind::Service,
            audience: req.audience,
            scope: req.scope,
            expires_at: now + ttl,
            auth_time: None,
            act: None,
            task: None,
            parent_jti: None,
            grant_id: None,
            grant_type: GrantType::ClientCredentials,
            rule_id: None,
            may_act: None,
            actor_token_jti: None,
            cnf_jkt: ctx.cnf_jkt(),
        },
    )?;
    let mut audit = AuditEvent::new(now, "token_issued", Mode::Service)
        .client(&client.id, client.kind.as_str());
    audit.jti = Some(minted.record.jti.clone());
    audit.audience = Some(minted.record.audience.clone());
    audit.scope = Some(minted.record.scope.clone());
    audit.detail =
        Some(serde_json::json!({"grant_type": "client_credentials", "kind": "access"}).to_string());
    let record = minted.record;
    let response = TokenResponse {
        access_token: minted.jwt,
        expires_in: ttl,
        scope: record.scope.clone(),
        dpop: record.cnf_jkt.is_some(),
        ..Default::default()
    };
    Ok(Box::new(move |c| {
        // Removed since it authenticated: nothing is issued (the removal's
        // cascade ran before this token existed).
        let deps = Dependencies {
            client_id: record.client_id.clone(),
            ..Dependencies::default()
        };
        if !still_live(c, &deps)? {
            return Ok(Outcome::Rollback(OAuthError::invalid_client()));
        }
        crate::store::tokens::insert(c, &record)?;
        crate::store::audit::insert(c, &audit)?;
        Ok(Outcome::Commit(response.clone()))
    }))
}
