//! JWK thumbprints (RFC 7638): the `jkt` a DPoP-bound token carries in
//! `cnf` (RFC 9449 §6.1).

use serde_json::{Map, Value};

/// The RFC 7638 §3.2 required members of each key type, in lexicographic
/// order (§3.3: the hash input has exactly these, no whitespace).
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "RSA" => Some(&["e", "kty", "n"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        _ => None,
    }
}

/// base64url(SHA-256(canonical JSON of the required members)), or `None`
/// for an unknown key type or a missing or non-string member.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let mut canonical = String::from("{");
    for (i, name) in required_members(kty)?.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        // serde_json escapes the string exactly as RFC 7638 §3.3 requires
        // (RFC 7159 string form); members are ASCII names.
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    Some(crate::secret::sha256_b64(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn rfc7638_section_3_1_example() {
        // The RSA key of RFC 7638 §3.1 and its published thumbprint.
        let jwk = obj(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }));
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ignores_optional_members_and_refuses_incomplete_keys() {
        let ec = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"});
        let mut with_extra = obj(ec.clone());
        with_extra.insert("kid".into(), json!("k1"));
        with_extra.insert("use".into(), json!("sig"));
        assert_eq!(jwk_thumbprint(&obj(ec)), jwk_thumbprint(&with_extra));
        assert!(jwk_thumbprint(&obj(json!({"kty": "EC", "crv": "P-256", "x": "a"}))).is_none());
        assert!(jwk_thumbprint(&obj(json!({"kty": "oct", "k": "c2VjcmV0"}))).is_none());
        assert!(jwk_thumbprint(&obj(json!({"kty": "OKP", "crv": "Ed25519", "x": 5}))).is_none());
    }
}
