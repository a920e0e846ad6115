//! Token exchange (RFC 8693): an agent or service acting for a person gets a
//! short-lived delegation token whose `act` claim names every actor in the
//! chain, narrowed to the task's audience, scope and lifetime. Each hop can
//! only narrow. Default deny: without a delegation rule nothing is issued.
//! Every exchange, granted or refused, is written to the audit trail.

mod binding;
pub mod presented;
mod trail;

use serde_json::Value;

use crate::client_auth::{refused_and_recorded, AuthenticatedClient, RequestJob};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::GrantContext;
use crate::model::{GrantType, SubjectKind};
use crate::policy::delegation::{self, DelegationRule, ScopeRefusal};
use crate::policy::parse_scope;
use crate::store::liveness::{lapsed, Dependencies, Lapsed};
use crate::store::Outcome;
use crate::token::{mint_access_token, AccessTokenSpec, TokenResponse};
use presented::{refusal, validate, PresentedToken, ACCESS_TOKEN_TYPE, JWT_TYPE};
use trail::{event, Trail};

/// RFC 8693 §2.2.2 `invalid_target`: default deny.
fn no_rule() -> OAuthError {
    OAuthError::invalid_target(
        "no delegation rule allows this actor to obtain tokens for this target",
    )
}

/// The answer when a dependency lapsed between the checks and the write.
/// A lapsed person, grant or parent token says no more than an unknown token
/// would (introspection says only `{"active": false}` about them).
fn lapsed_refusal(what: Lapsed) -> OAuthError {
    match what {
        // Default deny: the rule is gone.
        Lapsed::Rule => no_rule(),
        // The requesting client was removed: it no longer authenticates.
        Lapsed::Client => OAuthError::invalid_client(),
        Lapsed::Person => refusal("subject_token", "belongs to a disabled person"),
        Lapsed::Grant => refusal("subject_token", "hangs from a revoked grant"),
        Lapsed::Parent => refusal("subject_token", "or actor_token is no longer active"),
    }
}

/// RFC 8693 §2.1 and §2.2. Every exchange, granted or refused, is recorded in
/// the audit trail in the request's transaction; temporary failures of ours
/// are answered but are not policy refusals, so they are not recorded.
pub async fn exchange(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    form: &ExchangeRequest,
) -> RequestJob<TokenResponse> {
    let mut trail = Trail::default();
    match evaluate(ctx, auth, form, &mut trail).await {
        Ok(job) => job,
        Err(e) => {
            let ev = event(ctx.now, &auth.client, &trail).refused(e.reason());
            refused_and_recorded(e, ev)
        }
    }
}

/// The parameters of a token-exchange request (RFC 8693 §2.1), as sent.
/// Each is checked by `evaluate`, so that a refusal of any of them is
/// recorded in the audit trail with what is known of the request.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub requested_lifetime: Option<String>,
    /// deputy's parameters: the task, and who may exchange the result next.
    pub task: Option<String>,
    pub may_act: Option<String>,
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, OAuthError> {
    value
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter: {name}")))
}

fn one_of_pair<'a>(
    pair: (&'a Option<String>, &'a Option<String>),
    a: &'static str,
    b: &'static str,
) -> Result<Option<(&'a str, &'a str)>, OAuthError> {
    match (pair.0.as_deref(), pair.1.as_deref()) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (None, None) => Ok(None),
        // RFC 8693 §2.1: actor_token_type is REQUIRED when actor_token is present
        // and MUST NOT be included otherwise.
        _ => Err(OAuthError::invalid_request(format!(
            "{a} and {b} must be sent together"
        ))),
    }
}

