use super::*;
use crate::token::jws::encode;
use josekit::jws::{EdDSA, JwsSigner, ES256, HS256, RS256};
use serde_json::json;

const URL: &str = "https://as.example/token";
const NOW: i64 = 1_800_000_000;

struct Key {
    signer: Box<dyn JwsSigner>,
    public: Value,
    alg: &'static str,
}

fn es256() -> Key {
    let pair = ES256.generate_key_pair().unwrap();
    Key {
        signer: Box::new(ES256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap()),
        public: Value::Object(pair.to_jwk_public_key().as_ref().clone()),
        alg: "ES256",
    }
}

fn claims() -> Value {
    json!({"jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW})
}

fn proof_with(key: &Key, header: Value, claims: &Value) -> String {
    encode(&header, claims, key.signer.as_ref()).unwrap()
}

fn proof(key: &Key, claims: &Value) -> String {
    proof_with(
        key,
        json!({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public}),
        claims,
    )
}

fn expected() -> Expected<'static> {
    Expected {
        method: "POST",
        url: URL,
        now: NOW,
        access_token: None,
        nonces: None,
        verifiers: None,
    }
}

fn refused(p: &str, e: &Expected<'_>) -> &'static str {
    match check(p, e) {
        Err(ProofError::Invalid(why)) => why,
        other => panic!("expected invalid_dpop_proof, got {other:?}"),
    }
}

#[test]
fn a_valid_proof_of_each_algorithm_binds_its_key_thumbprint() {
    let mut keys = vec![es256()];
    let ed = EdDSA
        .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
        .unwrap();
    keys.push(Key {
        signer: Box::new(EdDSA.signer_from_jwk(&ed.to_jwk_private_key()).unwrap()),
        public: Value::Object(ed.to_jwk_public_key().as_ref().clone()),
        alg: "EdDSA",
    });
    let rsa = RS256.generate_key_pair(2048).unwrap();
    keys.push(Key {
        signer: Box::new(RS256.signer_from_jwk(&rsa.to_jwk_private_key()).unwrap()),
        public: Value::Object(rsa.to_jwk_public_key().as_ref().clone()),
        alg: "RS256",
    });
    for key in keys {
        let got = check(&proof(&key, &claims()), &expected()).unwrap();
        let jkt = jwk_thumbprint(key.public.as_object().unwrap()).unwrap();
        assert_eq!(
            got,
            ValidProof {
                jkt,
                jti: "j-1".into(),
                iat: NOW
            },
            "{}",
            key.alg
        );
    }
}

#[test]
fn header_defects_are_refused() {
    let key = es256();
    let c = claims();
    let e = expected();
    let wrong_typ = proof_with(
        &key,
        json!({"typ": "JWT", "alg": "ES256", "jwk": key.public}),
        &c,
    );
    assert_eq!(
        refused(&wrong_typ, &e),
        "the DPoP proof's typ must be dpop+jwt"
    );
    let no_jwk = proof_with(&key, json!({"typ": "dpop+jwt", "alg": "ES256"}), &c);
    assert_eq!(refused(&no_jwk, &e), "the DPoP proof has no jwk");
    // alg none: an unsigned JWT (RFC 8725 §3.1).
    let h = URL_SAFE_NO_PAD
        .encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public}).to_string());
    let p = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_eq!(
        refused(&format!("{h}.{p}."), &e),
        "the DPoP proof's alg is not supported"
    );
    // HMAC with the secret in the header: symmetric, refused by alg and key.
    let hs = Key {
        signer: Box::new(
            HS256
                .signer_from_bytes(b"0123456789abcdef0123456789abcdef")
                .unwrap(),
        ),
        public: json!({"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}),
        alg: "HS256",
    };
    assert_eq!(
        refused(&proof(&hs, &c), &e),
        "the DPoP proof's alg is not supported"
    );
    // A private key in jwk.
    let pair = ES256.generate_key_pair().unwrap();
    let private = Value::Object(pair.to_jwk_private_key().as_ref().clone());
    let signer = ES256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap();
    let leaky = encode(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
        &c,
        &signer,
    )
    .unwrap();
    assert_eq!(
        refused(&leaky, &e),
        "the DPoP proof's jwk must be a public key"
    );
    // Signed by one key, naming another.
    let other = es256();
    let swapped = proof_with(
        &key,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other.public}),
        &c,
    );
    assert_eq!(
        refused(&swapped, &e),
        "the DPoP proof's signature does not verify"
    );
    // An EC key claimed as RS256.
    let mismatched = proof_with(
        &key,
        json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": key.public}),
        &c,
    );
    assert_eq!(
        refused(&mismatched, &e),
        "the DPoP proof's jwk does not fit its alg"
    );
    assert_eq!(refused("not-a-jwt", &e), "the DPoP proof is not a JWT");
}

