//! DPoP, sender-constrained tokens (RFC 9449): the proof a client sends in
//! the `DPoP` header, the key thumbprint a bound token carries in `cnf`, and
//! server nonces. Recording a proof's `jti` once across instances is
//! `store::dpop`'s job.

pub mod nonce;
pub mod proof;
pub mod thumbprint;
pub mod verifiers;

pub use nonce::Nonces;
pub use proof::{check, Expected, ProofError, ValidProof, PROOF_ALGS};
pub use thumbprint::jwk_thumbprint;
pub use verifiers::ProofVerifiers;

/// RFC 9449 §7.1-§7.2, the one rule for deputy's own resources (`/userinfo`,
/// the admin API): a bound token (`cnf_jkt`) is accepted only under the DPoP
/// scheme with a proof of its key (`presented`: the proof's thumbprint, or
/// `None` for a bearer presentation), never as a bearer token; an unbound
/// token is not a DPoP token.
pub fn binding_holds(cnf_jkt: Option<&str>, presented: Option<&str>) -> bool {
    match (cnf_jkt, presented) {
        (None, None) => true,
        (Some(bound), Some(proof)) => bound == proof,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bound_token_only_with_its_key_an_unbound_one_only_as_bearer() {
        assert!(super::binding_holds(None, None));
        assert!(super::binding_holds(Some("k"), Some("k")));
        assert!(!super::binding_holds(Some("k"), None));
        assert!(!super::binding_holds(Some("k"), Some("other")));
        assert!(!super::binding_holds(None, Some("k")));
    }
}
