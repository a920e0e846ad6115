//! Compact JWS (RFC 7515 §7.1) encoding and strict decoding. The crypto is
//! josekit's (OpenSSL); the parsing is ours so every check is visible here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jws::{JwsSigner, JwsVerifier};
use serde_json::{Map, Value};

/// The most bytes of a JWT deputy will look at (RFC 8725 §3.11 style limit).
pub const MAX_JWT_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    TooLarge,
    Malformed,
    BadSignature,
}

/// A compact JWS split and parsed, signature not yet checked.
pub struct UnverifiedJws<'a> {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedJws<'_> {
    /// The decoded header and claims, not the signature: with it the text
    /// would be the presented token (a bearer credential or an assertion).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedJws")
            .field("header", &self.header)
            .field("payload", &self.payload)
            .field(
                "signature",
                &format_args!("<redacted, {} bytes>", self.signature.len()),
            )
            .finish_non_exhaustive()
    }
}

impl UnverifiedJws<'_> {
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
    /// Verify the signature with one key.
    pub fn verify_with(&self, verifier: &dyn JwsVerifier) -> Result<(), JwsError> {
        verifier
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_mismatch| JwsError::BadSignature)
    }
}

fn b64_json(part: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_not_base64url| JwsError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::Malformed),
    }
}

/// Split and parse a compact JWS without trusting anything in it.
pub fn decode_unverified(token: &str) -> Result<UnverifiedJws<'_>, JwsError> {
    if token.len() > MAX_JWT_LEN {
        return Err(JwsError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header = b64_json(h)?;
    let payload = b64_json(p)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_not_base64url| JwsError::Malformed)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwsError::Malformed)?;
    Ok(UnverifiedJws {
        header,
        payload,
        signing_input,
        signature,
    })
}

/// Encode and sign a compact JWS.
pub fn encode(header: &Value, payload: &Value, signer: &dyn JwsSigner) -> Result<String, String> {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).map_err(|e| e.to_string())?);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).map_err(|e| e.to_string())?);
    let mut out = String::with_capacity(h.len() + p.len() + 90);
    out.push_str(&h);
    out.push('.');
    out.push_str(&p);
    let sig = signer.sign(out.as_bytes()).map_err(|e| e.to_string())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// A NumericDate claim (RFC 7519 §2) as whole seconds; fractions are floored.
pub fn numeric_date(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jws::ES256;
    use serde_json::json;

    #[test]
    fn round_trip_and_tamper_detection() {
        let kp = ES256.generate_key_pair().unwrap();
        let signer = ES256.signer_from_der(kp.to_der_private_key()).unwrap();
        let verifier = ES256.verifier_from_der(kp.to_der_public_key()).unwrap();
        let t = encode(
            &json!({"alg":"ES256","typ":"at+jwt"}),
            &json!({"sub":"a","iat":1}),
            &signer,
        )
        .unwrap();
        let d = decode_unverified(&t).unwrap();
        assert_eq!(d.alg(), Some("ES256"));
        assert_eq!(d.payload["iat"], json!(1));
        d.verify_with(&verifier).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"b","iat":1}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            decode_unverified(&forged).unwrap().verify_with(&verifier),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn debug_of_a_parsed_token_leaves_its_signature_out() {
        let kp = ES256.generate_key_pair().unwrap();
        let signer = ES256.signer_from_der(kp.to_der_private_key()).unwrap();
        let t = encode(&json!({"alg":"ES256"}), &json!({"sub":"a"}), &signer).unwrap();
        let shown = format!("{:?}", decode_unverified(&t).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        assert!(!shown.contains(parts[2]), "{shown}");
        assert!(
            !shown.contains(t.get(..t.len() - parts[2].len()).unwrap()),
            "{shown}"
        );
        assert!(shown.contains("\"sub\""), "the claims are shown: {shown}");
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.",
            "e30.bm90IGpzb24.",
            "W10.e30.",
        ] {
            assert!(decode_unverified(bad).is_err(), "{bad}");
        }
        assert_eq!(
            decode_unverified(&"a".repeat(MAX_JWT_LEN + 1)).unwrap_err(),
            JwsError::TooLarge
        );
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(Some(&json!(5))), Some(5));
        assert_eq!(numeric_date(Some(&json!(5.9))), Some(5));
        assert_eq!(numeric_date(Some(&json!("5"))), None);
        assert_eq!(numeric_date(None), None);
    }
}