#[test]
fn claims_must_match_the_request() {
    let key = es256();
    let e = expected();
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        proof(&key, &c)
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        proof(&key, &c)
    };
    assert_eq!(refused(&without("jti"), &e), "the DPoP proof has no jti");
    assert_eq!(
        refused(&with("jti", json!("")), &e),
        "the DPoP proof's jti is empty or too long"
    );
    assert_eq!(
        refused(&with("htm", json!("GET")), &e),
        "the DPoP proof's htm is not this request's method"
    );
    assert_eq!(
        refused(&without("htm"), &e),
        "the DPoP proof's htm is not this request's method"
    );
    assert_eq!(
        refused(&with("htu", json!("https://as.example/other")), &e),
        "the DPoP proof's htu is not this endpoint"
    );
    assert_eq!(
        refused(&with("htu", json!("https://evil.example/token")), &e),
        "the DPoP proof's htu is not this endpoint"
    );
    assert_eq!(
        refused(&with("htu", json!("http://as.example/token")), &e),
        "the DPoP proof's htu is not this endpoint"
    );
    assert_eq!(
        refused(&with("htu", json!("https://u:p@as.example/token")), &e),
        "the DPoP proof's htu is not this endpoint"
    );
    assert_eq!(refused(&without("htu"), &e), "the DPoP proof has no htu");
    // Query and fragment are ignored; host case and the default port normalise.
    for same in [
        "https://as.example/token?x=1#f",
        "https://AS.example:443/token",
        "https://as.example/a/../token",
    ] {
        assert!(check(&with("htu", json!(same)), &e).is_ok(), "{same}");
    }
    assert_eq!(refused(&without("iat"), &e), "the DPoP proof has no iat");
    assert_eq!(
        refused(&with("iat", json!(NOW - IAT_WINDOW - 1)), &e),
        "the DPoP proof's iat is not recent"
    );
    assert_eq!(
        refused(&with("iat", json!(NOW + IAT_WINDOW + 1)), &e),
        "the DPoP proof's iat is not recent"
    );
    assert!(check(&with("iat", json!(NOW - IAT_WINDOW)), &e).is_ok());
    // Far out of range (a huge float reads as i64::MIN): refused, no overflow.
    for far in [
        json!(-1e300),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(1e300),
    ] {
        assert_eq!(
            refused(&with("iat", far), &e),
            "the DPoP proof's iat is not recent"
        );
    }
}

#[test]
fn at_a_resource_the_proof_names_the_access_token() {
    let key = es256();
    let e = Expected {
        method: "GET",
        url: "https://as.example/userinfo",
        access_token: Some("tok-123"),
        ..expected()
    };
    let base = json!({"jti": "j", "htm": "GET", "htu": "https://as.example/userinfo", "iat": NOW});
    assert_eq!(
        refused(&proof(&key, &base), &e),
        "the DPoP proof has no ath"
    );
    let mut wrong = base.clone();
    wrong["ath"] = json!(crate::secret::sha256_b64(b"another token"));
    assert_eq!(
        refused(&proof(&key, &wrong), &e),
        "the DPoP proof's ath does not match the access token"
    );
    let mut right = base;
    right["ath"] = json!(crate::secret::sha256_b64(b"tok-123"));
    assert!(check(&proof(&key, &right), &e).is_ok());
}

#[test]
fn a_required_nonce_is_asked_for_until_a_good_one_comes() {
    let key = es256();
    let nonces = Nonces::new("shared".into());
    let e = Expected {
        nonces: Some(&nonces),
        ..expected()
    };
    assert_eq!(
        check(&proof(&key, &claims()), &e),
        Err(ProofError::UseNonce)
    );
    let mut stale = claims();
    stale["nonce"] = json!(nonces
        .current(NOW - 3 * crate::dpop::nonce::NONCE_WINDOW)
        .unwrap());
    assert_eq!(check(&proof(&key, &stale), &e), Err(ProofError::UseNonce));
    let mut good = claims();
    good["nonce"] = json!(nonces.current(NOW).unwrap());
    assert!(check(&proof(&key, &good), &e).is_ok());
    // A defective proof is invalid, not a nonce question.
    let mut bad = good;
    bad["htm"] = json!("PUT");
    assert_eq!(
        refused(&proof(&key, &bad), &e),
        "the DPoP proof's htm is not this request's method"
    );
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

#[test]
fn a_proof_with_any_crit_header_is_refused_rfc7515_s4_1_11() {
    let key = es256();
    for crit in [json!(["foo"]), json!([]), json!("foo"), json!(["exp"])] {
        let header =
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public, "crit": crit, "foo": 1});
        assert_eq!(
            refused(&proof_with(&key, header, &claims()), &expected()),
            "the DPoP proof has a crit header deputy does not support",
            "{crit}"
        );
    }
    assert!(check(&proof(&key, &claims()), &expected()).is_ok());
}
