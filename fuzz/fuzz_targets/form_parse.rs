//! Strict form parsing (RFC 6749 §3.1): never panics; what it accepts has no
//! empty values and no more parameters than the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = deputy::http::form::parse_form(data) {
        assert!(params.len() <= deputy::http::form::MAX_PARAMS);
        for key in ["grant_type", "scope", "client_id", "code", "token"] {
            if let Some(v) = params.get(key) {
                assert!(!v.is_empty(), "an empty value must count as absent");
            }
        }
    }
});
