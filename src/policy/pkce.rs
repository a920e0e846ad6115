//! PKCE (RFC 7636), S256 only, required for every client (RFC 9700 §2.1.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::OAuthError;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 7636 §4.3 and §4.2: the challenge must be present with method S256;
/// `plain`, a missing method or a malformed challenge is `invalid_request`.
pub fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, OAuthError> {
    let challenge = challenge
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE)"))?;
    match method {
        Some("S256") => {}
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ))
        }
        None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is required and must be S256",
            ))
        }
    }
    // An S256 challenge is base64url(SHA-256(verifier)): exactly 43 characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(OAuthError::invalid_request("malformed code_challenge"));
    }
    Ok(challenge.to_string())
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) must equal the stored challenge.
/// The verifier is 43-128 unreserved characters (§4.1).
pub fn verify(verifier: Option<&str>, challenge: &str) -> bool {
    let Some(v) = verifier else {
        return false;
    };
    if v.len() < 43 || v.len() > 128 || !v.bytes().all(is_unreserved) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(crate::secret::sha256(v.as_bytes()));
    crate::secret::constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert!(verify(Some(VERIFIER), CHALLENGE));
        assert!(!verify(Some(&VERIFIER.replace('d', "e")), CHALLENGE));
        assert!(!verify(None, CHALLENGE));
        assert!(!verify(Some("short"), CHALLENGE));
    }

    #[test]
    fn only_s256_with_a_well_formed_challenge() {
        assert_eq!(
            check_challenge(Some(CHALLENGE), Some("S256")).unwrap(),
            CHALLENGE
        );
        assert!(check_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(check_challenge(Some(CHALLENGE), None).is_err());
        assert!(check_challenge(None, Some("S256")).is_err());
        assert!(check_challenge(Some("tooshort"), Some("S256")).is_err());
        assert!(check_challenge(
            Some(&format!("{}+", CHALLENGE.get(..42).unwrap())),
            Some("S256")
        )
        .is_err());
    }
}
