//! OpenID CIBA Core 1.0, poll mode: a backchannel authentication request
//! is recorded (`start`, for `POST /bc-authorize`), the person decides on
//! their account page (`crate::ciba::decide`), and the client polls the
//! token endpoint with `grant_type=urn:openid:params:grant-type:ciba`
//! (`poll`) until it gets tokens or a final answer.

use actix_web::http::StatusCode;

use crate::audit::{AuditEvent, Mode};
use crate::ciba::notify::ApprovalNotice;
use crate::ciba::{CheckedRequest, Hint};
use crate::client_auth::{AuthenticatedClient, RequestJob};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::GrantContext;
use crate::model::GrantType;
use crate::secret::{random_token, sha256_b64};
use crate::store::backchannel::{self, BackchannelRecord, Poll, Status};
use crate::store::liveness::{still_live, Dependencies};
use crate::store::tokens::GrantRecord;
use crate::store::users::User;
use crate::store::{Db, Outcome, StoreResult};
use crate::token::person_claims::id_token_claims;
use crate::token::TokenResponse;

use super::person::{mint, refresh_record, store, IssuedSet, PersonTokenSpec};

/// CIBA Core §7.3: the answer to a successful authentication request, and
/// whom to notify once it is committed.
pub struct Started {
    pub auth_req_id: String,
    pub expires_in: i64,
    pub interval: i64,
    /// The webhook's notice, when the request names a person.
    pub notice: Option<ApprovalNotice>,
}

impl Started {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "auth_req_id": self.auth_req_id,
            "expires_in": self.expires_in,
            "interval": self.interval,
        })
    }
}

/// The person a hint names, if they can be asked: known and not disabled.
async fn person_named(
    ctx: &GrantContext<'_>,
    client_id: &str,
    hint: &Hint,
) -> Result<Option<User>, OAuthError> {
    let user = match hint {
        Hint::LoginHint(name) => {
            let name = name.clone();
            ctx.store
                .read(move |c| crate::store::users::by_username(c, &name))
                .await?
        }
        // CIBA Core §7.1: an ID token deputy issued (it may have expired);
        // one deputy cannot verify is not a hint at all.
        Hint::IdTokenHint(t) => {
            let hint = ctx
                .own_tokens
                .id_token_hint(ctx.now, t)
                .map_err(|_unverifiable| {
                    OAuthError::invalid_request("id_token_hint is not valid")
                })?;
            // "Previously issued to the Client": one issued to another
            // client is no hint from this one (it would let any CIBA client
            // ask about whoever signed in elsewhere).
            let for_this_client = match hint.claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == client_id,
                Some(serde_json::Value::Array(a)) => {
                    a.iter().any(|v| v.as_str() == Some(client_id))
                }
                _ => false,
            };
            let sub = hint.str_claim("sub").map(str::to_string);
            let Some(sub) = sub.filter(|_| for_this_client) else {
                return Err(OAuthError::invalid_request("id_token_hint is not valid"));
            };
            ctx.store
                .read(move |c| crate::store::users::by_id(c, &sub))
                .await?
        }
    };
    Ok(user.filter(|u| u.disabled_at.is_none()))
}

/// Record a checked request (CIBA Core §7.3). An unknown person, or one who
/// cannot be asked, gets a request all the same — the client's answer has
/// the same shape either way — that nobody is shown and that simply expires.
pub async fn start(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    req: CheckedRequest,
) -> Result<RequestJob<Started>, OAuthError> {
    let now = ctx.now;
    let client = auth.client.clone();
    let person = person_named(ctx, &client.id, &req.hint).await?;
    let auth_req_id = random_token(32);
    let record = BackchannelRecord {
        auth_req_id_hash: sha256_b64(auth_req_id.as_bytes()),
        handle: random_token(16),
        client_id: client.id.clone(),
        user_id: person.as_ref().map(|u| u.id.clone()),
        scope: req.scope.join(" "),
        resource: req.resource.clone(),
        task: req.task.clone(),
        binding_message: req.binding_message.clone(),
        created_at: now,
        expires_at: now + req.expires_in,
        poll_interval: ctx.settings.ciba_interval,
        last_polled_at: None,
        status: Status::Pending,
        decided_at: None,
        auth_time: None,
        shown_at: None,
    };
    let mut event = AuditEvent::new(now, "ciba_requested", super::person::mode_for(&client))
        .client(&client.id, client.kind.as_str())
        .person(record.user_id.as_deref())
        .detail(serde_json::json!({"handle": record.handle, "person_known": person.is_some()}));
    event.scope = Some(record.scope.clone());
    event.audience = Some(record.resource.clone());
    event.task = record.task.clone();
    let notice = person.map(|u| ApprovalNotice {
        person: u.username,
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        task: req.task.clone(),
        binding_message: req.binding_message.clone(),
        account_url: ctx.settings.endpoint("/account"),
    });
    let expires_in = req.expires_in;
    let interval = ctx.settings.ciba_interval;
    Ok(Box::new(move |c| {
        // Removed since it authenticated: nothing is recorded.
        let deps = Dependencies {
            client_id: record.client_id.clone(),
            ..Dependencies::default()
        };
        if !still_live(c, &deps)? {
            return Ok(Outcome::Rollback(OAuthError::invalid_client()));
        }
        backchannel::insert(c, &record)?;
        crate::store::audit::insert(c, &event)?;
        Ok(Outcome::Commit(Started {
            auth_req_id: auth_req_id.clone(),
            expires_in,
            interval,
            notice: notice.clone(),
        }))
    }))
}

