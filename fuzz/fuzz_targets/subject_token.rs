//! Subject-token validation (RFC 8693 §2.1 via RFC 8725): only an ES256 JWT
//! signed by one of deputy's keys, with our issuer and type, is accepted.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use deputy::keys::Keys;
use deputy::token::verify::verify_own_jwt;

const NOW: i64 = 1_900_000_000;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("deputy-fuzz-keys-{}", std::process::id()));
        Keys::open(&dir, NOW).unwrap_or_else(|e| panic!("keys: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ring = keys().ring();
    // Nothing the fuzzer can make without the private key may verify.
    let verified = verify_own_jwt(&ring, "https://id.example", NOW, 600, text, Some("at+jwt"));
    assert!(verified.is_err(), "a forged token verified");
});
