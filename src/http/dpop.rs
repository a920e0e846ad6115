//! A request's DPoP proof (RFC 9449 §4) as deputy's endpoints read it: at
//! most one `DPoP` header, checked against the endpoint's published URL and
//! the request's method, with a server nonce when the setting asks for one.
//! The pure checks are `crate::dpop`; spending the proof's `jti` is
//! `store::dpop::spend_proof`, in the request's transaction.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpRequest;

use crate::app::AppState;
use crate::config::Switch;
use crate::dpop::{Expected, Nonces, ProofError, ValidProof};
use crate::error::{ErrorCode, OAuthError};
use crate::store::Outcome;

/// The nonce keys, when nonces are required (loaded once from the store,
/// so every instance issues and accepts the same nonces).
async fn nonces(state: &AppState) -> Result<Option<Nonces>, OAuthError> {
    if state.settings.dpop_nonces != Switch::On {
        return Ok(None);
    }
    if let Some(k) = state.dpop_nonce_key.get() {
        return Ok(Some(Nonces::new(k.clone())));
    }
    let k = state
        .store
        .write(|c| crate::store::refresh::server_secret(c, "dpop-nonce"))
        .await?;
    Ok(Some(Nonces::new(
        state.dpop_nonce_key.get_or_init(|| k).clone(),
    )))
}

/// The nonce to hand out with an answer, when nonces are required (RFC 9449
/// §8.2: a fresh one may come with any answer).
pub async fn fresh_nonce(state: &AppState) -> Result<Option<String>, OAuthError> {
    Ok(nonces(state)
        .await?
        .and_then(|n| n.current(state.clock.now())))
}

/// The `DPoP-Nonce` header for a successful answer to a request with a
/// proof, when nonces are required (RFC 9449 §8.2, §9: a fresh nonce may
/// come with any answer, so the client need not fail once to get the next).
pub async fn nonce_header(
    state: &AppState,
) -> Result<Option<(HeaderName, HeaderValue)>, OAuthError> {
    Ok(fresh_nonce(state)
        .await?
        .and_then(|n| HeaderValue::from_str(&n).ok())
        .map(|v| (HeaderName::from_static("dpop-nonce"), v)))
}

/// Check the request's proof for the endpoint at `path` (published as
/// issuer + path). `None` without a `DPoP` header. `access_token`: at a
/// resource, the token presented with the proof (`ath`, RFC 9449 §7).
pub async fn proof(
    state: &AppState,
    req: &HttpRequest,
    path: &str,
    access_token: Option<&str>,
) -> Result<Option<ValidProof>, OAuthError> {
    let mut headers = req.headers().get_all("dpop");
    let Some(value) = headers.next() else {
        return Ok(None);
    };
    // RFC 9449 §4.3 item 1: exactly one DPoP header.
    if headers.next().is_some() {
        return Err(invalid("send exactly one DPoP header"));
    }
    let text = value
        .to_str()
        .map_err(|_not_ascii| invalid("the DPoP proof is not a JWT"))?;
    let nonces = nonces(state).await?;
    let now = state.clock.now();
    let url = state.settings.endpoint(path);
    let expected = Expected {
        method: req.method().as_str(),
        url: &url,
        now,
        access_token,
        nonces: nonces.as_ref(),
        verifiers: Some(&state.proof_verifiers),
    };
    crate::dpop::check(text, &expected)
        .map(Some)
        .map_err(|e| match e {
            ProofError::Invalid(why) => invalid(why),
            ProofError::UseNonce => {
                let mut e = OAuthError::new(
                    ErrorCode::UseDpopNonce,
                    "the DPoP proof must carry the nonce in DPoP-Nonce",
                );
                e.dpop_nonce = nonces.as_ref().and_then(|n| n.current(now));
                e
            }
        })
}

fn invalid(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, why)
}