/// A parsed poll (CIBA Core §10.1).
pub struct CibaPoll {
    pub auth_req_id: String,
}

fn bad_id() -> OAuthError {
    OAuthError::invalid_grant("auth_req_id is invalid or already used")
}

/// CIBA Core §11: the answers while there are no tokens.
fn pending() -> OAuthError {
    OAuthError::new(
        ErrorCode::AuthorizationPending,
        "the person has not decided yet",
    )
}

fn expired() -> OAuthError {
    OAuthError::new(ErrorCode::ExpiredToken, "the request expired")
}

/// CIBA Core §11: `access_denied` is a token error response (400), not the
/// 403 of the authentication endpoint (§13).
fn denied() -> OAuthError {
    OAuthError::new(
        ErrorCode::AccessDenied,
        "the person denied the request, or it was withdrawn",
    )
    .with_status(StatusCode::BAD_REQUEST)
}

/// What an approved request yields, prepared before the transaction.
struct Issue {
    set: IssuedSet,
    grant: GrantRecord,
    deps: Dependencies,
    redeemed: AuditEvent,
}

/// CIBA Core §10.1 and §11: a poll. Tokens are signed before the
/// transaction when the request reads as approved; in the transaction one
/// statement decides the single redemption, and every other answer comes
/// from the request's state as the transaction sees it.
pub async fn poll(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    req: CibaPoll,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    let now = ctx.now;
    let client = auth.client.clone();
    let hash = sha256_b64(req.auth_req_id.as_bytes());
    let pre = {
        let (h, id) = (hash.clone(), client.id.clone());
        ctx.store
            .read(move |c| backchannel::get_for_client(c, &h, &id))
            .await?
    };
    // Another client's auth_req_id is not found: it is not this client's.
    let Some(pre) = pre else {
        return Err(bad_id());
    };
    let issue = match (&pre.status, &pre.user_id) {
        (Status::Approved, Some(user_id)) if pre.expires_at > now => {
            let id = user_id.clone();
            let user = ctx
                .store
                .read(move |c| crate::store::users::by_id(c, &id))
                .await?;
            match user {
                Some(user) => Some(prepare(ctx, &client, &pre, &user)?),
                None => return Err(bad_id()),
            }
        }
        _ => None,
    };
    let client_id = client.id.clone();
    Ok(Box::new(move |c| {
        if let Some(issue) = &issue {
            // The one statement that decides the race: of any number of
            // polls, one redeems; the others find it redeemed below.
            if backchannel::redeem(c, &hash, &client_id, now)? {
                if !still_live(c, &issue.deps)? {
                    return Ok(Outcome::Refuse(bad_id()));
                }
                crate::store::tokens::insert_grant(c, &issue.grant)?;
                store(c, &issue.set)?;
                crate::store::audit::insert(c, &issue.redeemed)?;
                return Ok(Outcome::Commit(issue.set.response.clone()));
            }
        }
        answer_without_tokens(c, &hash, &client_id, now)
    }))
}