async fn evaluate(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    form: &ExchangeRequest,
    t: &mut Trail,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    let client = &auth.client;
    let now = ctx.now;
    // Only a valid task reaches the trail: a refused one may hold characters
    // that must never be shown (it is refused below).
    t.task = form
        .task
        .clone()
        .filter(|task| delegation::is_valid_task(task));
    t.scope_asked = form.scope.clone();
    // 1. What is asked for (RFC 8693 §2.1).
    let subject_token = required(&form.subject_token, "subject_token")?;
    let subject_type = required(&form.subject_token_type, "subject_token_type")?;
    let actor_pair = one_of_pair(
        (&form.actor_token, &form.actor_token_type),
        "actor_token",
        "actor_token_type",
    )?;
    // RFC 8693 §2.2.1: the issued type follows the requested one; deputy's
    // access tokens are JWTs, so both names fit. No refresh token, ever.
    let issued_type = match form.requested_token_type.as_deref() {
        None | Some(ACCESS_TOKEN_TYPE) => ACCESS_TOKEN_TYPE,
        Some(JWT_TYPE) => JWT_TYPE,
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "only access tokens are issued by token exchange",
            ))
        }
    };
    let target = match (form.audience.as_deref(), form.resource.as_deref()) {
        (Some(a), None) => a.to_string(),
        (None, Some(r)) if crate::policy::is_valid_resource_uri(r) => r.to_string(),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_target(
                "resource must be an absolute URI",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "send exactly one target: audience or resource",
            ))
        }
        (None, None) => {
            return Err(OAuthError::invalid_request(
                "a target (audience or resource) is required",
            ))
        }
    };
    t.target = Some(target.clone());
    let requested_scope = form.scope.as_deref().map(parse_scope).transpose()?;
    let requested_lifetime = match form.requested_lifetime.as_deref() {
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            OAuthError::invalid_request("requested_lifetime must be a positive number of seconds")
        })?),
        None => None,
    };
    if let Some(task) = form.task.as_deref() {
        if !delegation::is_valid_task(task) {
            return Err(OAuthError::invalid_request(
                "task must be 1-128 characters a person can read (no control, invisible or bidirectional formatting characters)",
            ));
        }
    }
    let next_actor = form.may_act.as_deref();
    if next_actor.is_some_and(|a| !crate::model::is_valid_client_id(a)) {
        return Err(OAuthError::invalid_request(
            "may_act must be a client id (1-128 visible characters)",
        ));
    }

    // 2. The subject token: an active access token deputy issued.
    let subject = validate(ctx, "subject_token", subject_token, subject_type).await?;
    t.person = Some(subject.record.subject.clone());
    t.subject_jti = Some(subject.record.jti.clone());
    // A hop that names no task works within its subject token's task: the
    // token and the trail keep answering "which task" down the chain.
    if t.task.is_none() {
        t.task = subject.record.task.clone();
    }

    // 3. The actor: the requesting client, or the owner of the actor token
    //    when a broker requests on its behalf.
    let actor_token = match actor_pair {
        Some((tok, typ)) => {
            let a = validate(ctx, "actor_token", tok, typ).await?;
            // The actor token must be the actor service's own token.
            if a.record.subject != a.record.client_id
                || a.record.subject_kind != SubjectKind::Service
                || a.record.actor_chain.is_some()
            {
                return Err(OAuthError::invalid_request(
                    "actor_token must be the actor's own token",
                ));
            }
            Some(a)
        }
        None => None,
    };
    let actor = actor_token
        .as_ref()
        .map(|a| a.record.client_id.clone())
        .unwrap_or_else(|| client.id.clone());
    binding::dpop_binding(ctx, &subject, actor_token.as_ref(), &actor)?;
    let previous_act = subject.act();
    let chain = delegation::nest_act(&actor, previous_act.as_ref());
    t.chain = Some(chain.clone());

    // 4. The actor must be entitled to the subject token (issued to it or
    //    addressed to it), and `may_act` must name it (RFC 8693 §4.4).
    if !entitled(ctx, &subject, &actor).await? {
        return Err(refusal(
            "subject_token",
            "was neither issued nor addressed to the actor",
        ));
    }
    let may_act = subject.claims.get("may_act");
    if !delegation::may_act_allows(may_act, &actor) {
        return Err(refusal(
            "subject_token",
            "has a may_act that does not name this actor",
        ));
    }

    // 5. A rule for actor and target (default deny).
    let rule = {
        let (a, tg) = (actor.clone(), target.clone());
        ctx.store
            .read(move |c| crate::store::delegation::find(c, &a, &tg))
            .await?
    }
    .ok_or_else(no_rule)?;
    t.rule_id = Some(rule.id.clone());
    if rule.require_dpop && ctx.proof.is_none() {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "the delegation rule requires a DPoP proof by the actor",
        ));
    }
    if actor_token.is_some() && rule.broker.as_deref() != Some(client.id.as_str()) {
        return Err(OAuthError::unauthorized_client(
            "the client is not the broker named for this actor",
        ));
    }

    // 6. Scope only narrows.
    let scope =
        delegation::narrow_scope(requested_scope.as_deref(), &subject.scope(), &rule.scopes)
            .map_err(|r| match r {
                ScopeRefusal::Widening => OAuthError::invalid_scope(
                    "requested scope exceeds the subject token or the delegation rule",
                ),
                ScopeRefusal::Empty => {
                    OAuthError::invalid_scope("no scope is left after narrowing")
                }
            })?;
    t.scope_granted = Some(scope.join(" "));

    // 7. Lifetime only shortens.
    let exp = delegation::narrow_exp(
        now,
        rule.max_lifetime,
        requested_lifetime,
        subject.record.expires_at,
        actor_token.as_ref().map(|a| a.record.expires_at),
    );

    // 8. Depth.
    if delegation::depth(Some(&chain)) > rule.max_depth {
        return Err(OAuthError::invalid_request(
            "the delegation chain would be deeper than the rule allows",
        ));
    }
    // 11. What the new token hangs from, re-checked where it is recorded.
    let mut parents = vec![subject.record.jti.clone()];
    parents.extend(actor_token.as_ref().map(|a| a.record.jti.clone()));
    let deps = Dependencies {
        client_id: auth.client.id.clone(),
        person: (subject.record.subject_kind == SubjectKind::Person)
            .then(|| subject.record.subject.clone()),
        grant_id: subject.record.grant_id.clone(),
        parents,
        rule_id: Some(rule.id.clone()),
    };
    issue(
        ctx,
        auth,
        &subject,
        &rule,
        deps,
        chain,
        scope,
        exp,
        next_actor,
        issued_type,
        t,
    )
    .await
}

