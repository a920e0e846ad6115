//! Client-assertion validation (RFC 7523 §3): decoding never panics, and an
//! accepted claim set always satisfies the rules.
#![no_main]
use libfuzzer_sys::fuzz_target;

use deputy::client_auth::assertion::{check_claims, ClaimRules};

const NOW: i64 = 1_900_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = ClaimRules {
        issuer: "https://id.example",
        token_endpoint: "https://id.example/token",
        backchannel_endpoint: Some("https://id.example/bc-authorize"),
        now: NOW,
        skew: 30,
        max_age: 3600,
    };
    // Either a compact JWS, or a bare claim set.
    let claims = match deputy::token::jws::decode_unverified(text) {
        Ok(jws) => jws.payload,
        Err(_) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return,
        },
    };
    if let Ok((jti, remember_until)) = check_claims(&claims, &rules) {
        assert!(!jti.is_empty() && jti.len() <= 256);
        assert!(remember_until >= NOW, "an accepted assertion is not expired");
        let aud = match claims.get("aud") {
            Some(serde_json::Value::Array(list)) if list.len() == 1 => list[0].as_str(),
            a => a.and_then(|a| a.as_str()),
        };
        assert!(matches!(
            aud,
            Some("https://id.example" | "https://id.example/token" | "https://id.example/bc-authorize")
        ));
    }
});
