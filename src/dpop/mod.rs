//! DPoP, sender-constrained tokens (RFC 9449): the proof a client sends in
//! the `DPoP` header, the key thumbprint a bound token carries in `cnf`, and
//! server nonces. Recording a proof's `jti` once across instances is
//! `store::dpop`'s job.

pub mod nonce;
pub mod proof;
pub mod thumbprint;

pub use nonce::Nonces;
pub use proof::{check, Expected, ProofError, ValidProof, PROOF_ALGS};
pub use thumbprint::jwk_thumbprint;
