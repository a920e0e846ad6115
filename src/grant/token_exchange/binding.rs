//! DPoP-bound tokens in a token exchange (RFC 9449 applied to RFC 8693,
//! which is silent on it; deputy's rule, see README "Sender-constrained
//! tokens (DPoP)").

use super::presented::PresentedToken;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::GrantContext;

/// DPoP-bound tokens are never exchanged as bearer tokens (RFC 9449 §7.1
/// applied to RFC 8693, which is silent; deputy's choice). The request then
/// carries a proof, whose key binds the new token. A bound token of the
/// actor's own — the subject token issued to the actor, or the actor token a
/// broker presents — needs a proof of the key it is bound to, so nobody
/// holding a copy of an agent's tokens can use them without its key.
pub(super) fn dpop_binding(
    ctx: &GrantContext<'_>,
    subject: &PresentedToken,
    actor_token: Option<&PresentedToken>,
    actor: &str,
) -> Result<(), OAuthError> {
    let refuse = |why: &'static str| Err(OAuthError::new(ErrorCode::InvalidDpopProof, why));
    let proof = ctx.proof.map(|p| p.jkt.as_str());
    if let Some(bound) = subject.record.cnf_jkt.as_deref() {
        if proof.is_none() {
            return refuse("the subject token is DPoP-bound: send a DPoP proof");
        }
        if subject.record.client_id == actor && proof != Some(bound) {
            return refuse("the DPoP proof is not by the key the subject token is bound to");
        }
    }
    if let Some(bound) = actor_token.and_then(|a| a.record.cnf_jkt.as_deref()) {
        if proof != Some(bound) {
            return refuse("the actor token is DPoP-bound: send a DPoP proof by its key");
        }
    }
    Ok(())
}