/// The answer of a poll that redeems nothing, from the state as this
/// transaction sees it; a poll that finds the request expired records that
/// once.
fn answer_without_tokens(
    c: &dyn Db,
    hash: &str,
    client_id: &str,
    now: i64,
) -> StoreResult<Outcome<TokenResponse, OAuthError>> {
    let Some(rec) = backchannel::get_for_client(c, hash, client_id)? else {
        return Ok(Outcome::Refuse(bad_id()));
    };
    let refusal = match rec.status {
        Status::Redeemed => bad_id(),
        Status::Denied => denied(),
        Status::Expired => expired(),
        Status::Pending | Status::Approved if rec.expires_at <= now => {
            if backchannel::expire(c, hash, client_id, now)? {
                let mut e = AuditEvent::new(now, "ciba_expired", Mode::System)
                    .person(rec.user_id.as_deref())
                    .detail(serde_json::json!({"handle": rec.handle}));
                e.client_id = Some(rec.client_id.clone());
                e.scope = Some(rec.scope.clone());
                e.audience = Some(rec.resource.clone());
                e.task = rec.task.clone();
                crate::store::audit::insert(c, &e)?;
            }
            expired()
        }
        // Approved after this poll read it: the next poll redeems.
        Status::Approved => pending(),
        Status::Pending => match backchannel::record_poll(c, hash, client_id, now)? {
            Poll::TooSoon => OAuthError::new(
                ErrorCode::SlowDown,
                "polled faster than the interval; the interval is now 5 seconds longer",
            ),
            Poll::InTime | Poll::NotPending => pending(),
        },
    };
    Ok(Outcome::Refuse(refusal))
}

/// Sign the tokens an approved request yields: an access token for its
/// resource with its task, an ID token, and a refresh token only for a
/// client registered for refresh. They hang from a grant of their own: the
/// approval covers this request only.
fn prepare(
    ctx: &GrantContext<'_>,
    client: &crate::store::clients::Client,
    rec: &BackchannelRecord,
    user: &User,
) -> Result<Issue, OAuthError> {
    let now = ctx.now;
    // OIDC Core §2: auth_time is when the person authenticated — the login
    // session they approved in (recorded with the decision), not the click.
    let auth_time = rec.auth_time.or(rec.decided_at).unwrap_or(now);
    let amr = "pwd";
    let grant = GrantRecord {
        id: random_token(16),
        grant_type: GrantType::Ciba.as_str().to_string(),
        subject: user.id.clone(),
        client_id: client.id.clone(),
        scope: rec.scope.clone(),
        auth_time: Some(auth_time),
        created_at: now,
    };
    let scope: Vec<String> = rec
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let refresh = client.may_use(GrantType::RefreshToken).then(|| {
        let plaintext = random_token(32);
        let mut r = refresh_record(
            &plaintext,
            &grant.id,
            &client.id,
            &user.id,
            &rec.scope,
            &rec.resource,
            auth_time,
            amr,
            now,
            ctx.settings.refresh_idle_ttl,
            now + ctx.settings.refresh_absolute_ttl,
        );
        // The family serves this task only: refreshed tokens name it too.
        r.task = rec.task.clone();
        (plaintext, r)
    });
    let scope_names: Vec<&str> = scope.iter().map(String::as_str).collect();
    let claims = id_token_claims(user, &scope_names, client.id_token_claims, &[]);
    let set = mint(
        &ctx.ring,
        ctx.settings,
        now,
        PersonTokenSpec {
            client,
            user_id: &user.id,
            id_token_claims: claims,
            scope,
            resource: &rec.resource,
            auth_time,
            amr,
            nonce: None,
            sid: None,
            grant_id: &grant.id,
            grant_type: GrantType::Ciba,
            task: rec.task.as_deref(),
            refresh,
            // RFC 9449 §5: bound to the poll's proof, if any (the client is
            // confidential: its refresh token is bound by authentication).
            cnf_jkt: ctx.cnf_jkt(),
        },
    )?;
    let deps = Dependencies {
        client_id: client.id.clone(),
        person: Some(user.id.clone()),
        ..Dependencies::default()
    };
    let mut redeemed = AuditEvent::new(now, "ciba_redeemed", super::person::mode_for(client))
        .client(&client.id, client.kind.as_str())
        .person(Some(&user.id))
        .detail(serde_json::json!({"handle": rec.handle, "grant_id": grant.id}));
    redeemed.scope = Some(rec.scope.clone());
    redeemed.audience = Some(rec.resource.clone());
    redeemed.task = rec.task.clone();
    Ok(Issue {
        set,
        grant,
        deps,
        redeemed,
    })
}
