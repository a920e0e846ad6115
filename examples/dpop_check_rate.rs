//! Single-thread rate of checking one DPoP proof (RFC 9449 §4.3) the way
//! the token endpoint does (`deputy::dpop::check` with the verifier cache),
//! beside the bare ES256 signature check it contains: the difference is
//! what deputy adds around the signature (parsing, thumbprint, claims).
//!
//! `cargo run --release --example dpop_check_rate [-- SECONDS]`

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jws::{JwsHeader, JwsVerifier, ES256};
use josekit::jwt::{self, JwtPayload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 10.0)
        .unwrap_or(1.5);
    let window = Duration::from_secs_f64(secs);
    let url = "http://127.0.0.1:8080/token";
    let now = 1_760_000_000;

    let kp = ES256.generate_key_pair()?;
    let signer = ES256.signer_from_der(kp.to_der_private_key())?;
    let mut header = JwsHeader::new();
    header.set_token_type("dpop+jwt");
    header.set_jwk(kp.to_jwk_public_key());
    let proofs: Vec<String> = (0..2000)
        .map(|i| {
            let mut p = JwtPayload::new();
            p.set_jwt_id(format!("proof-{i:08}-abcdefghijklmnop"));
            p.set_claim("htm", Some("POST".into()))?;
            p.set_claim("htu", Some(url.into()))?;
            p.set_claim("iat", Some(now.into()))?;
            jwt::encode_with_signer(&p, &header, &signer)
        })
        .collect::<Result<_, _>>()?;

    let verifiers = deputy::dpop::ProofVerifiers::default();
    let expected = deputy::dpop::Expected {
        method: "POST",
        url,
        now,
        access_token: None,
        nonces: None,
        verifiers: Some(&verifiers),
    };
    let verifier = ES256.verifier_from_jwk(&kp.to_jwk_public_key())?;
    let split: Vec<(String, Vec<u8>)> = proofs
        .iter()
        .map(|p| {
            let (input, sig) = p.rsplit_once('.').unwrap_or_default();
            (
                input.to_string(),
                URL_SAFE_NO_PAD.decode(sig).unwrap_or_default(),
            )
        })
        .collect();

    for p in proofs.iter().take(200) {
        deputy::dpop::check(p, &expected).map_err(|e| format!("{e:?}"))?;
    }
    let rate = |f: &dyn Fn(usize) -> Result<(), String>| -> Result<f64, String> {
        let (mut n, start) = (0usize, Instant::now());
        while start.elapsed() < window {
            for _ in 0..64 {
                f(n % proofs.len())?;
                n += 1;
            }
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    };
    let verify = rate(&|i| {
        let (input, sig) = split.get(i).ok_or("no such proof")?;
        verifier
            .verify(input.as_bytes(), sig)
            .map_err(|e| e.to_string())
    })?;
    let check = rate(&|i| {
        let proof = proofs.get(i).ok_or("no such proof")?;
        deputy::dpop::check(proof, &expected)
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    })?;
    println!(
        "ES256 verify alone: {verify:>8.0} /s ({:.1} µs)",
        1e6 / verify
    );
    println!(
        "dpop::check:        {check:>8.0} /s ({:.1} µs)",
        1e6 / check
    );
    println!(
        "around the signature: {:.1} µs per proof",
        1e6 / check - 1e6 / verify
    );
    Ok(())
}