/// Issued to the actor, or addressed to it (directly or through a resource
/// registered as that client).
async fn entitled(
    ctx: &GrantContext<'_>,
    subject: &PresentedToken,
    actor: &str,
) -> Result<bool, OAuthError> {
    if subject.record.client_id == actor || subject.record.audience == actor {
        return Ok(true);
    }
    let (a, aud) = (actor.to_string(), subject.record.audience.clone());
    let ids = ctx
        .store
        .read(move |c| crate::store::resources::ids_for_client(c, &a))
        .await?;
    Ok(ids.contains(&aud))
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    subject: &PresentedToken,
    rule: &DelegationRule,
    deps: Dependencies,
    chain: Value,
    scope: Vec<String>,
    exp: i64,
    next_actor: Option<&str>,
    issued_type: &'static str,
    t: &mut Trail,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    let now = ctx.now;
    let client = &auth.client;
    let minted = mint_access_token(
        &ctx.ring,
        &ctx.settings.issuer,
        now,
        client,
        AccessTokenSpec {
            subject: subject.record.subject.clone(),
            subject_kind: subject.record.subject_kind,
            audience: rule.audience.clone(),
            scope,
            expires_at: exp,
            auth_time: subject.auth_time(),
            act: Some(chain),
            task: t.task.clone(),
            parent_jti: Some(subject.record.jti.clone()),
            grant_id: subject.record.grant_id.clone(),
            grant_type: GrantType::TokenExchange,
            rule_id: Some(rule.id.clone()),
            // deputy extension: who may exchange this token next (RFC 8693 §4.4).
            may_act: next_actor.map(str::to_string),
            // parents are [subject token, actor token if any]
            actor_token_jti: deps.parents.get(1).cloned(),
            cnf_jkt: ctx.cnf_jkt(),
        },
    )?;
    // What the trail says when issued, and when a dependency lapsed meanwhile.
    let refused_event = event(now, client, t);
    t.jti = Some(minted.record.jti.clone());
    let ev = event(now, client, t);
    let record = minted.record;
    let response = TokenResponse {
        access_token: minted.jwt,
        expires_in: exp - now,
        scope: record.scope.clone(),
        issued_token_type: Some(issued_type),
        dpop: record.cnf_jkt.is_some(),
        ..Default::default()
    };
    Ok(Box::new(move |c| {
        // A parent revoked (or person disabled, client removed, rule
        // removed) since it was checked: the cascade ran before this child
        // existed, so nothing is issued, and the refusal is recorded.
        if let Some(what) = lapsed(c, &deps)? {
            let e = lapsed_refusal(what);
            crate::store::audit::insert(c, &refused_event.clone().refused(e.reason()))?;
            return Ok(Outcome::Refuse(e));
        }
        crate::store::tokens::insert(c, &record)?;
        crate::store::audit::insert(c, &ev)?;
        Ok(Outcome::Commit(response.clone()))
    }))
}