/// Wrap a request's job so it first records the proof as used (RFC 9449
/// §11.1): a replayed proof is refused and the job does not run. In the
/// same transaction as what the job issues.
pub fn spend_first<T: Send + 'static>(
    proof: Option<&ValidProof>,
    now: i64,
    mut job: crate::client_auth::RequestJob<T>,
) -> crate::client_auth::RequestJob<T> {
    let Some(p) = proof else {
        return job;
    };
    let (jkt, jti, until) = (p.jkt.clone(), p.jti.clone(), p.remember_until(now));
    Box::new(move |c| {
        if !crate::store::dpop::spend_proof(c, &jkt, &jti, until, now)? {
            return Ok(Outcome::Refuse(invalid("the DPoP proof was used before")));
        }
        job(c)
    })
}

/// An access token presented at one of deputy's own resources: `Bearer`
/// (RFC 6750 §2.1) or `DPoP` with its checked proof (RFC 9449 §7.1).
pub struct Presented {
    pub token: String,
    /// The DPoP scheme's proof; `None` for a bearer token.
    pub proof: Option<ValidProof>,
}

impl Presented {
    pub fn is_dpop(&self) -> bool {
        self.proof.is_some()
    }

    /// Whether the token's binding holds for this presentation
    /// (`crate::dpop::binding_holds`).
    pub fn binding_holds(&self, cnf_jkt: Option<&str>) -> bool {
        crate::dpop::binding_holds(cnf_jkt, self.proof.as_ref().map(|p| p.jkt.as_str()))
    }

    /// Record the proof as used (RFC 9449 §11.1), across instances; a
    /// replay is refused with the DPoP challenge.
    pub async fn spend_proof(&self, state: &AppState) -> Result<(), OAuthError> {
        let Some(p) = self.proof.clone() else {
            return Ok(());
        };
        let now = state.clock.now();
        let spent = state
            .store
            .write(move |c| {
                crate::store::dpop::spend_proof(c, &p.jkt, &p.jti, p.remember_until(now), now)
            })
            .await?;
        if spent {
            Ok(())
        } else {
            Err(at_resource(invalid("the DPoP proof was used before")))
        }
    }
}

/// The `Authorization` header's credential under `scheme` (case-insensitive).
fn credential<'r>(req: &'r HttpRequest, scheme: &str) -> Option<&'r str> {
    let v = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (name, rest) = v.split_once(' ')?;
    if !name.eq_ignore_ascii_case(scheme) {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// The challenge of an answer at a resource: the scheme the token came with
/// (RFC 6750 §3 for Bearer, RFC 9449 §7.1 for DPoP, which names the algorithms).
pub fn challenge(dpop: bool, code: ErrorCode) -> String {
    if dpop {
        format!(
            "DPoP error=\"{}\", algs=\"{}\"",
            code.as_str(),
            crate::dpop::PROOF_ALGS.join(" ")
        )
    } else {
        format!("Bearer error=\"{}\"", code.as_str())
    }
}

/// A proof refusal at a resource: 401 with the DPoP challenge (RFC 9449
/// §7.1, §9), the nonce header kept; deputy's own failures pass unchanged.
fn at_resource(mut e: OAuthError) -> OAuthError {
    if matches!(
        e.code,
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
    ) {
        return e;
    }
    let www = challenge(true, e.code);
    e.status = actix_web::http::StatusCode::UNAUTHORIZED;
    e.with_www_authenticate(www)
}

/// The access token of a request to deputy's resource at `path` (its URL is
/// issuer + path), with its proof checked under the DPoP scheme (`ath`
/// included). `None`: no credential at all.
pub async fn presented_token(
    state: &AppState,
    req: &HttpRequest,
    path: &str,
) -> Result<Option<Presented>, OAuthError> {
    if let Some(t) = credential(req, "bearer") {
        return Ok(Some(Presented {
            token: t.to_string(),
            proof: None,
        }));
    }
    let Some(token) = credential(req, "dpop") else {
        return Ok(None);
    };
    match proof(state, req, path, Some(token)).await {
        Ok(Some(p)) => Ok(Some(Presented {
            token: token.to_string(),
            proof: Some(p),
        })),
        Ok(None) => Err(at_resource(invalid("a DPoP token needs a DPoP proof"))),
        Err(e) => Err(at_resource(e)),
    }
}
